"""The agent pod's manifest: what reconcile selects on, what the agent needs to beat, nothing that
lets Kubernetes restart an agent that forgot its tasks."""

from __future__ import annotations

from podslots.podspec import new_pod_name, pod_manifest
from podslots.settings import PoolSettings, template_revision

SETTINGS = PoolSettings.model_validate(
    {
        "namespace": "agents",
        "slots_per_pod": 4,
        "pod_template": {
            "image": "registry.example/tf-agent:1.9",
            "service_account": "tf-agent",
            "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
            "env": {"TF_IN_AUTOMATION": "1"},
            "node_selector": {"kubernetes.io/arch": "arm64"},
            "tolerations": [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}],
            "labels": {"team": "platform"},
            "annotations": {"example.com/owner": "platform"},
            "termination_grace_period_s": 120,
        },
    }
)


def test_the_manifest_carries_the_labels_reconcile_selects_on_and_the_template():
    m = pod_manifest("tf", "tf-abc12", SETTINGS, "https://api.example/v1")
    meta, spec = m["metadata"], m["spec"]
    assert (meta["name"], meta["namespace"]) == ("tf-abc12", "agents")
    assert meta["labels"] == {
        "team": "platform",
        "podslots.io/pool": "tf",
        "app.kubernetes.io/managed-by": "podslots",
        "podslots.io/revision": template_revision(SETTINGS),
    }
    assert meta["annotations"] == {"example.com/owner": "platform", "podslots.io/slots": "4"}
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 120
    assert spec["serviceAccountName"] == "tf-agent"
    assert spec["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert spec["tolerations"] == [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}]
    (agent,) = spec["containers"]
    assert agent["image"] == "registry.example/tf-agent:1.9"
    assert agent["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}}


def test_the_agent_learns_its_pool_its_name_its_slots_and_where_to_beat():
    env = {
        e["name"]: e
        for e in pod_manifest("tf", "tf-abc12", SETTINGS, "https://api.example/v1/")["spec"]["containers"][0]["env"]
    }
    assert env["PODSLOTS_POOL"]["value"] == "tf"
    assert env["PODSLOTS_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["PODSLOTS_SLOTS"]["value"] == "4"
    assert env["PODSLOTS_HEARTBEAT_URL"]["value"] == "https://api.example/v1/pools/tf/pods/tf-abc12/heartbeat"
    assert env["TF_IN_AUTOMATION"]["value"] == "1"


def test_pod_names_are_the_pool_and_a_short_random_suffix():
    names = {new_pod_name("tf") for _ in range(50)}
    assert len(names) == 50
    assert all(n.startswith("tf-") and len(n) == 8 for n in names)


# ---- the agent pod's own privileges -------------------------------------------------------------

MINIMAL = PoolSettings.model_validate({"pod_template": {"image": "registry.example/tf-agent:1.9"}})


def test_given_default_settings_the_agent_runs_restricted_and_without_a_service_account_token():
    # Given a pool that says nothing about security
    spec = pod_manifest("tf", "tf-abc12", MINIMAL, "https://api.example/v1")["spec"]
    # Then the agent gets no Kubernetes token, and its container the restricted profile
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec  # the namespace's default account, never podslots'
    (agent,) = spec["containers"]
    assert agent["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert "securityContext" not in spec


def test_given_a_pool_that_asks_for_a_token_and_its_own_context_then_the_manifest_says_so():
    # Given a pool that needs its token and a fixed user, a writable volume group and one capability
    settings = PoolSettings.model_validate(
        {
            "pod_template": {
                "image": "registry.example/tf-agent:1.9",
                "automount_service_account_token": True,
                "security_context": {
                    "run_as_user": 1000,
                    "run_as_group": 1000,
                    "fs_group": 2000,
                    "read_only_root_filesystem": True,
                    "capabilities_add": ["NET_BIND_SERVICE"],
                },
            }
        }
    )
    spec = pod_manifest("tf", "tf-abc12", settings, "https://api.example/v1")["spec"]
    # Then the manifest carries exactly that, and still drops every other capability
    assert spec["automountServiceAccountToken"] is True
    assert spec["securityContext"] == {"fsGroup": 2000}
    context = spec["containers"][0]["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert (context["runAsUser"], context["runAsGroup"], context["readOnlyRootFilesystem"]) == (1000, 1000, True)
    assert (context["runAsNonRoot"], context["allowPrivilegeEscalation"], context["privileged"]) == (True, False, False)


def test_the_revision_follows_the_template_and_the_slot_count_only():
    # Given the pool's settings, and the same settings with only scaling fields changed
    scaled = SETTINGS.model_copy(update={"min_pods": 3, "max_pods": 40, "max_surge": 5, "scale_up_utilization": 0.9})
    # And the same settings with a new image, or another slot count
    new_image = SETTINGS.model_copy(
        update={"pod_template": SETTINGS.pod_template.model_copy(update={"image": "registry.example/tf-agent:1.10"})}
    )
    more_slots = SETTINGS.model_copy(update={"slots_per_pod": 5})
    # Then scaling keeps the revision, and what shapes a pod changes it
    assert template_revision(scaled) == template_revision(SETTINGS)
    assert len({template_revision(SETTINGS), template_revision(new_image), template_revision(more_slots)}) == 3
    assert all(c in "0123456789abcdef" for c in template_revision(SETTINGS))
