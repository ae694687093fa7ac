"""The Kubernetes API stand-in, as podslots relies on it, through the official client over HTTP.

What podslots' gateway calls (paged LIST by label, create, delete with a uid precondition, merge
patch), driven through the gateway itself; the faults tests arrange; and the watch and discovery
that kubectl and the dynamic client use. The client has retries off: each call is one request.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiClient, Configuration, CoreV1Api, V1PodList
from kubernetes.client.exceptions import ApiException

from local.kube_api import KubeApiStandIn
from podslots import cluster, names
from podslots.cluster import KubeGateway
from podslots.cluster_pods import ClusterError, pool_selector

NS = "agents"


def manifest(name: str, pool: str = "a", **extra: Any) -> dict[str, Any]:
    labels = {names.POOL_LABEL: pool, names.MANAGED_BY_LABEL: names.MANAGED_BY}
    metadata = {"name": name, "labels": labels, **extra}
    return {"metadata": metadata, "spec": {"containers": [{"name": "agent", "image": "x"}]}}


def version(kube: KubeApiStandIn, name: str) -> int:
    return int((kube.pod(NS, name) or {})["metadata"]["resourceVersion"])


@pytest.fixture
def kube() -> Iterator[KubeApiStandIn]:
    with KubeApiStandIn(token="test-token") as stand_in:
        yield stand_in


@pytest.fixture
def api_client(kube: KubeApiStandIn) -> Iterator[ApiClient]:
    configuration = Configuration()
    configuration.retries = False
    client = kubernetes.config.new_client_from_config_dict(kube.kubeconfig(NS), client_configuration=configuration)
    yield client
    client.close()


@pytest.fixture
def core(api_client: ApiClient) -> CoreV1Api:
    return CoreV1Api(api_client)


@pytest.fixture
def gateway(api_client: ApiClient) -> KubeGateway:
    return KubeGateway(api_client, timeout_s=(1.0, 0.5))


# ---- what podslots' gateway calls -------------------------------------------------------------


def test_a_created_pod_gets_a_uid_a_timestamp_and_a_pending_phase_and_its_name_is_then_taken(gateway: KubeGateway):
    # Given a manifest that claims a status, as no client should
    body = {**manifest("a-1"), "status": {"phase": "Running"}}
    # When it is created, then the server owns uid, creationTimestamp and status
    created = gateway.create_pod(NS, body)
    assert (bool(created.uid), created.created_at > 0, created.phase) == (True, True, "Pending")
    with pytest.raises(ClusterError, match="409 AlreadyExists"):
        gateway.create_pod(NS, body)


def test_the_pool_selector_lists_only_that_pools_pods_of_the_namespace(kube: KubeApiStandIn, gateway: KubeGateway):
    kube.add_pod(NS, manifest("a-1"))
    kube.add_pod(NS, manifest("b-1", pool="b"))
    kube.add_pod("elsewhere", manifest("a-2"))
    assert [p.name for p in gateway.list_pool_pods(NS, "a")] == ["a-1"]


def test_a_selector_the_stand_in_does_not_serve_is_a_400_not_a_wrong_answer(core: CoreV1Api):
    with pytest.raises(ApiException) as refused:
        core.list_namespaced_pod(NS, label_selector="pool in (a,b)")
    assert refused.value.status == 400


def test_the_gateway_pages_with_limit_and_continue_and_sees_every_pod_once(
    kube: KubeApiStandIn, gateway: KubeGateway, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(cluster, "PAGE_SIZE", 2)
    for i in range(5):
        kube.add_pod(NS, manifest(f"a-{i}"))
    assert [p.name for p in gateway.list_pool_pods(NS, "a")] == [f"a-{i}" for i in range(5)]
    assert kube.count("list") == 3


def test_a_delete_with_a_stale_uid_is_a_409_and_with_the_pods_uid_it_deletes(
    kube: KubeApiStandIn, gateway: KubeGateway
):
    uid = kube.add_pod(NS, manifest("a-1"))["metadata"]["uid"]
    with pytest.raises(ClusterError, match=r"409 Conflict: .*Precondition failed"):
        gateway.delete_pod(NS, "a-1", "someone-elses")
    assert kube.pod(NS, "a-1") is not None
    assert gateway.delete_pod(NS, "a-1", uid) is True
    assert kube.pod(NS, "a-1") is None
    assert gateway.delete_pod(NS, "a-1", uid) is False  # a 404: already gone


def test_a_merge_patch_sets_and_removes_annotations_and_a_no_op_keeps_the_version(
    kube: KubeApiStandIn, gateway: KubeGateway
):
    kube.add_pod(NS, manifest("a-1", annotations={"old": "1"}))
    gateway.patch_annotations(NS, "a-1", {"old": None, "new": "2"})
    assert (kube.pod(NS, "a-1") or {})["metadata"]["annotations"] == {"new": "2"}
    patched = version(kube, "a-1")
    gateway.patch_annotations(NS, "a-1", {"new": "2"})
    assert version(kube, "a-1") == patched


def test_a_merge_patch_carrying_a_stale_resource_version_is_a_409_and_changes_nothing(
    kube: KubeApiStandIn, core: CoreV1Api
):
    # Given a pod read at one version, then changed by someone else (its kubelet)
    kube.add_pod(NS, manifest("a-1"))
    read = str(version(kube, "a-1"))
    kube.set_phase(NS, "a-1", "Running")
    # When a merge patch carries the version it read, as an optimistic lock
    stale = {"metadata": {"resourceVersion": read, "annotations": {"k": "v"}}}
    with pytest.raises(ApiException) as refused:
        core.patch_namespaced_pod("a-1", NS, stale, _content_type="application/merge-patch+json")
    # Then the server refuses it as the API server does, and the pod is as it was
    assert (refused.value.status, json.loads(refused.value.body or "{}")["reason"]) == (409, "Conflict")
    assert "annotations" not in (kube.pod(NS, "a-1") or {})["metadata"]
    # And the same patch at the pod's current version applies
    current = {"metadata": {"resourceVersion": str(version(kube, "a-1")), "annotations": {"k": "v"}}}
    core.patch_namespaced_pod("a-1", NS, current, _content_type="application/merge-patch+json")
    assert (kube.pod(NS, "a-1") or {})["metadata"]["annotations"] == {"k": "v"}


def test_of_two_claims_from_the_same_list_exactly_one_wins(kube: KubeApiStandIn, gateway: KubeGateway):
    # Given a pod podslots did not make, listed once by two pools' reconciles
    kube.add_pod(NS, {"metadata": {"name": "dep-1", "labels": {"app": "tf"}}, "spec": {"containers": []}})
    (listed,) = gateway.list_pool_pods(NS, "x", {"app": "tf"})
    assert listed.owner_pool is None
    # When both claim it at once
    start = threading.Barrier(2)
    won: dict[str, bool] = {}

    def claim(pool: str) -> None:
        start.wait()
        won[pool] = gateway.claim_pod(NS, listed, pool)

    threads = [threading.Thread(target=claim, args=(pool,)) for pool in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one claim applied, and the pod names that pool as its owner
    (winner,) = [pool for pool, ok in won.items() if ok]
    (after,) = gateway.list_pool_pods(NS, "x", {"app": "tf"})
    assert after.owner_pool == winner
    assert (kube.pod(NS, "dep-1") or {})["metadata"]["annotations"] == {names.CLAIM_ANNOTATION: winner}


def test_resource_versions_increase_on_every_change_from_either_side(
    kube: KubeApiStandIn, gateway: KubeGateway, core: CoreV1Api
):
    kube.add_pod(NS, manifest("a-1"))
    versions = [version(kube, "a-1")]
    kube.set_phase(NS, "a-1", "Running")
    versions.append(version(kube, "a-1"))
    gateway.create_pod(NS, manifest("a-2"))
    versions.append(version(kube, "a-2"))
    assert versions == sorted(set(versions))
    listed = core.list_namespaced_pod(NS).metadata
    assert listed is not None
    assert listed.resource_version == str(versions[-1])


def test_a_wrong_bearer_token_is_a_401(kube: KubeApiStandIn):
    client = kubernetes.config.new_client_from_config_dict(kube.kubeconfig(NS, token="wrong"))
    with pytest.raises(ClusterError, match="401 Unauthorized"):
        KubeGateway(client).list_pool_pods(NS, "a")


# ---- faults ---------------------------------------------------------------------------------------


def test_an_injected_status_fails_the_next_call_of_that_verb_only(kube: KubeApiStandIn, gateway: KubeGateway):
    kube.fail_next(503, verb="list")
    gateway.create_pod(NS, manifest("a-1"))  # another verb: untouched
    with pytest.raises(ClusterError, match="503 ServiceUnavailable") as failed:
        gateway.list_pool_pods(NS, "a")
    assert failed.value.status == 503
    assert len(gateway.list_pool_pods(NS, "a")) == 1  # once only
    assert (kube.count("list"), kube.count("create"), kube.count()) == (2, 1, 3)


def test_a_slow_answer_trips_the_clients_read_timeout(kube: KubeApiStandIn, gateway: KubeGateway):
    kube.slow_next(2, verb="list")
    with pytest.raises(ClusterError, match="ReadTimeoutError"):
        gateway.list_pool_pods(NS, "a")


def test_a_dropped_connection_is_a_protocol_error_for_the_client(kube: KubeApiStandIn, gateway: KubeGateway):
    kube.drop_next(verb="delete")
    with pytest.raises(ClusterError, match="ProtocolError"):
        gateway.delete_pod(NS, "a-1", "uid")


# ---- watches and discovery, for kubectl and the dynamic client -----------------------------------


def events(core: CoreV1Api, **query: Any) -> list[tuple[str, str, str]]:
    """(type, name, phase) of each event until the watch's stream ends."""
    stream = kubernetes.watch.Watch().stream(core.list_namespaced_pod, NS, **query)
    return [(e["type"], e["raw_object"]["metadata"]["name"], e["raw_object"]["status"]["phase"]) for e in stream]


def test_a_watch_sees_a_pod_created_changed_then_deleted(kube: KubeApiStandIn, core: CoreV1Api):
    # Given a watch from the current version, and a kubelet's and a client's changes while it runs
    listed = core.list_namespaced_pod(NS).metadata
    assert listed is not None

    def changes() -> None:
        kube.add_pod(NS, manifest("a-1"))
        kube.set_phase(NS, "a-1", "Running")
        core.delete_namespaced_pod("a-1", NS)

    threading.Timer(0.2, changes).start()
    # Then the watch streams each change, and its stream ends at timeoutSeconds
    seen = events(core, resource_version=listed.resource_version, timeout_seconds=1)
    assert seen == [("ADDED", "a-1", "Pending"), ("MODIFIED", "a-1", "Running"), ("DELETED", "a-1", "Running")]


def test_a_watch_sends_only_events_after_its_resource_version(kube: KubeApiStandIn, core: CoreV1Api):
    kube.add_pod(NS, manifest("a-1"))
    since = kube.set_phase(NS, "a-1", "Running")["metadata"]["resourceVersion"]
    kube.remove(NS, "a-1")
    kube.add_pod(NS, manifest("b-1", pool="b"))
    assert events(core, resource_version=since, timeout_seconds=1) == [
        ("DELETED", "a-1", "Running"),
        ("ADDED", "b-1", "Pending"),
    ]
    only_a = {"label_selector": pool_selector("a"), "timeout_seconds": 1}
    assert events(core, **only_a) == []  # no version: the pods there now, by the selector


def test_a_watch_ends_cleanly_when_the_server_stops(core: CoreV1Api, kube: KubeApiStandIn):
    kube.add_pod(NS, manifest("a-1"))
    threading.Timer(0.3, kube.stop).start()
    assert events(core, timeout_seconds=30) == [("ADDED", "a-1", "Pending")]  # no timeout reached, no error


def test_discovery_says_the_server_has_pods_in_v1_and_the_table_view_has_kubectls_columns(kube: KubeApiStandIn):
    kube.add_pod(NS, manifest("a-1"))

    def get(path: str, accept: str = "application/json") -> Any:
        headers = {"Authorization": "Bearer test-token", "Accept": accept}
        with urllib.request.urlopen(urllib.request.Request(kube.url + path, headers=headers), timeout=5) as answer:
            return json.loads(answer.read())

    assert get("/version")["major"] == "1"
    assert get("/api")["versions"] == ["v1"]
    assert [g["name"] for g in get("/apis")["groups"]] == ["policy"]
    assert [(r["name"], r["kind"], r["namespaced"]) for r in get("/api/v1")["resources"]] == [
        ("pods", "Pod", True),
        ("pods/eviction", "Eviction", True),
    ]
    assert [r["name"] for r in get("/apis/policy/v1")["resources"]] == ["poddisruptionbudgets"]
    table = get(f"/api/v1/namespaces/{NS}/pods", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert [c["name"] for c in table["columnDefinitions"]][:3] == ["Name", "Ready", "Status"]
    assert table["rows"][0]["cells"][:3] == ["a-1", "0/1", "Pending"]


# ---- every namespace at once, as `kubectl get pods -A` asks -------------------------------------


def placed(listed: V1PodList) -> list[tuple[str | None, str | None]]:
    """(namespace, name) of each pod listed."""
    return [(p.metadata.namespace, p.metadata.name) for p in listed.items if p.metadata is not None]


def test_a_list_of_every_namespace_has_each_namespaces_pods_in_namespace_then_name_order(
    kube: KubeApiStandIn, core: CoreV1Api
):
    # Given pods in three namespaces, two of whose names sort apart as strings and as pairs
    for namespace, name in (("agents", "b-1"), ("agents-x", "a-1"), ("agents", "a-1"), ("ops", "z-1")):
        kube.add_pod(namespace, manifest(name))

    # When the client lists pods for all namespaces, whole and two at a time
    whole = core.list_pod_for_all_namespaces()
    pages, token = [], None
    while True:
        page = core.list_pod_for_all_namespaces(limit=2, _continue=token)
        pages.append(placed(page))
        assert page.metadata is not None
        token = page.metadata._continue
        if not token:
            break

    # Then every pod is there once, by namespace then name, and paging cuts the same list
    expected = [("agents", "a-1"), ("agents", "b-1"), ("agents-x", "a-1"), ("ops", "z-1")]
    assert placed(whole) == expected
    assert pages == [expected[:2], expected[2:]]


def test_a_list_of_every_namespace_filters_by_label_and_a_watch_of_every_namespace_sees_each(
    kube: KubeApiStandIn, core: CoreV1Api
):
    # Given pods of pool a and b in two namespaces
    kube.add_pod("agents", manifest("a-1"))
    kube.add_pod("other", manifest("b-1", pool="b"))
    listed = core.list_pod_for_all_namespaces(label_selector=pool_selector("b"))
    assert listed.metadata is not None

    # When pods change in both namespaces while a watch of every namespace runs
    def changes() -> None:
        kube.add_pod("other", manifest("a-2"))
        kube.remove("agents", "a-1")

    threading.Timer(0.2, changes).start()
    stream = kubernetes.watch.Watch().stream(
        core.list_pod_for_all_namespaces, resource_version=listed.metadata.resource_version, timeout_seconds=1
    )
    seen = [(e["type"], e["raw_object"]["metadata"]["namespace"], e["raw_object"]["metadata"]["name"]) for e in stream]

    # Then the selector kept pool b's pod only, and the watch saw both namespaces' changes
    assert placed(listed) == [("other", "b-1")]
    assert seen == [("ADDED", "other", "a-2"), ("DELETED", "agents", "a-1")]
