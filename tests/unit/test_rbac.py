"""k8s/rbac.yaml grants exactly the verbs the Kubernetes gateway calls, read from both files."""

from __future__ import annotations

import ast
import re

import yaml

from local.template import ROOT

# The kubernetes client's CoreV1Api method prefix -> the RBAC verb that authorises it.
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
POD_CALL = re.compile(r"^(?P<verb>[a-z]+)_namespaced_pod(?P<sub>_[a-z_]+)?$")


def verbs_the_gateway_calls() -> set[str]:
    """Every `*_namespaced_pod` method called in cluster.py, as its RBAC verb."""
    tree = ast.parse((ROOT / "layers/podslots/podslots/cluster.py").read_text())
    verbs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            match = POD_CALL.match(node.attr)
            if match:
                assert match.group("sub") is None, f"{node.attr}: a pod subresource needs its own RBAC rule"
                verbs.add(VERB_OF[match.group("verb")])
    return verbs


def role_rules() -> list[dict[str, object]]:
    documents = list(yaml.safe_load_all((ROOT / "k8s" / "rbac.yaml").read_text()))
    (role,) = [d for d in documents if d["kind"] == "Role"]
    return list(role["rules"])


def test_given_the_role_and_the_gateway_then_the_role_grants_exactly_the_verbs_called_on_pods_and_nothing_else():
    (rule,) = role_rules()
    assert (rule["apiGroups"], rule["resources"]) == ([""], ["pods"])
    assert verbs_the_gateway_calls() == {"list", "create", "delete", "patch"}  # the walk found them all
    assert sorted(rule["verbs"]) == sorted(verbs_the_gateway_calls())  # type: ignore[call-overload]
