"""Cluster access end to end: a kubeconfig in Secrets Manager (moto), real HTTP to the Kubernetes API stand-in.

The EKS case is checked exactly: with frozen credentials and a frozen signing time the token is
deterministic, so the stand-in is started with that very token as the one it accepts, and it answers
401 to anything else (including a token made at another time).
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import urllib3
import yaml
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.credentials import Credentials
from kubernetes.client import Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException
from moto import mock_aws

from local.kube_api import KubeApiStandIn
from podslots import kubeconfig
from podslots.clock import ManualClock
from podslots.kubeconfig import ClusterAccessError, ClusterConnections, eks_token, load_kubeconfig

NS = "agents"
SECRET = "podslots/kubeconfig"
CREDS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SIGNED_AT = datetime(2030, 1, 2, 3, 4, 5)
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def botocore_time(when: datetime) -> Iterator[None]:
    """Freeze the time botocore signs with."""
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        yield


@pytest.fixture
def secrets() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager")


@pytest.fixture
def provider(secrets: Any) -> SecretsProvider:
    return SecretsProvider(boto3_client=secrets)


@pytest.fixture
def kube() -> Iterator[KubeApiStandIn]:
    with KubeApiStandIn(token="s3cret") as stand_in:
        stand_in.add_pod(NS, pod("agent-1"))
        stand_in.add_pod(NS, pod("agent-2"))
        yield stand_in


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
    }


def pod_names(api_client: Any) -> list[str]:
    listed = CoreV1Api(api_client).list_namespaced_pod(NS, _request_timeout=5)
    return sorted((p.metadata.name or "") for p in listed.items if p.metadata is not None)


def status_of(call: Any) -> int:
    with pytest.raises(ApiException) as raised:
        call()
    return int(raised.value.status or 0)


# ---- reading the secret, listing pods -----------------------------------------------------------


def test_pods_are_listed_through_a_kubeconfig_read_from_secrets_manager(
    secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn
):
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS)))
    default_before = Configuration._default
    with mock.patch.object(Configuration, "set_default", wraps=Configuration.set_default) as set_default:
        api_client = ClusterConnections(provider=provider).api_client(SECRET)
        assert pod_names(api_client) == ["agent-1", "agent-2"]
    set_default.assert_not_called()
    assert Configuration._default is default_before
    assert Configuration.get_default_copy().api_key == {}
    assert kube.count(verb="list") == 1  # retries off: one call, one request


@pytest.mark.parametrize("form", ["json", "binary"])
def test_a_json_or_binary_secret_works_too(secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn, form: str):
    text = json.dumps(kube.kubeconfig(namespace=NS), indent=2)
    if form == "json":
        secrets.create_secret(Name=SECRET, SecretString=text)
    else:
        secrets.create_secret(Name=SECRET, SecretBinary=text.encode())
    assert pod_names(ClusterConnections(provider=provider).api_client(SECRET)) == ["agent-1", "agent-2"]


def test_a_wrong_token_is_a_401_from_the_api(secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn):
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS, token="wrong")))
    api_client = ClusterConnections(provider=provider).api_client(SECRET)
    assert status_of(lambda: pod_names(api_client)) == 401


def test_load_kubeconfig_gives_the_stored_dict(secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn):
    config = kube.kubeconfig(namespace=NS)
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(config))
    assert load_kubeconfig(SECRET, provider=provider) == config


# ---- the cache ---------------------------------------------------------------------------------


def test_the_client_is_kept_while_the_secret_is_cached_and_rebuilt_when_its_content_changed(
    secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn
):
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS)))
    connections = ClusterConnections(provider=provider, max_age_s=300)
    with mock.patch.object(secrets, "get_secret_value", wraps=secrets.get_secret_value) as reads:
        first = connections.api_client(SECRET)
        assert connections.api_client(SECRET) is first
        assert reads.call_count == 1

        secrets.put_secret_value(SecretId=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(NS, token="rotated")))
        assert connections.api_client(SECRET) is first  # younger than max_age: the cached kubeconfig
        assert reads.call_count == 1
        assert pod_names(first) == ["agent-1", "agent-2"]

        provider.clear_cache()  # as when max_age has passed
        second = connections.api_client(SECRET)
        assert reads.call_count == 2
    assert second is not first
    assert status_of(lambda: pod_names(second)) == 401  # the new content is in use ("rotated" is not accepted)
    kube.token = "rotated"
    assert pod_names(second) == ["agent-1", "agent-2"]


def test_an_unchanged_secret_keeps_its_client_across_reads(
    secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn
):
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS)))
    connections = ClusterConnections(provider=provider, max_age_s=0)  # no cache: every call reads
    with mock.patch.object(secrets, "get_secret_value", wraps=secrets.get_secret_value) as reads:
        first = connections.api_client(SECRET)
        assert connections.api_client(SECRET) is first
        assert reads.call_count == 2


def test_with_max_age_zero_a_change_is_picked_up_at_once(secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn):
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(NS, token="old")))
    connections = ClusterConnections(provider=provider, max_age_s=0)
    assert status_of(lambda: pod_names(connections.api_client(SECRET))) == 401
    secrets.put_secret_value(SecretId=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS)))
    assert pod_names(connections.api_client(SECRET)) == ["agent-1", "agent-2"]


def test_each_secret_has_its_own_client(secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn):
    secrets.create_secret(Name="a", SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS)))
    secrets.create_secret(Name="b", SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS)))
    connections = ClusterConnections(provider=provider)
    assert connections.api_client("a") is not connections.api_client("b")


# ---- EKS ---------------------------------------------------------------------------------------


def eks_kubeconfig(kube: KubeApiStandIn) -> dict[str, Any]:
    """The stand-in's kubeconfig with the user `aws eks update-kubeconfig` writes."""
    config = kube.kubeconfig(namespace=NS)
    args = ["--region", "us-east-1", "eks", "get-token", "--cluster-name", "demo", "--output", "json"]
    config["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws", "args": args}
    }
    return config


def test_an_eks_kubeconfig_sends_the_token_made_in_process_and_renews_it(secrets: Any, provider: SecretsProvider):
    renewed_at = SIGNED_AT + timedelta(seconds=601)
    with botocore_time(SIGNED_AT):
        token = eks_token("demo", region="us-east-1", credentials=CREDS)
    with botocore_time(renewed_at):
        renewed = eks_token("demo", region="us-east-1", credentials=CREDS)
    assert token.startswith("k8s-aws-v1.")
    assert renewed != token

    with KubeApiStandIn(token=token) as kube:  # accepts exactly `Authorization: Bearer <token>`
        kube.add_pod(NS, pod("agent-1"))
        secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(eks_kubeconfig(kube)))
        clock = ManualClock()
        connections = ClusterConnections(provider=provider, clock=clock, credentials=CREDS)
        with botocore_time(SIGNED_AT):
            api_client = connections.api_client(SECRET)
            assert pod_names(api_client) == ["agent-1"]
        clock.advance(599)
        with botocore_time(renewed_at):
            assert pod_names(api_client) == ["agent-1"]  # not yet ten minutes: the same token
            clock.advance(2)
            assert status_of(lambda: pod_names(api_client)) == 401  # a new token, which this server refuses
            kube.token = renewed
            assert pod_names(api_client) == ["agent-1"]  # ... and it is exactly the expected one


def test_an_eks_kubeconfig_signs_with_the_functions_own_credentials(secrets: Any, provider: SecretsProvider):
    with KubeApiStandIn(token=None) as kube:
        secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(eks_kubeconfig(kube)))
        api_client = ClusterConnections(provider=provider).api_client(SECRET)
        assert pod_names(api_client) == []
        header = api_client.configuration.auth_settings()["BearerToken"]["value"]
        own = boto3.Session().get_credentials().get_frozen_credentials()  # the environment's, as in Lambda
    assert header.startswith("Bearer k8s-aws-v1.")
    body = header.removeprefix("Bearer k8s-aws-v1.")
    query = parse_qs(urlsplit(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()).query)
    assert query["X-Amz-Credential"][0].startswith(f"{own.access_key}/")
    assert query["X-Amz-Security-Token"] == [own.token]


# ---- refusals ----------------------------------------------------------------------------------


def test_a_missing_secret_is_a_cluster_access_error(provider: SecretsProvider):
    with pytest.raises(ClusterAccessError, match="cannot read the kubeconfig secret podslots/kubeconfig"):
        ClusterConnections(provider=provider).api_client(SECRET)


@pytest.mark.parametrize(
    "text",
    [
        "users:\n- name: u\n  user: {token: s3cret-value\n",  # broken YAML around the token
        "token: s3cret-value\n",  # YAML, but no kubeconfig
        '{"token": "s3cret-value"',  # broken JSON
    ],
)
def test_a_secret_that_is_no_kubeconfig_is_refused_without_quoting_it(
    secrets: Any, provider: SecretsProvider, text: str
):
    secrets.create_secret(Name=SECRET, SecretString=text)
    with pytest.raises(ClusterAccessError) as raised:
        ClusterConnections(provider=provider).api_client(SECRET)
    assert "s3cret" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ or raised.value.__context__ is None


@pytest.mark.parametrize("user", ["token", "eks"])
@pytest.mark.parametrize(
    ("cluster_setting", "named"),
    [
        ({"insecure-skip-tls-verify": True}, "insecure-skip-tls-verify"),
        ({"insecure-skip-tls-verify": "true"}, "insecure-skip-tls-verify"),
        ({"proxy-url": "http://proxy.example:3128"}, "proxy-url"),
    ],
)
def test_given_a_token_or_eks_user_when_its_server_is_not_verified_then_the_kubeconfig_is_refused(
    secrets: Any,
    provider: SecretsProvider,
    kube: KubeApiStandIn,
    user: str,
    cluster_setting: dict[str, Any],
    named: str,
):
    # Given a kubeconfig whose token would go to a server nobody verified (or through a proxy)
    config = eks_kubeconfig(kube) if user == "eks" else kube.kubeconfig(namespace=NS)
    config["clusters"][0]["cluster"].update(cluster_setting)
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(config))
    # When a client is made from it, Then it is refused, naming the setting and not the token
    with pytest.raises(ClusterAccessError, match=named) as raised:
        ClusterConnections(provider=provider, credentials=CREDS).api_client(SECRET)
    assert "s3cret" not in str(raised.value)


# ---- the allow-list: each refused field or form, by name -----------------------------------------

FILE_CONTENT = "AWS_SECRET_ACCESS_KEY=file-secret-value"  # what a file-reading field would send


def _user(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["users"][0]["user"].update(fields)


def _cluster(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["clusters"][0]["cluster"].update(fields)


def _only_user(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["users"][0]["user"] = fields

    return edit


REFUSED: list[Any] = [
    pytest.param(_only_user(tokenFile="{file}"), "users[0].user.tokenFile", id="tokenFile"),
    pytest.param(_user(tokenFile="{file}"), "users[0].user.tokenFile", id="tokenFile-beside-a-token"),
    pytest.param(
        _only_user(**{"client-certificate": "{file}", "client-key": "{file}"}),
        "users[0].user.client-certificate",
        id="client-certificate-file",
    ),
    pytest.param(_user(**{"client-key": "{file}"}), "users[0].user.client-key", id="client-key-file"),
    pytest.param(
        _cluster(**{"certificate-authority": "{file}"}),
        "clusters[0].cluster.certificate-authority",
        id="certificate-authority-file",
    ),
    pytest.param(
        _only_user(**{"auth-provider": {"name": "oidc", "config": {"id-token": "x", "idp-issuer-url": "https://i"}}}),
        "users[0].user.auth-provider",
        id="auth-provider",
    ),
    pytest.param(_only_user(username="admin"), "users[0].user.username", id="username"),
    pytest.param(_user(password=FILE_CONTENT), "users[0].user.password", id="password"),
    pytest.param(_user(**{"as": "system:admin"}), "users[0].user.as", id="unknown-user-field"),
    pytest.param(
        _cluster(**{"disable-compression": True}), "clusters[0].cluster.disable-compression", id="unknown-cluster-field"
    ),
    *(
        pytest.param(
            _cluster(**{"insecure-skip-tls-verify": value}),
            "clusters[0].cluster.insecure-skip-tls-verify",
            id=f"insecure-skip-tls-verify={value!r}",
        )
        for value in (True, "true", "1", "yes", "TRUE", "false", 1, 0, None)
    ),
    pytest.param(_cluster(**{"proxy-url": "http://127.0.0.1:3128"}), "clusters[0].cluster.proxy-url", id="proxy-url"),
    *(
        pytest.param(_cluster(server=server), "clusters[0].cluster.server", id=f"server={server}")
        for server in (
            "http://k8s.example.com",
            "http://10.0.0.1:6443",
            "http://127.0.0.1.nip.io",
            "HTTP://127.0.0.1",
            "ftp://127.0.0.1",
            "https://user:pw@k8s.example.com",
            "https://[::1",
            "",
        )
    ),
    *(
        pytest.param(_only_user(token=token), "users[0].user.token", id=f"token={token!r}")
        for token in (
            "s3cret\ninside",
            "s3cret\r\nX-Injected: 1",
            "s3cret\x00",
            "s3cret inside",
            "s3cr\u00e9t",
            "  ",
            42,
        )
    ),
    pytest.param(
        _only_user(**{"client-certificate-data": "Y2VydA=="}),
        "users[0].user.client-key-data",
        id="certificate-without-key",
    ),
    pytest.param(
        _user(exec={"command": "aws", "args": ["eks", "get-token", "--cluster-name", "demo"]}),
        "users[0].user.exec",
        id="token-and-exec",
    ),
    pytest.param(
        _only_user(exec={"command": "aws", "args": ["eks", "get-token", "--cluster-name", "d"], "shell": "sh"}),
        "users[0].user.exec.shell",
        id="unknown-exec-field",
    ),
    pytest.param(_only_user(), "users[0].user is refused: it holds no credential", id="no-credential"),
]


@pytest.mark.parametrize(("edit", "named"), REFUSED)
def test_a_kubeconfig_field_outside_the_allow_list_is_refused_by_name_before_any_request(
    secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn, tmp_path: Any, edit: Any, named: str
):
    # Given a kubeconfig for the stand-in with one field or form outside the allow-list
    secret_file = tmp_path / "content"
    secret_file.write_text(FILE_CONTENT)
    config = kube.kubeconfig(namespace=NS)
    edit(config)
    text = yaml.safe_dump(config).replace("{file}", str(secret_file))
    secrets.create_secret(Name=SECRET, SecretString=text)
    # When podslots makes its client from the secret
    with pytest.raises(ClusterAccessError) as raised:
        ClusterConnections(provider=provider).api_client(SECRET)
    # Then it is refused, naming the field and quoting no value
    message = str(raised.value)
    assert named in message
    for value in ("s3cret", "file-secret-value", str(secret_file), "system:admin", "k8s.example.com", "user:pw"):
        assert value not in message
    # And the cluster never heard of it
    assert kube.count() == 0


def test_a_token_with_a_line_break_at_its_end_is_trimmed_and_used(
    secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn
):
    # Given a ServiceAccount token pasted with its trailing newline (and spaces before it)
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(NS, token="  s3cret\n")))
    # When pods are listed through it, Then the token sent is the token, trimmed
    assert pod_names(ClusterConnections(provider=provider).api_client(SECRET)) == ["agent-1", "agent-2"]
    assert kube.authorizations() == ["Bearer s3cret"]


def readme_kubeconfig() -> str:
    """The kubeconfig k8s/README.md tells operators to write (its heredoc)."""
    text = (ROOT / "k8s" / "README.md").read_text(encoding="utf-8")
    block = text[text.index("cat > kubeconfig.yaml <<EOF\n") :].split("\n", 1)[1]
    return block[: block.index("\nEOF\n")]


def accepted_kubeconfigs(kube: KubeApiStandIn) -> dict[str, dict[str, Any]]:
    ca = base64.b64encode(b"ca").decode()
    readme = yaml.safe_load(
        readme_kubeconfig()
        .replace("${SERVER}", "https://ABCDEF.gr7.eu-west-1.eks.amazonaws.com")
        .replace("${CA}", ca)
        .replace("${TOKEN}", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    )
    kind: dict[str, Any] = {  # what `kind get kubeconfig` writes
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kind-k", "cluster": {"server": "https://127.0.0.1:40001", "certificate-authority-data": ca}}
        ],
        "users": [{"name": "kind-k", "user": {"client-certificate-data": ca, "client-key-data": ca}}],
        "contexts": [{"name": "kind-k", "context": {"cluster": "kind-k", "user": "kind-k"}}],
        "current-context": "kind-k",
        "preferences": {},
    }
    minikube = copy.deepcopy(kind)  # `kubectl config view --flatten` of a minikube profile
    minikube["clusters"][0]["cluster"].update(
        {"extensions": [{"name": "cluster_info", "extension": {"provider": "minikube.sigs.k8s.io"}}]}
    )
    eks = eks_kubeconfig(kube)
    eks["clusters"][0]["cluster"] = {
        "server": "https://ABCDEF.gr7.eu-west-1.eks.amazonaws.com",
        "certificate-authority-data": ca,
    }
    eks["users"][0]["user"]["exec"].update({"env": None, "interactiveMode": "IfAvailable", "provideClusterInfo": False})
    verified = kube.kubeconfig(NS)
    verified["clusters"][0]["cluster"].update({"insecure-skip-tls-verify": False, "tls-server-name": "kubernetes"})
    forms = {
        "readme": readme,
        "kind": kind,
        "minikube": minikube,
        "eks": eks,
        "stand-in": kube.kubeconfig(NS),
        "verified": verified,
    }
    for host in ("localhost", "127.0.0.2", "[::1]"):
        local = kube.kubeconfig(NS)
        local["clusters"][0]["cluster"]["server"] = f"http://{host}:8001"
        forms[f"http-{host}"] = local
    return forms


@pytest.mark.parametrize(
    "form",
    ["readme", "kind", "minikube", "eks", "stand-in", "verified", "http-localhost", "http-127.0.0.2", "http-[::1]"],
)
def test_the_kubeconfigs_the_docs_and_the_local_stack_write_pass_the_allow_list(kube: KubeApiStandIn, form: str):
    config = accepted_kubeconfigs(kube)[form]
    assert kubeconfig.allowed_kubeconfig(config) == config


def test_the_default_provider_honours_secretsmanager_endpoint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SECRETSMANAGER_ENDPOINT", "http://127.0.0.1:4566")
    kubeconfig.default_secrets_provider.cache_clear()
    try:
        assert kubeconfig.default_secrets_provider().client.meta.endpoint_url == "http://127.0.0.1:4566"
    finally:
        kubeconfig.default_secrets_provider.cache_clear()


def test_a_failed_request_is_not_retried_and_surfaces_as_urllib3s_own_error(
    secrets: Any, provider: SecretsProvider, kube: KubeApiStandIn
):
    secrets.create_secret(Name=SECRET, SecretString=yaml.safe_dump(kube.kubeconfig(namespace=NS)))
    api_client = ClusterConnections(provider=provider).api_client(SECRET)
    kube.drop_next(verb="list")
    with pytest.raises(urllib3.exceptions.HTTPError) as raised:
        pod_names(api_client)
    assert not isinstance(raised.value, urllib3.exceptions.MaxRetryError)
    assert kube.count(verb="list") == 1  # the client's default would have sent it up to 4 times
    assert pod_names(api_client) == ["agent-1", "agent-2"]  # the next call is fine
