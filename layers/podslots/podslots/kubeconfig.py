"""Cluster access: a `kubernetes` ApiClient from a kubeconfig kept in AWS Secrets Manager.

- The kubeconfig holds a credential (a token, a client key), so it is a secret. It is read through
  Powertools Parameters and cached for `max_age_s` (5 minutes): a warm function does not call Secrets
  Manager on every run, and a rotated kubeconfig is in use within that time. `SECRETSMANAGER_ENDPOINT`,
  when set, points the client at a local stack.
- Each ApiClient has its own `Configuration`. `new_client_from_config_dict` with an explicit
  `client_configuration` never calls `Configuration.set_default` (kubernetes 37.0.1), so the module's
  global default is left alone and two pools may use two clusters in one process.
- urllib3 retries are off (`retries=False`). By default the client retries a failed GET three times,
  which hides errors, multiplies timeouts and turns a refused connection into a `MaxRetryError`. Here one
  call is one request: an HTTP error answer raises `ApiException`, a connection failure or timeout raises
  urllib3's own `HTTPError`, and the caller decides (reconcile runs again within the minute anyway).
- An EKS kubeconfig, as `aws eks update-kubeconfig` writes it, runs `aws eks get-token` (or
  `aws-iam-authenticator token`) for each token. Lambda has no such command, so the token is made here
  exactly as aws-cli makes it (`awscli/customizations/eks/get_token.py`): a presigned STS
  GetCallerIdentity URL with the cluster name in the signed `x-k8s-aws-id` header, base64url-encoded
  without padding behind `k8s-aws-v1.`. It is signed with the function's own credentials, or those of the
  `--role-arn` it assumes. Any other exec plugin is refused with `ClusterAccessError`.
- The kubeconfig is allow-listed before the loader sees it (`allowed_kubeconfig`): a user holds a
  token (trimmed; nothing but printable ASCII left inside), a client certificate as data, or an EKS
  exec; a cluster holds an https server (http only for loopback), its CA as data, and never
  `insecure-skip-tls-verify` but `false`, nor `proxy-url`. The loader would otherwise read files
  (`tokenFile: /proc/self/environ` sends the function's own AWS keys), run auth-provider refreshes and
  turn verification off for the string "false". docs/security.md, "The kubeconfig".
- EKS accepts such a token for 15 minutes. The client's `refresh_api_key_hook` runs before every
  request and renews the token after 10 minutes, so a long-lived ApiClient never sends a stale one.

Nothing here logs a token, a kubeconfig or a credential: the logs name the secret and the cluster only.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import ipaddress
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import boto3
import yaml
from aws_lambda_powertools.utilities.parameters import GetParameterError, SecretsProvider
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import new_client_from_config_dict
from kubernetes.config.config_exception import ConfigException

from podslots.clock import Clock, SystemClock
from podslots.errors import PodSlotsError
from podslots.observability import logger
from podslots.scrub import scrub

MESSAGE_LIMIT = 600  # a refusal's message is ours, and says what to do instead: longer than a server's
DEFAULT_MAX_AGE_S = 300  # how long a read kubeconfig is trusted before Secrets Manager is asked again

TOKEN_PREFIX = "k8s-aws-v1."  # noqa: S105 (the public token format, not a secret)
CLUSTER_ID_HEADER = "x-k8s-aws-id"
PRESIGN_EXPIRES_S = 60  # what aws-cli asks for; EKS itself takes the token for 15 minutes from its date
TOKEN_RENEW_AFTER_S = 600.0  # well inside the 15 minutes, whatever the clock skew or a slow request
DEFAULT_SESSION_NAME = "EKSGetTokenAuth"  # aws-cli's role session name for --role-arn

_AWS_CLI = frozenset({"aws", "aws.exe", "aws.cmd"})
_AUTHENTICATOR = frozenset({"aws-iam-authenticator", "aws-iam-authenticator.exe", "heptio-authenticator-aws"})
_SHORT_FLAGS = {"-i": "--cluster-id", "-r": "--role"}  # aws-iam-authenticator's short forms
_FLAGS_WITHOUT_VALUE = frozenset(
    {
        "--debug",
        "--no-verify-ssl",
        "--no-paginate",
        "--no-sign-request",
        "--no-cli-pager",
        "--cli-auto-prompt",
        "--no-cli-auto-prompt",
        "--token-only",
        "--forward-session-name",
    }
)
_NO_EFFECT = frozenset({"--output"})  # how the CLI prints the token: nothing to honour
_REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")


class ClusterAccessError(PodSlotsError):
    """The kubeconfig cannot be read, parsed or used to reach the cluster (no secret value in the message).

    The message names fields, never their values; what it quotes of another error (AWS's answer, the
    loader's words) goes through `scrub` here, so no caller has to remember to.
    """

    code = "cluster_access"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(scrub(message, limit=MESSAGE_LIMIT), **details)


# ---- the kubeconfig secret ---------------------------------------------------------------------


@cache
def default_secrets_provider() -> SecretsProvider:
    """One provider (and cache) per process; its client honours SECRETSMANAGER_ENDPOINT."""
    client = boto3.client(
        "secretsmanager",
        endpoint_url=os.environ.get("SECRETSMANAGER_ENDPOINT") or None,
        # A hung call must not eat the function's time: bounded waits, a few standard retries.
        config=Config(connect_timeout=5, read_timeout=10, retries={"mode": "standard", "max_attempts": 3}),
    )
    return SecretsProvider(boto3_client=client)


def read_secret_text(
    secret_name: str, *, max_age_s: int = DEFAULT_MAX_AGE_S, provider: SecretsProvider | None = None
) -> str:
    """The secret's value as text, from the provider's cache while younger than `max_age_s` (0: no cache)."""
    provider = provider or default_secrets_provider()
    try:
        value = provider.get(secret_name, max_age=max_age_s)
    except GetParameterError as exc:  # its message is the AWS error (code and text), never the value
        raise ClusterAccessError(f"cannot read the kubeconfig secret {secret_name}: {exc}", secret=secret_name) from exc
    if isinstance(value, bytes):  # a SecretBinary
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ClusterAccessError(f"secret {secret_name} is binary, not a kubeconfig", secret=secret_name) from None
    if not isinstance(value, str):
        raise ClusterAccessError(f"secret {secret_name} has no value", secret=secret_name)
    return value


def parse_kubeconfig(text: str, *, secret_name: str) -> dict[str, Any]:
    """A kubeconfig as a dict, from YAML or JSON text.

    A parse error never carries the text along (`from None`, only a line number): YAML errors quote the
    offending line, which may be the token.
    """
    config: Any = None
    if text.lstrip().startswith("{"):
        try:
            config = json.loads(text)
        except ValueError:
            config = None  # not JSON after all: YAML may still read it
    if config is None:
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ClusterAccessError(
                f"secret {secret_name} is not a YAML or JSON kubeconfig{where}", secret=secret_name
            ) from None
    if not isinstance(config, dict) or not isinstance(config.get("clusters"), list):
        raise ClusterAccessError(
            f"secret {secret_name} is not a kubeconfig (a mapping with clusters, users and contexts)",
            secret=secret_name,
        )
    return config


def load_kubeconfig(
    secret_name: str, *, max_age_s: int = DEFAULT_MAX_AGE_S, provider: SecretsProvider | None = None
) -> dict[str, Any]:
    """The kubeconfig stored in Secrets Manager under `secret_name` (a name or an ARN)."""
    return parse_kubeconfig(
        read_secret_text(secret_name, max_age_s=max_age_s, provider=provider), secret_name=secret_name
    )


# ---- EKS tokens ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EksExec:
    """What an EKS exec user asks for, read from its `aws eks get-token` or `aws-iam-authenticator` args.

    `ignored` names the flags and exec env variables that have no effect in Lambda (AWS_PROFILE,
    --profile: there are no profiles; the function's own credentials sign the token).
    """

    cluster_id: str
    region: str | None = None
    role_arn: str | None = None
    session_name: str | None = None
    ignored: tuple[str, ...] = ()


def _split_args(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Positional words and `--flag value` / `--flag=value` options (the last of a repeated flag wins)."""
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        name, eq, value = arg.partition("=")
        name = _SHORT_FLAGS.get(name, name)
        if not eq and name not in _FLAGS_WITHOUT_VALUE:
            if i >= len(args):
                raise ClusterAccessError(f"the kubeconfig's exec argument {name} has no value")
            value = args[i]
            i += 1
        options[name] = value
    return positional, options


def eks_exec(exec_block: Mapping[str, Any]) -> EksExec:
    """Recognise an EKS token command in a kubeconfig user's `exec`, or refuse it.

    Only the command's base name is quoted in the refusal: arguments of other plugins may be secrets.
    """
    command = re.split(r"[\\/]", str(exec_block.get("command") or ""))[-1]
    args = [str(a) for a in exec_block.get("args") or []]
    words: list[str] = []
    id_flags: tuple[str, ...] = ()
    role_flag = ""
    if command in _AWS_CLI:
        words, id_flags, role_flag = ["eks", "get-token"], ("--cluster-name", "--cluster-id"), "--role-arn"
    elif command in _AUTHENTICATOR:
        words, id_flags, role_flag = ["token"], ("--cluster-id",), "--role"
    positional, options = _split_args(args) if words else ([], {})
    if not words or positional != words:
        raise ClusterAccessError(
            f"the kubeconfig user runs the exec plugin {command or '(none)'!r}, which cannot run in Lambda; "
            "only `aws eks get-token` and `aws-iam-authenticator token` are made in process. "
            "Store a token or client-certificate kubeconfig instead (k8s/README.md)."
        )
    ids = [options[flag] for flag in id_flags if options.get(flag)]
    if len(ids) != 1:
        raise ClusterAccessError(
            f"the kubeconfig's `{command} {' '.join(words)}` needs exactly one of {', '.join(id_flags)}"
        )
    env = {
        str(item["name"]): str(item.get("value") or "")
        for item in exec_block.get("env") or []
        if isinstance(item, Mapping) and item.get("name")
    }
    region = options.get("--region") or next((env[k] for k in _REGION_ENV if env.get(k)), None)
    used = {"--region", role_flag, "--session-name", *id_flags, *_NO_EFFECT}
    ignored = sorted({flag for flag in options if flag not in used} | {name for name in env if name not in _REGION_ENV})
    return EksExec(
        cluster_id=ids[0],
        region=region,
        role_arn=options.get(role_flag) or None,
        session_name=options.get("--session-name") or None,
        ignored=tuple(ignored),
    )


def new_sts_client(region: str | None = None, credentials: Credentials | None = None) -> Any:
    """An STS client for presigning; region None takes AWS_REGION (always set in Lambda)."""
    keys: dict[str, Any] = {}
    if credentials is not None:
        keys = {
            "aws_access_key_id": credentials.access_key,
            "aws_secret_access_key": credentials.secret_key,
            "aws_session_token": credentials.token,
        }
    try:
        return boto3.client("sts", region_name=region, **keys)
    except BotoCoreError as exc:  # NoRegionError and kin
        raise ClusterAccessError(f"cannot make an STS client for EKS tokens: {exc}") from exc


def _take_cluster_id(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    # GetCallerIdentity has no such parameter: move it aside before validation (as aws-cli does).
    if CLUSTER_ID_HEADER in params:
        context[CLUSTER_ID_HEADER] = params.pop(CLUSTER_ID_HEADER)


def _add_cluster_header(request: Any, **_: Any) -> None:
    # ... and put it back as a header just before signing, so the signature covers it.
    if CLUSTER_ID_HEADER in request.context:
        request.headers[CLUSTER_ID_HEADER] = request.context[CLUSTER_ID_HEADER]


def eks_token(
    cluster_id: str,
    *,
    region: str | None = None,
    credentials: Credentials | None = None,
    sts_client: Any = None,
) -> str:
    """The bearer token `aws eks get-token --cluster-name <cluster_id>` prints, made without a network call.

    Signed at botocore's current time with `sts_client`'s credentials (else a new client's for `region`
    and `credentials`, else the default chain). The STS endpoint is the regional one botocore resolves,
    `https://sts.<region>.amazonaws.com/` (`.amazonaws.com.cn` in China).
    """
    client = sts_client if sts_client is not None else new_sts_client(region, credentials)
    events = client.meta.events
    events.register(
        "provide-client-params.sts.GetCallerIdentity", _take_cluster_id, unique_id="podslots-k8s-aws-id-param"
    )
    events.register("before-sign.sts.GetCallerIdentity", _add_cluster_header, unique_id="podslots-k8s-aws-id-header")
    try:
        url = client.generate_presigned_url(
            "get_caller_identity",
            Params={CLUSTER_ID_HEADER: cluster_id},
            ExpiresIn=PRESIGN_EXPIRES_S,
            HttpMethod="GET",
        )
    except BotoCoreError as exc:  # NoCredentialsError and kin: the message names no credential
        raise ClusterAccessError(
            f"cannot sign an EKS token for cluster {cluster_id}: {exc}", cluster=cluster_id
        ) from exc
    return TOKEN_PREFIX + base64.urlsafe_b64encode(str(url).encode("utf-8")).decode("ascii").rstrip("=")


class EksTokenSource:
    """One EKS cluster's token: made on first use, reused for `renew_after_s`, then made again.

    `refresh` is the kubernetes client's `refresh_api_key_hook`. The clock must follow real time (the
    token's 15 minutes are real minutes); tests inject a ManualClock. With `role_arn`, the role is
    assumed at each renewal, so its short-lived credentials never outlive the token.
    """

    def __init__(
        self,
        eks: EksExec,
        *,
        clock: Clock | None = None,
        credentials: Credentials | None = None,
        sts_client: Any = None,
        renew_after_s: float = TOKEN_RENEW_AFTER_S,
    ) -> None:
        self.eks = eks
        self.clock: Clock = clock or SystemClock()
        self.renew_after_s = renew_after_s
        self._credentials = credentials
        self._sts_client = sts_client
        self._lock = threading.Lock()
        self._token: str | None = None
        self._made_at = 0.0

    def token(self) -> str:
        with self._lock:
            now = self.clock.now()
            # A clock that went backwards also makes a new token: never trust a token of unknown age.
            if self._token is None or not self._made_at <= now < self._made_at + self.renew_after_s:
                self._token = self._make()
                self._made_at = now
            return self._token

    def refresh(self, configuration: Configuration) -> None:
        """Put a fresh-enough token where the client reads it (the loader's own place and form)."""
        configuration.api_key["BearerToken"] = f"Bearer {self.token()}"

    def _base_client(self) -> Any:
        if self._sts_client is None:
            self._sts_client = new_sts_client(self.eks.region, self._credentials)
        return self._sts_client

    def _signing_client(self) -> Any:
        base = self._base_client()
        if not self.eks.role_arn:
            return base
        session_name = self.eks.session_name or DEFAULT_SESSION_NAME
        try:
            assumed = base.assume_role(RoleArn=self.eks.role_arn, RoleSessionName=session_name)["Credentials"]
        except (BotoCoreError, ClientError) as exc:
            raise ClusterAccessError(
                f"cannot assume {self.eks.role_arn} for cluster {self.eks.cluster_id}: {exc}",
                cluster=self.eks.cluster_id,
            ) from exc
        role_credentials = Credentials(assumed["AccessKeyId"], assumed["SecretAccessKey"], assumed["SessionToken"])
        return new_sts_client(base.meta.region_name, role_credentials)

    def _make(self) -> str:
        client = self._signing_client()
        token = eks_token(self.eks.cluster_id, sts_client=client)
        logger.info(
            "EKS token made",
            extra={"cluster": self.eks.cluster_id, "region": client.meta.region_name, "role": self.eks.role_arn},
        )
        return token


# ---- the allow-list --------------------------------------------------------------------------------
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


# ---- ApiClient -----------------------------------------------------------------------------------


def _active(config: dict[str, Any], context: str | None, kind: str) -> dict[str, Any] | None:
    """The `user` or `cluster` mapping the context names (inside `config`, so it can be edited), or None."""
    name = context or config.get("current-context")
    entries = [c for c in config.get("contexts") or [] if isinstance(c, dict) and c.get("name") == name]
    ctx = entries[0].get("context") if entries else None
    if not isinstance(ctx, dict):
        return None  # the loader reports a missing context in its own words
    named = [e for e in config.get(f"{kind}s") or [] if isinstance(e, dict) and e.get("name") == ctx.get(kind)]
    value = named[0].get(kind) if named else None
    return value if isinstance(value, dict) else None


def _active_user(config: dict[str, Any], context: str | None) -> dict[str, Any] | None:
    return _active(config, context, "user")


def _names(names: Sequence[str]) -> list[str]:
    """Flag and variable names as they may be logged: a name that does not look like one is not repeated."""
    return [n if re.fullmatch(r"-{0,2}[A-Za-z_][A-Za-z0-9_-]{0,40}", n) else "(unreadable)" for n in names]


def api_client_from_kubeconfig(
    config: Mapping[str, Any],
    *,
    context: str | None = None,
    clock: Clock | None = None,
    credentials: Credentials | None = None,
    sts_client: Any = None,
) -> ApiClient:
    """An ApiClient for the kubeconfig's context (default: current-context), on its own Configuration.

    The kubeconfig must pass the allow-list (`allowed_kubeconfig`) first: the loader never sees a
    field podslots did not vouch for. Token and client-certificate users go to the kubernetes loader
    as they are (the token trimmed). An EKS exec user gets an `EksTokenSource` instead
    (`credentials`/`sts_client` sign its tokens; default: the function's own). The first token is
    made here, so a signing problem shows now. The loader writes `*-data` certificates and keys to
    temp files, as it always does (Lambda: /tmp).
    """
    config_dict = allowed_kubeconfig(config)
    user = _active_user(config_dict, context)
    source: EksTokenSource | None = None
    if user is not None and "exec" in user:  # the allow-list made it an EKS command, alone
        eks = eks_exec(user.pop("exec"))
        if eks.ignored:
            logger.warning("kubeconfig exec settings without effect in Lambda", extra={"ignored": _names(eks.ignored)})
        source = EksTokenSource(eks, clock=clock, credentials=credentials, sts_client=sts_client)
    configuration = Configuration()
    configuration.retries = False
    try:
        api_client = new_client_from_config_dict(
            config_dict, context=context, persist_config=False, client_configuration=configuration
        )
    except ConfigException as exc:  # its messages name keys and entries, not values (and are scrubbed)
        raise ClusterAccessError(f"the kubeconfig is not usable: {exc}") from None
    except (ValueError, TypeError, OSError) as exc:  # bad base64, a wrong type: the type says enough
        raise ClusterAccessError(f"the kubeconfig is not usable ({type(exc).__name__} while loading it)") from None
    if source is not None:
        source.refresh(configuration)
        # kubernetes declares the hook's type as that of its default, None.
        configuration.refresh_api_key_hook = source.refresh  # type: ignore[assignment]
    assert isinstance(api_client, ApiClient)
    return api_client


@dataclass(frozen=True)
class _Held:
    digest: str
    client: ApiClient


class ClusterConnections:
    """One ApiClient per kubeconfig secret per process, rebuilt when the secret's content changes.

    Create it once at module level (cold start); `api_client` reads the secret through the Powertools
    cache (`max_age_s`), so a rotated kubeconfig is in use within that time and the old client is closed.
    Nothing is created before the first call.
    """

    def __init__(
        self,
        *,
        max_age_s: int = DEFAULT_MAX_AGE_S,
        clock: Clock | None = None,
        provider: SecretsProvider | None = None,
        credentials: Credentials | None = None,
        sts_client: Any = None,
    ) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self._provider = provider
        self._credentials = credentials
        self._sts_client = sts_client
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}

    @property
    def provider(self) -> SecretsProvider:
        if self._provider is None:
            self._provider = default_secrets_provider()
        return self._provider

    def api_client(self, secret_name: str) -> ApiClient:
        text = read_secret_text(secret_name, max_age_s=self.max_age_s, provider=self.provider)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._lock:
            old = self._held.get(secret_name)
            if old is not None and old.digest == digest:
                return old.client
            client = api_client_from_kubeconfig(
                parse_kubeconfig(text, secret_name=secret_name),
                clock=self.clock,
                credentials=self._credentials,
                sts_client=self._sts_client,
            )
            self._held[secret_name] = _Held(digest, client)
        if old is not None:
            old.client.close()  # idle connections only: a caller still holding it opens new ones
        logger.info("cluster connection made", extra={"kubeconfig_secret": secret_name, "replaced": old is not None})
        return client

    def close(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for entry in held:
            entry.client.close()


__all__ = [
    "DEFAULT_MAX_AGE_S",
    "TOKEN_PREFIX",
    "TOKEN_RENEW_AFTER_S",
    "ClusterAccessError",
    "ClusterConnections",
    "EksExec",
    "EksTokenSource",
    "allowed_kubeconfig",
    "api_client_from_kubeconfig",
    "clean_token",
    "default_secrets_provider",
    "eks_exec",
    "eks_token",
    "is_loopback_host",
    "load_kubeconfig",
    "new_sts_client",
    "parse_kubeconfig",
    "read_secret_text",
]
