"""The Kubernetes API stand-in, exercised through the official `kubernetes` client.

Every test talks real HTTP to a `KubeApiStandIn` on 127.0.0.1. The `core` client has urllib3
retries switched off, so each call is exactly one request; the tests about the client's own
retries use `core_with_default_retries`, a client as the library configures it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
import pytest
import urllib3
from kubernetes.client import (
    ApiClient,
    Configuration,
    CoreV1Api,
    V1Container,
    V1DeleteOptions,
    V1ListMeta,
    V1ObjectMeta,
    V1Pod,
    V1PodList,
    V1PodSpec,
    V1PodStatus,
    V1Preconditions,
)
from kubernetes.client.exceptions import ApiException

from local.kube_api import ErrorStatus, KubeApiStandIn

NS = "agents"
T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# ---- helpers: pod bodies and typed access to the client's models -------------------------------


def manifest(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A pod as a plain dict, for seeding the stand-in directly."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
    }


def pod_body(name: str | None = None, labels: dict[str, str] | None = None, generate_name: str | None = None) -> V1Pod:
    """A pod as the client's model, for create calls."""
    return V1Pod(
        api_version="v1",
        kind="Pod",
        metadata=V1ObjectMeta(name=name, generate_name=generate_name, labels=labels),
        spec=V1PodSpec(containers=[V1Container(name="agent", image="busybox")]),
    )


def meta(pod: V1Pod) -> V1ObjectMeta:
    assert pod.metadata is not None
    return pod.metadata


def status(pod: V1Pod) -> V1PodStatus:
    assert pod.status is not None
    return pod.status


def name_of(pod: V1Pod) -> str:
    return meta(pod).name or ""


def rv(pod: V1Pod) -> int:
    return int(meta(pod).resource_version or "0")


def list_meta(pods: V1PodList) -> V1ListMeta:
    assert pods.metadata is not None
    return pods.metadata


def continue_token(pods: V1PodList) -> str | None:
    """A list's continue token: `var_continue` in client 37, `_continue` before it."""
    metadata = list_meta(pods)
    token: str | None = getattr(metadata, "var_continue", None) or getattr(metadata, "_continue", None)
    return token


def names(core: CoreV1Api, **list_args: Any) -> list[str]:
    return [name_of(p) for p in core.list_namespaced_pod(NS, **list_args).items]


def status_of(error: ApiException) -> dict[str, Any]:
    """The Kubernetes `Status` object the server sent with an error."""
    body: dict[str, Any] = json.loads(error.body or "{}")
    return body


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kube(clock: FakeClock) -> Iterator[KubeApiStandIn]:
    with KubeApiStandIn(token="test-token", clock=clock) as stand_in:
        yield stand_in


@contextmanager
def official_client(
    kube: KubeApiStandIn, *, retries: bool | None = False, token: str | None = None
) -> Iterator[CoreV1Api]:
    """CoreV1Api from the stand-in's kubeconfig; retries=None keeps the client's default."""
    configuration = Configuration()
    if retries is not None:
        configuration.retries = retries
    api_client: ApiClient = kubernetes.config.new_client_from_config_dict(
        kube.kubeconfig(NS, token=token), client_configuration=configuration
    )
    try:
        yield CoreV1Api(api_client)
    finally:
        api_client.close()


@pytest.fixture
def core(kube: KubeApiStandIn) -> Iterator[CoreV1Api]:
    with official_client(kube) as client:
        yield client


@pytest.fixture
def core_with_default_retries(kube: KubeApiStandIn) -> Iterator[CoreV1Api]:
    with official_client(kube, retries=None) as client:
        yield client


# ---- lifecycle, kubeconfig, routing ---------------------------------------------------------------


def test_stand_in_serves_on_an_ephemeral_loopback_port_until_stopped() -> None:
    with KubeApiStandIn() as kube:
        url = kube.url
        assert url.startswith("http://127.0.0.1:")
        assert kube.kubeconfig()["contexts"][0]["context"]["namespace"] == "agents"
        with official_client(kube) as core:
            assert names(core) == []
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/api/v1/namespaces/agents/pods", timeout=2)


def test_a_wrong_bearer_token_is_refused_with_401(kube: KubeApiStandIn) -> None:
    with official_client(kube, token="not-the-token") as core, pytest.raises(ApiException) as refused:
        core.list_namespaced_pod(NS)

    assert refused.value.status == 401
    assert status_of(refused.value)["reason"] == "Unauthorized"


def test_unknown_paths_are_404_and_unserved_methods_405_with_status_bodies(
    kube: KubeApiStandIn,
) -> None:
    def fetch(path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(kube.url + path, method=method)
        request.add_header("Authorization", "Bearer test-token")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    code, body = fetch("/apis/apps/v1/namespaces/agents/deployments")
    assert (code, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    code, body = fetch("/api/v1/namespaces/agents/pods/a", method="PUT")
    assert (code, body["reason"]) == (405, "MethodNotAllowed")


# ---- create and read ----------------------------------------------------------------------------


def test_create_fills_in_uid_resource_version_timestamp_and_pending_phase(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1", {"app": "agent"}))

    assert (meta(created).name, meta(created).namespace) == ("agent-1", NS)
    assert len(meta(created).uid or "") == 36
    assert meta(created).creation_timestamp == T0
    assert status(created).phase == "Pending"
    assert kube.pods(NS)[0]["metadata"]["creationTimestamp"] == "2030-01-02T03:04:05Z"
    second = core.create_namespaced_pod(NS, pod_body("agent-2"))
    assert rv(second) > rv(created)
    assert meta(second).uid != meta(created).uid


def test_create_with_generate_name_picks_a_fresh_name(core: CoreV1Api) -> None:
    first = core.create_namespaced_pod(NS, pod_body(generate_name="agent-"))
    second = core.create_namespaced_pod(NS, pod_body(generate_name="agent-"))

    assert name_of(first).startswith("agent-")
    assert len(name_of(first)) == len("agent-") + 5
    assert name_of(first) != name_of(second)


def test_creating_a_taken_name_is_refused_with_409_already_exists(core: CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod_body("agent-1"))

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(NS, pod_body("agent-1"))

    assert refused.value.status == 409
    body = status_of(refused.value)
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "AlreadyExists", 409)
    assert body["message"] == 'pods "agent-1" already exists'


def test_read_returns_the_pod_and_an_absent_pod_is_404(core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1"))

    assert meta(core.read_namespaced_pod("agent-1", NS)).uid == meta(created).uid
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("ghost", NS)
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"


# ---- list ---------------------------------------------------------------------------------------


@pytest.fixture
def labelled(kube: KubeApiStandIn) -> None:
    # Given four pods with assorted labels, and one in another namespace
    kube.add_pod(NS, manifest("a", {"app": "agent", "tier": "gold", "gen": "3"}))
    kube.add_pod(NS, manifest("b", {"app": "agent", "tier": "silver", "gen": "10"}))
    kube.add_pod(NS, manifest("c", {"app": "web"}))
    kube.add_pod(NS, manifest("d"))
    kube.add_pod("elsewhere", manifest("z", {"app": "agent"}))


@pytest.mark.usefixtures("labelled")
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", ["a", "b", "c", "d"]),
        ("app=agent", ["a", "b"]),
        ("app==agent", ["a", "b"]),
        ("app!=agent", ["c", "d"]),  # != also matches pods without the label
        ("tier in (gold, bronze)", ["a"]),
        ("tier notin (gold)", ["b", "c", "d"]),  # so does notin
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d"]),
        ("app=agent,tier!=gold", ["b"]),
        ("app in (agent,web),!tier", ["c"]),
        ("gen>3", ["b"]),  # an integer comparison: "10" > 3
        ("gen<4", ["a"]),
    ],
)
def test_list_filters_by_label_selector(core: CoreV1Api, selector: str, expected: list[str]) -> None:
    assert names(core, label_selector=selector) == expected


@pytest.mark.usefixtures("labelled")
def test_list_is_a_podlist_of_one_namespace_sorted_by_name(core: CoreV1Api) -> None:
    pods = core.list_namespaced_pod(NS)

    assert (pods.kind, pods.api_version) == ("PodList", "v1")
    assert list_meta(pods).resource_version
    assert continue_token(pods) is None
    assert [name_of(p) for p in pods.items] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("selector", ["app in agent", "app in ()", "app=a=b", "app,,tier", "app>x"])
def test_a_malformed_label_selector_is_a_400(core: CoreV1Api, selector: str) -> None:
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_pod(NS, label_selector=selector)
    assert refused.value.status == 400
    assert status_of(refused.value)["reason"] == "BadRequest"


@pytest.mark.usefixtures("labelled")
def test_list_filters_by_field_selector(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.set_phase(NS, "b", "Running")

    assert names(core, field_selector="metadata.name=c") == ["c"]
    assert names(core, field_selector="status.phase!=Pending") == ["b"]
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_pod(NS, field_selector="spec.image=busybox")
    assert refused.value.status == 400


def test_paging_with_limit_walks_a_consistent_snapshot(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    # Given five pods
    for i in range(5):
        kube.add_pod(NS, manifest(f"agent-{i}"))

    # When listing two at a time, while a pod is created between pages
    first = core.list_namespaced_pod(NS, limit=2)
    kube.add_pod(NS, manifest("agent-3b"))
    second = core.list_namespaced_pod(NS, limit=2, _continue=continue_token(first))
    third = core.list_namespaced_pod(NS, limit=2, _continue=continue_token(second))

    # Then the pages cover the first snapshot exactly, then stop
    pages = [[name_of(p) for p in page.items] for page in (first, second, third)]
    assert pages == [["agent-0", "agent-1"], ["agent-2", "agent-3"], ["agent-4"]]
    assert continue_token(first)
    assert continue_token(second)
    assert continue_token(third) is None
    versions = {list_meta(page).resource_version for page in (first, second, third)}
    assert versions == {list_meta(first).resource_version}
    assert kube.count(verb="list") == 3
    assert kube.requests[1].query["continue"] == continue_token(first)


def test_an_expired_continue_token_is_410(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    for i in range(3):
        kube.add_pod(NS, manifest(f"agent-{i}"))
    first = core.list_namespaced_pod(NS, limit=1)

    kube.expire_continue_tokens()

    with pytest.raises(ApiException) as expired:
        core.list_namespaced_pod(NS, limit=1, _continue=continue_token(first))
    assert expired.value.status == 410
    assert status_of(expired.value)["reason"] == "Expired"


# ---- delete -------------------------------------------------------------------------------------


def test_delete_removes_the_pod_at_once_and_returns_it(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1"))

    deleted = core.delete_namespaced_pod("agent-1", NS)

    assert meta(deleted).uid == meta(created).uid
    assert kube.pods(NS) == []


def test_delete_with_matching_uid_precondition_deletes(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1"))

    core.delete_namespaced_pod(
        "agent-1", NS, body=V1DeleteOptions(preconditions=V1Preconditions(uid=meta(created).uid))
    )

    assert kube.pod(NS, "agent-1") is None


def test_delete_with_stale_uid_precondition_is_refused_with_409(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    # Given a pod that was deleted and re-created under the same name
    old = core.create_namespaced_pod(NS, pod_body("agent-1"))
    core.delete_namespaced_pod("agent-1", NS)
    core.create_namespaced_pod(NS, pod_body("agent-1"))

    # When deleting with the old pod's uid as precondition
    stale = V1DeleteOptions(preconditions=V1Preconditions(uid=meta(old).uid))
    with pytest.raises(ApiException) as refused:
        core.delete_namespaced_pod("agent-1", NS, body=stale)

    # Then the request is refused and the new pod is left alone
    assert refused.value.status == 409
    assert status_of(refused.value)["reason"] == "Conflict"
    assert "Precondition failed: UID" in status_of(refused.value)["message"]
    assert kube.pod(NS, "agent-1") is not None


def test_delete_with_stale_resource_version_precondition_is_refused_with_409(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1"))
    kube.set_phase(NS, "agent-1", "Running")
    stale = V1DeleteOptions(preconditions=V1Preconditions(resource_version=meta(created).resource_version))

    with pytest.raises(ApiException) as refused:
        core.delete_namespaced_pod("agent-1", NS, body=stale)

    assert refused.value.status == 409
    assert kube.pod(NS, "agent-1") is not None


def test_deleting_an_absent_pod_is_404(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        core.delete_namespaced_pod("ghost", NS)
    assert missing.value.status == 404
    assert status_of(missing.value)["details"] == {"name": "ghost", "kind": "pods"}


def test_graceful_deletion_keeps_the_pod_until_the_test_finishes_it(clock: FakeClock) -> None:
    with (
        KubeApiStandIn(clock=clock, graceful_deletion=True) as kube,
        official_client(kube) as core,
    ):
        core.create_namespaced_pod(NS, pod_body("agent-1"))

        # When the pod is deleted with a 10 s grace period
        deleting = core.delete_namespaced_pod("agent-1", NS, grace_period_seconds=10)

        # Then it stays, marked for deletion at the end of the grace period
        deadline = T0 + timedelta(seconds=10)
        assert meta(deleting).deletion_timestamp == deadline
        assert meta(deleting).deletion_grace_period_seconds == 10
        listed = core.list_namespaced_pod(NS).items
        assert [meta(p).deletion_timestamp for p in listed] == [deadline]
        # and deleting it again changes nothing
        again = core.delete_namespaced_pod("agent-1", NS)
        assert rv(again) == rv(deleting)

        # When the test lets the kubelet finish, the pod is gone
        kube.finish_deletion(NS, "agent-1")
        assert names(core) == []


def test_graceful_deletion_can_be_chosen_per_pod(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("slow"))
    kube.add_pod(NS, manifest("quick"))
    kube.set_graceful_deletion(NS, "slow")

    core.delete_namespaced_pod("slow", NS)
    core.delete_namespaced_pod("quick", NS)

    [slow] = kube.pods(NS)
    assert slow["metadata"]["name"] == "slow"
    assert slow["metadata"]["deletionTimestamp"] == "2030-01-02T03:04:35Z"  # the default 30 s grace


def test_a_zero_grace_period_deletes_at_once_even_when_graceful(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.graceful_deletion = True
    kube.add_pod(NS, manifest("agent-1"))

    core.delete_namespaced_pod("agent-1", NS, body=V1DeleteOptions(grace_period_seconds=0))

    assert kube.pods(NS) == []


# ---- patch --------------------------------------------------------------------------------------


def test_patch_with_a_dict_adds_and_removes_annotations(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1"))

    added = core.patch_namespaced_pod("agent-1", NS, {"metadata": {"annotations": {"slot": "7", "owner": "me"}}})
    removed = core.patch_namespaced_pod("agent-1", NS, {"metadata": {"annotations": {"owner": None}}})

    assert meta(added).annotations == {"slot": "7", "owner": "me"}
    assert meta(removed).annotations == {"slot": "7"}
    assert rv(created) < rv(added) < rv(removed)
    # The client sends a dict body as a strategic merge patch.
    patch_types = {call.content_type for call in kube.requests if call.verb == "patch"}
    assert patch_types == {"application/strategic-merge-patch+json"}


def test_a_patch_that_changes_nothing_keeps_the_resource_version(core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1", {"app": "agent"}))

    patched = core.patch_namespaced_pod("agent-1", NS, {"metadata": {"labels": {"app": "agent"}}})

    assert rv(patched) == rv(created)


def test_merge_patch_content_type_is_served_too(core: CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod_body("agent-1", {"app": "agent", "x": "1"}))

    patched = core.patch_namespaced_pod(
        "agent-1",
        NS,
        {"metadata": {"labels": {"x": None, "y": "2"}}},
        _content_type="application/merge-patch+json",
    )

    assert meta(patched).labels == {"app": "agent", "y": "2"}


def test_json_patch_with_a_list_body_edits_annotations(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod_body("agent-1"))
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/podslots.io~1slot", "value": "1"},
        {"op": "add", "path": "/metadata/annotations/gone", "value": "x"},
        {"op": "replace", "path": "/metadata/annotations/podslots.io~1slot", "value": "2"},
        {"op": "remove", "path": "/metadata/annotations/gone"},
    ]

    patched = core.patch_namespaced_pod("agent-1", NS, ops)

    assert meta(patched).annotations == {"podslots.io/slot": "2"}
    assert kube.requests[-1].content_type == "application/json-patch+json"


def test_a_json_patch_removing_a_missing_key_is_422_and_changes_nothing(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1", {"app": "agent"}))
    ops: list[dict[str, Any]] = [
        {"op": "add", "path": "/metadata/labels/new", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/missing"},
    ]

    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod("agent-1", NS, ops)

    assert refused.value.status == 422
    stored = kube.pod(NS, "agent-1")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"app": "agent"}
    assert stored["metadata"]["resourceVersion"] == meta(created).resource_version


def test_patch_carrying_a_stale_resource_version_is_refused_with_409(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1"))
    kube.set_phase(NS, "agent-1", "Running")
    patch = {"metadata": {"resourceVersion": meta(created).resource_version, "annotations": {"slot": "1"}}}

    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod("agent-1", NS, patch)

    assert refused.value.status == 409


def test_patching_an_absent_pod_is_404(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        core.patch_namespaced_pod("ghost", NS, {"metadata": {"labels": {"a": "b"}}})
    assert missing.value.status == 404


# ---- test-side controls -------------------------------------------------------------------------


def test_phase_and_pod_ip_changes_are_seen_through_list(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, pod_body("agent-1"))

    kube.set_phase(NS, "agent-1", "Running")
    kube.set_pod_ip(NS, "agent-1", "10.1.2.3")

    [pod] = core.list_namespaced_pod(NS).items
    assert (status(pod).phase, status(pod).pod_ip) == ("Running", "10.1.2.3")
    assert rv(pod) == rv(created) + 2


def test_mark_deleting_and_remove_act_without_the_api(kube: KubeApiStandIn, clock: FakeClock, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("marked"))
    kube.add_pod(NS, manifest("vanishing"))
    clock.advance(60)

    kube.mark_deleting(NS, "marked")
    kube.remove(NS, "vanishing")

    [pod] = core.list_namespaced_pod(NS).items
    assert name_of(pod) == "marked"
    assert meta(pod).deletion_timestamp == T0 + timedelta(seconds=60)
    assert kube.count() == 1


def test_add_pod_keeps_a_seeded_uid_and_status(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    seeded = manifest("agent-1")
    seeded["metadata"]["uid"] = "11111111-2222-3333-4444-555555555555"
    seeded["status"] = {"phase": "Running", "podIP": "10.0.0.9"}
    kube.add_pod(NS, seeded)

    pod = core.read_namespaced_pod("agent-1", NS)

    assert meta(pod).uid == "11111111-2222-3333-4444-555555555555"
    assert (status(pod).phase, status(pod).pod_ip) == ("Running", "10.0.0.9")


def test_requests_are_recorded_for_assertions(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    core.create_namespaced_pod(NS, pod_body("agent-1"))
    core.list_namespaced_pod(NS, label_selector="app=agent", limit=10)
    core.read_namespaced_pod("agent-1", NS)

    assert [call.verb for call in kube.requests] == ["create", "list", "get"]
    assert kube.requests[1].as_tuple() == (
        "GET",
        "/api/v1/namespaces/agents/pods",
        {"labelSelector": "app=agent", "limit": "10"},
    )
    assert kube.count(verb="list") == 1
    assert kube.count(method="GET", path="/api/v1/namespaces/agents/pods/agent-1") == 1
    kube.clear_requests()
    assert kube.requests == []


# ---- faults -------------------------------------------------------------------------------------


def test_an_injected_500_fails_one_call_then_the_api_answers_again(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    rule = kube.fail_next(500, verb="list")

    with pytest.raises(ApiException) as failed:
        core.list_namespaced_pod(NS)

    assert failed.value.status == 500
    assert status_of(failed.value)["reason"] == "InternalError"
    assert names(core) == []
    assert (rule.hits, rule.remaining) == (1, 0)


def test_an_injected_429_carries_retry_after(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.fail_next(429, retry_after=3, verb="create")

    with pytest.raises(ApiException) as throttled:
        core.create_namespaced_pod(NS, pod_body("agent-1"))

    assert throttled.value.status == 429
    assert throttled.value.headers is not None
    assert throttled.value.headers["Retry-After"] == "3"
    assert kube.pods(NS) == []


def test_faults_match_on_method_and_path_glob(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.add_pod(NS, manifest("other"))
    kube.inject(ErrorStatus(503), method="GET", path="/api/v1/namespaces/*/pods/agent-*", times=None)

    assert name_of(core.read_namespaced_pod("other", NS)) == "other"
    for _ in range(2):
        with pytest.raises(ApiException) as unavailable:
            core.read_namespaced_pod("agent-1", NS)
        assert unavailable.value.status == 503
    kube.clear_faults()
    assert name_of(core.read_namespaced_pod("agent-1", NS)) == "agent-1"


def test_a_slow_answer_trips_the_client_request_timeout(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.slow_next(5.0, verb="get")

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.read_namespaced_pod("agent-1", NS, _request_timeout=0.2)

    assert name_of(core.read_namespaced_pod("agent-1", NS, _request_timeout=2)) == "agent-1"


def test_a_slow_answer_within_the_timeout_just_arrives_late(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.slow_next(0.1, verb="list")

    assert names(core, _request_timeout=5) == ["agent-1"]


def test_a_dropped_connection_is_a_urllib3_protocol_error(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.drop_next(verb="delete")

    with pytest.raises(urllib3.exceptions.ProtocolError):
        core.delete_namespaced_pod("agent-1", NS)

    # The request was read but not acted on: the pod is still there.
    assert kube.pod(NS, "agent-1") is not None
    assert kube.count(verb="delete") == 1


# ---- the official client's own retries (urllib3 defaults) ---------------------------------------


def test_default_client_retries_a_throttled_get_that_says_retry_after(
    kube: KubeApiStandIn, core_with_default_retries: CoreV1Api
) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.fail_next(429, retry_after=0, verb="get")

    pod = core_with_default_retries.read_namespaced_pod("agent-1", NS)

    assert name_of(pod) == "agent-1"
    assert kube.count(verb="get") == 2


def test_default_client_does_not_retry_a_500(kube: KubeApiStandIn, core_with_default_retries: CoreV1Api) -> None:
    kube.fail_next(500, verb="list")

    with pytest.raises(ApiException):
        core_with_default_retries.list_namespaced_pod(NS)

    assert kube.count(verb="list") == 1


def test_default_client_retries_a_dropped_get_but_not_a_dropped_create(
    kube: KubeApiStandIn, core_with_default_retries: CoreV1Api
) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.drop_next(verb="get")
    kube.drop_next(verb="create")

    assert name_of(core_with_default_retries.read_namespaced_pod("agent-1", NS)) == "agent-1"
    with pytest.raises(urllib3.exceptions.ProtocolError):
        core_with_default_retries.create_namespaced_pod(NS, pod_body("agent-2"))

    assert (kube.count(verb="get"), kube.count(verb="create")) == (2, 1)


def test_default_client_gives_up_on_a_get_that_keeps_dropping_with_max_retry_error(
    kube: KubeApiStandIn, core_with_default_retries: CoreV1Api
) -> None:
    kube.drop_next(verb="get", times=None)

    with pytest.raises(urllib3.exceptions.MaxRetryError) as gave_up:
        core_with_default_retries.read_namespaced_pod("agent-1", NS)

    assert isinstance(gave_up.value.reason, urllib3.exceptions.ProtocolError)
    assert kube.count(verb="get") == 4  # urllib3's default: one try and three retries
