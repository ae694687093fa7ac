"""The least-privilege check itself: what it makes of a grant taken away, a grant made too broad,
a partial run and a stale allowance, on the template's own roles (changed in a copy)."""

from __future__ import annotations

import copy
from typing import Any

from local.template import template
from tests.least_privilege_allowances import ALLOWANCES
from tests.support.cfn import Resolver, function_role_policies
from tests.support.least_privilege import Allowance, Call, Grant, _covers, check, grants

TABLE = "arn:aws:dynamodb:us-east-1:111122223333:table/SlotTable"


def resources() -> dict[str, Any]:
    return copy.deepcopy(template()["Resources"])


def code_statements(res: dict[str, Any], role: str) -> list[dict[str, Any]]:
    (code,) = (p for p in res[role]["Properties"]["Policies"] if p.get("PolicyName") == "code")
    statements: list[dict[str, Any]] = code["PolicyDocument"]["Statement"]
    return statements


def calls_of_every_grant(res: dict[str, Any] | None = None) -> list[Call]:
    """One call per granted action and resource (a wildcard resource as one name under it), except
    what the allowances list as never called: the calls a whole run of the suite sees."""
    made = []
    for function in {r: v for r, v in template()["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}:
        for grant in grants(function, res):
            if not any(_covers(a, grant) for a in ALLOWANCES):
                made.append(Call(function, grant.action, grant.resource.replace("*", "x"), context=_meeting(grant)))
    return made


def _meeting(grant: Grant) -> tuple[tuple[str, str], ...]:
    """The request keys a call the grant is for carries: the values its `StringEquals` asks."""
    wanted = (grant.statement.get("Condition") or {}).get("StringEquals") or {}
    return tuple((key, str(value[0] if isinstance(value, list) else value)) for key, value in sorted(wanted.items()))


def test_given_every_granted_call_made_then_the_whole_run_finds_nothing():
    assert check(calls_of_every_grant(), whole_run=True, allowances=ALLOWANCES) == []


def test_given_autoscale_without_condition_check_when_it_sends_one_then_the_call_is_not_granted():
    # Given autoscale's role without dynamodb:ConditionCheckItem
    res = resources()
    for statement in code_statements(res, "AutoscaleRole"):
        if isinstance(statement["Action"], list) and "dynamodb:ConditionCheckItem" in statement["Action"]:
            statement["Action"].remove("dynamodb:ConditionCheckItem")
    # When autoscale's transaction checks the pool item (a partial run is enough)
    sent = [Call("AutoscaleFunction", "dynamodb:ConditionCheckItem", TABLE)]
    problems = check(sent, whole_run=False, allowances=ALLOWANCES, resources=res)
    # Then the run fails, naming the function, the action and the resource
    assert problems == [f"NOT GRANTED: AutoscaleFunction calls dynamodb:ConditionCheckItem on {TABLE}"]
    assert check(sent, whole_run=False, allowances=ALLOWANCES) == []  # the template as it is grants it


def test_given_heartbeat_granted_all_of_dynamodb_on_everything_then_a_whole_run_fails():
    # Given heartbeat's role also granting dynamodb:* on *
    res = resources()
    code_statements(res, "HeartbeatRole").append(
        {"Sid": "Everything", "Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}
    )
    # When the whole run sees heartbeat make only its usual calls
    problems = check(calls_of_every_grant(), whole_run=True, allowances=ALLOWANCES, resources=res)
    # Then each DynamoDB action it never calls is reported, and the grant on every resource
    assert "GRANTED, NEVER SEEN: HeartbeatFunction may dynamodb:DeleteTable on *" in " ".join(problems)
    assert "GRANTED, NEVER SEEN: HeartbeatFunction may dynamodb:ConditionCheckItem on *" in " ".join(problems)
    assert "WIDER THAN ITS CALLS: HeartbeatFunction may dynamodb:UpdateItem on every resource" in problems
    assert all("HeartbeatFunction" in p for p in problems)
    # And a partial run (-k, a file) does not report what it may simply not have run
    assert check(calls_of_every_grant(), whole_run=False, allowances=ALLOWANCES, resources=res) == []


def test_given_a_grant_no_test_exercises_then_a_whole_run_fails_until_it_is_listed():
    # Given a whole run in which heartbeat never updates the table (its one call)
    calls = [
        c for c in calls_of_every_grant() if (c.function, c.action) != ("HeartbeatFunction", "dynamodb:UpdateItem")
    ]
    problems = check(calls, whole_run=True, allowances=ALLOWANCES)
    # Then the grant is named as unseen
    assert problems == [
        f"GRANTED, NEVER SEEN: HeartbeatFunction may dynamodb:UpdateItem on {TABLE}: no test makes it call that;"
        " add the test, or remove the grant, or list it in tests/least_privilege_allowances.py"
    ]
    # When it is listed with its reason, Then the run passes
    listed = (*ALLOWANCES, Allowance("HeartbeatFunction", "dynamodb:UpdateItem", TABLE, "a reason"))
    assert check(calls, whole_run=True, allowances=listed) == []


def test_given_an_allowance_that_is_no_longer_true_then_a_whole_run_fails():
    seen = Allowance("HeartbeatFunction", "dynamodb:UpdateItem", TABLE, "it is called, though")
    gone = Allowance("HeartbeatFunction", "dynamodb:DeleteItem", TABLE, "never granted")
    problems = check(calls_of_every_grant(), whole_run=True, allowances=(*ALLOWANCES, seen, gone))
    assert problems == [
        f"ALLOWANCE SEEN: HeartbeatFunction dynamodb:UpdateItem {TABLE} is called",
        f"ALLOWANCE NO LONGER GRANTED: HeartbeatFunction dynamodb:DeleteItem {TABLE}",
    ]


def test_given_every_function_then_its_logs_go_to_its_own_log_group_only():
    resolver = Resolver()
    functions = [name for name, r in template()["Resources"].items() if r["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        stem = function.removesuffix("Function")
        own = resolver.resolve({"Fn::GetAtt": f"{stem}LogGroup.Arn"})
        logs = [
            s
            for policy in function_role_policies(resolver, function)
            for s in policy["Statement"]
            if any(
                str(a).startswith("logs:") for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
            )
        ]
        assert logs == [
            {
                "Sid": "OwnLogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": own,
            }
        ], function


def test_given_a_function_left_to_sams_role_then_it_gets_logs_on_every_log_group():
    # The reader models SAM's own role, so taking `Role` away shows up as logs:* on `*` again.
    res = resources()
    del res["HeartbeatFunction"]["Properties"]["Role"]
    policies = function_role_policies(Resolver(), "HeartbeatFunction", res)
    assert {
        "Effect": "Allow",
        "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*",
    } in [s for p in policies for s in p["Statement"]]
