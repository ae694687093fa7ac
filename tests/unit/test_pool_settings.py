"""Pool settings: defaults of DESIGN.md, and the rules that name their field."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from podslots.errors import InvalidInput
from podslots.settings import PoolSettings, validate_pool_name

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
    assert field in str(raised.value)


def test_the_image_is_required():
    with pytest.raises(ValidationError, match="image"):
        PoolSettings.model_validate({"pod_template": {}})


@pytest.mark.parametrize("name", ["terraform", "a", "tf-agents-eu-1", "x" * 40])
def test_pool_names_that_are_dns_labels_pass(name: str):
    assert validate_pool_name(name) == name


@pytest.mark.parametrize("name", ["", "Terraform", "-tf", "tf-", "tf_agents", "x" * 41])
def test_pool_names_that_cannot_prefix_a_pod_name_are_refused(name: str):
    with pytest.raises(InvalidInput):
        validate_pool_name(name)
