"""PodDisruptionBudgets and the Eviction API on the stand-in, through the official client over HTTP.

What the pool's budget relies on: the gateway creates it (409 counts as done, remembered for a
while) and deletes it (404 counts as done); an eviction that a budget allowing no disruption
covers is refused with 429, as the API server refuses it, and one it does not cover deletes the
pod. The budgets' other rules (more than one budget, unready pods, a budget that allows some
disruption) are here too, so the stand-in cannot be a 429 that answers what podslots wants.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiClient, CoreV1Api, PolicyV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from local.kube_api import KubeApiStandIn
from podslots import names
from podslots.cluster import BUDGET_RECHECK_S, KubeGateway
from podslots.cluster_pods import BUSY_LABEL, ClusterError, disruption_budget_name
from tests.integration.test_kube_api_stand_in import NS, api_client, core, gateway, kube

__all__ = ["api_client", "core", "gateway", "kube"]  # the stand-in's fixtures, with the real client
POOL = "a"


def running_pod(kube: KubeApiStandIn, name: str, labels: dict[str, str] | None = None, **metadata: Any) -> None:
    """A pod a kubelet runs (phase Running), with these labels."""
    kube.add_pod(
        NS,
        {"metadata": {"name": name, "labels": labels or {}, **metadata}, "spec": {"containers": [{"name": "agent"}]}},
    )
    kube.set_phase(NS, name, "Running")


def busy(pool: str = POOL) -> dict[str, str]:
    return {names.POOL_LABEL: pool, BUSY_LABEL: pool}


def evict(core: CoreV1Api, name: str) -> int:
    """POST pods/{name}/eviction; the HTTP status."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NS}}
    try:
        core.create_namespaced_pod_eviction(name, NS, body)  # type: ignore[arg-type]
    except ApiException as refused:
        return int(refused.status)
    return 201


def refusal(core: CoreV1Api, name: str) -> dict[str, Any]:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction(name, NS, body)  # type: ignore[arg-type]
    answer: dict[str, Any] = json.loads(refused.value.body or "{}")
    return answer


@pytest.fixture
def policy(api_client: ApiClient) -> PolicyV1Api:
    return PolicyV1Api(api_client)


# ---- what podslots' gateway calls -------------------------------------------------------------


def test_ensuring_a_pools_budget_creates_it_once_and_remembers_it_for_a_while(
    kube: KubeApiStandIn, gateway: KubeGateway, policy: PolicyV1Api, api_client: ApiClient
):
    # When reconcile ensures the pool's budget, then it exists as podslots means it
    assert gateway.ensure_disruption_budget(NS, POOL, now=1000) is True
    spec = policy.read_namespaced_pod_disruption_budget(disruption_budget_name(POOL), NS).spec
    assert spec is not None
    assert spec.selector is not None
    assert (spec.max_unavailable, spec.selector.match_labels) == (0, {BUSY_LABEL: POOL})
    assert spec.unhealthy_pod_eviction_policy == "IfHealthyBudget"
    # And the next runs on this connection (a new gateway each run) send nothing for a while
    assert KubeGateway(api_client).ensure_disruption_budget(NS, POOL, now=1000 + BUDGET_RECHECK_S - 1) is False
    assert kube.count("budget-create") == 1
    # Then ask again, and the 409 AlreadyExists counts as done
    assert KubeGateway(api_client).ensure_disruption_budget(NS, POOL, now=1000 + BUDGET_RECHECK_S) is True
    assert kube.count("budget-create") == 2
    assert [b["metadata"]["name"] for b in kube.budgets(NS)] == [disruption_budget_name(POOL)]


def test_a_budget_someone_deleted_comes_back_at_the_next_recheck(
    kube: KubeApiStandIn, gateway: KubeGateway, policy: PolicyV1Api
):
    gateway.ensure_disruption_budget(NS, POOL, now=0)
    policy.delete_namespaced_pod_disruption_budget(disruption_budget_name(POOL), NS)
    gateway.ensure_disruption_budget(NS, POOL, now=BUDGET_RECHECK_S)
    assert [b["metadata"]["name"] for b in kube.budgets(NS)] == [disruption_budget_name(POOL)]


def test_a_failed_create_is_not_remembered_and_the_next_call_creates_the_budget(
    kube: KubeApiStandIn, gateway: KubeGateway
):
    kube.fail_next(403, verb="budget-create")  # e.g. a Role from before budgets
    with pytest.raises(ClusterError, match="create poddisruptionbudget failed: 403"):
        gateway.ensure_disruption_budget(NS, POOL, now=0)
    assert kube.budgets(NS) == []
    assert gateway.ensure_disruption_budget(NS, POOL, now=1) is True
    assert len(kube.budgets(NS)) == 1


def test_deleting_a_pools_budget_deletes_it_and_a_404_counts_as_done(kube: KubeApiStandIn, gateway: KubeGateway):
    gateway.ensure_disruption_budget(NS, POOL, now=0)
    assert gateway.delete_disruption_budget(NS, POOL) is True
    assert kube.budgets(NS) == []
    assert gateway.delete_disruption_budget(NS, POOL) is False
    # And the delete forgot it: ensuring it again creates it at once
    assert gateway.ensure_disruption_budget(NS, POOL, now=1) is True
    assert len(kube.budgets(NS)) == 1


def test_labels_and_annotations_change_in_one_patch(kube: KubeApiStandIn, gateway: KubeGateway):
    running_pod(kube, "a-1", {names.POOL_LABEL: POOL})
    before = kube.calls()["patch"]
    gateway.patch_metadata(NS, "a-1", {BUSY_LABEL: POOL}, {"karpenter.sh/do-not-disrupt": "true"})
    pod = kube.pod(NS, "a-1") or {}
    assert pod["metadata"]["labels"] == busy()
    assert pod["metadata"]["annotations"] == {"karpenter.sh/do-not-disrupt": "true"}
    gateway.patch_metadata(NS, "a-1", {BUSY_LABEL: None}, {"karpenter.sh/do-not-disrupt": None})
    pod = kube.pod(NS, "a-1") or {}
    assert (pod["metadata"]["labels"], pod["metadata"].get("annotations")) == ({names.POOL_LABEL: POOL}, {})
    assert kube.calls()["patch"] - before == 2


# ---- the Eviction API, as a real API server answers it -----------------------------------------


def test_a_busy_pod_under_its_pools_budget_is_not_evicted_and_an_idle_one_is(
    kube: KubeApiStandIn, gateway: KubeGateway, core: CoreV1Api
):
    # Given the pool's budget, a busy (labelled) pod and an idle one
    gateway.ensure_disruption_budget(NS, POOL, now=0)
    running_pod(kube, "a-busy", busy())
    running_pod(kube, "a-idle", {names.POOL_LABEL: POOL})
    # When `kubectl drain` evicts both, then the busy one is refused with 429, naming the budget
    answer = refusal(core, "a-busy")
    assert (answer["code"], answer["reason"]) == (429, "TooManyRequests")
    assert disruption_budget_name(POOL) in answer["details"]["causes"][0]["message"]
    assert kube.pod(NS, "a-busy") is not None
    assert evict(core, "a-idle") == 201
    assert kube.pod(NS, "a-idle") is None
    # And once the busy pod is idle (label gone), its eviction goes through
    gateway.patch_metadata(NS, "a-busy", {BUSY_LABEL: None}, {})
    assert evict(core, "a-busy") == 201
    assert kube.pod(NS, "a-busy") is None


def test_the_budgets_status_allows_no_disruption_over_bare_pods_as_the_disruption_controller_computes_it(
    kube: KubeApiStandIn, gateway: KubeGateway, policy: PolicyV1Api
):
    gateway.ensure_disruption_budget(NS, POOL, now=0)
    running_pod(kube, "a-1", busy())
    running_pod(kube, "a-2", busy())
    status = policy.read_namespaced_pod_disruption_budget(disruption_budget_name(POOL), NS).status
    assert status is not None
    # Bare pods are expected by no controller: none expected, both healthy, no disruption allowed
    assert (status.expected_pods, status.current_healthy, status.disruptions_allowed) == (0, 2, 0)


def test_a_deployments_busy_pod_is_refused_too(kube: KubeApiStandIn, gateway: KubeGateway, core: CoreV1Api):
    owner = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs-1", "controller": True}]
    gateway.ensure_disruption_budget(NS, POOL, now=0)
    running_pod(kube, "web-1-x", {BUSY_LABEL: POOL}, ownerReferences=owner)  # adopted: no pool label
    assert evict(core, "web-1-x") == 429


def test_an_unready_busy_pod_is_refused_and_a_pending_or_terminating_one_is_not(
    kube: KubeApiStandIn, gateway: KubeGateway, core: CoreV1Api
):
    gateway.ensure_disruption_budget(NS, POOL, now=0)
    running_pod(kube, "a-unready", busy())
    kube.set_ready(NS, "a-unready", ready=False)
    kube.add_pod(NS, {"metadata": {"name": "a-pending", "labels": busy()}})
    running_pod(kube, "a-going", busy())
    kube.mark_deleting(NS, "a-going")
    assert evict(core, "a-unready") == 429
    assert evict(core, "a-pending") == 201
    assert evict(core, "a-going") == 201


def test_a_budget_that_allows_one_disruption_allows_one_and_a_pod_under_two_budgets_is_a_500(
    kube: KubeApiStandIn, policy: PolicyV1Api, core: CoreV1Api
):
    # Given two healthy pods under a budget that keeps one available
    keep_one = {
        "metadata": {"name": "keep-one"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}},
    }
    policy.create_namespaced_pod_disruption_budget(NS, keep_one)  # type: ignore[arg-type]
    running_pod(kube, "x-1", {"app": "x"})
    running_pod(kube, "x-2", {"app": "x"})
    # Then one eviction goes and the next is refused
    assert evict(core, "x-1") == 201
    assert evict(core, "x-2") == 429
    # And a second budget over the same pod: the eviction subresource refuses to choose
    also = {"metadata": {"name": "also"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "x"}}}}
    policy.create_namespaced_pod_disruption_budget(NS, also)  # type: ignore[arg-type]
    assert evict(core, "x-2") == 500


def test_an_eviction_of_a_missing_pod_is_a_404_and_a_mismatched_name_a_400(core: CoreV1Api):
    assert evict(core, "nobody") == 404
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}}
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod_eviction("nobody", NS, body)  # type: ignore[arg-type]
    assert refused.value.status == 400


def test_budgets_are_namespaced_and_a_second_create_is_a_409_already_exists(policy: PolicyV1Api):
    body = {"metadata": {"name": "b"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"k": "v"}}}}
    policy.create_namespaced_pod_disruption_budget(NS, body)  # type: ignore[arg-type]
    policy.create_namespaced_pod_disruption_budget("elsewhere", body)  # type: ignore[arg-type]
    with pytest.raises(ApiException) as refused:
        policy.create_namespaced_pod_disruption_budget(NS, body)  # type: ignore[arg-type]
    assert (refused.value.status, json.loads(refused.value.body or "{}")["reason"]) == (409, "AlreadyExists")
    assert [(b.metadata and b.metadata.name) for b in policy.list_namespaced_pod_disruption_budget(NS).items] == ["b"]
    both = {"metadata": {"name": "c"}, "spec": {"maxUnavailable": 0, "minAvailable": 1}}
    with pytest.raises(ApiException) as invalid:
        policy.create_namespaced_pod_disruption_budget(NS, both)  # type: ignore[arg-type]
    assert invalid.value.status == 422


def test_the_dynamic_client_discovers_budgets_in_policy_v1_and_the_eviction_subresource(
    kube: KubeApiStandIn, gateway: KubeGateway, tmp_path: Path
):
    gateway.ensure_disruption_budget(NS, POOL, now=0)
    configuration = kubernetes.config.new_client_from_config_dict(kube.kubeconfig(NS)).configuration
    dynamic = DynamicClient(ApiClient(configuration), cache_file=str(tmp_path / "discovery.json"))
    budgets = dynamic.resources.get(api_version="policy/v1", kind="PodDisruptionBudget")
    assert [b.metadata.name for b in budgets.get(namespace=NS).items] == [disruption_budget_name(POOL)]
    eviction = dynamic.resources.get(api_version="v1", kind="Pod").subresources["eviction"]
    assert eviction.kind == "Eviction"
