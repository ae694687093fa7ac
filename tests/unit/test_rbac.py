"""k8s/rbac.yaml grants exactly the verbs the Kubernetes gateway calls, read from both files."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from local.template import ROOT
from podslots.names import CONTROLLER_SERVICE_ACCOUNT
from podslots.settings import CONTROLLER_NAMESPACE, PoolSettings

# The kubernetes client's method prefix -> the RBAC verb that authorises it.
VERB_OF = {
    "list": "list",
    "read": "get",
    "create": "create",
    "delete": "delete",
    "patch": "patch",
    "replace": "update",
    "watch": "watch",
    "deletecollection": "deletecollection",
}
# The client's method suffix -> the (API group, resource) its RBAC rule names.
RESOURCE_OF = {
    "pod": ("", "pods"),
    "pod_disruption_budget": ("policy", "poddisruptionbudgets"),
}
CALL = re.compile(r"^(?P<verb>[a-z]+)_namespaced_(?P<resource>[a-z_]+)$")


def verbs_the_gateway_calls() -> dict[tuple[str, str], set[str]]:
    """Every `<verb>_namespaced_<resource>` method called in cluster.py, as RBAC verbs by resource."""
    tree = ast.parse((ROOT / "layers/podslots/podslots/cluster.py").read_text())
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            match = CALL.match(node.attr)
            if match:
                resource = match.group("resource")
                assert resource in RESOURCE_OF, f"{node.attr}: a resource or subresource needs its own RBAC rule"
                verbs[RESOURCE_OF[resource]].add(VERB_OF[match.group("verb")])
    return dict(verbs)


def role_rules() -> list[dict[str, object]]:
    documents = list(yaml.safe_load_all((ROOT / "k8s" / "rbac.yaml").read_text()))
    (role,) = [d for d in documents if d["kind"] == "Role"]
    return list(role["rules"])


def granted() -> dict[tuple[str, str], set[str]]:
    """The Role's verbs by (API group, resource); one rule per resource, each naming one."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for rule in role_rules():
        groups, resources, rule_verbs = rule["apiGroups"], rule["resources"], rule["verbs"]
        assert isinstance(groups, list)
        assert isinstance(resources, list)
        assert isinstance(rule_verbs, list)
        assert len(groups) == len(resources) == 1, f"{rule}: one group and one resource per rule"
        key = (str(groups[0]), str(resources[0]))
        assert key not in verbs, f"{key}: one rule per resource"
        verbs[key] = {str(v) for v in rule_verbs}
    return verbs


def test_given_the_role_and_the_gateway_then_the_role_grants_exactly_the_verbs_called_and_nothing_else():
    called = verbs_the_gateway_calls()
    # The walk found them all: pods, and the pools' disruption budgets (created, deleted, never read)
    assert called == {
        ("", "pods"): {"list", "create", "delete", "patch"},
        ("policy", "poddisruptionbudgets"): {"create", "delete"},
    }
    assert granted() == called


# ---- podslots' own identity, out of the agents' reach -------------------------------------------


def k8s_documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "k8s" / name).read_text()) if d]


def test_given_the_manifests_then_podslots_account_and_its_token_live_in_its_own_namespace_bound_into_the_agents():
    rbac = k8s_documents("rbac.yaml")
    (account,) = [d for d in rbac if d["kind"] == "ServiceAccount"]
    (role,) = [d for d in rbac if d["kind"] == "Role"]
    (binding,) = [d for d in rbac if d["kind"] == "RoleBinding"]
    (token,) = k8s_documents("serviceaccount-token.yaml")
    # Given podslots' own account, as settings.py knows it
    assert account["metadata"] == {"name": CONTROLLER_SERVICE_ACCOUNT, "namespace": CONTROLLER_NAMESPACE}
    assert [d["metadata"]["name"] for d in rbac if d["kind"] == "Namespace"] == [CONTROLLER_NAMESPACE]
    # Then its long-lived token is in that namespace too, for that account
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["namespace"] == CONTROLLER_NAMESPACE
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": CONTROLLER_SERVICE_ACCOUNT}
    # And its rights are in the agents' namespace, through a binding there to that account
    agents = role["metadata"]["namespace"]
    assert agents != CONTROLLER_NAMESPACE
    assert binding["metadata"]["namespace"] == agents
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": CONTROLLER_SERVICE_ACCOUNT, "namespace": CONTROLLER_NAMESPACE}
    ]
    # And nothing of podslots' identity is left in the agents' namespace, where pods are made
    for document in [*rbac, token]:
        if document["kind"] in ("ServiceAccount", "Secret"):
            assert document["metadata"]["namespace"] == CONTROLLER_NAMESPACE, document["kind"]


def test_given_a_pool_in_podslots_own_namespace_then_it_is_refused_stored_or_not():
    template = {"image": "registry.example/tf-agent:1.9"}
    # When a pool would make its agent pods beside podslots' account and token, Then it is refused
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate({"namespace": CONTROLLER_NAMESPACE, "pod_template": template})
    assert [e["loc"] for e in raised.value.errors()] == [("namespace",)]
    with pytest.raises(ValidationError):
        PoolSettings.from_stored({"namespace": CONTROLLER_NAMESPACE, "pod_template": template})
    # And the agents' namespace is fine
    assert PoolSettings.model_validate({"namespace": "agents", "pod_template": template}).namespace == "agents"
