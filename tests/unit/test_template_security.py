"""The review's findings that live in template.yaml, each read from the template itself."""

from __future__ import annotations

import itertools
import json

import pytest

from local.stack import _rate_seconds
from local.template import template
from tests.support.cfn import Resolver, function_role_policies
from tests.support.iam_eval import Request, is_allowed


def rules_refusing(parameters: dict[str, str]) -> list[str]:
    """The template Rules whose condition holds and whose assertions fail, for these parameters."""
    resolver = Resolver(dict(parameters))
    refused = []
    for name, rule in template().get("Rules", {}).items():
        if "RuleCondition" in rule and not resolver.resolve(rule["RuleCondition"]):
            continue
        if not all(resolver.resolve(a["Assert"]) for a in rule["Assertions"]):
            refused.append(name)
    return refused


@pytest.mark.parametrize(
    ("environment", "auth_mode"),
    list(itertools.product(template()["Parameters"]["Environment"]["AllowedValues"], ["IAM", "API_KEY"])),
)
def test_given_an_environment_and_auth_mode_when_deployed_then_only_api_keys_in_prod_are_refused(
    environment: str, auth_mode: str
):
    cluster = "arn:aws:eks:us-east-1:111122223333:cluster/agents"  # prod needs it (the next test)
    refused = rules_refusing({"Environment": environment, "AuthMode": auth_mode, "AgentClusterArn": cluster})
    assert bool(refused) is (environment == "prod" and auth_mode == "API_KEY"), refused


@pytest.mark.parametrize("environment", template()["Parameters"]["Environment"]["AllowedValues"])
def test_given_no_agent_cluster_when_deployed_then_only_prod_is_refused(environment: str):
    # The agent role's trust names the cluster only when AgentClusterArn is set: prod must set it.
    refused = rules_refusing({"Environment": environment, "AgentClusterArn": ""})
    assert refused == (["AgentClusterInProd"] if environment == "prod" else []), refused


# ---- secrets per environment ------------------------------------------------------------------

CLUSTER_FUNCTIONS = ("ReconcileFunction", "AutoscaleFunction")


def secret_arn(name: str) -> str:
    return f"arn:aws:secretsmanager:us-east-1:111122223333:secret:{name}-AbCdEf"  # Secrets Manager's suffix


def function_policies(resolver: Resolver, function: str) -> list[dict[str, object]]:
    return function_role_policies(resolver, function)


@pytest.mark.parametrize("function", CLUSTER_FUNCTIONS)
@pytest.mark.parametrize(("environment", "other"), [("dev", "prod"), ("prod", "dev"), ("test", "prod")])
def test_given_a_cluster_function_of_one_environment_then_it_reads_its_own_secrets_and_not_anothers(
    function: str, environment: str, other: str
):
    resolver = Resolver({"Environment": environment})
    policies = function_policies(resolver, function)
    default_secret = resolver.resolve(
        template()["Resources"][function]["Properties"]["Environment"]["Variables"]["KUBECONFIG_SECRET"]
    )
    assert default_secret == f"podslots/{environment}/kubeconfig"

    def may_read(name: str) -> bool:
        return is_allowed(policies, Request("secretsmanager:GetSecretValue", secret_arn(name)))

    assert may_read(default_secret)
    assert may_read(f"podslots/{environment}/team-a")
    assert not may_read(f"podslots/{other}/kubeconfig")
    assert not may_read("podslots/kubeconfig")


def test_given_no_other_function_then_none_may_read_a_secret():
    resolver = Resolver()
    for name, resource in template()["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function" or name in CLUSTER_FUNCTIONS:
            continue
        request = Request("secretsmanager:GetSecretValue", secret_arn("podslots/dev/kubeconfig"))
        assert not is_allowed(function_policies(resolver, name), request), name


def test_given_the_template_then_every_function_knows_its_environment_for_the_pool_secret_check():
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["PODSLOTS_ENVIRONMENT"] == {"Ref": "Environment"}


# ---- what traces and logs hold ------------------------------------------------------------------


def test_given_every_function_then_the_tracer_records_no_handler_response():
    # Powertools reads this for every capture_method and capture_lambda_handler left at its default.
    variables = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    for name, resource in template()["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            own = resource["Properties"].get("Environment", {}).get("Variables", {})
            assert "POWERTOOLS_TRACER_CAPTURE_RESPONSE" not in own, name  # no function turns it back on


def test_given_the_api_then_each_request_is_access_logged_with_the_callers_arn_and_no_body():
    api = template()["Resources"]["PodSlotsApi"]["Properties"]
    setting = api["AccessLogSetting"]
    # Given the destination, Then it is the template's own log group, kept as long as the functions' logs
    assert Resolver().resolve(setting["DestinationArn"]) == Resolver().resolve({"Fn::GetAtt": "ApiAccessLogGroup.Arn"})
    group = template()["Resources"]["ApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # And each line is JSON naming the caller, the route and the answer, and nothing a caller sent
    line = json.loads(setting["Format"])
    assert line["userArn"] == "$context.identity.userArn"
    for field in ("requestId", "httpMethod", "resourcePath", "status", "apiKeyId"):
        assert field in line, field
    assert not any("requestBody" in v or "$input" in v or "header" in v.lower() for v in line.values())


# ---- what the schedules do with an event they cannot deliver ------------------------------------


def scheduled_targets() -> list[tuple[str, str, dict[str, object]]]:
    """(function, event, properties) of every Schedule and EventBridgeRule event."""
    return [
        (name, event_name, event["Properties"])
        for name, resource in template()["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event_name, event in (resource["Properties"].get("Events") or {}).items()
        if event["Type"] in ("Schedule", "EventBridgeRule")
    ]


def test_given_each_scheduled_target_then_it_retries_briefly_and_dead_letters_to_the_queue():
    targets = scheduled_targets()
    assert len(targets) == 5  # three schedules, CapacityShortage's rule, PodRegistered's rule
    for function, event, props in targets:
        retry = props["RetryPolicy"]
        assert isinstance(retry, dict)
        assert 1 <= retry["MaximumRetryAttempts"] <= 3, (function, event)
        # given up by the next run of its schedule (a shortage is sent again within a minute);
        # 60 s is the least EventBridge takes
        every_s = _rate_seconds(str(props["Schedule"])) if "Schedule" in props else 60
        assert 60 <= retry["MaximumEventAgeInSeconds"] <= max(60, every_s - 60), (function, event)
        assert props["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": "ScheduleDeadLetterQueue.Arn"}}, (function, event)


def test_given_the_dead_letter_queue_then_only_this_stacks_rules_may_send_to_it_over_tls():
    queue = template()["Resources"]["ScheduleDeadLetterQueue"]
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    policy = template()["Resources"]["ScheduleDeadLetterQueuePolicy"]["Properties"]
    assert policy["Queues"] == [{"Ref": "ScheduleDeadLetterQueue"}]
    allow, deny = policy["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "events.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == {"Fn::GetAtt": "ScheduleDeadLetterQueue.Arn"}
    # SAM names a function's rule <function><event> (checked against the SAM translator): the
    # condition names exactly the rules that dead-letter here, and nothing else may send.
    rules = [{"Fn::GetAtt": f"{function}{event}.Arn"} for function, event, _ in scheduled_targets()]
    assert sorted(allow["Condition"]["ArnEquals"]["aws:SourceArn"], key=str) == sorted(rules, key=str)
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
