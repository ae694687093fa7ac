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
- An EKS kubeconfig's exec user gets its tokens from `eks_token.EksTokenSource` (made in process,
  renewed before EKS's 15 minutes run out); any other exec plugin is refused.
- The kubeconfig is allow-listed before the loader sees it (`kubeconfig_allowlist.allowed_kubeconfig`):
  the loader would otherwise read files, run auth-provider refreshes and turn TLS verification off.

Nothing here logs a token, a kubeconfig or a credential: the logs name the secret and the cluster only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
import yaml
from aws_lambda_powertools.utilities.parameters import GetParameterError, SecretsProvider
from botocore.config import Config
from botocore.credentials import Credentials
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import new_client_from_config_dict
from kubernetes.config.config_exception import ConfigException

from podslots.clock import Clock
from podslots.eks_token import (
    TOKEN_PREFIX,
    TOKEN_RENEW_AFTER_S,
    EksExec,
    EksTokenSource,
    eks_exec,
    eks_token,
    new_sts_client,
)
from podslots.errors import ClusterAccessError
from podslots.kubeconfig_allowlist import allowed_kubeconfig, clean_token, is_loopback_host
from podslots.observability import logger

DEFAULT_MAX_AGE_S = 300  # how long a read kubeconfig is trusted before Secrets Manager is asked again


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
