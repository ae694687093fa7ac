"""Clients other than podslots' gateway against the stand-in: the dynamic client and kubectl.

They read discovery first, and kubectl asks for the Table view; these tests show the stand-in
serves them, so a person can watch the embedded cluster's pods with `kubectl get pods -w`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client import ApiClient
from kubernetes.dynamic import DynamicClient

from local.kube_api import KubeApiStandIn

NS = "agents"
POD = {"metadata": {"name": "agent-1"}, "spec": {"containers": [{"name": "agent", "image": "x"}]}}


@pytest.fixture
def kube() -> Iterator[KubeApiStandIn]:
    """No token, as `make local` runs it: kubectl sends a kubeconfig's credentials over https only."""
    with KubeApiStandIn() as stand_in:
        yield stand_in


def test_the_dynamic_client_finds_pods_and_gets_creates_deletes_and_watches_them(kube: KubeApiStandIn, tmp_path: Path):
    # Given the dynamic client, which discovers the server's resources first
    configuration = kubernetes.config.new_client_from_config_dict(kube.kubeconfig(NS)).configuration
    dynamic = DynamicClient(ApiClient(configuration), cache_file=str(tmp_path / "discovery.json"))
    pods = dynamic.resources.get(api_version="v1", kind="Pod")
    # When it creates a pod, a kubelet starts it, and the client deletes it while a watch runs
    created = pods.create(body=POD, namespace=NS)
    assert [p.metadata.name for p in pods.get(namespace=NS).items] == ["agent-1"]

    def start_then_delete() -> None:
        kube.set_phase(NS, "agent-1", "Running")
        pods.delete(name="agent-1", namespace=NS)

    threading.Timer(0.2, start_then_delete).start()
    events = [
        (e["type"], e["object"].status.phase, int(e["object"].metadata.resourceVersion))
        for e in pods.watch(namespace=NS, timeout=1)
    ]
    # Then the watch saw the pod as it was (ADDED), its start and its deletion, versions rising
    assert [(kind, phase) for kind, phase, _ in events] == [
        ("ADDED", "Pending"),
        ("MODIFIED", "Running"),
        ("DELETED", "Running"),
    ]
    assert events[0][2] == int(created.metadata.resourceVersion) < events[1][2] < events[2][2]
    assert kube.pod(NS, "agent-1") is None


def test_kubectl_gets_the_pods_as_json(kube: KubeApiStandIn, tmp_path: Path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (apt-get install -y kubernetes-client)")
    kube.add_pod(NS, POD)
    kube.set_phase(NS, "agent-1", "Running")
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps(kube.kubeconfig(NS)), encoding="utf-8")
    base = [kubectl, "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "cache"), "get", "pods", "-n", NS]

    as_json = subprocess.run([*base, "-o", "json"], check=False, capture_output=True, text=True, timeout=30)
    as_table = subprocess.run(base, check=False, capture_output=True, text=True, timeout=30)

    assert (as_json.returncode, as_table.returncode) == (0, 0), as_json.stderr + as_table.stderr

    assert [(p["metadata"]["name"], p["status"]["phase"]) for p in json.loads(as_json.stdout)["items"]] == [
        ("agent-1", "Running")
    ]
    assert as_table.stdout.split()[:8] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "agent-1", "1/1", "Running"]


def test_kubectl_gets_the_pods_of_every_namespace(kube: KubeApiStandIn, tmp_path: Path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (apt-get install -y kubernetes-client)")
    # Given a running pod in the agents namespace and a pending one in another
    kube.add_pod(NS, POD)
    kube.set_phase(NS, "agent-1", "Running")
    kube.add_pod("ops", {**POD, "metadata": {"name": "ops-1"}})
    config = tmp_path / "kubeconfig"
    config.write_text(json.dumps(kube.kubeconfig(NS)), encoding="utf-8")
    base = [kubectl, "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "cache"), "get", "pods", "-A"]

    # When kubectl gets the pods of every namespace, as a table and as JSON
    as_table = subprocess.run(base, check=False, capture_output=True, text=True, timeout=30)
    as_json = subprocess.run([*base, "-o", "json"], check=False, capture_output=True, text=True, timeout=30)

    # Then both answer, the table with a NAMESPACE column
    assert (as_table.returncode, as_json.returncode) == (0, 0), as_table.stderr + as_json.stderr
    rows = [line.split()[:4] for line in as_table.stdout.splitlines()]
    assert rows == [
        ["NAMESPACE", "NAME", "READY", "STATUS"],
        [NS, "agent-1", "1/1", "Running"],
        ["ops", "ops-1", "0/1", "Pending"],
    ]
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in json.loads(as_json.stdout)["items"]] == [
        (NS, "agent-1"),
        ("ops", "ops-1"),
    ]
