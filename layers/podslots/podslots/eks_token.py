"""EKS tokens, made in process: Lambda has no `aws` CLI to run an EKS kubeconfig's exec.

An EKS kubeconfig, as `aws eks update-kubeconfig` writes it, runs `aws eks get-token` (or
`aws-iam-authenticator token`) for each token. The token is made here exactly as aws-cli makes it
(`awscli/customizations/eks/get_token.py`): a presigned STS GetCallerIdentity URL with the cluster name
in the signed `x-k8s-aws-id` header, base64url-encoded without padding behind `k8s-aws-v1.`. It is
signed with the function's own credentials, or those of the `--role-arn` it assumes. Any other exec
plugin is refused with `ClusterAccessError`.

EKS accepts such a token for 15 minutes. The client's `refresh_api_key_hook` runs before every request
and `EksTokenSource` renews the token after 10 minutes, so a long-lived ApiClient never sends a stale one.
Nothing here logs a token or a credential.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes.client import Configuration

from podslots.clock import Clock, SystemClock
from podslots.errors import ClusterAccessError
from podslots.observability import logger

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
