"""k8s/rbac.yaml grants exactly the verbs the Kubernetes gateway calls, read from both files."""

from __future__ import annotations

import ast
import re
from collections import defaultdict

import yaml

from local.template import ROOT

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
