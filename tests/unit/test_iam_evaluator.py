"""The test IAM evaluator (tests/support/iam_eval.py) against cases from AWS's IAM documentation.

Each case comes from the IAM User Guide: "Policy evaluation logic", "IAM JSON policy elements:
Action / NotAction / Resource", "IAM policy elements: Variables and tags" and "Condition operators".
"""

from __future__ import annotations

import pytest

from tests.support.iam_eval import Decision, Request, evaluate, is_allowed


def allow(action: object, resource: object, **extra: object) -> dict[str, object]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource, **extra}],
    }


def deny(action: object, resource: object, **extra: object) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": action, "Resource": resource, **extra}]}


def test_given_no_statement_applies_when_evaluated_then_the_request_is_implicitly_denied():
    policy = allow("s3:GetObject", "arn:aws:s3:::bucket/*")
    assert evaluate([policy], Request("s3:PutObject", "arn:aws:s3:::bucket/a")) is Decision.IMPLICIT_DENY


def test_given_an_allow_and_a_deny_that_both_apply_when_evaluated_then_the_deny_wins():
    policies = [allow("s3:*", "*"), deny("s3:DeleteObject", "arn:aws:s3:::bucket/*")]
    assert evaluate(policies, Request("s3:DeleteObject", "arn:aws:s3:::bucket/a")) is Decision.EXPLICIT_DENY
    assert evaluate(policies, Request("s3:GetObject", "arn:aws:s3:::bucket/a")) is Decision.ALLOW


@pytest.mark.parametrize(
    ("pattern", "action", "allowed"),
    [
        ("iam:*AccessKey*", "iam:CreateAccessKey", True),  # the Action element page's example
        ("iam:*AccessKey*", "iam:ListAccessKeys", True),
        ("iam:*AccessKey*", "iam:ListUsers", False),
        ("S3:GETOBJECT", "s3:GetObject", True),  # actions are case-insensitive
        ("s3:Get?bject", "s3:GetObject", True),
        ("s3:Get?bject", "s3:GetObjectAcl", False),
    ],
)
def test_given_action_wildcards_when_evaluated_then_star_and_question_mark_match_as_documented(
    pattern: str, action: str, allowed: bool
):
    assert is_allowed([allow(pattern, "*")], Request(action, "arn:aws:s3:::b")) is allowed


def test_given_not_action_when_evaluated_then_every_other_action_is_allowed():
    policy = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    assert is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::b"))
    assert not is_allowed([policy], Request("iam:CreateUser", "arn:aws:iam::1:user/x"))


@pytest.mark.parametrize(
    ("resource", "allowed"),
    [
        ("arn:aws:s3:::amzn-s3-demo-bucket/home/JohnDoe/notes.txt", True),
        ("arn:aws:s3:::amzn-s3-demo-bucket/home/JohnDoe/deep/er.txt", True),  # `*` crosses `/`
        ("arn:aws:s3:::amzn-s3-demo-bucket/home/JaneDoe/notes.txt", False),
        ("arn:aws:s3:::amzn-s3-demo-bucket/home/johndoe/notes.txt", False),  # resources are case-sensitive
    ],
)
def test_given_a_policy_variable_in_the_resource_when_evaluated_then_it_takes_the_callers_value(
    resource: str, allowed: bool
):
    # The Variables page's example: each user their own home "folder".
    policy = allow("s3:*", "arn:aws:s3:::amzn-s3-demo-bucket/home/${aws:username}/*")
    assert is_allowed([policy], Request("s3:GetObject", resource, {"aws:username": "JohnDoe"})) is allowed


def test_given_a_principal_tag_variable_when_the_caller_has_no_such_tag_then_the_element_matches_nothing():
    policy = allow("s3:*", "arn:aws:s3:::bucket/${aws:PrincipalTag/team}/*")
    assert is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket/a/x", {"aws:PrincipalTag/team": "a"}))
    assert not is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket/a/x"))
    assert not is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket//x"))


def test_given_a_variable_with_a_default_when_the_key_is_missing_then_the_default_is_used():
    policy = allow("s3:*", "arn:aws:s3:::bucket/${aws:PrincipalTag/team, 'company-wide'}/*")
    assert is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket/company-wide/x"))


def test_given_a_tag_value_with_a_star_when_substituted_then_it_is_no_wildcard():
    policy = allow("s3:*", "arn:aws:s3:::bucket/${aws:PrincipalTag/team}/x")
    context = {"aws:PrincipalTag/team": "*"}
    assert not is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket/other/x", context))
    assert is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket/*/x", context))


def test_given_the_special_literal_variables_when_substituted_then_they_are_the_characters_themselves():
    policy = allow("s3:*", "arn:aws:s3:::bucket/${*}${?}${$}")
    assert is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket/*?$"))
    assert not is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::bucket/abc"))


@pytest.mark.parametrize(
    ("principal", "denied"),
    [
        ("arn:aws:iam::111122223333:role/ops-admin", False),
        ("arn:aws:iam::111122223333:role/ops-reader", True),
        (None, True),  # a negated operator on a missing key holds
    ],
)
def test_given_a_deny_unless_arn_like_when_evaluated_then_only_the_named_principals_escape_it(
    principal: str | None, denied: bool
):
    policy = deny("*", "*", Condition={"ArnNotLike": {"aws:PrincipalArn": ["arn:aws:iam::*:role/ops-admin*"]}})
    context = {"aws:PrincipalArn": principal} if principal else {}
    decision = evaluate([allow("*", "*"), policy], Request("s3:GetObject", "arn:aws:s3:::b", context))
    assert (decision is Decision.EXPLICIT_DENY) is denied


def test_given_string_equals_when_the_key_is_missing_then_a_positive_operator_fails_unless_if_exists():
    policy = allow("s3:*", "*", Condition={"StringEquals": {"aws:PrincipalTag/team": "a"}})
    if_exists = allow("s3:*", "*", Condition={"StringEqualsIfExists": {"aws:PrincipalTag/team": "a"}})
    assert not is_allowed([policy], Request("s3:GetObject", "arn:aws:s3:::b"))
    assert is_allowed([if_exists], Request("s3:GetObject", "arn:aws:s3:::b"))
    assert not is_allowed([if_exists], Request("s3:GetObject", "arn:aws:s3:::b", {"aws:PrincipalTag/team": "b"}))


def test_given_two_operators_when_evaluated_then_both_must_hold_and_the_values_of_one_key_are_alternatives():
    condition = {"StringEquals": {"k1": ["a", "b"]}, "StringLike": {"k2": "x*"}}
    policy = allow("s3:*", "*", Condition=condition)
    assert is_allowed([policy], Request("s3:GetObject", "r", {"k1": "b", "k2": "xyz"}))
    assert not is_allowed([policy], Request("s3:GetObject", "r", {"k1": "c", "k2": "xyz"}))
    assert not is_allowed([policy], Request("s3:GetObject", "r", {"k1": "a", "k2": "yz"}))


# ---- resource-based policies: Principal, and a trust policy without Resource ----------------------

EKS_PODS = ("Service", "pods.eks.amazonaws.com")


def trust(principal: object, **extra: object) -> dict[str, object]:
    """A role's trust policy: Principal, no Resource (the role it is attached to)."""
    statement = {"Effect": "Allow", "Principal": principal, "Action": ["sts:AssumeRole", "sts:TagSession"], **extra}
    return {"Version": "2012-10-17", "Statement": [statement]}


ROLE = "arn:aws:iam::111122223333:role/agent"


@pytest.mark.parametrize(
    ("principal", "allowed"),
    [
        (EKS_PODS, True),
        (("Service", "ec2.amazonaws.com"), False),  # another service
        (("AWS", "arn:aws:iam::111122223333:role/pods.eks.amazonaws.com"), False),  # another kind
        (None, False),  # a request without a principal matches only the wildcards
    ],
)
def test_given_a_trust_policy_naming_a_service_when_evaluated_then_only_that_service_may_assume_the_role(
    principal: tuple[str, str] | None, allowed: bool
):
    policy = trust({"Service": "pods.eks.amazonaws.com"})
    assert is_allowed([policy], Request("sts:AssumeRole", ROLE, principal=principal)) is allowed


def test_given_a_trust_policy_when_an_action_it_does_not_name_is_asked_then_it_is_denied():
    policy = trust({"Service": "pods.eks.amazonaws.com"})
    assert is_allowed([policy], Request("sts:TagSession", ROLE, principal=EKS_PODS))
    assert not is_allowed([policy], Request("sts:AssumeRoleWithWebIdentity", ROLE, principal=EKS_PODS))


def test_given_a_trust_policy_on_request_tags_when_evaluated_then_the_session_must_carry_one_of_the_values():
    # The EKS User Guide's example: only sessions of the named namespaces (session tags) may assume it.
    policy = trust(
        {"Service": "pods.eks.amazonaws.com"},
        Condition={"StringEquals": {"aws:RequestTag/kubernetes-namespace": ["agents", "agents-2"]}},
    )

    def assume(context: dict[str, str]) -> bool:
        return is_allowed([policy], Request("sts:AssumeRole", ROLE, context, principal=EKS_PODS))

    assert assume({"aws:RequestTag/kubernetes-namespace": "agents-2"})
    assert not assume({"aws:RequestTag/kubernetes-namespace": "kube-system"})
    assert not assume({})  # session tags disabled: no tag, no role


def test_given_wildcard_principals_when_evaluated_then_they_match_any_caller_and_none():
    for principal in ("*", {"AWS": "*"}):
        policy = {"Statement": [{"Effect": "Allow", "Principal": principal, "Action": "s3:*", "Resource": "*"}]}
        assert is_allowed([policy], Request("s3:GetObject", "r", principal=("AWS", ROLE)))
        assert is_allowed([policy], Request("s3:GetObject", "r"))


def test_given_an_exact_aws_principal_when_another_role_asks_then_it_does_not_match():
    policy = trust({"AWS": [ROLE]})
    assert is_allowed([policy], Request("sts:AssumeRole", ROLE, principal=("AWS", ROLE)))
    assert not is_allowed([policy], Request("sts:AssumeRole", ROLE, principal=("AWS", ROLE + "-2")))


@pytest.mark.parametrize(
    "statement",
    [
        {"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "sts:AssumeRole"},  # an account
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "NotPrincipal": {"AWS": ROLE}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Action": "sts:AssumeRole"},  # neither Principal nor Resource
    ],
)
def test_given_what_the_evaluator_does_not_model_when_evaluated_then_it_raises_rather_than_guesses(
    statement: dict[str, object],
):
    with pytest.raises(ValueError, match=r"not modelled|needs Resource"):
        evaluate([{"Statement": [statement]}], Request("sts:AssumeRole", ROLE, principal=("AWS", ROLE)))
