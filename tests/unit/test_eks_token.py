"""EKS tokens made in process, as `aws eks get-token` makes them; exec users recognised or refused.

The expected token is computed here, independently of botocore: `presign_by_hand` is SigV4 query-string
signing written out from the AWS specification (canonical request, string to sign, HMAC key chain). It is
first checked against AWS's own published example of a presigned URL (the S3 "examplebucket/test.txt"
example of the SigV4 query-string documentation, signature `aeeed9bb...`), then used to build the exact
URL the token must encode. botocore signs at `botocore.auth.get_current_datetime()`, which the tests
freeze with `unittest.mock.patch`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest
from botocore.credentials import Credentials
from kubernetes.client import Configuration
from moto import mock_aws

from podslots import eks_token as eks_tokens
from podslots.clock import ManualClock
from podslots.kubeconfig import (
    ClusterAccessError,
    EksExec,
    EksTokenSource,
    api_client_from_kubeconfig,
    eks_exec,
    eks_token,
)

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
CREDS = Credentials(ACCESS_KEY, SECRET_KEY)
SIGNED_AT = datetime(2030, 1, 2, 3, 4, 5)  # botocore's clock is naive UTC
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ROLE = "arn:aws:iam::123456789012:role/podslots-eks"


# ---- SigV4 query signing, by hand ---------------------------------------------------------------


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def presign_by_hand(
    *,
    host: str,
    path: str,
    region: str,
    service: str,
    access_key: str,
    secret_key: str,
    amz_date: str,
    expires: int,
    query: dict[str, str],
    headers: dict[str, str],
    payload_hash: str,
) -> tuple[str, str]:
    """(canonical query string without the signature, signature) for a presigned GET."""
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    signed_headers = ";".join(sorted(headers))
    params = {
        **query,
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(expires),
        "X-Amz-SignedHeaders": signed_headers,
    }

    def enc(text: str) -> str:
        return quote(text, safe="-_.~")

    canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
    canonical_headers = "".join(f"{name}:{headers[name].strip()}\n" for name in sorted(headers))
    canonical_request = "\n".join(["GET", path, canonical_query, canonical_headers, signed_headers, payload_hash])
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = _hmac(f"AWS4{secret_key}".encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return canonical_query, hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def test_the_hand_signer_reproduces_the_aws_published_presigned_url_example():
    # AWS S3 documentation, "Authenticating Requests: Using Query Parameters (AWS Signature Version 4)".
    _, signature = presign_by_hand(
        host="examplebucket.s3.amazonaws.com",
        path="/test.txt",
        region="us-east-1",
        service="s3",
        access_key="AKIAIOSFODNN7EXAMPLE",
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        amz_date="20130524T000000Z",
        expires=86400,
        query={},
        headers={"host": "examplebucket.s3.amazonaws.com"},
        payload_hash="UNSIGNED-PAYLOAD",
    )
    assert signature == "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"


# ---- helpers -------------------------------------------------------------------------------------


@contextmanager
def botocore_time(start: datetime = SIGNED_AT, step_s: float = 0) -> Iterator[None]:
    """Freeze the time botocore signs with; with `step_s`, each signature is that much later."""
    moments = (start + timedelta(seconds=step_s * i) for i in range(10_000))
    with mock.patch("botocore.auth.get_current_datetime", side_effect=lambda *_, **__: next(moments)):
        yield


def url_of(token: str) -> str:
    assert token.startswith("k8s-aws-v1.")
    body = token.removeprefix("k8s-aws-v1.")
    assert "=" not in body
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def query_of(token: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url_of(token)).query).items()}


# ---- the token -----------------------------------------------------------------------------------


def test_the_token_is_the_presigned_get_caller_identity_url_computed_by_hand():
    with botocore_time():
        token = eks_token("demo", region="us-east-1", credentials=CREDS)

    host = "sts.us-east-1.amazonaws.com"
    canonical_query, signature = presign_by_hand(
        host=host,
        path="/",
        region="us-east-1",
        service="sts",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        amz_date="20300102T030405Z",
        expires=60,
        query={"Action": "GetCallerIdentity", "Version": "2011-06-15"},
        headers={"host": host, "x-k8s-aws-id": "demo"},
        payload_hash=EMPTY_SHA256,
    )
    assert canonical_query == (
        "Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIDEXAMPLE%2F20300102%2Fus-east-1%2Fsts%2Faws4_request"
        "&X-Amz-Date=20300102T030405Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"
    )
    assert len(signature) == 64
    assert url_of(token) == f"https://{host}/?{canonical_query}&X-Amz-Signature={signature}"
    expected = "k8s-aws-v1." + base64.urlsafe_b64encode(url_of(token).encode()).decode().rstrip("=")
    assert token == expected


def test_the_cluster_name_is_signed_so_another_cluster_gets_another_token():
    with botocore_time():
        demo, other = eks_token("demo", credentials=CREDS), eks_token("other", credentials=CREDS)
    assert query_of(demo)["X-Amz-Signature"] != query_of(other)["X-Amz-Signature"]
    assert {k: v for k, v in query_of(demo).items() if k != "X-Amz-Signature"} == {
        k: v for k, v in query_of(other).items() if k != "X-Amz-Signature"
    }


@pytest.mark.parametrize("access_key", ["AKID", "AKIDE", "AKIDEX"])  # three URL lengths mod 3
def test_the_token_never_has_base64_padding(access_key: str):
    token = eks_token("demo", region="us-east-1", credentials=Credentials(access_key, SECRET_KEY))
    assert "=" not in token
    assert query_of(token)["X-Amz-Credential"].startswith(f"{access_key}/")


@pytest.mark.parametrize(
    ("region", "host"),
    [
        ("us-east-1", "sts.us-east-1.amazonaws.com"),
        ("eu-west-1", "sts.eu-west-1.amazonaws.com"),
        ("cn-north-1", "sts.cn-north-1.amazonaws.com.cn"),
    ],
)
def test_the_url_is_the_regional_sts_endpoint_of_the_region(region: str, host: str):
    token = eks_token("demo", region=region, credentials=CREDS)
    assert urlsplit(url_of(token)).netloc == host
    assert query_of(token)["X-Amz-Credential"].split("/")[2] == region


def test_a_session_token_travels_in_the_url():
    token = eks_token("demo", region="us-east-1", credentials=Credentials(ACCESS_KEY, SECRET_KEY, "session-tok"))
    assert query_of(token)["X-Amz-Security-Token"] == "session-tok"


def test_no_credentials_is_a_cluster_access_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a fresh session: no credentials cached
    with pytest.raises(ClusterAccessError, match="cannot sign an EKS token for cluster demo"):
        eks_token("demo", region="us-east-1")


# ---- recognising EKS exec users ------------------------------------------------------------------


def aws_exec(argv: str, *, command: str = "aws", env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """An exec block running `command` with `argv` split on spaces."""
    block: dict[str, Any] = {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": command}
    block["args"] = argv.split()
    if env is not None:
        block["env"] = env
    return block


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        pytest.param(  # what `aws eks update-kubeconfig` writes today
            aws_exec("--region us-east-1 eks get-token --cluster-name demo --output json"),
            EksExec("demo", region="us-east-1"),
            id="update-kubeconfig",
        ),
        pytest.param(aws_exec("eks get-token --cluster-name demo"), EksExec("demo"), id="no-region"),
        pytest.param(
            aws_exec("eks get-token --cluster-id 0123-abcd --region=eu-west-1"),
            EksExec("0123-abcd", region="eu-west-1"),
            id="cluster-id-outposts",
        ),
        pytest.param(
            aws_exec(f"--region us-west-2 eks get-token --cluster-name demo --role-arn {ROLE} --session-name podslots"),
            EksExec("demo", region="us-west-2", role_arn=ROLE, session_name="podslots"),
            id="role-arn",
        ),
        pytest.param(
            aws_exec("eks get-token --cluster-name demo", command="/usr/local/bin/aws"),
            EksExec("demo"),
            id="absolute-command",
        ),
        pytest.param(
            aws_exec(
                "--debug eks get-token --cluster-name demo --profile ops",
                env=[{"name": "AWS_PROFILE", "value": "ops"}, {"name": "AWS_REGION", "value": "eu-central-1"}],
            ),
            EksExec("demo", region="eu-central-1", ignored=("--debug", "--profile", "AWS_PROFILE")),
            id="profile-ignored-env-region",
        ),
        pytest.param(
            aws_exec("token -i demo", command="aws-iam-authenticator"),
            EksExec("demo"),
            id="authenticator",
        ),
        pytest.param(
            aws_exec(f"token --cluster-id demo -r {ROLE} --region us-east-2", command="aws-iam-authenticator"),
            EksExec("demo", region="us-east-2", role_arn=ROLE),
            id="authenticator-role",
        ),
    ],
)
def test_eks_exec_users_are_recognised(block: dict[str, Any], expected: EksExec):
    assert eks_exec(block) == expected


@pytest.mark.parametrize(
    "block",
    [
        pytest.param(aws_exec("--use_application_default_credentials", command="gke-gcloud-auth-plugin"), id="gke"),
        pytest.param(aws_exec("get-token --login azurecli", command="kubelogin"), id="aks"),
        pytest.param(aws_exec("sts get-caller-identity"), id="aws-other-command"),
        pytest.param(aws_exec("eks get-token --token s3cr3t-value"), id="aws-no-cluster"),
        pytest.param({"apiVersion": "client.authentication.k8s.io/v1"}, id="no-command"),
    ],
)
def test_other_exec_plugins_are_a_clear_cluster_access_error(block: dict[str, Any]):
    with pytest.raises(ClusterAccessError) as raised:
        eks_exec(block)
    assert raised.value.code == "cluster_access"
    assert "s3cr3t" not in raised.value.message  # arguments are never quoted: they may be secrets


def test_cluster_name_and_cluster_id_together_are_refused():
    with pytest.raises(ClusterAccessError, match="exactly one of --cluster-name, --cluster-id"):
        eks_exec(aws_exec("eks get-token --cluster-name a --cluster-id b"))


# ---- renewal -------------------------------------------------------------------------------------


def test_a_token_is_reused_for_under_ten_minutes_then_renewed():
    clock = ManualClock()
    source = EksTokenSource(EksExec("demo", region="us-east-1"), clock=clock, credentials=CREDS)
    with botocore_time(step_s=1), mock.patch.object(eks_tokens, "eks_token", wraps=eks_tokens.eks_token) as made:
        first = source.token()
        clock.advance(599)
        assert source.token() == first
        assert made.call_count == 1
        clock.advance(1)  # ten minutes
        second = source.token()
        assert made.call_count == 2
        assert second != first
        assert query_of(second)["X-Amz-Date"] == "20300102T030406Z"
        clock.advance(-5)  # a clock that went backwards: a token of unknown age is not trusted
        assert source.token() != second
        assert made.call_count == 3


def test_the_client_asks_the_hook_before_each_request_so_it_never_sends_a_stale_token():
    clock = ManualClock()
    config = eks_kubeconfig(aws_exec("eks get-token --cluster-name demo --region us-east-1"))
    with botocore_time(step_s=1):
        api_client = api_client_from_kubeconfig(config, clock=clock, credentials=CREDS)
        configuration = api_client.configuration

        def header() -> str:
            return configuration.auth_settings()["BearerToken"]["value"]

        first = header()
        assert first.startswith("Bearer k8s-aws-v1.")
        assert url_of(first.removeprefix("Bearer ")).startswith("https://sts.us-east-1.amazonaws.com/?")
        clock.advance(300)
        assert header() == first
        clock.advance(301)
        assert header() != first
    assert configuration.retries is False
    assert configuration.host == "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com"
    assert Path(configuration.ssl_ca_cert).read_bytes() == b"not a real CA, only its file is checked"


def eks_kubeconfig(exec_block: dict[str, Any]) -> dict[str, Any]:
    ca = base64.b64encode(b"not a real CA, only its file is checked").decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "demo",
                "cluster": {
                    "server": "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com",
                    "certificate-authority-data": ca,
                },
            }
        ],
        "users": [{"name": "demo", "user": {"exec": exec_block}}],
        "contexts": [{"name": "demo", "context": {"cluster": "demo", "user": "demo"}}],
        "current-context": "demo",
    }


# ---- --role-arn ----------------------------------------------------------------------------------


def test_role_arn_is_assumed_at_each_renewal_and_its_credentials_sign():
    with mock_aws():
        base = boto3.client("sts", region_name="us-east-1")
        clock = ManualClock()
        source = EksTokenSource(EksExec("demo", role_arn=ROLE), clock=clock, sts_client=base)
        with mock.patch.object(base, "assume_role", wraps=base.assume_role) as assume:
            query = query_of(source.token())
            assume.assert_called_once_with(RoleArn=ROLE, RoleSessionName="EKSGetTokenAuth")
            clock.advance(600)
            source.token()
            assert assume.call_count == 2
    assert query["X-Amz-Credential"].startswith("ASIA")  # the assumed role's key, not the caller's
    assert query["X-Amz-Security-Token"]
    assert query["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"


# ---- the kubernetes client's global state, and the kubeconfigs that need no exec -----------------


def test_no_global_kubernetes_configuration_is_touched():
    before = Configuration._default
    default_before = Configuration.get_default_copy()
    config = eks_kubeconfig(aws_exec("eks get-token --cluster-name demo --region us-east-1"))
    original = repr(config)
    with mock.patch.object(Configuration, "set_default", wraps=Configuration.set_default) as set_default:
        api_client_from_kubeconfig(config, credentials=CREDS)
        api_client_from_kubeconfig(static_kubeconfig(), credentials=CREDS)
    set_default.assert_not_called()
    assert Configuration._default is before
    after = Configuration.get_default_copy()
    assert (after.host, after.api_key, after.refresh_api_key_hook, after.retries) == (
        default_before.host,
        default_before.api_key,
        default_before.refresh_api_key_hook,
        default_before.retries,
    )
    assert repr(config) == original  # the caller's dict keeps its exec block


def static_kubeconfig() -> dict[str, Any]:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": "https://10.0.0.1:6443",
                    "certificate-authority-data": b64("ca"),
                },
            }
        ],
        "users": [
            {
                "name": "u",
                "user": {"token": "static-tok", "client-certificate-data": b64("cert"), "client-key-data": b64("key")},
            }
        ],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "agents"}}],
        "current-context": "x",
    }


def test_token_and_client_certificate_kubeconfigs_work_as_they_are():
    configuration = api_client_from_kubeconfig(static_kubeconfig()).configuration
    assert configuration.auth_settings()["BearerToken"]["value"] == "Bearer static-tok"
    assert Path(configuration.cert_file).read_text() == "cert"
    assert Path(configuration.key_file).read_text() == "key"
    assert configuration.verify_ssl is True
    assert configuration.retries is False


def test_given_a_client_certificate_user_when_its_cluster_skips_tls_verify_then_it_is_refused_too():
    # Given a user that sends no bearer credential (the key never leaves the client), but a server
    # nobody verifies: whoever answers could feed podslots a false picture of the pods
    config = static_kubeconfig()
    del config["users"][0]["user"]["token"]
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    # When a client is made, Then it is refused, naming the field
    with pytest.raises(ClusterAccessError, match=r"clusters\[0\]\.cluster\.insecure-skip-tls-verify"):
        api_client_from_kubeconfig(config)


def test_given_a_token_user_when_its_cluster_skips_tls_verify_then_no_client_is_made():
    config = static_kubeconfig()
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    with pytest.raises(ClusterAccessError, match="insecure-skip-tls-verify") as raised:
        api_client_from_kubeconfig(config)
    assert "static-tok" not in str(raised.value)


def test_a_token_beside_an_exec_block_is_refused_rather_than_one_of_them_chosen():
    config = static_kubeconfig()
    config["users"][0]["user"]["exec"] = aws_exec("eks get-token --cluster-name demo")
    with pytest.raises(ClusterAccessError, match=r"users\[0\]\.user\.exec is refused: the user also has a token"):
        api_client_from_kubeconfig(config)


def test_a_non_eks_exec_plugin_is_refused_and_never_run(tmp_path: Path):
    ran = tmp_path / "ran"
    config = eks_kubeconfig(aws_exec(str(ran), command="touch"))
    with pytest.raises(ClusterAccessError, match="exec plugin 'touch', which cannot run in Lambda"):
        api_client_from_kubeconfig(config)
    assert not ran.exists()


def test_a_broken_kubeconfig_is_a_cluster_access_error():
    config = static_kubeconfig()
    config["current-context"] = "missing"
    with pytest.raises(ClusterAccessError, match="the kubeconfig is not usable"):
        api_client_from_kubeconfig(config)
