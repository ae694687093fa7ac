"""The kubeconfig allow-list: what podslots lets the `kubernetes` loader see.

Every user and cluster entry of the kubeconfig is checked before the loader sees the dict: the loader
honours far more than podslots can vouch for (it reads files — `tokenFile: /proc/self/environ` sends the
function's own AWS keys —, runs auth-provider refreshes, turns TLS verification off for any truthy value,
the string "false" included). A user holds a token (trimmed; nothing but printable ASCII left inside),
a client certificate as data, or an EKS exec; a cluster holds an https server (http only for loopback),
its CA as data, and never `insecure-skip-tls-verify` but `false`, nor `proxy-url`. A refusal names the
field by its place (`users[0].user.tokenFile`), never its value. docs/security.md, "The kubeconfig".
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from podslots.eks_token import eks_exec
from podslots.errors import ClusterAccessError

#
# Every user and cluster entry of the kubeconfig is checked before the kubernetes loader sees the
# dict: the loader honours far more than podslots can vouch for (it reads files, runs auth-provider
# refreshes, turns TLS verification off for any truthy value). A refusal names the field by its place
# (`users[0].user.tokenFile`), never its value.

_CERT_PAIR = ("client-certificate-data", "client-key-data")
_USER_FIELDS = frozenset({"token", "exec", "extensions", *_CERT_PAIR})  # extensions: read by no client
_EXEC_FIELDS = frozenset(
    {"apiVersion", "command", "args", "env", "interactiveMode", "provideClusterInfo", "installHint"}
)
_CLUSTER_FIELDS = frozenset(
    {"server", "certificate-authority-data", "tls-server-name", "insecure-skip-tls-verify", "extensions"}
)
_REFUSED_FIELDS: dict[str, str] = {
    "tokenFile": "it names a file the client would read and send as the bearer token; give token",
    "client-certificate": "it names a file; give client-certificate-data",
    "client-key": "it names a file; give client-key-data",
    "certificate-authority": "it names a file; give certificate-authority-data",
    "auth-provider": "its refresh (oidc, gcp, azure) runs outside podslots' checks; give token or an EKS exec",
    "username": "basic auth is not sent; give token or a client certificate",
    "password": "basic auth is not sent; give token or a client certificate",
    "proxy-url": "requests and their token would go through a host the kubeconfig names; reach the cluster directly",
}
_ALLOWED_USER = "a user may hold token, client-certificate-data with client-key-data, or an EKS exec (k8s/README.md)"
_ALLOWED_CLUSTER = "a cluster may hold server, certificate-authority-data, tls-server-name (and extensions)"
_ALLOWED_EXEC = "an EKS exec may hold apiVersion, command, args, env (and interactiveMode, provideClusterInfo)"


def _refuse(where: str, why: str) -> ClusterAccessError:
    return ClusterAccessError(f"the kubeconfig's {where} is refused: {why}")


def _entries(config: Mapping[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(`clusters[i].cluster`, its mapping) for each entry of `clusters` or `users`."""
    raw = config.get(f"{kind}s")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _refuse(f"{kind}s", "it is not a list")
    entries = []
    for i, entry in enumerate(raw):
        body = entry.get(kind) if isinstance(entry, dict) else None
        if not isinstance(body, dict):
            raise _refuse(f"{kind}s[{i}]", f"it is not a mapping with name and {kind}")
        entries.append((f"{kind}s[{i}].{kind}", body))
    return entries


def _unknown_or_refused(where: str, entry: Mapping[str, Any], allowed: frozenset[str], hint: str) -> None:
    for key in entry:
        name = str(key)
        if name in _REFUSED_FIELDS:
            raise _refuse(f"{where}.{name}", _REFUSED_FIELDS[name])
        if name not in allowed:
            # An unknown key is named only if it looks like a field name: keys come from the secret too.
            shown = name if re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,40}", name) else "(a field)"
            raise _refuse(f"{where}.{shown}", f"it is not a field podslots knows; {hint}")


def clean_token(where: str, value: object) -> str:
    """The token without surrounding whitespace; refused if anything but printable ASCII is left in it.

    A line break left inside a token makes the HTTP layer raise an error that quotes the whole header;
    no bearer token (RFC 6750) has a space, a control character or a non-ASCII character.
    """
    if not isinstance(value, str):
        raise _refuse(where, "it is not text")
    token = value.strip()
    if not token:
        raise _refuse(where, "it is empty")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in token):
        raise _refuse(where, "a control character is left inside it (a line break?) once its ends are trimmed")
    if not all(0x21 <= ord(c) <= 0x7E for c in token):
        raise _refuse(where, "a space or a non-ASCII character is inside it")
    return token


def _check_user(where: str, user: dict[str, Any]) -> None:
    _unknown_or_refused(where, user, _USER_FIELDS, _ALLOWED_USER)
    if "token" in user:
        user["token"] = clean_token(f"{where}.token", user["token"])
        if "exec" in user:
            raise _refuse(f"{where}.exec", "the user also has a token; give one credential")
    if any(k in user for k in _CERT_PAIR):
        for k in _CERT_PAIR:
            if not isinstance(user.get(k), str) or not user[k].strip():
                raise _refuse(
                    f"{where}.{k}", "a client certificate needs both client-certificate-data and client-key-data"
                )
    if "exec" in user:
        exec_block = user["exec"]
        if not isinstance(exec_block, dict):
            raise _refuse(f"{where}.exec", "it is not a mapping")
        _unknown_or_refused(f"{where}.exec", exec_block, _EXEC_FIELDS, _ALLOWED_EXEC)
        eks_exec(exec_block)  # only the EKS token commands, made in process
    if not any(k in user for k in ("token", "exec", *_CERT_PAIR)):
        raise _refuse(where, f"it holds no credential; {_ALLOWED_USER}")


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: the local stack and the tests, where plain http stays on the machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_server(where: str, server: object) -> None:
    if not isinstance(server, str) or not server:
        raise _refuse(where, "a cluster needs a server URL")
    try:
        parts = urlsplit(server)
        host = parts.hostname
    except ValueError:  # an unclosed [ipv6 bracket, and kin
        raise _refuse(where, "it is not a URL") from None
    if "@" in parts.netloc:
        raise _refuse(where, "it carries a user name or password")
    if server.startswith("https://") and host:
        return
    if server.startswith("http://") and host and is_loopback_host(host):
        return
    raise _refuse(
        where, "it must be an https:// URL (http:// only for a loopback address): a token must not travel in clear"
    )


def _check_cluster(where: str, cluster: dict[str, Any]) -> None:
    _unknown_or_refused(where, cluster, _CLUSTER_FIELDS, _ALLOWED_CLUSTER)
    _check_server(f"{where}.server", cluster.get("server"))
    # The loader turns verification off for any truthy value ("1", "yes", even the string "false").
    if "insecure-skip-tls-verify" in cluster and cluster["insecure-skip-tls-verify"] is not False:
        raise _refuse(
            f"{where}.insecure-skip-tls-verify",
            "anyone on the path could answer as the API server; give certificate-authority-data (only false passes)",
        )
    for key in ("certificate-authority-data", "tls-server-name"):
        if key in cluster and not isinstance(cluster[key], str):
            raise _refuse(f"{where}.{key}", "it is not text")


def allowed_kubeconfig(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` whose every user and cluster entry passed the allow-list (tokens trimmed).

    Every entry is checked, not only the current context's: what the loader would pick then never
    depends on a reading of contexts that could differ from its own.
    """
    checked = copy.deepcopy(dict(config))  # the caller's dict stays as it was
    for where, user in _entries(checked, "user"):
        _check_user(where, user)
    for where, cluster in _entries(checked, "cluster"):
        _check_cluster(where, cluster)
    return checked
