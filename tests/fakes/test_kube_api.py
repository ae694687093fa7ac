"""The Kubernetes API stand-in, exercised through the official `kubernetes` client.

Every test talks real HTTP to a `KubeApiStandIn` on 127.0.0.1. The `core`
client has urllib3 retries switched off so each call is exactly one request;
the tests about the client's own retries build a client with its defaults.
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
from kubernetes.client import ApiClient, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from .kube_api import ErrorStatus, KubeApiStandIn

NS = "agents"
T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def manifest(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [{"name": "agent", "image": "busybox"}]},
    }


def status_of(error: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(error.body)
    return body


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


def names(core: CoreV1Api, **list_args: Any) -> list[str]:
    return [p.metadata.name for p in core.list_namespaced_pod(NS, **list_args).items]


# ---- lifecycle and kubeconfig ----------------------------------------------


def test_stand_in_serves_on_an_ephemeral_loopback_port_until_stopped() -> None:
    with KubeApiStandIn() as kube:
        url = kube.url
        assert url.startswith("http://127.0.0.1:")
        assert kube.kubeconfig()["contexts"][0]["context"]["namespace"] == "agents"
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/api/v1/namespaces/agents/pods", timeout=2)


def test_a_wrong_bearer_token_is_refused_with_401(kube: KubeApiStandIn) -> None:
    with official_client(kube, token="not-the-token") as core:
        with pytest.raises(ApiException) as refused:
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


# ---- create and read -------------------------------------------------------


def test_create_fills_in_uid_resource_version_timestamp_and_pending_phase(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1", {"app": "agent"}))

    assert created.metadata.name == "agent-1"
    assert created.metadata.namespace == NS
    assert len(created.metadata.uid) == 36
    assert created.metadata.creation_timestamp == T0
    assert created.status.phase == "Pending"
    assert kube.pods(NS)[0]["metadata"]["creationTimestamp"] == "2030-01-02T03:04:05Z"
    second = core.create_namespaced_pod(NS, manifest("agent-2"))
    assert int(second.metadata.resource_version) > int(created.metadata.resource_version)
    assert second.metadata.uid != created.metadata.uid


def test_create_with_generate_name_picks_a_fresh_name(core: CoreV1Api) -> None:
    body = {"metadata": {"generateName": "agent-"}, "spec": manifest("x")["spec"]}

    first = core.create_namespaced_pod(NS, body)
    second = core.create_namespaced_pod(NS, body)

    assert first.metadata.name.startswith("agent-")
    assert len(first.metadata.name) == len("agent-") + 5
    assert first.metadata.name != second.metadata.name


def test_creating_a_taken_name_is_refused_with_409_already_exists(
    core: CoreV1Api,
) -> None:
    core.create_namespaced_pod(NS, manifest("agent-1"))

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(NS, manifest("agent-1"))

    assert refused.value.status == 409
    status = status_of(refused.value)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "AlreadyExists", 409)
    assert status["message"] == 'pods "agent-1" already exists'


def test_read_returns_the_pod_and_an_absent_pod_is_404(core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1"))

    assert core.read_namespaced_pod("agent-1", NS).metadata.uid == created.metadata.uid
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("ghost", NS)
    assert missing.value.status == 404
    assert status_of(missing.value)["reason"] == "NotFound"


# ---- list ------------------------------------------------------------------


@pytest.fixture
def labelled(kube: KubeApiStandIn) -> None:
    # Given four pods with assorted labels, and one in another namespace
    kube.add_pod(NS, manifest("a", {"app": "agent", "tier": "gold"}))
    kube.add_pod(NS, manifest("b", {"app": "agent", "tier": "silver"}))
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
        ("tier notin (gold)", ["b", "c", "d"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d"]),
        ("app=agent,tier!=gold", ["b"]),
        ("app in (agent,web),!tier", ["c"]),
    ],
)
def test_list_filters_by_label_selector(core: CoreV1Api, selector: str, expected: list[str]) -> None:
    assert names(core, label_selector=selector) == expected


@pytest.mark.usefixtures("labelled")
def test_list_is_a_podlist_of_one_namespace(core: CoreV1Api) -> None:
    pods = core.list_namespaced_pod(NS)

    assert (pods.kind, pods.api_version) == ("PodList", "v1")
    assert pods.metadata.resource_version
    assert pods.metadata._continue is None
    assert "z" not in [p.metadata.name for p in pods.items]


@pytest.mark.usefixtures("labelled")
def test_a_malformed_label_selector_is_a_400(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_pod(NS, label_selector="app in agent")
    assert refused.value.status == 400


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
    kube.add_pod(NS, manifest("agent-9"))
    second = core.list_namespaced_pod(NS, limit=2, _continue=first.metadata._continue)
    third = core.list_namespaced_pod(NS, limit=2, _continue=second.metadata._continue)

    # Then the pages cover the first snapshot exactly, then stop
    pages = [[p.metadata.name for p in page.items] for page in (first, second, third)]
    assert pages == [["agent-0", "agent-1"], ["agent-2", "agent-3"], ["agent-4"]]
    assert first.metadata._continue
    assert second.metadata._continue
    assert third.metadata._continue is None
    assert {page.metadata.resource_version for page in (first, second, third)} == {
        first.metadata.resource_version
    }
    assert kube.count(verb="list") == 3
    assert kube.requests[1].query["continue"] == first.metadata._continue


def test_an_expired_continue_token_is_410(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    for i in range(3):
        kube.add_pod(NS, manifest(f"agent-{i}"))
    first = core.list_namespaced_pod(NS, limit=1)

    kube.expire_continue_tokens()

    with pytest.raises(ApiException) as expired:
        core.list_namespaced_pod(NS, limit=1, _continue=first.metadata._continue)
    assert expired.value.status == 410
    assert status_of(expired.value)["reason"] == "Expired"


# ---- delete ----------------------------------------------------------------


def test_delete_removes_the_pod_at_once_and_returns_it(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1"))

    deleted = core.delete_namespaced_pod("agent-1", NS)

    assert deleted.metadata.uid == created.metadata.uid
    assert kube.pods(NS) == []


def test_delete_with_matching_uid_precondition_deletes(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1"))
    options = kubernetes.client.V1DeleteOptions(
        preconditions=kubernetes.client.V1Preconditions(uid=created.metadata.uid)
    )

    core.delete_namespaced_pod("agent-1", NS, body=options)

    assert kube.pod(NS, "agent-1") is None


def test_delete_with_stale_uid_precondition_is_refused_with_409(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    # Given a pod that was deleted and re-created under the same name
    old = core.create_namespaced_pod(NS, manifest("agent-1"))
    core.delete_namespaced_pod("agent-1", NS)
    core.create_namespaced_pod(NS, manifest("agent-1"))

    # When deleting with the old pod's uid as precondition
    options = {"preconditions": {"uid": old.metadata.uid}}
    with pytest.raises(ApiException) as refused:
        core.delete_namespaced_pod("agent-1", NS, body=options)

    # Then the new pod is left alone
    assert refused.value.status == 409
    assert status_of(refused.value)["reason"] == "Conflict"
    assert "Precondition failed: UID" in status_of(refused.value)["message"]
    assert kube.pod(NS, "agent-1") is not None


def test_delete_with_stale_resource_version_precondition_is_refused_with_409(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1"))
    kube.set_phase(NS, "agent-1", "Running")
    options = {"preconditions": {"resourceVersion": created.metadata.resource_version}}

    with pytest.raises(ApiException) as refused:
        core.delete_namespaced_pod("agent-1", NS, body=options)

    assert refused.value.status == 409
    assert kube.pod(NS, "agent-1") is not None


def test_deleting_an_absent_pod_is_404(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        core.delete_namespaced_pod("ghost", NS)
    assert missing.value.status == 404
    assert status_of(missing.value)["details"] == {"name": "ghost", "kind": "pods"}


def test_graceful_deletion_keeps_the_pod_until_finished(clock: FakeClock) -> None:
    with (
        KubeApiStandIn(clock=clock, graceful_deletion=True) as kube,
        official_client(kube) as graceful_core,
    ):
        graceful_core.create_namespaced_pod(NS, manifest("agent-1"))

        # When the pod is deleted with a 10 s grace period
        deleting = graceful_core.delete_namespaced_pod("agent-1", NS, grace_period_seconds=10)

        # Then it stays, marked, until the test finishes the deletion
        assert deleting.metadata.deletion_timestamp == T0 + timedelta(seconds=10)
        assert deleting.metadata.deletion_grace_period_seconds == 10
        listed = graceful_core.list_namespaced_pod(NS).items
        assert [p.metadata.deletion_timestamp for p in listed] == [T0 + timedelta(seconds=10)]
        again = graceful_core.delete_namespaced_pod("agent-1", NS)
        assert again.metadata.resource_version == deleting.metadata.resource_version
        kube.finish_deletion(NS, "agent-1")
        assert names(graceful_core) == []


def test_graceful_deletion_can_be_chosen_per_pod(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("slow"))
    kube.add_pod(NS, manifest("quick"))
    kube.set_graceful_deletion(NS, "slow")

    core.delete_namespaced_pod("slow", NS)
    core.delete_namespaced_pod("quick", NS)

    assert [p["metadata"]["name"] for p in kube.pods(NS)] == ["slow"]
    assert kube.pods(NS)[0]["metadata"]["deletionTimestamp"] == "2030-01-02T03:04:35Z"


def test_a_zero_grace_period_deletes_at_once_even_when_graceful(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    kube.graceful_deletion = True
    kube.add_pod(NS, manifest("agent-1"))

    core.delete_namespaced_pod("agent-1", NS, body={"gracePeriodSeconds": 0})

    assert kube.pods(NS) == []


# ---- patch -----------------------------------------------------------------


def test_patch_with_a_dict_adds_and_removes_annotations(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1"))

    added = core.patch_namespaced_pod(
        "agent-1", NS, {"metadata": {"annotations": {"slot": "7", "owner": "me"}}}
    )
    removed = core.patch_namespaced_pod("agent-1", NS, {"metadata": {"annotations": {"owner": None}}})

    assert added.metadata.annotations == {"slot": "7", "owner": "me"}
    assert removed.metadata.annotations == {"slot": "7"}
    versions = [int(p.metadata.resource_version) for p in (created, added, removed)]
    assert versions == sorted(set(versions))
    # The client sends a dict body as a strategic merge patch.
    patch_types = {call.content_type for call in kube.requests if call.verb == "patch"}
    assert patch_types == {"application/strategic-merge-patch+json"}


def test_merge_patch_content_type_is_served_too(core: CoreV1Api) -> None:
    core.create_namespaced_pod(NS, manifest("agent-1", {"app": "agent", "x": "1"}))

    patched = core.patch_namespaced_pod(
        "agent-1",
        NS,
        {"metadata": {"labels": {"x": None, "y": "2"}}},
        _content_type="application/merge-patch+json",
    )

    assert patched.metadata.labels == {"app": "agent", "y": "2"}


def test_json_patch_with_a_list_body_edits_annotations(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    core.create_namespaced_pod(NS, manifest("agent-1"))
    ops = [
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/podslots.io~1slot", "value": "1"},
        {"op": "add", "path": "/metadata/annotations/gone", "value": "x"},
        {"op": "replace", "path": "/metadata/annotations/podslots.io~1slot", "value": "2"},
        {"op": "remove", "path": "/metadata/annotations/gone"},
    ]

    patched = core.patch_namespaced_pod("agent-1", NS, ops)

    assert patched.metadata.annotations == {"podslots.io/slot": "2"}
    assert kube.requests[-1].content_type == "application/json-patch+json"


def test_a_json_patch_removing_a_missing_key_is_422_and_changes_nothing(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1", {"app": "agent"}))
    ops = [
        {"op": "add", "path": "/metadata/labels/new", "value": "1"},
        {"op": "remove", "path": "/metadata/labels/missing"},
    ]

    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod("agent-1", NS, ops)

    assert refused.value.status == 422
    stored = kube.pod(NS, "agent-1")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"app": "agent"}
    assert stored["metadata"]["resourceVersion"] == created.metadata.resource_version


def test_patch_carrying_a_stale_resource_version_is_refused_with_409(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1"))
    kube.set_phase(NS, "agent-1", "Running")
    patch = {
        "metadata": {
            "resourceVersion": created.metadata.resource_version,
            "annotations": {"slot": "1"},
        }
    }

    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod("agent-1", NS, patch)

    assert refused.value.status == 409


def test_patching_an_absent_pod_is_404(core: CoreV1Api) -> None:
    with pytest.raises(ApiException) as missing:
        core.patch_namespaced_pod("ghost", NS, {"metadata": {"labels": {"a": "b"}}})
    assert missing.value.status == 404


# ---- test-side controls ----------------------------------------------------


def test_phase_and_pod_ip_changes_are_seen_through_list(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    created = core.create_namespaced_pod(NS, manifest("agent-1"))

    kube.set_phase(NS, "agent-1", "Running")
    kube.set_pod_ip(NS, "agent-1", "10.1.2.3")

    [pod] = core.list_namespaced_pod(NS).items
    assert (pod.status.phase, pod.status.pod_ip) == ("Running", "10.1.2.3")
    assert int(pod.metadata.resource_version) == int(created.metadata.resource_version) + 2


def test_mark_deleting_and_remove_act_without_the_api(
    kube: KubeApiStandIn, clock: FakeClock, core: CoreV1Api
) -> None:
    kube.add_pod(NS, manifest("marked"))
    kube.add_pod(NS, manifest("vanishing"))
    clock.advance(60)

    kube.mark_deleting(NS, "marked")
    kube.remove(NS, "vanishing")

    [pod] = core.list_namespaced_pod(NS).items
    assert pod.metadata.name == "marked"
    assert pod.metadata.deletion_timestamp == T0 + timedelta(seconds=60)
    assert kube.count() == 1


def test_add_pod_keeps_a_seeded_status_and_uid(core: CoreV1Api, kube: KubeApiStandIn) -> None:
    seeded = manifest("agent-1")
    seeded["metadata"]["uid"] = "11111111-2222-3333-4444-555555555555"
    seeded["status"] = {"phase": "Running", "podIP": "10.0.0.9"}
    kube.add_pod(NS, seeded)

    pod = core.read_namespaced_pod("agent-1", NS)

    assert pod.metadata.uid == "11111111-2222-3333-4444-555555555555"
    assert (pod.status.phase, pod.status.pod_ip) == ("Running", "10.0.0.9")


def test_requests_are_recorded_for_assertions(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    core.create_namespaced_pod(NS, manifest("agent-1"))
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


# ---- faults ----------------------------------------------------------------


def test_an_injected_500_fails_one_call_then_the_api_answers_again(
    kube: KubeApiStandIn, core: CoreV1Api
) -> None:
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
        core.create_namespaced_pod(NS, manifest("agent-1"))

    assert throttled.value.status == 429
    assert throttled.value.headers["Retry-After"] == "3"
    assert kube.pods(NS) == []


def test_faults_match_on_method_and_path_glob(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.add_pod(NS, manifest("other"))
    kube.inject(ErrorStatus(503), method="GET", path="/api/v1/namespaces/*/pods/agent-*", times=None)

    assert core.read_namespaced_pod("other", NS).metadata.name == "other"
    for _ in range(2):
        with pytest.raises(ApiException) as unavailable:
            core.read_namespaced_pod("agent-1", NS)
        assert unavailable.value.status == 503
    kube.clear_faults()
    assert core.read_namespaced_pod("agent-1", NS).metadata.name == "agent-1"


def test_a_slow_answer_trips_the_client_request_timeout(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.slow_next(5.0, verb="get")

    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        core.read_namespaced_pod("agent-1", NS, _request_timeout=0.2)

    assert core.read_namespaced_pod("agent-1", NS, _request_timeout=2).metadata.name


def test_a_slow_answer_within_the_timeout_just_arrives_late(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.slow_next(0.1, verb="list")

    assert names(core, _request_timeout=5) == ["agent-1"]


def test_a_dropped_connection_is_a_urllib3_protocol_error(kube: KubeApiStandIn, core: CoreV1Api) -> None:
    kube.drop_next(verb="delete")
    kube.add_pod(NS, manifest("agent-1"))

    with pytest.raises(urllib3.exceptions.ProtocolError):
        core.delete_namespaced_pod("agent-1", NS)

    # The request was read but not acted on: the pod is still there.
    assert kube.pod(NS, "agent-1") is not None
    assert kube.count(verb="delete") == 1


# ---- the official client's own retries (urllib3 defaults) ------------------


def test_default_client_retries_a_throttled_get_that_says_retry_after(
    kube: KubeApiStandIn, core_with_default_retries: CoreV1Api
) -> None:
    kube.add_pod(NS, manifest("agent-1"))
    kube.fail_next(429, retry_after=0, verb="get")

    pod = core_with_default_retries.read_namespaced_pod("agent-1", NS)

    assert pod.metadata.name == "agent-1"
    assert kube.count(verb="get") == 2


def test_default_client_does_not_retry_a_500(
    kube: KubeApiStandIn, core_with_default_retries: CoreV1Api
) -> None:
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

    assert core_with_default_retries.read_namespaced_pod("agent-1", NS).metadata.name
    with pytest.raises(urllib3.exceptions.ProtocolError):
        core_with_default_retries.create_namespaced_pod(NS, manifest("agent-2"))

    assert (kube.count(verb="get"), kube.count(verb="create")) == (2, 1)


def test_default_client_gives_up_on_a_get_that_keeps_dropping_with_max_retry_error(
    kube: KubeApiStandIn, core_with_default_retries: CoreV1Api
) -> None:
    kube.drop_next(verb="get", times=None)

    with pytest.raises(urllib3.exceptions.MaxRetryError) as gave_up:
        core_with_default_retries.read_namespaced_pod("agent-1", NS)

    assert isinstance(gave_up.value.reason, urllib3.exceptions.ProtocolError)
    assert kube.count(verb="get") == 4  # urllib3's default: 1 try + 3 retries
