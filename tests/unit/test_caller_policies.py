"""Each caller's identity may call exactly its routes: the template's policies, evaluated.

The managed policies and the API's resource policy are read from template.yaml, their intrinsics
resolved with fixed values (tests/support/cfn.py), and evaluated (tests/support/iam_eval.py) for a
concrete request to each route the template declares, as API Gateway authorises it: the action
`execute-api:Invoke` on `arn:aws:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>`.
"""

from __future__ import annotations

from typing import Any

import pytest

from local.template import template
from tests.support.cfn import ACCOUNT, API_ID, REGION, Resolver
from tests.support.iam_eval import Decision, Request, evaluate, is_allowed

STAGE = "v1"
POD = "terraform-7f3k2"
PARAMS = {"pool": "terraform", "pod": POD, "task_id": "run-42"}

TASK_QUEUE = {"POST /pools/{pool}/allocations", "PUT /tasks/{task_id}/status", "GET /tasks/{task_id}"}
AGENTS = {"POST /pools/{pool}/pods/{pod}/heartbeat"}
OPERATORS = {
    "PUT /pools/{pool}",
    "GET /pools/{pool}",
    "DELETE /pools/{pool}",
    "GET /pools",
    "GET /pools/{pool}/events",
    "POST /pools/{pool}/pods/{pod}/cordon",
    "DELETE /pools/{pool}/pods/{pod}/cordon",
}
# Operators read any task (the handler shows another queue's task only to OperatorRoleArns); they
# never move one: no PUT of a task's status.
OPERATOR_TASK_READS = {"GET /tasks/{task_id}"}
OPERATOR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/podslots-operator"
# The agents' role as the template names it (RoleName podslots-<Environment>-agent; Environment dev).
AGENT_ROLE = f"arn:aws:iam::{ACCOUNT}:role/podslots-dev-agent"
# What EKS Pod Identity tags an agent's session with (the pod, its namespace).
AGENT_TAGS = {"aws:PrincipalTag/kubernetes-pod-name": POD, "aws:PrincipalTag/kubernetes-namespace": "agents"}


def routes() -> set[str]:
    """Every API route of the template, as `METHOD /path`."""
    found = set()
    for resource in template()["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                found.add(f"{event['Properties']['Method'].upper()} {event['Properties']['Path']}")
    return found


def route_arn(route: str, **params: str) -> str:
    method, path = route.split(" ", 1)
    for name, value in {**PARAMS, **params}.items():
        path = path.replace("{" + name + "}", value)
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/{method}{path}"


def managed_policy(name: str, resolver: Resolver | None = None) -> dict[str, Any]:
    resource = template()["Resources"][name]
    assert resource["Type"] == "AWS::IAM::ManagedPolicy"
    return dict((resolver or Resolver()).resolve(resource["Properties"]["PolicyDocument"]))


def resource_policy(resolver: Resolver) -> dict[str, Any]:
    """The API's resource policy as SAM writes it, `execute-api:/` expanded as API Gateway does."""
    auth = resolver.resolve(template()["Resources"]["PodSlotsApi"]["Properties"]["Auth"])
    statements = auth.get("ResourcePolicy", {}).get("CustomStatements", [])
    prefix = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/"

    def expand(resource: str) -> str:
        return prefix + resource.removeprefix("execute-api:/") if resource.startswith("execute-api:/") else resource

    for statement in statements:
        resources = statement["Resource"]
        statement["Resource"] = [expand(r) for r in (resources if isinstance(resources, list) else [resources])]
    return {"Version": "2012-10-17", "Statement": statements}


def allowed_routes(policy: dict[str, Any], context: dict[str, str] | None = None) -> set[str]:
    return {
        route
        for route in routes()
        if is_allowed([policy], Request("execute-api:Invoke", route_arn(route), context or {}))
    }


def test_given_the_template_the_three_callers_routes_are_every_route_and_none_twice():
    assert routes() == TASK_QUEUE | AGENTS | OPERATORS
    assert not TASK_QUEUE & AGENTS
    assert not TASK_QUEUE & OPERATORS
    assert not AGENTS & OPERATORS


def test_given_the_task_queues_policy_when_it_calls_each_route_then_only_allocations_and_tasks_are_allowed():
    assert allowed_routes(managed_policy("TaskQueueInvokePolicy")) == TASK_QUEUE


def test_given_the_operators_policy_when_it_calls_each_route_then_only_the_pool_routes_and_task_reads_are_allowed():
    assert allowed_routes(managed_policy("OperatorInvokePolicy")) == OPERATORS | OPERATOR_TASK_READS
    assert "PUT /tasks/{task_id}/status" not in allowed_routes(managed_policy("OperatorInvokePolicy"))


def test_given_an_agent_of_pod_identity_when_it_calls_each_route_then_only_its_own_heartbeat_is_allowed():
    # EKS Pod Identity tags the agent's session with its pod's name.
    assert allowed_routes(managed_policy("AgentInvokePolicy"), AGENT_TAGS) == AGENTS


def test_given_an_agent_when_it_beats_for_another_pod_then_it_is_denied():
    policy = managed_policy("AgentInvokePolicy")
    agent = AGENT_TAGS
    beat = "POST /pools/{pool}/pods/{pod}/heartbeat"
    assert is_allowed([policy], Request("execute-api:Invoke", route_arn(beat), agent))
    for other in ("terraform-other", "terraform-7f3k", f"{POD}x", "*"):
        assert not is_allowed([policy], Request("execute-api:Invoke", route_arn(beat, pod=other), agent)), other


def test_given_a_role_without_the_pod_identity_tag_when_it_beats_then_it_is_denied():
    # IRSA sessions carry no kubernetes-pod-name tag: the agents' policy cannot tell their pods apart.
    policy = managed_policy("AgentInvokePolicy")
    beat = route_arn("POST /pools/{pool}/pods/{pod}/heartbeat")
    assert not is_allowed([policy], Request("execute-api:Invoke", beat, {}))


def test_given_an_agent_session_of_a_namespace_not_listed_when_it_beats_for_its_own_pod_then_it_is_denied():
    # Given the agents' namespaces (the default, `agents`, and a list of two)
    for namespaces, listed in (("agents", ["agents"]), ("agents,agents-b", ["agents", "agents-b"])):
        policy = managed_policy("AgentInvokePolicy", Resolver({"AgentNamespaces": namespaces}))
        beat = Request("execute-api:Invoke", route_arn("POST /pools/{pool}/pods/{pod}/heartbeat"), {})

        def may_beat(namespace: str | None, policy: dict[str, Any] = policy, beat: Request = beat) -> bool:
            tags = {"aws:PrincipalTag/kubernetes-pod-name": POD}
            if namespace is not None:
                tags["aws:PrincipalTag/kubernetes-namespace"] = namespace
            return is_allowed([policy], Request(beat.action, beat.resource, tags))

        # Then a session of each listed namespace may beat for its pod, and one of another (or of none) may not
        assert all(may_beat(namespace) for namespace in listed), namespaces
        for other in ("kube-system", "default", "agents-c", None):
            assert not may_beat(other), (namespaces, other)


def test_given_the_agent_pod_identity_role_then_it_carries_the_agents_policy_and_trusts_eks_pod_identity():
    role = Resolver().resolve(template()["Resources"]["AgentPodIdentityRole"])["Properties"]
    assert role["ManagedPolicyArns"] == ["AgentInvokePolicy-id"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}  # TagSession: the pod-name tag


# ---- the agent role's trust: EKS Pod Identity, for the agents' namespaces (and cluster) ------------

EKS_PODS = ("Service", "pods.eks.amazonaws.com")
CLUSTER = f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/agents"


def may_assume(resolver: Resolver, tags: dict[str, str], *, principal: tuple[str, str] = EKS_PODS) -> bool:
    """Both calls EKS Pod Identity makes for an agent's session (the role, its session tags) are allowed."""
    trust = resolver.resolve(template()["Resources"]["AgentPodIdentityRole"])["Properties"]["AssumeRolePolicyDocument"]
    context = {"aws:SourceAccount": ACCOUNT, **{f"aws:RequestTag/{k}": v for k, v in tags.items()}}
    return all(
        is_allowed([trust], Request(action, AGENT_ROLE, context, principal=principal))
        for action in ("sts:AssumeRole", "sts:TagSession")
    )


def pod_identity_tags(namespace: str, cluster: str = CLUSTER) -> dict[str, str]:
    return {"kubernetes-namespace": namespace, "eks-cluster-arn": cluster, "kubernetes-pod-name": POD}


def test_given_the_default_parameters_when_pod_identity_assumes_the_agent_role_then_only_for_the_agents_namespace():
    resolver = Resolver()
    assert may_assume(resolver, pod_identity_tags("agents"))
    # Any cluster of the account while AgentClusterArn is empty (Rules require it in prod)
    assert may_assume(resolver, pod_identity_tags("agents", f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/other"))
    for namespace in ("kube-system", "default", "Agents", "agents-b"):
        assert not may_assume(resolver, pod_identity_tags(namespace)), namespace
    # An association with session tags disabled gives no tag: the role is refused, never open
    assert not may_assume(resolver, {})


def test_given_an_agent_cluster_when_pod_identity_of_another_cluster_assumes_the_agent_role_then_it_is_refused():
    resolver = Resolver({"AgentClusterArn": CLUSTER})
    assert may_assume(resolver, pod_identity_tags("agents"))
    assert not may_assume(resolver, pod_identity_tags("agents", f"arn:aws:eks:{REGION}:{ACCOUNT}:cluster/other"))
    assert not may_assume(resolver, {"kubernetes-namespace": "agents"})  # no cluster tag


def test_given_the_agents_namespaces_when_pod_identity_assumes_the_agent_role_then_each_listed_one_may():
    resolver = Resolver({"AgentNamespaces": "agents,agents-b"})
    assert may_assume(resolver, pod_identity_tags("agents"))
    assert may_assume(resolver, pod_identity_tags("agents-b"))
    assert not may_assume(resolver, pod_identity_tags("agents-c"))


def test_given_another_principal_when_it_assumes_the_agent_role_then_it_is_refused():
    resolver = Resolver()
    assert not may_assume(resolver, pod_identity_tags("agents"), principal=("Service", "ec2.amazonaws.com"))
    assert not may_assume(resolver, pod_identity_tags("agents"), principal=("AWS", OPERATOR_ROLE))


@pytest.mark.parametrize(
    ("output", "resource"),
    [
        ("TaskQueuePolicyArn", "TaskQueueInvokePolicy"),
        ("AgentPolicyArn", "AgentInvokePolicy"),
        ("OperatorPolicyArn", "OperatorInvokePolicy"),
    ],
)
def test_given_the_stack_outputs_then_each_callers_policy_is_named(output: str, resource: str):
    assert template()["Outputs"][output]["Value"] == {"Ref": resource}


# ---- the API's resource policy ------------------------------------------------------------------

# Administration: what chooses the agents' pods, or takes one out of service.
ADMIN = {
    "PUT /pools/{pool}",
    "DELETE /pools/{pool}",
    "POST /pools/{pool}/pods/{pod}/cordon",
    "DELETE /pools/{pool}/pods/{pod}/cordon",
}
ALLOW_ALL = {"Statement": [{"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "*"}]}


def decisions(resolver: Resolver, principal: str) -> dict[str, Decision]:
    """Each route for a principal whose identity policy allows everything, with the resource policy."""
    policies = [ALLOW_ALL, resource_policy(resolver)]
    context = {"aws:PrincipalArn": principal}
    return {route: evaluate(policies, Request("execute-api:Invoke", route_arn(route), context)) for route in routes()}


def test_given_operator_roles_when_another_principal_administers_pools_then_the_resource_policy_denies_it():
    resolver = Resolver({"OperatorRoleArns": f"{OPERATOR_ROLE},arn:aws:iam::{ACCOUNT}:role/break-glass-*"})
    # Given a role that is no operator, even with an identity policy that allows every route
    agent = decisions(resolver, AGENT_ROLE)
    # Then pool administration is explicitly denied, and nothing else is
    assert {r for r, d in agent.items() if d is Decision.EXPLICIT_DENY} == ADMIN
    # And the named operators (a wildcard too) may, every route but the agents' heartbeat
    for operator in (OPERATOR_ROLE, f"arn:aws:iam::{ACCOUNT}:role/break-glass-2"):
        allowed = {r for r, d in decisions(resolver, operator).items() if d is Decision.ALLOW}
        assert allowed == routes() - AGENTS, operator


def test_given_no_operator_role_when_anyone_administers_pools_then_it_is_denied_fail_closed():
    resolver = Resolver({"OperatorRoleArns": ""})
    for principal in (OPERATOR_ROLE, f"arn:aws:iam::{ACCOUNT}:root"):
        denied = {r for r, d in decisions(resolver, principal).items() if d is Decision.EXPLICIT_DENY}
        assert denied == ADMIN | AGENTS


@pytest.mark.parametrize(
    "principal",
    [
        f"arn:aws:iam::{ACCOUNT}:role/task-queue",  # the task queue's role, given execute-api:* by mistake
        OPERATOR_ROLE,  # an operator, named in OperatorRoleArns
        f"arn:aws:iam::{ACCOUNT}:role/Admin",  # a same-account admin
        f"arn:aws:iam::{ACCOUNT}:root",
        f"arn:aws:iam::{ACCOUNT}:role/podslots-prod-agent",  # another environment's agents
        f"arn:aws:iam::{ACCOUNT}:role/podslots-dev-agent-irsa",  # a role named like it
        f"arn:aws:iam::{ACCOUNT}:user/podslots-dev-agent",  # a user named like it
    ],
)
def test_given_a_principal_with_broad_invoke_when_it_beats_then_the_resource_policy_denies_it(principal: str):
    # Given the resource policy, and an identity policy that allows execute-api:* on every API
    resolver = Resolver({"OperatorRoleArns": OPERATOR_ROLE})
    admin = {"Statement": [{"Effect": "Allow", "Action": "execute-api:*", "Resource": "*"}]}
    beat = route_arn("POST /pools/{pool}/pods/{pod}/heartbeat")
    context = {"aws:PrincipalArn": principal, **AGENT_TAGS}  # even with a pod's tags
    # When it beats for a pod, Then the beat is explicitly denied
    decision = evaluate([admin, resource_policy(resolver)], Request("execute-api:Invoke", beat, context))
    assert decision is Decision.EXPLICIT_DENY


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_given_the_agent_role_of_pod_identity_when_it_beats_then_the_policies_together_allow_its_own_pod_only(
    environment: str,
):
    # Given the agent role as the template names it, with its managed policy and the resource policy
    resolver = Resolver({"Environment": environment, "AgentClusterArn": CLUSTER})
    role = resolver.resolve(template()["Resources"]["AgentPodIdentityRole"])["Properties"]
    policies = [managed_policy("AgentInvokePolicy", resolver), resource_policy(resolver)]
    context = {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/{role['RoleName']}", **AGENT_TAGS}
    # When it beats, Then its own pod's beat is allowed and no other route is
    allowed = {r for r in routes() if is_allowed(policies, Request("execute-api:Invoke", route_arn(r), context))}
    assert allowed == AGENTS
    other_pod = route_arn("POST /pools/{pool}/pods/{pod}/heartbeat", pod="terraform-other")
    assert not is_allowed(policies, Request("execute-api:Invoke", other_pod, context))


def test_given_api_key_mode_then_no_resource_policy_is_attached_and_iam_mode_has_one():
    assert resource_policy(Resolver({"AuthMode": "API_KEY"}))["Statement"] == []
    assert resource_policy(Resolver({"AuthMode": "IAM"}))["Statement"] != []
