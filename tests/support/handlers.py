"""A scheduled step's handler wired as deployed: its kubeconfig secret in (moto's) Secrets Manager,
read through Powertools, pointing at the Kubernetes API stand-in, on the test's clock and bus."""

from __future__ import annotations

import importlib
import json
from types import ModuleType

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from local.kube_api import KubeApiStandIn
from podslots.bus import EventBridgePublisher
from podslots.clock import ManualClock

KUBECONFIG_SECRET = "podslots/dev/kubeconfig"  # under the environment's prefix, the only one the roles read


def wired_autoscale_handler(
    kube: KubeApiStandIn, namespace: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    boto3.client("secretsmanager").create_secret(
        Name=KUBECONFIG_SECRET, SecretString=json.dumps(kube.kubeconfig(namespace))
    )
    monkeypatch.setenv("KUBECONFIG_SECRET", KUBECONFIG_SECRET)
    handler = importlib.import_module("functions.autoscale.app")
    from podslots.kubeconfig import ClusterConnections

    provider = parameters.SecretsProvider(boto3_client=boto3.client("secretsmanager"))
    monkeypatch.setattr(handler, "connections", ClusterConnections(provider=provider))
    monkeypatch.setattr(handler.autoscaler, "clock", clock)
    monkeypatch.setattr(handler.autoscaler, "bus", EventBridgePublisher())
    return handler
