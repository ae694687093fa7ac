"""Pools as files: `podslots pools apply` against `make local`'s real server, and what the CLI
reads and prints around it (YAML or JSON files, `-o json|yaml|wide`, `--version`, the hint for a
local stack without credentials).

Writes are counted from the server's own request log (one line per request it answered).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import LocalApi, Scripted
from pool_schema import SHIPPED, generated

from podslots_client import cli
from podslots_client.pool_settings import normalised

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "pools"


def podslots(local_api: LocalApi, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = cli.main([*argv, "--url", local_api.url, "--no-sign"], env={}, out=out)
    return code, out.getvalue()


def writes(capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The PUTs and DELETEs the server answered since the last look (its log: `PUT /v1/pools/x -> 201`)."""
    logged = capsys.readouterr().out.splitlines()
    return [" ".join(line.split()[:2]) for line in logged if line.startswith(("PUT /v1/pools", "DELETE /v1/pools"))]


def pool_file(path: Path, *declarations: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(declarations), encoding="utf-8")
    return path


def tf(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "settings": {"pod_template": {"image": "tf-agent:1.9"}, **settings}}


# ---- apply ------------------------------------------------------------------------------------


def test_apply_of_a_directory_creates_its_pools_and_a_second_apply_changes_nothing(
    local_api: LocalApi, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the example directory: one file of one pool, one of two (YAML documents)
    # When it is applied, then applied again
    code, first = podslots(local_api, "pools", "apply", "-f", str(EXAMPLES))
    created = writes(capsys)
    again_code, again = podslots(local_api, "pools", "apply", "-f", str(EXAMPLES))

    # Then the first apply PUT each pool once, in the files' order, saying where each came from
    assert code == 0, first
    assert created == ["PUT /v1/pools/ci-plan", "PUT /v1/pools/ci-sandbox", "PUT /v1/pools/terraform"]
    assert f"pool ci-sandbox ({EXAMPLES / 'ci.yaml'}, document 2): created\n" in first
    assert '  + pod_template.image: "hashicorp/terraform-agent:1.9"\n' in first
    assert first.splitlines()[-1] == "3 created"
    # And the API stores each file's settings with the defaults filled in
    stored = local_api.pools().get("terraform").settings
    assert stored["max_pods"] == 10
    assert stored["scale_up_utilization"] == 0.8
    # And the second apply wrote nothing and said so
    assert again_code == 0
    assert writes(capsys) == []
    assert "pool terraform" in again
    assert "unchanged" in again
    assert "nothing to change: 3 unchanged" in again.splitlines()


def test_a_changed_field_is_one_put_showing_what_changes_and_a_field_taken_out_goes_back_to_its_default(
    local_api: LocalApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given two applied pools, one with a scale-down delay and an env variable
    env = {"PODSLOTS_HELD_TASKS_DIR": "/held"}
    spec = tf("edit", max_pods=4, scale_down_delay_s=600, pod_template={"image": "tf-agent:1.9", "env": env})
    file = pool_file(tmp_path / "pools.yaml", spec, tf("edit-other"))
    assert podslots(local_api, "pools", "apply", "-f", str(file))[0] == 0
    writes(capsys)

    # When one pool's file raises max_pods, drops the delay and adds an env variable
    spec["settings"]["max_pods"] = 6
    del spec["settings"]["scale_down_delay_s"]
    spec["settings"]["pod_template"]["env"]["TF_LOG"] = "info"
    pool_file(file, spec, tf("edit-other"))
    code, said = podslots(local_api, "pools", "apply", "-f", str(file))

    # Then only that pool is PUT, and each difference is shown from the stored value to the file's
    assert code == 0
    assert writes(capsys) == ["PUT /v1/pools/edit"]
    assert said.splitlines()[:4] == [
        f"pool edit ({file}, document 1): changed",
        "  ~ max_pods: 4 -> 6",
        '  + pod_template.env.TF_LOG: "info"',
        "  ~ scale_down_delay_s: 600 -> 300",
    ]
    assert f"pool edit-other ({file}, document 2): unchanged" in said
    stored = local_api.pools().get("edit").settings
    assert (stored["max_pods"], stored["scale_down_delay_s"]) == (6, 300)
    assert stored["pod_template"]["env"]["TF_LOG"] == "info"


def test_a_dry_run_shows_what_would_change_and_writes_nothing(
    local_api: LocalApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given one applied pool
    file = pool_file(tmp_path / "dry.yaml", tf("dry-old", max_pods=3))
    assert podslots(local_api, "pools", "apply", "-f", str(file))[0] == 0
    writes(capsys)

    # When a file that changes it and adds another is applied with --dry-run, as text and as JSON
    pool_file(file, tf("dry-old", max_pods=5), tf("dry-new"))
    code, said = podslots(local_api, "pools", "apply", "-f", str(file), "--dry-run")
    _, as_json = podslots(local_api, "pools", "apply", "-f", str(file), "--dry-run", "-o", "json")

    # Then it says what it would do, and nothing was written
    assert code == 0
    assert writes(capsys) == []
    assert f"pool dry-old ({file}, document 1): would change\n  ~ max_pods: 3 -> 5\n" in said
    assert f"pool dry-new ({file}, document 2): would be created\n" in said
    assert "dry run, nothing written: 1 to change, 1 to create" in said.splitlines()
    plan = json.loads(as_json)
    assert plan["dry_run"] is True
    assert [(p["pool"], p["action"], p["done"]) for p in plan["pools"]] == [
        ("dry-old", "change", False),
        ("dry-new", "create", False),
    ]
    assert plan["pools"][0]["changes"] == [{"field": "max_pods", "from": 3, "to": 5}]
    assert local_api.pools().get("dry-old").settings["max_pods"] == 3
    assert "dry-new" not in local_api.pools().names()


def test_pools_no_file_declares_are_deleted_only_with_prune(
    local_api: LocalApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a pool applied from a file, and a stray pool no file declares
    file = pool_file(tmp_path / "kept.yaml", tf("prune-kept"))
    local_api.pools().put("prune-stray", {"pod_template": {"image": "tf-agent:1.9"}})
    writes(capsys)

    # When the file is applied without --prune, then with --dry-run --prune, then with --prune
    _, plain = podslots(local_api, "pools", "apply", "-f", str(file))
    plain_writes = writes(capsys)
    _, dry = podslots(local_api, "pools", "apply", "-f", str(file), "--dry-run", "--prune")
    dry_writes = writes(capsys)
    code, pruned = podslots(local_api, "pools", "apply", "-f", str(file), "--prune")
    pruned_writes = writes(capsys)
    _, again = podslots(local_api, "pools", "apply", "-f", str(file), "--prune")

    # Then without --prune the stray is kept, and named as kept
    assert plain_writes == ["PUT /v1/pools/prune-kept"]
    assert "prune-stray" in plain.splitlines()[-1]
    assert "--prune deletes them" in plain
    # And the dry run lists it and deletes nothing
    assert "pool prune-stray: would be deleted" in dry.splitlines()
    assert dry_writes == []
    # And --prune deletes it (and only what no file declares)
    assert code == 0
    assert "DELETE /v1/pools/prune-stray" in pruned_writes
    assert "DELETE /v1/pools/prune-kept" not in pruned_writes
    assert "pool prune-stray: deleting (0 pods to drain)" in pruned.splitlines()
    assert local_api.pools().get("prune-stray").deleting
    # And an apply while it drains leaves it to finish
    assert "pool prune-stray: already being deleted" in again.splitlines()


def test_a_pool_the_api_refuses_is_reported_with_its_file_and_fields_and_the_others_apply(
    local_api: LocalApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a file of a good pool and one the API refuses (slots out of range, an unknown field)
    bad = tf("refused", slots_per_pod=99, replicas=2)
    file = pool_file(tmp_path / "mixed.yaml", tf("accepted"), bad)

    # When it is applied
    code, said = podslots(local_api, "pools", "apply", "-f", str(file))

    # Then the refused pool names its file and each field, the good one is created, and the exit
    # status says a pool failed
    assert code == 1
    lines = said.splitlines()
    assert f"pool accepted ({file}, document 1): created" in lines
    head = lines.index(f"pool refused ({file}, document 2): not created: 422 invalid_request")
    problems = lines[head + 1 : head + 3]
    assert sorted(p.split(":")[0] for p in problems) == ["  ! replicas", "  ! slots_per_pod"]
    assert "1 created, 1 failed" in lines
    assert writes(capsys) == ["PUT /v1/pools/accepted", "PUT /v1/pools/refused"]
    assert "refused" not in local_api.pools().names()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("name: a\nsettings: {max_pods: 4\n", "not YAML: line 3, column 1"),
        ("settings: {max_pods: 4}\n", "name: the pool's name is required"),
        ("name: a\nreplicas: 2\nsettings: {}\n", "replicas: not a field of a pool"),
        ("name: a\nsettings: [1, 2]\n", "settings: pool a's settings document is required, a mapping"),
        ("name: a\nsettings: {max_pods: 4, max_pods: 5}\n", "the key 'max_pods' appears twice"),
        ("name: a\nsettings: {pod_template: {image: x}}\n---\nname: a\nsettings: {}\n", "pool a is declared twice"),
    ],
    ids=["not-yaml", "no-name", "unknown-field", "settings-not-a-mapping", "duplicate-key", "pool-twice"],
)
def test_a_bad_pool_file_is_refused_before_anything_is_sent_naming_the_file_and_field(
    local_api: LocalApi, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        podslots(local_api, "pools", "apply", "-f", str(tmp_path))
    captured = capsys.readouterr()
    assert exited.value.code == 2
    assert str(file) in captured.err
    assert said in captured.err
    assert "/v1/pools" not in captured.out  # not even a read


def test_apply_reads_json_and_stdin_and_put_reads_yaml(
    local_api: LocalApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a JSON file of a list of pools, a YAML pool on stdin, and a YAML settings file
    listed = tmp_path / "pools.json"
    listed.write_text(json.dumps([tf("json-a"), tf("json-b", max_pods=2)]), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", io.StringIO(yaml.safe_dump(tf("stdin-a"))))
    settings = tmp_path / "settings.yaml"
    settings.write_text("max_pods: 7\npod_template:\n  image: tf-agent:1.9\n", encoding="utf-8")

    # When they are applied and put
    code, said = podslots(local_api, "pools", "apply", "-f", str(listed), "-f", "-")
    put = podslots(local_api, "pools", "put", "yaml-put", "-f", str(settings))

    # Then every pool is there as its file says
    assert code == 0, said
    assert f"pool json-b ({listed}, item 2): created" in said.splitlines()
    assert "pool stdin-a (-): created" in said.splitlines()
    assert put == (0, "pool yaml-put created\n")
    assert local_api.pools().get("json-b").settings["max_pods"] == 2
    assert local_api.pools().get("yaml-put").settings["max_pods"] == 7


# ---- reading: -o json|yaml|wide ---------------------------------------------------------------


def test_get_and_list_print_yaml_and_wide_tables(local_api: LocalApi) -> None:
    # Given a pool with a registered pod
    pod, _ = local_api.ready_pod("shown-wide")

    # When it is read as YAML, as JSON, and wide; and the pools listed wide
    as_yaml = yaml.safe_load(podslots(local_api, "pools", "get", "shown-wide", "-o", "yaml")[1])
    as_json = json.loads(podslots(local_api, "pools", "get", "shown-wide", "-o", "json")[1])
    wide = podslots(local_api, "pools", "get", "shown-wide", "-o", "wide")[1]
    listed = podslots(local_api, "pools", "list", "-o", "wide")[1].splitlines()
    names = yaml.safe_load(podslots(local_api, "pools", "list", "-o", "yaml")[1])

    # Then YAML is the API's answer as JSON is, and the wide views carry more columns
    assert as_yaml == as_json
    assert as_yaml["pods"][0]["pod"] == pod
    settings = {line.split()[0]: line.split()[1] for line in wide.split("\n\n")[1].splitlines()}
    assert (settings["namespace"], settings["pod_template.image"]) == ('"agents"', '"tf-agent:1.9"')
    assert any(line.split()[:6] == ["POD", "STATE", "BUSY", "IP", "HEARTBEAT", "HELD"] for line in wide.splitlines())
    assert listed[0].split() == ["POOL", "MODE", "PODS", "SLOTS", "READY", "RUN/RES/IDLE", "REVISION", "IMAGE"]
    row = next(line.split() for line in listed if line.startswith("shown-wide "))
    revision = local_api.pools().get("shown-wide").revision
    assert row == ["shown-wide", "active", "0-10", "3", "1/1", "0/0/3", str(revision), "tf-agent:1.9"]
    assert "shown-wide" in names["pools"]


# ---- the command itself -----------------------------------------------------------------------


def test_version_is_the_client_packages(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"], env={})
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"podslots {version('podslots-client')}\n"


def test_without_credentials_the_error_suggests_no_sign_for_a_local_stack(tmp_path: Path) -> None:
    # Given no AWS credentials anywhere botocore looks (no instance metadata either)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_REGION="us-east-1",
    )
    # When the CLI is run against a local URL without --no-sign
    command = [sys.executable, "-m", "podslots_client", "pools", "list", "--url", "http://127.0.0.1:9/v1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, env=env)

    # Then it fails before sending anything, and says what to add
    assert done.returncode == 1
    assert "cannot_sign: no AWS credentials" in done.stderr
    assert "add --no-sign" in done.stderr


# ---- what the comparison rests on ---------------------------------------------------------------


def test_the_settings_schema_the_client_ships_is_the_servers() -> None:
    assert SHIPPED.read_text(encoding="utf-8") == generated(), (
        "stale: run .venv/bin/python clients/tests/pool_schema.py"
    )


@pytest.mark.parametrize(
    "document",
    [
        {"pod_template": {"image": "x"}},
        {
            "namespace": "agents",
            "min_pods": 1,
            "mode": "observe",
            "adopt_selector": {"app": "agents"},
            "pod_template": {
                "image": "x",
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                "security_context": {"run_as_user": 1000, "capabilities_add": ["NET_BIND_SERVICE"]},
                "resources": {"limits": {"memory": "1Gi"}},
                "labels": {"team": "infra"},
            },
        },
        *(pool["settings"] for path in sorted(EXAMPLES.iterdir()) for pool in yaml.safe_load_all(path.read_text())),
    ],
)
def test_a_files_settings_normalised_are_what_the_server_stores(document: dict[str, Any]) -> None:
    from podslots.settings import PoolSettings

    assert normalised(document) == PoolSettings.model_validate(document).model_dump(mode="json")


def test_a_pool_being_deleted_is_refused_and_the_others_apply(local_api: LocalApi, tmp_path: Path) -> None:
    # Given a pool being deleted (its drain waits for autoscale's LIST)
    local_api.pools().put("draining", {"pod_template": {"image": "tf-agent:1.9"}})
    local_api.pools().delete("draining")
    file = pool_file(tmp_path / "again.yaml", tf("draining"), tf("beside-draining"))

    # When a file declaring it again is applied
    code, said = podslots(local_api, "pools", "apply", "-f", str(file))

    # Then it is refused with the reason, and the other pool is created
    assert code == 1
    assert (
        f"pool draining ({file}, document 1): refused: 409 conflict: "
        "pool draining is being deleted: apply again once it is gone"
    ) in said.splitlines()
    assert f"pool beside-draining ({file}, document 2): created" in said.splitlines()


def test_a_failure_not_about_a_pool_ends_the_run_and_the_rest_say_not_attempted(
    scripted: Scripted, tmp_path: Path
) -> None:
    # Given two new pools, and an API whose first write is forbidden (a role without PUT)
    file = pool_file(tmp_path / "two.yaml", tf("one"), tf("two"))
    missing: tuple[int, dict[str, str], dict[str, str]] = (
        404,
        {"error": "not_found", "message": "pool does not exist"},
        {},
    )
    scripted.script(missing, missing, (200, {"pools": []}, {}), (403, {"message": "Forbidden"}, {}))

    # When they are applied
    out = io.StringIO()
    code = cli.main(["pools", "apply", "-f", str(file), "--url", scripted.url, "--no-sign"], env={}, out=out)

    # Then the first is forbidden, the second never sent, and the run failed
    assert code == 1
    assert [(r.method, r.path) for r in scripted.received] == [
        ("GET", "/v1/pools/one"),
        ("GET", "/v1/pools/two"),
        ("GET", "/v1/pools"),
        ("PUT", "/v1/pools/one"),
    ]
    assert out.getvalue().splitlines() == [
        f"pool one ({file}, document 1): not created: 403 forbidden: Forbidden",
        f"pool two ({file}, document 2): not created: not attempted: an earlier call failed (403 forbidden: Forbidden)",
        "2 failed",
    ]
