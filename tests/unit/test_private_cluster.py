"""Private clusters: with SubnetIds and SecurityGroupIds, the functions that reach the cluster run in
the VPC, and their roles let Lambda make their network interfaces there, and nowhere else; without
them (the default) nothing of it is deployed. Evaluated on the template as CloudFormation would
resolve it for those parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from local.template import function_ids, resource
from tests.support.cfn import ACCOUNT, REGION, Resolver, function_role_policies
from tests.support.iam_eval import Request, is_allowed

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = {"SubnetIds": "subnet-0a1,subnet-0b2", "SecurityGroupIds": "sg-0c3"}


def functions_that_reach_the_cluster() -> set[str]:
    """The functions whose handler builds a Kubernetes client (their cluster connections)."""
    found = set()
    for function in function_ids():
        code = resource(function)["Properties"].get("CodeUri", "")
        if "ClusterConnections" in (ROOT / code / "app.py").read_text():
            found.add(function)
    return found


def vpc_config(resolver: Resolver, function: str) -> Any:
    return resolver.resolve([resource(function)["Properties"].get("VpcConfig", {"Ref": "AWS::NoValue"})])


def ec2(resource_path: str, region: str = REGION) -> str:
    return f"arn:aws:ec2:{region}:{ACCOUNT}:{resource_path}"


def test_by_default_no_function_is_in_a_vpc_and_no_role_may_touch_ec2():
    resolver = Resolver()
    for function in function_ids():
        assert vpc_config(resolver, function) == [], function
        policies = function_role_policies(resolver, function)
        assert not is_allowed(policies, Request("ec2:CreateNetworkInterface", ec2("network-interface/*"))), function


def test_with_subnets_the_functions_that_reach_the_cluster_and_only_they_run_in_the_vpc():
    resolver = Resolver(PRIVATE)
    in_vpc = {f for f in function_ids() if vpc_config(resolver, f)}
    assert in_vpc == functions_that_reach_the_cluster() == {"ReconcileFunction", "AutoscaleFunction"}
    for function in in_vpc:
        assert vpc_config(resolver, function) == [
            {"SubnetIds": ["subnet-0a1", "subnet-0b2"], "SecurityGroupIds": ["sg-0c3"]}
        ]


def test_their_roles_let_lambda_make_interfaces_in_the_given_subnets_and_groups_only():
    resolver = Resolver(PRIVATE)
    for function in functions_that_reach_the_cluster():
        policies = function_role_policies(resolver, function)

        def allowed(action: str, arn: str, policies: Any = policies, **context: str) -> bool:
            return is_allowed(policies, Request(action, arn, context))

        # an interface in a given subnet, with a given group: each resource of the request is allowed
        assert allowed("ec2:CreateNetworkInterface", ec2("network-interface/*"))
        assert allowed("ec2:CreateNetworkInterface", ec2("subnet/subnet-0b2"), **{"ec2:SubnetID": "subnet-0b2"})
        assert allowed("ec2:CreateNetworkInterface", ec2("security-group/sg-0c3"), **{"ec2:SecurityGroupID": "sg-0c3"})
        # another subnet or group of the account is refused, and so is another region's interface
        assert not allowed("ec2:CreateNetworkInterface", ec2("subnet/subnet-0ff"), **{"ec2:SubnetID": "subnet-0ff"})
        assert not allowed(
            "ec2:CreateNetworkInterface", ec2("security-group/sg-0ff"), **{"ec2:SecurityGroupID": "sg-0ff"}
        )
        assert not allowed("ec2:DeleteNetworkInterface", ec2("network-interface/eni-1", region="eu-west-1"))
        # what Lambda also does with them: describe (no resource-level form), delete, move addresses
        assert allowed("ec2:DescribeNetworkInterfaces", "*")
        assert allowed("ec2:DescribeSubnets", "*")
        for action in ("DeleteNetworkInterface", "AssignPrivateIpAddresses", "UnassignPrivateIpAddresses"):
            assert allowed(f"ec2:{action}", ec2("network-interface/eni-1")), action
        # and nothing else of EC2
        assert not allowed("ec2:CreateSecurityGroup", ec2("security-group/*"))
        assert not allowed("ec2:ModifyNetworkInterfaceAttribute", ec2("network-interface/eni-1"))


def test_no_other_function_gains_an_ec2_permission_in_a_private_cluster():
    resolver = Resolver(PRIVATE)
    for function in set(function_ids()) - functions_that_reach_the_cluster():
        text = repr(function_role_policies(resolver, function))
        assert not re.search(r"'ec2:", text), function


def test_subnets_and_security_groups_are_given_together_or_not_at_all():
    from tests.unit.test_template_security import rules_refusing

    rule = "VpcNeedsSubnetsAndSecurityGroups"
    assert rule not in rules_refusing({})
    assert rule not in rules_refusing(PRIVATE)
    assert rule in rules_refusing({"SubnetIds": "subnet-0a1"})
    assert rule in rules_refusing({"SecurityGroupIds": "sg-0c3"})
