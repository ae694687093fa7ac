"""Resolve the CloudFormation intrinsics of a piece of template.yaml with fixed values, for tests.

`local.template` reads the template with its intrinsics kept as data ({"Fn::Sub": ...}); this turns
such a piece into what CloudFormation would deploy for given parameters, pseudo parameters and
resource ids. Only what the template uses: Ref, Fn::Sub (both forms, `${!literal}`), Fn::GetAtt,
Fn::Join, Fn::If, Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::Contains (Rules), Fn::ToJsonString
(AWS::LanguageExtensions), Condition, AWS::NoValue. Anything else raises, so a new intrinsic is
noticed rather than passed through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from local.template import template

ACCOUNT = "111122223333"
REGION = "us-east-1"
API_ID = "a1b2c3d4e5"

PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "podslots",
}

_NO_VALUE = object()
_SUB = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Resolver:
    """Parameters default to the template's defaults; `ids` are the resources' Ref values."""

    parameters: dict[str, Any] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=lambda: {"PodSlotsApi": API_ID})

    def __post_init__(self) -> None:
        declared = template()["Parameters"]
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            value = self.parameters.get(name, spec.get("Default"))
            if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",")]
            values[name] = value
        self.parameters = values

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.ids:
            return self.ids[name]
        if name in template()["Resources"]:
            return f"{name}-id"
        raise KeyError(f"Ref to unknown {name}")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(template()["Conditions"][name]))

    def _sub(self, text: str, local: Mapping[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            inner = match.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"  # `${!x}` is the literal `${x}`
            if inner in local:
                return str(local[inner])
            if "." in inner:
                resource, attribute = inner.split(".", 1)
                return str(self._get_att(resource, attribute))
            return str(self.ref(inner))

        return _SUB.sub(one, text)

    def _get_att(self, resource: str, attribute: str) -> str:
        if attribute == "Arn":
            return self._arn(resource)
        return f"{resource}.{attribute}"

    def _arn(self, resource: str) -> str:
        """The ARN CloudFormation would give: the real form for what IAM statements name, where a
        resource's name is its logical id unless the template names it."""
        declared = template()["Resources"].get(resource, {})
        props = declared.get("Properties", {})
        kind = declared.get("Type")
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{self.resolve(props.get('TableName', resource))}"
        if kind == "AWS::Events::EventBus":
            return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{self.resolve(props['Name'])}"
        if kind == "AWS::Logs::LogGroup":  # Fn::GetAtt's form: it ends in `:*`, every stream of the group
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{self.resolve(props['LogGroupName'])}:*"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.resolve(props.get('QueueName', resource))}"
        if kind == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT}:role/{resource}"
        return f"arn:aws:service:{REGION}:{ACCOUNT}:{resource}"

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self._sub(arg, {})
                text, local = arg
                return self._sub(text, {k: self.resolve(v) for k, v in local.items()})
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(resource, attribute)
            if key == "Fn::Join":
                separator, values = arg
                return separator.join(str(v) for v in self.resolve(values))
            if key == "Fn::If":
                name, then, otherwise = arg
                return self.resolve(then if self.condition(name) else otherwise)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Contains":  # a Rules function: is the value one of the list's?
                values, value = (self.resolve(a) for a in arg)
                return value in values
            if key == "Fn::ToJsonString":
                return json.dumps(self.resolve(arg), separators=(",", ":"))
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise NotImplementedError(f"intrinsic {key} is not resolved by tests/support/cfn.py")
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _NO_VALUE}


# What SAM attaches to a role it makes for a function (AWSLambdaBasicExecutionRole, and
# AWSXrayWriteOnlyAccess with Tracing: Active), as those managed policies read.
SAM_BASIC_EXECUTION = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ]
}
SAM_XRAY_WRITE_ONLY = {
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ]
}


def function_role_policies(
    resolver: Resolver, function: str, resources: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every policy document the function's execution role carries, resolved.

    With `Role`, the role's inline policies, its managed policies of this template, and each
    AWS::IAM::RolePolicy/Policy naming it. Without, the role SAM makes: the function's `Policies` plus
    SAM's own (basic execution, and X-Ray when traced). `resources` replaces the template's (a test
    that changes a policy); anything this reader does not model raises.
    """
    resources = resources if resources is not None else template()["Resources"]
    props = resources[function]["Properties"]
    if "Role" not in props:
        return _sam_role_policies(resolver, function, props)
    role = props["Role"]
    if not (isinstance(role, dict) and "Fn::GetAtt" in role):
        raise NotImplementedError(f"{function}'s Role is not a role of this template: {role!r}")
    target = role["Fn::GetAtt"]
    role_id = (target if isinstance(target, list) else target.split(".", 1))[0]
    role_props = resources[role_id]["Properties"]
    # resolved as a whole: a policy under Fn::If (the VPC's) is there or not, as its condition says
    docs = [p["PolicyDocument"] for p in resolver.resolve(role_props.get("Policies", []))]
    for arn in role_props.get("ManagedPolicyArns", []):
        if not (isinstance(arn, dict) and arn.get("Ref") in resources):
            raise NotImplementedError(f"{role_id}'s managed policy {arn!r} is not one of this template's")
        docs.append(resolver.resolve(resources[arn["Ref"]]["Properties"]["PolicyDocument"]))
    for res in resources.values():
        if res.get("Type") in ("AWS::IAM::RolePolicy", "AWS::IAM::Policy"):
            named = [res["Properties"].get("RoleName"), *res["Properties"].get("Roles", [])]
            if {"Ref": role_id} in named:
                docs.append(resolver.resolve(res["Properties"]["PolicyDocument"]))
    return docs


def _sam_role_policies(resolver: Resolver, function: str, props: Mapping[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for policy in resolver.resolve(props.get("Policies", [])):
        if not isinstance(policy, dict) or "Statement" not in policy:
            raise NotImplementedError(f"{function}: only inline policy documents are read, not {policy!r}")
        docs.append(policy)
    docs.append(SAM_BASIC_EXECUTION)
    tracing = props.get("Tracing", template().get("Globals", {}).get("Function", {}).get("Tracing"))
    if tracing == "Active":
        docs.append(SAM_XRAY_WRITE_ONLY)
    return docs
