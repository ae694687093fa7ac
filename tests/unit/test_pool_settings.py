"""Pool settings: the documented defaults, and the rules that name their field."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from local.template import ROOT
from podslots.names import is_pool_name
from podslots.settings import PoolSettings

TEMPLATE = {"image": "registry.example/tf-agent:1.9"}


def test_missing_fields_take_the_designs_defaults():
    s = PoolSettings.model_validate({"pod_template": TEMPLATE})
    assert (s.slots_per_pod, s.scale_up_utilization, s.scale_down_utilization) == (3, 0.8, 0.2)
    assert s.reservation_ttl_s == 86400
    assert s.leak_grace_s == 600


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"min_pods": 4, "max_pods": 3}, "min_pods"),
        ({"scale_up_utilization": 0.5, "scale_down_utilization": 0.5}, "scale_down_utilization"),
        ({"slots_per_pod": 0}, "slots_per_pod"),
        ({"slots_per_pod": 33}, "slots_per_pod"),
        ({"scale_up_utilization": 1.2}, "scale_up_utilization"),
        ({"namespace": "UPPER"}, "namespace"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_settings_name_the_field(change: dict[str, object], field: str):
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate({"pod_template": TEMPLATE, **change})
    # pydantic echoes the whole input into str(error): look only at where and what each error says.
    named = [e for e in raised.value.errors() if field in map(str, e["loc"]) or field in e["msg"]]
    assert named, raised.value.errors()


def test_the_image_is_required():
    with pytest.raises(ValidationError, match="image"):
        PoolSettings.model_validate({"pod_template": {}})


@pytest.mark.parametrize("name", ["terraform", "a", "tf-agents-eu-1", "x" * 40])
def test_pool_names_that_are_dns_labels_pass(name: str):
    assert is_pool_name(name)


@pytest.mark.parametrize("name", ["", "Terraform", "-tf", "tf-", "tf_agents", "x" * 41])
def test_pool_names_that_cannot_prefix_a_pod_name_are_refused(name: str):
    assert not is_pool_name(name)


@pytest.mark.parametrize(
    ("template_change", "where"),
    [
        ({"resources": {"requests": {"": "1"}}}, "requests"),  # DynamoDB refuses an empty attribute name
        ({"resources": {"limits": {"cpu": "1xx"}}}, "limits"),  # not a Kubernetes quantity
        ({"labels": {"team": "has space"}}, "labels"),
        ({"labels": {"-bad": "x"}}, "labels"),
        ({"node_selector": {"zone": "x" * 64}}, "node_selector"),
        ({"annotations": {"": "x"}}, "annotations"),
        ({"tolerations": [{"key": "a b"}]}, "tolerations"),
        ({"env": {"": "x"}}, "env"),
    ],
)
def test_a_template_the_kubernetes_api_or_dynamodb_would_refuse_is_refused(template_change, where: str):
    # Given a template with one value that cannot be stored or made into a pod
    document = {"pod_template": {**TEMPLATE, **template_change}}
    # When the settings are read, Then the error names the place
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate(document)
    assert any(where in map(str, e["loc"]) for e in raised.value.errors()), raised.value.errors()


def test_kubernetes_names_and_quantities_people_write_are_accepted():
    settings = PoolSettings.model_validate(
        {
            "pod_template": {
                **TEMPLATE,
                "resources": {"requests": {"cpu": "500m", "memory": "1.5Gi", "nvidia.com/gpu": "1"}},
                "labels": {"app.kubernetes.io/part-of": "terraform", "tier": ""},
                "node_selector": {"kubernetes.io/arch": "arm64"},
            }
        }
    )
    assert settings.pod_template.resources.requests["nvidia.com/gpu"] == "1"


# ---- kubeconfig_secret: this environment's secrets only -------------------------------------------

OWN_ARN = "arn:aws:secretsmanager:us-east-1:111122223333:secret:podslots/dev/team-a-AbCdEf"


@pytest.mark.parametrize("secret", ["podslots/dev/team-a", "podslots/dev/clusters/eu-1", OWN_ARN])
def test_given_the_dev_environment_a_secret_under_its_prefix_or_its_arn_is_accepted(
    secret: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PODSLOTS_ENVIRONMENT", "dev")
    settings = PoolSettings.model_validate({"pod_template": TEMPLATE, "kubeconfig_secret": secret})
    assert settings.kubeconfig_secret == secret


@pytest.mark.parametrize(
    "secret",
    [
        "podslots/prod/kubeconfig",  # another environment's
        "podslots/kubeconfig",  # the old, environment-wide prefix
        "podslots/dev/",  # no name
        "other/dev/kubeconfig",
        "podslots/dev/../prod/x y",
        OWN_ARN.replace("podslots/dev/", "podslots/prod/"),
        "arn:aws:ssm:us-east-1:111122223333:parameter/podslots/dev/x",
    ],
)
def test_given_the_dev_environment_a_secret_outside_its_prefix_is_refused_naming_the_field(
    secret: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PODSLOTS_ENVIRONMENT", "dev")
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate({"pod_template": TEMPLATE, "kubeconfig_secret": secret})
    assert [e["loc"] for e in raised.value.errors()] == [("kubeconfig_secret",)]
    assert "podslots/dev/" in raised.value.errors()[0]["msg"]


def test_given_the_prod_environment_when_a_pool_names_a_prod_secret_then_it_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("PODSLOTS_ENVIRONMENT", "prod")
    document = {"pod_template": TEMPLATE, "kubeconfig_secret": "podslots/prod/kubeconfig"}
    assert PoolSettings.model_validate(document).kubeconfig_secret == "podslots/prod/kubeconfig"
    with pytest.raises(ValidationError):
        PoolSettings.model_validate({**document, "kubeconfig_secret": "podslots/dev/kubeconfig"})


def test_given_a_stored_pool_with_an_old_secret_name_when_read_back_then_it_still_loads(
    monkeypatch: pytest.MonkeyPatch,
):
    # Its reads are refused by IAM, for that pool alone; the pool itself stays readable and deletable.
    monkeypatch.setenv("PODSLOTS_ENVIRONMENT", "dev")
    stored = {"pod_template": TEMPLATE, "kubeconfig_secret": "podslots/kubeconfig"}
    assert PoolSettings.from_stored(stored).kubeconfig_secret == "podslots/kubeconfig"


# ---- the agent pod's own privileges -------------------------------------------------------------


def controller_service_account() -> str:
    """The ServiceAccount k8s/rbac.yaml binds to the Role that creates and deletes pods."""
    documents = list(yaml.safe_load_all((ROOT / "k8s" / "rbac.yaml").read_text()))
    (binding,) = [d for d in documents if d["kind"] == "RoleBinding"]
    (subject,) = binding["subjects"]
    assert subject["kind"] == "ServiceAccount"
    return str(subject["name"])


def test_given_a_pool_when_its_agents_would_run_as_the_controllers_service_account_then_it_is_refused():
    name = controller_service_account()
    # When a pool asks for podslots' own account, Then the settings refuse it, naming the field
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate({"pod_template": {**TEMPLATE, "service_account": name}})
    assert [e["loc"] for e in raised.value.errors()] == [("pod_template", "service_account")]
    # And a stored document that names it is unreadable too: no agent pod is ever made from it
    with pytest.raises(ValidationError):
        PoolSettings.from_stored({"pod_template": {**TEMPLATE, "service_account": name}})
    # And another account is fine
    settings = PoolSettings.model_validate({"pod_template": {**TEMPLATE, "service_account": "tf-agent"}})
    assert settings.pod_template.service_account == "tf-agent"


def test_given_no_security_settings_then_the_defaults_are_restricted_and_tokenless():
    template = PoolSettings.model_validate({"pod_template": TEMPLATE}).pod_template
    assert template.automount_service_account_token is False
    context = template.security_context
    assert (context.run_as_non_root, context.allow_privilege_escalation) == (True, False)
    assert (context.capabilities_add, context.seccomp_profile) == ([], "RuntimeDefault")


@pytest.mark.parametrize(
    "context",
    [
        {"privileged": True},  # not offered at all
        {"run_as_user": 0},  # root while run_as_non_root holds
        {"capabilities_add": ["net_admin"]},  # not a capability name
        {"capabilities_add": ["CAP_SYS_ADMIN"]},  # the kernel's name: Kubernetes' is SYS_ADMIN
        {"capabilities_add": ["CAP_NET_BIND_SERVICE"]},  # refused, not normalised, even when allowed
        {"seccomp_profile": "Localhost"},
        {"run_as_user": -1},
    ],
)
def test_given_a_security_context_outside_its_small_shape_then_it_is_refused(context: dict[str, object]):
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate({"pod_template": {**TEMPLATE, "security_context": context}})
    assert all(e["loc"][:2] == ("pod_template", "security_context") for e in raised.value.errors())


def test_given_a_pool_that_runs_its_agent_as_root_on_purpose_then_it_may():
    context = {"run_as_non_root": False, "run_as_user": 0}
    settings = PoolSettings.model_validate({"pod_template": {**TEMPLATE, "security_context": context}})
    assert settings.pod_template.security_context.run_as_user == 0


@pytest.mark.parametrize(
    "key",
    [
        "container.apparmor.security.beta.kubernetes.io/agent",
        "seccomp.security.alpha.kubernetes.io/pod",
        "container.seccomp.security.alpha.kubernetes.io/agent",
    ],
)
def test_given_an_annotation_that_sets_a_security_profile_then_the_template_is_refused(key: str):
    # Given a template that would set the AppArmor or seccomp profile by annotation (any value)
    document = {"pod_template": {**TEMPLATE, "annotations": {key: "runtime/default"}}}
    # When it is put, Then it is refused naming the annotations: those are podslots' own
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate(document)
    assert [e["loc"] for e in raised.value.errors()] == [("pod_template", "annotations")]
    # And a stored document with one stays readable (its level is checked by the steps instead)
    stored = PoolSettings.from_stored({"pod_template": {**TEMPLATE, "annotations": {key: "unconfined"}}})
    assert stored.pod_template.annotations == {key: "unconfined"}


def test_given_a_stored_capability_with_the_cap_prefix_then_the_pool_stays_readable():
    stored = PoolSettings.from_stored(
        {"pod_template": {**TEMPLATE, "security_context": {"capabilities_add": ["CAP_SYS_ADMIN"]}}}
    )
    assert stored.pod_template.security_context.capabilities_add == ["CAP_SYS_ADMIN"]


def test_given_no_level_then_a_pool_is_restricted():
    assert PoolSettings.model_validate({"pod_template": TEMPLATE}).pod_security == "restricted"
    assert PoolSettings.from_stored({"pod_template": TEMPLATE}).pod_security == "restricted"


def test_given_a_namespace_outside_the_agent_namespaces_then_the_pool_is_refused(monkeypatch: pytest.MonkeyPatch):
    # Given a deployment whose agents may run in two namespaces
    monkeypatch.setenv("PODSLOTS_AGENT_NAMESPACES", "agents, agents-gpu")
    # Then a pool in either is accepted
    assert PoolSettings.model_validate({"namespace": "agents-gpu", "pod_template": TEMPLATE}).namespace == "agents-gpu"
    # And one in kube-system is refused, naming the field
    with pytest.raises(ValidationError) as raised:
        PoolSettings.model_validate({"namespace": "kube-system", "pod_template": TEMPLATE})
    assert [e["loc"] for e in raised.value.errors()] == [("namespace",)]
    # And a stored pool there stays readable: the steps leave it alone and report it
    assert PoolSettings.from_stored({"namespace": "kube-system", "pod_template": TEMPLATE}).namespace == "kube-system"


def test_the_api_accepts_exactly_the_statuses_a_caller_may_report():
    # Given the one list of reportable statuses (model) and the API's body schema built from it
    from podslots.api_models import StatusBody
    from podslots.model import END_STATUSES, HOLDING_STATUSES, REPORTED_STATUSES, TaskStatus

    # Then the schema's enum is that list, and podslots' own statuses (pending, lost, expired) are not in it
    schema = StatusBody.model_json_schema()["properties"]["status"]["enum"]
    assert set(schema) == {s.value for s in REPORTED_STATUSES}
    assert set(TaskStatus) - REPORTED_STATUSES == {TaskStatus.PENDING, TaskStatus.LOST, TaskStatus.EXPIRED}
    assert HOLDING_STATUSES | (END_STATUSES - {TaskStatus.LOST, TaskStatus.EXPIRED}) == REPORTED_STATUSES
