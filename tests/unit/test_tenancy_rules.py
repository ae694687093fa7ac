"""Who a caller is, and which patterns name it: the pure rules of task tenancy (podslots.tenancy)."""

from __future__ import annotations

from typing import Any

import pytest

from podslots.settings import PoolSettings
from podslots.tenancy import OPERATOR_ROLE_ARNS_VAR, Caller, arn_like, matches, operator_patterns, principal_of

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/task-queue"


@pytest.mark.parametrize(
    ("identity", "principal"),
    [
        # an assumed role is its role, whatever the session: a queue's sessions share its tasks
        ({"userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/task-queue/i-0abc"}, ROLE),
        ({"userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/task-queue/botocore-session-17"}, ROLE),
        (
            {"userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0a1b/jane.doe@example.com"},
            f"arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_Admin_0a1b",
        ),
        # other partitions keep theirs
        ({"userArn": f"arn:aws-cn:sts::{ACCOUNT}:assumed-role/q/s1"}, f"arn:aws-cn:iam::{ACCOUNT}:role/q"),
        ({"userArn": f"arn:aws-us-gov:sts::{ACCOUNT}:assumed-role/q/s1"}, f"arn:aws-us-gov:iam::{ACCOUNT}:role/q"),
        # IAM users (with their path), the root user and federated users are their own ARN
        ({"userArn": f"arn:aws:iam::{ACCOUNT}:user/ci"}, f"arn:aws:iam::{ACCOUNT}:user/ci"),
        ({"userArn": f"arn:aws:iam::{ACCOUNT}:user/teams/infra/ci"}, f"arn:aws:iam::{ACCOUNT}:user/teams/infra/ci"),
        ({"userArn": f"arn:aws:iam::{ACCOUNT}:root"}, f"arn:aws:iam::{ACCOUNT}:root"),
        ({"userArn": f"arn:aws:sts::{ACCOUNT}:federated-user/bob"}, f"arn:aws:sts::{ACCOUNT}:federated-user/bob"),
        # API_KEY mode: no userArn; the key's id, never the key itself
        ({"userArn": None, "apiKey": "s3cr3t-key-value", "apiKeyId": "a1b2c3d4e5"}, "apikey:a1b2c3d4e5"),
        # nothing usable: anonymous
        (None, None),
        ({}, None),
        ({"userArn": ""}, None),
        ({"userArn": None, "apiKeyId": None}, None),
        ({"userArn": "not an arn"}, None),
        ({"userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/no-session"}, None),
        ({"userArn": f"arn:aws:s3:::{ACCOUNT}"}, None),
        ({"userArn": f"arn:aws:sts::{ACCOUNT}:assumed-role/q/" + "s" * 65}, None),
        ({"apiKeyId": "../../etc"}, None),
    ],
)
def test_the_principal_of_an_identity_is_its_role_user_or_key(identity: dict[str, Any] | None, principal: str | None):
    assert principal_of(identity) == principal


@pytest.mark.parametrize(
    ("pattern", "arn", "expected"),
    [
        (ROLE, ROLE, True),
        (f"arn:aws:iam::{ACCOUNT}:role/task-*", ROLE, True),
        (f"arn:aws:iam::{ACCOUNT}:role/task-queu?", ROLE, True),
        ("arn:aws:iam::*:role/task-queue", ROLE, True),
        (f"arn:aws:iam::{ACCOUNT}:role/*", ROLE, True),
        (f"arn:aws:iam::{ACCOUNT}:role/Task-Queue", ROLE, False),  # case-sensitive, as ArnLike
        (f"arn:aws:iam::{ACCOUNT}:role/task", ROLE, False),
        (f"arn:aws:iam::{ACCOUNT}:role/task-queue-2", ROLE, False),
        ("arn:aws:iam::999999999999:role/task-queue", ROLE, False),
        ("arn:aws:iam::*", ROLE, False),  # `*` does not cross a colon: six parts, each on its own
        ("*", ROLE, False),
        (f"arn:aws:iam::{ACCOUNT}:user/*", ROLE, False),
    ],
)
def test_arn_like_matches_each_of_the_six_parts_on_its_own(pattern: str, arn: str, expected: bool):
    assert arn_like(pattern, arn) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        # the resource policy reads OperatorRoleArns against aws:PrincipalArn, which carries the path;
        # a session's ARN does not: a role named exactly is matched by its name (unique per account)
        (f"arn:aws:iam::{ACCOUNT}:role/ops/task-queue", True),
        (f"arn:aws:iam::{ACCOUNT}:role/a/b/task-queue", True),
        # a wildcard with a path cannot be decided from a session: it matches no role (fail closed)
        (f"arn:aws:iam::{ACCOUNT}:role/ops/*", False),
        (f"arn:aws:iam::{ACCOUNT}:role/*/task-queue", False),
        (f"arn:aws:iam::{ACCOUNT}:role/ops/other", False),
    ],
)
def test_a_role_pattern_with_a_path_names_the_role_by_its_name_only_when_exact(pattern: str, expected: bool):
    assert matches(pattern, ROLE) is expected


def test_no_pattern_matches_an_anonymous_caller_or_an_api_key():
    assert not matches("arn:aws:iam::*:*", None)
    assert not matches("arn:*:*::*:*", "apikey:a1b2c3d4e5")


def test_a_caller_uses_its_own_and_unowned_tasks_and_an_operator_reads_every_one():
    queue, other = Caller(ROLE), Caller(f"arn:aws:iam::{ACCOUNT}:role/other")
    operator = Caller(f"arn:aws:iam::{ACCOUNT}:role/ops", reads_every_task=True)
    assert queue.may_use(ROLE)
    assert queue.may_use(None)
    assert not other.may_use(ROLE)
    assert operator.may_read(ROLE)
    assert not operator.may_use(ROLE)
    assert Caller().may_use(None)
    assert not Caller().may_use(ROLE)


def test_operator_patterns_come_from_the_environment_as_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(OPERATOR_ROLE_ARNS_VAR, raising=False)
    assert operator_patterns() == ()
    monkeypatch.setenv(OPERATOR_ROLE_ARNS_VAR, f"arn:aws:iam::{ACCOUNT}:role/ops, arn:aws:iam::{ACCOUNT}:role/sre-*,")
    assert operator_patterns() == (f"arn:aws:iam::{ACCOUNT}:role/ops", f"arn:aws:iam::{ACCOUNT}:role/sre-*")


def settings(**fields: Any) -> PoolSettings:
    return PoolSettings.model_validate({"pod_template": {"image": "tf-agent:1.9"}, **fields})


def test_a_pool_lets_every_caller_allocate_unless_it_names_some():
    assert settings().allowed_callers == []
    named = [ROLE, f"arn:aws:iam::{ACCOUNT}:role/ci-*", f"arn:aws-cn:iam::{ACCOUNT}:user/bob", "arn:aws:iam::*:role/q"]
    assert settings(allowed_callers=named).allowed_callers == named


@pytest.mark.parametrize(
    ("patterns", "problem"),
    [
        (["task-queue"], "IAM principal's ARN"),
        ([f"arn:aws:s3:::{ACCOUNT}"], "IAM principal's ARN"),
        ([f"arn:aws:iam:eu-west-1:{ACCOUNT}:role/q"], "IAM principal's ARN"),
        ([f"arn:aws:iam::{ACCOUNT}:role/q r"], "IAM principal's ARN"),
        ([f"arn:aws:sts::{ACCOUNT}:assumed-role/q/session"], "not their sessions"),
        ([f"arn:aws:iam::{ACCOUNT}:role/" + "q" * 1100], "at most 1024"),
        ([f"arn:aws:iam::{ACCOUNT}:role/q{i}" for i in range(33)], "at most 32"),
    ],
)
def test_a_pool_refuses_caller_patterns_that_are_not_principal_arns(patterns: list[str], problem: str):
    with pytest.raises(ValueError, match="allowed_callers") as refused:
        settings(allowed_callers=patterns)
    assert problem in str(refused.value)
