"""`make invoke` (local/invoke.py): every file of events/ through the function the template wires it
to, in the world local/seed.py makes, gets the answer that event gets there.

The runs go through `main` in this process (each a fresh embedded stack, under a second once the
first has loaded the handlers). One goes through `python -m local.invoke` in a process of its own,
as `make invoke` runs it: only there do the logs carry the function's own service name, since
podslots' logger is made once per process (here, with the tests' environment).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import local.template as template_module
from local.apigw import EVENTS, load_event, proxy_event
from local.invoke import main
from local.routes import route_for
from local.seed import POD_IP
from local.stack import ENV, function_environment, matches, queue_mappings, queue_name, rules, schedules
from local.template import ROOT, function_ids, resource, template


@dataclass
class Run:
    code: int
    answer: Any  # what the function returned (an API answer's body decoded)
    status: int | None  # an API answer's statusCode
    logs: list[str]  # stderr, line by line


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) <= 1, out  # stdout holds the answer alone
    answer = json.loads(lines[0]) if lines else None
    status = None
    if isinstance(answer, dict) and "statusCode" in answer:
        status, answer = answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None
    return Run(code, answer, status, err.splitlines())


def log_messages(run: Run) -> list[str]:
    return [json.loads(line)["message"] for line in run.logs if line.startswith("{")]


def reported(run: Run, function: str) -> bool:
    """The last line is sam's REPORT line, naming the function."""
    return run.logs[-1].startswith("REPORT RequestId: ") and f"\tFunction: {function}\t" in run.logs[-1]


def seeded_pod(run: Run) -> str:
    return run.logs[0].split(", pod ")[1].split(" ")[0]


def on_the_seeded_pod(run: Run) -> None:
    assert run.answer["pod"] == seeded_pod(run)
    assert "slot allocated" in log_messages(run)  # the function's own INFO lines show


def the_seeded_pod_ready_and_idle(run: Run) -> None:
    assert [(p["pod"], p["state"], p["busy"]) for p in run.answer["pods"]] == [(seeded_pod(run), "ready", 0)]


def resumed_on_the_seeded_pod(run: Run) -> None:
    assert run.answer["pod"] == seeded_pod(run)
    assert "apply resumed on its reserved slot" in log_messages(run)


def reserved(run: Run) -> None:
    assert run.answer["reserved_until"] is not None
    assert "slot reserved for approval" in log_messages(run)


def the_adoption_recorded(run: Run) -> None:
    assert [e["kind"] for e in run.answer["events"]] == ["PoolFigures"]  # what reconcile recorded on adopting


def nothing(run: Run) -> None:
    pass


# file -> (function, status, body fields, a further check)
API: dict[str, tuple[str, int, dict[str, Any], Callable[[Run], None]]] = {
    "allocate.json": (
        "AllocateFunction",
        201,
        {"task_id": "run-42", "slot": "s0", "pod_ip": POD_IP},
        on_the_seeded_pod,
    ),
    "allocate_resume.json": (  # the approval: the seeded plan waits on the pod's reserved s0
        "AllocateFunction",
        200,
        {"task_id": "run-42", "slot": "s0", "outcome": "resumed", "placed_anew": False},
        resumed_on_the_seeded_pod,
    ),
    "heartbeat.json": (
        "HeartbeatFunction",
        200,
        {"pod": "terraform-7f3k2", "state": "ready", "pod_ip": "10.0.12.34", "busy": 0},
        nothing,
    ),
    "pool_get.json": ("PoolsFunction", 200, {"pool": "terraform", "deleting": False}, the_seeded_pod_ready_and_idle),
    "pool_put.json": ("PoolsFunction", 200, {"pool": "terraform"}, nothing),  # 200: it replaces the seeded settings
    "pools_list.json": ("PoolsFunction", 200, {"pools": ["terraform"]}, nothing),
    "pool_delete.json": ("PoolsFunction", 202, {"status": "deleting", "pods_remaining": 1}, nothing),
    "pool_events.json": ("PoolsFunction", 200, {"pool": "terraform"}, the_adoption_recorded),
    "status_apply_pending.json": ("TaskStatusFunction", 200, {"status": "apply_pending", "changed": True}, reserved),
    "status_running.json": ("TaskStatusFunction", 200, {"status": "running", "changed": False}, nothing),  # it runs
    "status_success.json": ("TaskStatusFunction", 200, {"status": "success", "changed": True}, nothing),
    "task_get.json": ("TaskStatusFunction", 200, {"task_id": "run-42", "status": "running"}, nothing),
    "pod_cordon.json": (
        "PoolsFunction",
        200,
        {"pod": "terraform-7f3k2", "cordoned": "operator", "changed": True},
        nothing,
    ),
    # the seeded pod is not cordoned: nothing to take back
    "pod_uncordon.json": (
        "PoolsFunction",
        200,
        {"pod": "terraform-7f3k2", "cordoned": None, "changed": False},
        nothing,
    ),
}


def figures_and_nothing_to_repair(answer: Any) -> None:
    ((report,),) = answer.values()
    assert report.keys() == {"pool", "figures"}  # the seeded world is consistent: nothing to repair
    assert (report["pool"], report["figures"]["pods_ready"], report["figures"]["slots_idle"]) == ("terraform", 1, 3)


def steady(answer: Any) -> None:
    # one idle pod, no demand, min_pods 0: it may go, but not before the scale-down delay
    ((report,),) = answer.values()
    assert report == {"pool": "terraform", "direction": "none", "before": 1, "after": 1, "reason": "steady"}


def none_expired(answer: Any) -> None:
    assert answer == {"pools": [{"pool": "terraform", "expired": []}]}


def one_autoscale_message(answer: Any) -> None:
    assert answer == {"step": "autoscale", "trigger": "event-6a7e8feb-b491-4cf7-a9f1-bf3703467718", "sent": 1}


def one_registered_reconcile(answer: Any) -> None:
    # deduplicated per pool and 10 s window of the event's time (2026-11-27T22:00:05Z)
    assert answer == {"step": "reconcile", "trigger": "registered-179581680", "sent": 1}


def one_reconcile_message(answer: Any) -> None:
    assert (answer["step"], answer["sent"]) == ("reconcile", 1)  # the seeded pool's
    assert answer["trigger"].startswith("minute-")


def no_failures(answer: Any) -> None:
    assert answer == {"batchItemFailures": []}  # the message's pool ran: SQS deletes it


# file -> (function, its report in the seeded world)
SCHEDULED: dict[str, tuple[str, Callable[[Any], None]]] = {
    "reconcile_schedule.json": ("ReconcileFunction", figures_and_nothing_to_repair),
    "autoscale_schedule.json": ("AutoscaleFunction", steady),
    "capacity_shortage.json": ("DispatchFunction", one_autoscale_message),  # that pool only
    "pod_registered.json": ("DispatchFunction", one_registered_reconcile),  # that pool's reconcile
    "expire_schedule.json": ("ExpireFunction", none_expired),
    "dispatch_schedule.json": ("DispatchFunction", one_reconcile_message),  # the reconcile schedule's Input
    # a fan-out batch as the step's SQS event source mapping delivers it (one message, the pool)
    "reconcile_sqs.json": ("ReconcileFunction", no_failures),
    "autoscale_sqs.json": ("AutoscaleFunction", no_failures),
    "expire_sqs.json": ("ExpireFunction", no_failures),
}


def test_every_events_file_is_covered_with_the_function_the_template_wires_to_it():
    assert {p.name for p in EVENTS.glob("*.json")} == API.keys() | SCHEDULED.keys()
    for name, (function, *_) in API.items():
        assert route_for(load_event(name)).function == function, name
    for name, (function, _) in SCHEDULED.items():
        event = load_event(name)
        # a direct run of every pool (`{}`), a batch of the function's queue, or a schedule or rule's event
        direct = event == {} and any(m.function == function for m in queue_mappings())
        batch = "Records" in event and any(
            m.function == function and r["eventSourceARN"].endswith(":" + queue_name(m.queue))
            for m in queue_mappings()
            for r in event["Records"]
        )
        assert (
            direct
            or batch
            or any(s.function == function and s.event == event for s in schedules())
            or any(f == function and matches(pattern, event) for f, pattern in rules())
        ), name


@pytest.mark.parametrize("name", API)
def test_an_api_event_gets_its_answer_in_the_seeded_world(name: str, capsys: pytest.CaptureFixture[str]):
    function, status, holds, check = API[name]
    run = invoke(capsys, function, f"events/{name}")
    assert (run.code, run.status) == (0, status), run.logs
    assert {k: run.answer[k] for k in holds} == holds
    check(run)
    assert run.logs[0].startswith("seeded: pool terraform (default settings), pod ")
    assert reported(run, function)
    assert "labelled pod adopted" not in log_messages(run)  # the seeding's logs are not shown


@pytest.mark.parametrize("name", SCHEDULED)
def test_a_scheduled_event_gets_its_functions_report(name: str, capsys: pytest.CaptureFixture[str]):
    function, check = SCHEDULED[name]
    run = invoke(capsys, function, f"events/{name}")
    assert run.code == 0, run.logs
    check(run.answer)
    assert reported(run, function)


def test_empty_runs_on_an_empty_world(capsys: pytest.CaptureFixture[str]):
    listed = invoke(capsys, "PoolsFunction", "events/pools_list.json", "--empty")
    assert (listed.code, listed.status, listed.answer) == (0, 200, {"pools": []})
    assert not any(line.startswith("seeded:") for line in listed.logs)
    refused = invoke(capsys, "AllocateFunction", "events/allocate.json", "--empty")
    assert (refused.code, refused.status, refused.answer["error"]) == (0, 404, "not_found")  # a 4xx is an answer


def test_a_function_that_raises_exits_1_with_the_lambda_error(capsys: pytest.CaptureFixture[str]):
    # expire parses its input as a schedule's: a CapacityShortage envelope is not one, and it raises.
    run = invoke(capsys, "ExpireFunction", "events/capacity_shortage.json", "--empty")
    assert run.code == 1
    assert run.answer["errorType"] == "ValidationError"
    assert any(line.startswith("Traceback") for line in run.logs)
    assert run.logs[-1].startswith("REPORT ")


def test_an_api_event_of_another_function_is_run_and_noted(capsys: pytest.CaptureFixture[str]):
    run = invoke(capsys, "PoolsFunction", "events/allocate.json", "--empty")
    assert (run.code, run.status) == (0, 404)  # as in a deployment: the pools function has no such route
    note = "note: template.yaml routes POST /pools/{pool}/allocations to AllocateFunction, not PoolsFunction"
    assert note in run.logs


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["NoSuchFunction", "events/allocate.json"], "unknown FUNCTION 'NoSuchFunction'"),
        (["", "events/allocate.json"], "FUNCTION is missing"),
        (["AllocateFunction", "events/nothing.json"], "no event file 'events/nothing.json'"),
        (["AllocateFunction"], "EVENT is missing"),
    ],
)
def test_a_missing_or_unknown_function_or_event_is_a_clear_error(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert says in err
    if "FUNCTION" in says:
        assert ", ".join(function_ids()) in err  # the template's functions, to pick from
    else:
        assert all(f"events/{p.name}" in err for p in EVENTS.glob("*.json"))  # the files to pick from


def test_an_event_of_a_route_the_template_lacks_is_run_on_the_world_it_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # A route that is not in the template (yet): the world still follows the event's path parameters.
    event = proxy_event("POST", "/pools/{pool}/pods/{pod}/restart", {"pool": "builds", "pod": "builds-a1b2c"})
    (tmp_path / "restart.json").write_text(json.dumps(event))
    run = invoke(capsys, "HeartbeatFunction", str(tmp_path / "restart.json"))
    assert (run.code, run.status) == (0, 404)  # the heartbeat function has no such route either
    assert run.logs[0] == f"seeded: pool builds (default settings), pod builds-a1b2c ready at {POD_IP}"
    assert run.logs[1] == "note: template.yaml has no route POST /pools/{pool}/pods/{pod}/restart"


def test_a_functions_environment_is_the_templates_with_the_stacks_values():
    globals_ = template()["Globals"]["Function"]["Environment"]["Variables"]
    for function in function_ids():
        own = resource(function)["Properties"]["Environment"]["Variables"]
        env = function_environment(function)
        assert env["POWERTOOLS_SERVICE_NAME"] == own["POWERTOOLS_SERVICE_NAME"]  # as written
        assert env["TABLE_NAME"] == ENV["TABLE_NAME"]  # a !Ref SlotTable: the local stack's table
        assert ("KUBECONFIG_SECRET" in env) == ("KUBECONFIG_SECRET" in own | globals_)  # not another's variable
        assert env["AWS_REGION"] == ENV["AWS_REGION"]  # the stack's own, which no function declares


def test_a_computed_variable_the_stack_has_no_value_for_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    changed: dict[str, Any] = copy.deepcopy(template())
    variables = changed["Resources"]["AllocateFunction"]["Properties"]["Environment"]["Variables"]
    variables["QUEUE_URL"] = {"Ref": "TaskQueue"}
    monkeypatch.setattr(template_module, "template", lambda: changed)
    monkeypatch.setattr("local.stack.template", lambda: changed)
    assert main(["AllocateFunction", "events/allocate.json"]) == 1
    assert "AllocateFunction: QUEUE_URL is computed at deploy time" in capsys.readouterr().err


def test_python_m_local_invoke_runs_the_function_in_a_process_of_its_own():
    done = subprocess.run(
        [sys.executable, "-m", "local.invoke", "AllocateFunction", "events/allocate.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["statusCode"] == 201
    logs = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [(entry["message"], entry["service"], entry["function_name"]) for entry in logs] == [
        ("slot allocated", "podslots-allocate", "AllocateFunction")  # the template's service name, at INFO
    ]


def test_make_invoke_passes_function_event_and_args():
    dry_run = subprocess.run(
        ["make", "-n", "invoke", "FUNCTION=HeartbeatFunction", "EVENT=events/heartbeat.json", "ARGS=--empty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert 'python -m local.invoke "HeartbeatFunction" "events/heartbeat.json" --empty' in dry_run.stdout
