"""The review's findings that live in template.yaml, each read from the template itself."""

from __future__ import annotations

import itertools

import pytest

from local.template import template
from tests.support.cfn import Resolver


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
    refused = rules_refusing({"Environment": environment, "AuthMode": auth_mode})
    assert bool(refused) is (environment == "prod" and auth_mode == "API_KEY"), refused
