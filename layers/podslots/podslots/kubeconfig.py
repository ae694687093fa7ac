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
- EKS accepts such a token for 15 minutes. The client's `refresh_api_key_hook` runs before every
  request and renews the token after 10 minutes, so a long-lived ApiClient never sends a stale one.

Nothing here logs a token, a kubeconfig or a credential: the logs name the secret and the cluster only.
"""

from __future__ import annotations

import base64
import copy
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
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import new_client_from_config_dict
from kubernetes.config.config_exception import ConfigException

from podslots.clock import Clock, SystemClock
from podslots.errors import PodSlotsError
from podslots.observability import logger

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
    """The kubeconfig cannot be read, parsed or used to reach the cluster (no secret value in the message)."""

    code = "cluster_access"


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


# A user of these kinds sends a bearer credential with every request: a token (or one made from the
# function's IAM role for EKS), a password. It must only ever go to the server the CA vouches for.
_BEARER_USER_KEYS = ("token", "tokenFile", "exec", "auth-provider", "password")


def refuse_unverified_server(config: dict[str, Any], context: str | None = None) -> None:
    """ClusterAccessError if a bearer credential would go to a server that was never verified.

    `insecure-skip-tls-verify` lets anyone on the path answer as the API server, and `proxy-url` sends
    every request through a host the kubeconfig names: either way a token (an EKS token is good for
    15 minutes for the function's role on any cluster that maps it) could reach someone else. A
    client-certificate user sends no reusable secret, so it is left to the loader.
    """
    user = _active(config, context, "user")
    cluster = _active(config, context, "cluster")
    if user is None or cluster is None or not any(user.get(k) for k in _BEARER_USER_KEYS):
        return
    if cluster.get("insecure-skip-tls-verify") in (True, "true", "True"):
        raise ClusterAccessError(
            "the kubeconfig's cluster sets insecure-skip-tls-verify with a token or EKS user: the token "
            "would go to a server nobody verified. Give its certificate-authority-data instead."
        )
    if cluster.get("proxy-url"):
        raise ClusterAccessError(
            "the kubeconfig's cluster sets proxy-url with a token or EKS user: podslots sends a token "
            "only straight to the API server. Remove proxy-url (reach the cluster from the VPC instead)."
        )


def api_client_from_kubeconfig(
    config: Mapping[str, Any],
    *,
    context: str | None = None,
    clock: Clock | None = None,
    credentials: Credentials | None = None,
    sts_client: Any = None,
) -> ApiClient:
    """An ApiClient for the kubeconfig's context (default: current-context), on its own Configuration.

    Token, client-certificate and CA kubeconfigs go to the kubernetes loader unchanged; a token or EKS
    user with `insecure-skip-tls-verify` or `proxy-url` is refused (`refuse_unverified_server`). An
    EKS exec user gets an `EksTokenSource` instead (`credentials`/`sts_client` sign its tokens;
    default: the function's own). The first token is made here, so a signing problem shows now.
    The loader writes `*-data` certificates and keys to temp files, as it always does (Lambda: /tmp).
    """
    config_dict = copy.deepcopy(dict(config))  # the caller's dict stays as it was
    refuse_unverified_server(config_dict, context)
    user = _active_user(config_dict, context)
    source: EksTokenSource | None = None
    # The loader prefers a token to exec; so does podslots.
    if user is not None and "exec" in user and not user.get("token") and not user.get("tokenFile"):
        exec_block = user.pop("exec")
        if not isinstance(exec_block, Mapping):
            raise ClusterAccessError("the kubeconfig user's exec is not a mapping")
        eks = eks_exec(exec_block)
        if eks.ignored:
            logger.warning("kubeconfig exec settings without effect in Lambda", extra={"ignored": list(eks.ignored)})
        source = EksTokenSource(eks, clock=clock, credentials=credentials, sts_client=sts_client)
    configuration = Configuration()
    configuration.retries = False
    try:
        api_client = new_client_from_config_dict(
            config_dict, context=context, persist_config=False, client_configuration=configuration
        )
    except ConfigException as exc:  # its messages name keys and entries, not values
        raise ClusterAccessError(f"the kubeconfig is not usable: {exc}") from exc
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
    "api_client_from_kubeconfig",
    "default_secrets_provider",
    "eks_exec",
    "eks_token",
    "load_kubeconfig",
    "new_sts_client",
    "parse_kubeconfig",
    "read_secret_text",
    "refuse_unverified_server",
]
