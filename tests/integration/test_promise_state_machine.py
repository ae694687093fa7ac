"""The core promise as a Hypothesis state machine: the real handlers and steps, every DynamoDB
request open to the table's faults, two pools on one Kubernetes API stand-in.

Beside `test_store_state_machine.py` (the store and the steps, one pool, no faults), this machine
plays the world the promise lives in: the task queue (dispatch, approval by a new allocation or by
the status call, re-dispatch of a lost or expired task, ends), the agents (beats that list what
they hold, that are slow to list a new task, or that leave `held_tasks` out), the operators (a
second pool whose `adopt_selector` overlaps the first's pods or equals another pool's, a
Deployment's pods owned by a ReplicaSet, cordons and uncordons in deleting pools and during
roll-outs, template changes, pool deletes) and the scheduled steps (reconcile, autoscale, expire)
on the stand-in over real HTTP. Table faults (`local/table_faults.py`, in process) hit every
request at seeded rates: a TransactionConflict on any part of a transaction and a throttle apply
nothing, a lost answer applies and then fails.

Checked after every step, on the raw table and the cluster (and, for deletes, at the moment the
stand-in receives them):

a. no pod with a running or reserved slot (in any pool's item) is deleted;
b. an apply only ever runs on its plan's pod and slot: a task reserved on (pool, pod, slot) that
   runs again through a resume runs there; only after its reservation expired or was lost may it
   be placed anew;
c. a task is in at most one slot;
d. no slot is reserved without its task reserving it (task `apply_pending` on that pod and slot);
e. a pod is in at most one pool's items;
f. a pod owned by a controller (ownerReferences with `controller: true`) is never deleted;
g. a deleting pool has no pod open to new tasks, and no allocation lands in a deleting or
   deleted pool;
h. a pool whose settings are gone has no pod item, no lease and no labelled pod left;
i. a pod an operator cordoned before a template change, which a roll-out then saw outdated, is not
   put back as a first choice by the operator's uncordon;
j. where an allocation answers `placed_anew`, it is true exactly for a task that was lost or
   expired;
k. a slot is freed as leaked only on a beat that listed what its pod holds and left the task
   out: a beat without `held_tasks` says nothing, and frees nothing;
plus no 5xx from any handler, and the slot counts and task/slot agreement of the store machine.

Below the machine, a replay per failure drives its own rules and checks step by step (a
conflicted approval, a silent beat, an uncordon in a deleting pool or of an outdated pod,
overlapping selectors, a Deployment's pod, a deleted pool's lease, a pool DELETE through a
conflict), so each check is shown to see what it is for. The machine itself runs short in `make
unit` and long (`slow`); a DynamoDB request costs moto milliseconds, so an example of 25 steps
takes about a second.

Rules that need an API the fix adds are guarded so the machine also runs on code without it: an
approval sends `"expect": "resume"` only while the handler accepts it (a 422 naming `expect`
turns it off for the run), and `placed_anew` is checked only when the answer carries it.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from typing import Any
from unittest import mock

import boto3
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from kubernetes.config import new_client_from_config_dict
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from local.kube_api import KubeApiStandIn
from local.routes import api_routes
from local.table_faults import READS, WRITES, Fault, TableFaults, faults_in_process
from local.template import table_definition
from podslots import autoscale
from podslots.autoscale import Autoscaler
from podslots.bus import RecordingPublisher
from podslots.clock import ManualClock
from podslots.cluster import KubeGateway
from podslots.expiry import Expirer
from podslots.names import POOL_LABEL
from podslots.observability import metrics
from podslots.reconcile import Reconciler
from podslots.settings import PoolSettings, template_revision
from podslots.store import SlotStore, bind_table
from podslots.store.keys import CONFIG_SK, EVENT_PREFIX, POD_PREFIX, POOL_PREFIX, TASK_SK, pool_pk
from tests.conftest import BUS, TABLE
from tests.integration.conftest import Answer, Api

NS = "agents"
ALPHA, BETA = "alpha", "beta"
APP = {"app": "tf-agent", "team": "infra"}  # the labels of alpha's pods and of the Deployment's
# What beta adopts: the Deployment's label, the same two labels (equal to alpha's pods'), or a
# podslots label (refused with 422 where the fix is in)
LEGACY = {"app": "tf-agent", "tier": "legacy"}  # a Deployment's pods that alpha's do not look like
SELECTORS = [{"app": "tf-agent"}, dict(APP), {POOL_LABEL: ALPHA}, {"tier": "legacy"}]
SETTINGS_CHANGES = [*(f"beta adopts {i}" for i in range(len(SELECTORS))), "alpha adopts", "alpha no more", "image"]
IMAGES = ["registry.example/tf-agent:1.9", "registry.example/tf-agent:1.10"]
TASKS = {f"a{i}": ALPHA for i in range(4)} | {f"b{i}": BETA for i in range(2)}
KIND = {t: ["plan_and_apply", "plan", "plan_and_apply"][i % 3] for i, t in enumerate(TASKS)}
ENDS = ["success", "applied", "failed", "cancelled"]
RATES = {Fault.TRANSACTION_CONFLICT: 0.15, Fault.THROTTLE: 0.05, Fault.ANSWER_LOST: 0.05}
HOLDS = ("running", "reserved")


def alpha_settings(image: int, adopt: dict[str, str] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "min_pods": 1,
        "max_pods": 3,
        "slots_per_pod": 2,
        "max_surge": 1,
        "reservation_ttl_s": 3600,
        "scale_down_delay_s": 0,
        "startup_timeout_s": 300,
        "heartbeat_timeout_s": 600,
        "leak_grace_s": 300,
        "pod_template": {"image": IMAGES[image], "labels": dict(APP)},
    }
    if adopt is not None:
        document["adopt_selector"] = adopt
    return document


def beta_settings(adopt: dict[str, str]) -> dict[str, Any]:
    return {
        "min_pods": 0,
        "max_pods": 2,
        "slots_per_pod": 2,
        "reservation_ttl_s": 3600,
        "scale_down_delay_s": 0,
        "startup_timeout_s": 300,
        "heartbeat_timeout_s": 600,
        "leak_grace_s": 300,
        "pod_template": {"image": IMAGES[0]},
        "adopt_selector": adopt,
    }


# The promises checked: the letters above, "5xx" (no 5xx but 503), "422" (only a podslots label is
# refused in adopt_selector), "404" (a DELETE of a pool that is there is not a 404) and "counts".
# One set, so a run can look past a known failure.
CHECKS = set("abcdefghijk") | {"5xx", "422", "404", "counts"}


def expect(check: str, holds: bool, message: str) -> None:
    assert holds or check not in CHECKS, f"{check}: {message}"


def _placement(task: dict[str, Any]) -> tuple[str, str | None, str | None, str]:
    return (task["pool"]["S"], task.get("pod", {}).get("S"), task.get("slot", {}).get("S"), task["status"]["S"])


TABLE_DEFINITION = table_definition(TABLE)
SHARED: dict[str, Any] = {"clock": ManualClock()}  # one stand-in for every example (it takes seconds to stop)


@pytest.fixture(autouse=True, scope="module")
def cluster() -> Iterator[None]:
    """The Kubernetes API stand-in and a gateway to it, on the running example's clock."""
    with KubeApiStandIn(clock=lambda: datetime.fromtimestamp(SHARED["clock"].now(), UTC)) as kube:
        SHARED["kube"] = kube
        SHARED["gateway"] = KubeGateway(new_client_from_config_dict(kube.kubeconfig(NS)))
        yield


class PromiseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.stack.enter_context(mock_aws())
        boto3.client("dynamodb").create_table(**TABLE_DEFINITION)
        boto3.client("events").create_event_bus(Name=BUS)
        bind_table(TABLE)
        self.backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][os.environ["AWS_DEFAULT_REGION"]]
        self.clock = SHARED["clock"] = ManualClock()
        self.kube: KubeApiStandIn = SHARED["kube"]
        for pod in self.kube.pods():
            self.kube.remove(pod["metadata"]["namespace"], pod["metadata"]["name"])
        store = self.kube._store
        self.stack.enter_context(mock.patch.object(store, "delete", self._watch_delete(store.delete)))
        gateway = SHARED["gateway"]
        self.store = SlotStore()
        self.bus = RecordingPublisher()
        self.api = Api(self.clock)
        for route in api_routes():
            for attr in ("allocator", "service"):
                step = getattr(route.module(), attr, None)
                if hasattr(step, "sleep"):  # a back-off after a lost race: no real time passes here
                    self.stack.enter_context(mock.patch.object(step, "sleep", return_value=None))
                if hasattr(step, "rng"):  # its choices seeded, so a failing example replays
                    self.stack.enter_context(mock.patch.object(step, "rng", random.Random(0)))
        self.reconciler = Reconciler(self.store, lambda _: gateway, self.bus, self.clock)
        self.autoscaler = Autoscaler(self.store, lambda _: gateway, self.bus, self.clock, "https://api.example/v1")
        self.expirer = Expirer(self.store, self.bus, self.clock)
        numbered = (f"{ALPHA}-up{i}" for i in itertools.count())  # scale-up's names, numbered to replay
        self.stack.enter_context(mock.patch.object(autoscale, "new_pod_name", side_effect=lambda pool: next(numbered)))
        self.faults = TableFaults()
        self.broken: list[tuple[str, str]] = []  # what the delete watch saw break (a, f)
        self.reserved: dict[str, tuple[str, str, str]] = {}  # task -> its plan's (pool, pod, slot)
        self.agent_pool: dict[str, str] = {}  # the pool a Deployment pod's agent beats for
        self.image = 0
        self.alpha_adopts: dict[str, str] | None = None
        self.cordoned_at_change: set[tuple[str, str]] = set()  # operator-cordoned at the last change
        self.seen_by_rollout: set[tuple[str, str]] = set()  # ... and still so when autoscale then ran
        self.expect_resume = True  # the approval's `expect` option, while the handler accepts it
        # per (pool, pod): the tasks some beat that listed the pod's tasks left out (a slow agent)
        self.left_out: dict[tuple[str, str], set[str]] = {}
        self.replicas = itertools.count()

    def teardown(self) -> None:
        metrics.clear_metrics()
        self.stack.close()

    # ---- the world's views -------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock.now())

    def _items(self) -> list[dict[str, Any]]:
        """Every item, as DynamoDB JSON, from moto's own table (the test's view, no Scan, no faults).
        Looked up each time: a cancelled transaction puts back a copy of the tables."""
        return [item.to_json()["Attributes"] for item in self.backend.get_table(TABLE).all_items()]

    def _pods(self) -> list[dict[str, Any]]:
        return [i for i in self._items() if i["sk"]["S"].startswith(POD_PREFIX)]

    def _tasks(self) -> dict[str, dict[str, Any]]:
        return {i["task_id"]["S"]: i for i in self._items() if i["sk"]["S"] == TASK_SK}

    def _config(self, pool: str) -> dict[str, Any] | None:
        return next((i for i in self._items() if i["pk"]["S"] == pool_pk(pool) and i["sk"]["S"] == CONFIG_SK), None)

    def _deleting(self, pool: str) -> bool:
        config = self._config(pool)
        return config is not None and bool(config.get("deleting", {}).get("BOOL"))

    def _cluster(self) -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in self.kube.pods(NS)}

    def _watch_delete(self, delete: Callable[..., Any]) -> Callable[..., Any]:
        """The stand-in's DELETE, checked when it arrives (a, f): the table is read as it is then."""

        def checked(namespace: str, name: str, options: Any) -> Any:
            pod = self.kube.pod(namespace, name)
            wanted = (options.get("preconditions") or {}).get("uid")
            if pod is not None and wanted in (None, pod["metadata"]["uid"]):
                owners = pod["metadata"].get("ownerReferences") or []
                if any(o.get("controller") for o in owners):
                    self.broken.append(("f", f"{name}, owned by a {owners[0].get('kind')}, deleted"))
                for item in self._pods():
                    busy = [k for k, s in item["slots"]["M"].items() if s["M"]["status"]["S"] in HOLDS]
                    if item["name"]["S"] == name and busy:
                        self.broken.append(("a", f"{name} deleted while {item['pk']['S']} holds {busy}"))
            return delete(namespace, name, options)

        return checked

    def _sent(self, request: Callable[[], Answer], what: str) -> Answer:
        """No 5xx but a 503 (no capacity, or a transient fault the caller is told to retry). A
        handler that raises is a 5xx too: Lambda answers it with a 502."""
        try:
            answer = request()
        except Exception as exc:  # any escape is the finding
            answer = Answer(502, {"raised": repr(exc)})
        expect("5xx", answer.status < 500 or answer.status == 503, f"{what}: {answer.status} {answer.body}")
        return answer

    def _agents(self) -> Iterator[tuple[str, str]]:
        """Each pod in the cluster and the pool its agent beats for."""
        for name, pod in sorted(self._cluster().items()):
            pool = self.agent_pool.get(name) or (pod["metadata"].get("labels") or {}).get(POOL_LABEL)
            if pool:
                yield name, pool

    # ---- the operators -------------------------------------------------------------------------

    @initialize(seed=st.integers(0, 2**16))
    def alpha_with_faults_on(self, seed: int) -> None:
        """Pool alpha, its first pod up; from here on every table request may meet a fault."""
        self._sent(lambda: self.api.put_pool(ALPHA, alpha_settings(self.image)), "PUT alpha")
        self.autoscaler.run(ALPHA)
        self.pods_come_up()
        self.faults.chaos(RATES, seed=seed, operations=WRITES | READS)
        self.stack.enter_context(faults_in_process(self.faults))

    @rule(change=st.sampled_from(SETTINGS_CHANGES))
    def an_operator_changes_settings(self, change: str) -> None:
        """Pool beta put adopting one of SELECTORS, alpha's own adopt_selector set or removed, or
        alpha's image changed (a roll-out)."""
        if change.startswith("beta adopts"):
            self.an_operator_puts_beta_adopting(SELECTORS[int(change[-1])])
        elif change == "image":
            self.the_template_changes()
        else:
            self.an_operator_sets_alphas_adopt_selector({"app": "tf-agent"} if change == "alpha adopts" else None)

    def an_operator_puts_beta_adopting(self, adopt: dict[str, str]) -> None:
        answer = self._sent(lambda: self.api.put_pool(BETA, beta_settings(adopt)), "PUT beta")
        if answer.status == 422:
            # only a podslots label may be refused, and the answer names the field
            named = "adopt_selector" in str(answer.body)
            expect("422", any(k.startswith("podslots.io/") for k in adopt) and named, str(answer.body))

    def an_operator_sets_alphas_adopt_selector(self, adopt: dict[str, str] | None) -> None:
        answer = self._sent(lambda: self.api.put_pool(ALPHA, alpha_settings(self.image, adopt)), "PUT alpha")
        if answer.status in (200, 201):
            self.alpha_adopts = adopt

    def the_template_changes(self) -> None:
        """A new image for alpha: its pods of the other revision are outdated; autoscale rolls them."""
        answer = self._sent(lambda: self.api.put_pool(ALPHA, alpha_settings(1 - self.image, self.alpha_adopts)), "PUT")
        if answer.status in (200, 201):
            self.image = 1 - self.image
            self.cordoned_at_change = self._operator_cordoned()
            self.seen_by_rollout = set()

    @rule(pool=st.sampled_from([ALPHA, BETA]))
    def an_operator_deletes_a_pool(self, pool: str) -> None:
        there = self._config(pool) is not None
        answer = self._sent(lambda: self.api.call("DELETE", "/pools/{pool}", pool=pool), f"DELETE {pool}")
        assert answer.status in (202, 404, 409, 502, 503), answer
        # an answer says what happened: a pool that is there is never answered 404
        expect("404", answer.status != 404 or not there, f"DELETE {pool}: 404 for a pool that exists")

    @rule(data=st.data(), what=st.sampled_from(["a Deployment's pod", "a node is lost"]))
    def the_cluster_changes(self, data: st.DataObject, what: str) -> None:
        if what == "a node is lost" and self._cluster():
            self.a_node_is_lost(data)
        else:
            agent = data.draw(st.sampled_from([ALPHA, BETA]))
            self.a_deployment_brings_a_pod(agent, data.draw(st.sampled_from([dict(APP), dict(LEGACY)])))

    def a_deployment_brings_a_pod(self, agent: str, labels: dict[str, str]) -> None:
        """A pod of a Deployment (owned by its ReplicaSet), running, its agent set up for `agent`."""
        name = f"tf-agent-5d9-{next(self.replicas)}"
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "tf-agent-5d9", "uid": "rs-uid"}
        self.kube.add_pod(
            NS,
            {
                "metadata": {"name": name, "labels": labels, "ownerReferences": [{**owner, "controller": True}]},
                "spec": {"containers": [{"name": "agent", "image": IMAGES[0]}]},
            },
        )
        self.kube.set_phase(NS, name, "Running")
        self.kube.set_pod_ip(NS, name, "10.1.0.9")
        self.agent_pool[name] = agent

    @rule(data=st.data(), take_back=st.booleans())
    def an_operator_cordons_or_uncordons(self, data: st.DataObject, take_back: bool) -> None:
        if take_back:
            self.an_operator_uncordons_a_pod(data)
        else:
            self.an_operator_cordons_a_pod(data)

    def an_operator_cordons_a_pod(self, data: st.DataObject) -> None:
        items = sorted((p["pk"]["S"].removeprefix(POOL_PREFIX), p["name"]["S"]) for p in self._pods())
        if items:
            self.cordon(*data.draw(st.sampled_from(items)))

    def an_operator_uncordons_a_pod(self, data: st.DataObject) -> None:
        items = sorted((p["pk"]["S"].removeprefix(POOL_PREFIX), p["name"]["S"]) for p in self._pods())
        if items:
            self.uncordon(*data.draw(st.sampled_from(items)))

    def cordon(self, pool: str, pod: str) -> None:
        self._sent(lambda: self.api.call("POST", "/pools/{pool}/pods/{pod}/cordon", pool=pool, pod=pod), "cordon")

    def uncordon(self, pool: str, pod: str) -> None:
        before = self._item(pool, pod)
        current = self._revision(pool)
        answer = self._sent(
            lambda: self.api.call("DELETE", "/pools/{pool}/pods/{pod}/cordon", pool=pool, pod=pod), "uncordon"
        )
        after = self._item(pool, pod)
        outdated = before is not None and current is not None and before.get("revision", {}).get("S") != current
        changed = answer.status == 200 and answer.body.get("changed") is not False
        if changed and after is not None and outdated and (pool, pod) in self.seen_by_rollout:
            # i: a pod cordoned before a template change, seen outdated by the roll-out, is not put
            # back as a first choice by the operator's uncordon
            reopened = after.get("open_pool", {}).get("S") == pool
            expect("i", not reopened, f"outdated {pod} of {pool} reopened as a first choice")

    def _operator_cordoned(self) -> set[tuple[str, str]]:
        """The pods an operator cordoned (the reason a string, or a set or list of reasons)."""
        found = set()
        for pod in self._pods():
            raw = pod.get("cordoned") or pod.get("cordons") or {}
            reasons = raw.get("SS") or [r.get("S") for r in raw.get("L", [])] or [raw.get("S")]
            if "operator" in reasons:
                found.add((pod["pk"]["S"].removeprefix(POOL_PREFIX), pod["name"]["S"]))
        return found

    def _item(self, pool: str, pod: str) -> dict[str, Any] | None:
        return next((p for p in self._pods() if p["pk"]["S"] == pool_pk(pool) and p["name"]["S"] == pod), None)

    def _revision(self, pool: str) -> str | None:
        if pool != ALPHA or self._config(pool) is None:
            return None
        return template_revision(PoolSettings.model_validate(alpha_settings(self.image, self.alpha_adopts)))

    # ---- the task queue ------------------------------------------------------------------------

    @rule(task=st.sampled_from(sorted(TASKS)))
    def the_queue_dispatches(self, task: str) -> None:
        """A first dispatch, a repeat, a re-dispatch of a lost or expired task, or (for a task that
        waits for approval) the approval: the apply asks for its slot again."""
        pool = TASKS[task]
        before = self._tasks().get(task)
        taking = self._config(pool) is not None and not self._deleting(pool)
        body: dict[str, Any] = {"task_id": task, "task_type": KIND[task]}
        approval = before is not None and before["status"]["S"] == "apply_pending"
        if approval and self.expect_resume:
            body["expect"] = "resume"
        answer = self._allocate(pool, body)
        if answer.status == 201:
            # g: never into a pool that is deleting or gone
            expect("g", taking, f"{task} placed in {pool}, deleting or deleted")
        if before is not None and approval:
            self._resumed(task, _placement(before)[:3], answer)
        elif answer.status == 201 and "placed_anew" in answer.body:
            anew = before is not None and before["status"]["S"] in ("lost", "expired")
            expect("j", answer.body["placed_anew"] is anew, f"{task} was {before and before['status']}: {answer.body}")

    @precondition(lambda self: bool(self._in("apply_pending")))
    @rule(data=st.data())
    def the_approval_comes(self, data: st.DataObject) -> None:
        """The queue dispatches a plan waiting for approval again: its apply."""
        self.the_queue_dispatches(data.draw(st.sampled_from(self._in("apply_pending"))))

    def _allocate(self, pool: str, body: dict[str, Any]) -> Answer:
        answer = self._sent(lambda: self.api.call("POST", "/pools/{pool}/allocations", body, pool=pool), "allocate")
        if answer.status == 422 and "expect" in body and "expect" in str(answer.body):
            self.expect_resume = False  # code without the option: approve the plain way
            answer = self._allocate(pool, {k: v for k, v in body.items() if k != "expect"})
        return answer

    def _resumed(self, task: str, plan: tuple[str, str | None, str | None], answer: Answer) -> None:
        """b: an approval answers the plan's own slot, or an error; never a new slot."""
        if answer.status in (200, 201):
            got = (answer.body["pool"], answer.body["pod"], answer.body["slot"])
            expect("b", answer.status == 200 and got == plan, f"{task}: apply on {got} ({answer.status}), plan {plan}")

    def _in(self, *statuses: str) -> list[str]:
        return sorted(t for t, i in self._tasks().items() if i["status"]["S"] in statuses)

    @precondition(lambda self: bool(self._tasks()))
    @rule(data=st.data())
    def a_plan_waits_for_approval(self, data: st.DataObject) -> None:
        """Mostly a running plan_and_apply (any task now and then: the others answer 409)."""
        plans = [t for t in self._in("running") if KIND[t] == "plan_and_apply"]
        task = data.draw(st.sampled_from(plans or sorted(self._tasks())))
        answer = self._sent(lambda: self.api.status(task, "apply_pending"), "apply_pending")
        item = self._tasks()[task]
        if answer.status == 200 and item["status"]["S"] == "apply_pending":
            self.reserved[task] = (item["pool"]["S"], item["pod"]["S"], item["slot"]["S"])

    @precondition(lambda self: bool(self._tasks()))
    @rule(data=st.data())
    def an_approval_through_the_status_call(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(self._in("apply_pending") or sorted(self._tasks())))
        before = self._tasks()[task]
        answer = self._sent(lambda: self.api.status(task, "running"), "running")
        if before["status"]["S"] == "apply_pending" and answer.status == 200:
            # b: the resumed apply runs on its plan's slot
            got, plan = _placement(self._tasks()[task])[:3], _placement(before)[:3]
            expect("b", got == plan, f"{task}: apply on {got}, plan on {plan}")

    @precondition(lambda self: bool(self._tasks()))
    @rule(data=st.data(), end=st.sampled_from(ENDS))
    def a_task_ends(self, data: st.DataObject, end: str) -> None:
        task = data.draw(st.sampled_from(sorted(self._tasks())))
        self._sent(lambda: self.api.status(task, end), end)

    # ---- the agents and the cluster ------------------------------------------------------------

    @rule(data=st.data(), how=st.sampled_from(["honest", "silent", "slow"]))
    def an_agent_beats(self, data: st.DataObject, how: str) -> None:
        """The agent lists what its pod holds (honest), leaves `held_tasks` out (silent: it could
        not read its list), or has not yet written its newest task down (slow)."""
        agents = list(self._agents())
        if not agents:
            return
        pod, pool = data.draw(st.sampled_from(agents))
        holds = sorted(
            t
            for t, i in self._tasks().items()
            if i.get("pod", {}).get("S") == pod and i["status"]["S"] in ("running", "apply_pending")
        )
        ip = self._cluster().get(pod, {}).get("status", {}).get("podIP")
        body: dict[str, Any] = {} if ip is None else {"pod_ip": ip}
        if how == "honest":
            body["held_tasks"] = holds
        elif how == "slow":
            body["held_tasks"] = holds[:-1]
        path = "/pools/{pool}/pods/{pod}/heartbeat"
        if "held_tasks" in body:  # even one answered 503 may have been written
            self.left_out.setdefault((pool, pod), set()).update(set(holds) - set(body["held_tasks"]))
        self._sent(lambda: self.api.call("POST", path, body, pool=pool, pod=pod), "beat")

    @rule()
    def pods_come_up(self) -> None:
        """The pods autoscale created start running; each agent sends its first beat."""
        for name, pod in self._cluster().items():
            if pod.get("status", {}).get("phase") == "Pending":
                self.kube.set_phase(NS, name, "Running")
                self.kube.set_pod_ip(NS, name, "10.1.0.7")
                pool = (pod["metadata"].get("labels") or {}).get(POOL_LABEL, ALPHA)
                body = {"held_tasks": [], "pod_ip": "10.1.0.7"}
                path = "/pools/{pool}/pods/{pod}/heartbeat"
                self._sent(partial(self.api.call, "POST", path, body, pool=pool, pod=name), "beat")

    def a_node_is_lost(self, data: st.DataObject) -> None:
        """A pod goes outside podslots (node loss); reconcile must report its tasks lost."""
        name = data.draw(st.sampled_from(sorted(self._cluster())))
        self.kube.remove(NS, name)

    # ---- the scheduled steps -------------------------------------------------------------------

    @rule(step=st.sampled_from(["reconcile", "autoscale", "expire"]))
    def a_scheduled_step_runs(self, step: str) -> None:
        {"reconcile": self.reconcile_runs, "autoscale": self.autoscale_runs, "expire": self.expiry_runs}[step]()

    def reconcile_runs(self) -> None:
        before = self._tasks()
        self.reconciler.run()
        in_cluster = self._cluster()
        for task_id, task in self._tasks().items():
            was = before.get(task_id)
            if task["status"]["S"] != "lost" or was is None or was["status"]["S"] not in ("running", "apply_pending"):
                continue
            pool, pod = was["pool"]["S"], was["pod"]["S"]
            if pod in in_cluster and self._item(pool, pod) is not None:
                # k: freed as leaked only if a beat that listed the pod's tasks left it out
                omitted = task_id in self.left_out.get((pool, pod), set())
                expect("k", omitted, f"{task_id} freed as leaked, though no beat of {pod} listed its tasks without it")
        self._forget_ended_reservations()

    def autoscale_runs(self) -> None:
        self.seen_by_rollout |= self.cordoned_at_change & self._operator_cordoned()
        self.autoscaler.run()

    def expiry_runs(self) -> None:
        self.expirer.run()
        self._forget_ended_reservations()

    @rule(seconds=st.sampled_from([200, 400, 4000]))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    def _forget_ended_reservations(self) -> None:
        """A reservation that expired, was lost or ended frees its task to be placed anew (b)."""
        tasks = self._tasks()
        for task in list(self.reserved):
            status = tasks[task]["status"]["S"] if task in tasks else None
            if status not in ("apply_pending", "running"):
                del self.reserved[task]

    # ---- invariants ----------------------------------------------------------------------------

    @invariant()
    def nothing_busy_or_owned_was_deleted(self) -> None:
        """a, f."""
        for letter, message in self.broken:
            expect(letter, False, message)

    @invariant()
    def every_slot_names_its_task_and_every_task_one_slot(self) -> None:
        """c, d, e, the counts, and b on the table: a task reserved or resumed is on its plan's slot."""
        self._forget_ended_reservations()
        tasks = self._tasks()
        holders: dict[str, tuple[str, str, str]] = {}
        pools_of: dict[str, str] = {}
        for pod in self._pods():
            pool, name = pod["pk"]["S"].removeprefix(POOL_PREFIX), pod["name"]["S"]
            # e: one pool's item per pod
            expect("e", pools_of.setdefault(name, pool) == pool, f"{name} in {pools_of[name]} and {pool}")
            slots = pod["slots"]["M"]
            busy = sum(1 for s in slots.values() if s["M"]["status"]["S"] != "idle")
            counted = (int(pod["busy"]["N"]), int(pod["idle"]["N"]))
            expect("counts", counted == (busy, len(slots) - busy), f"{name} counts {counted}")
            if "open_pool" in pod:
                expect("counts", pod["state"]["S"] == "ready", f"{name} open while {pod['state']['S']}")
            if pod["state"]["S"] == "draining":
                expect("counts", busy == 0, f"{name} draining with {busy} busy")
            for key, raw in slots.items():
                slot = raw["M"]
                if slot["status"]["S"] == "idle":
                    continue
                task_id = slot["task_id"]["S"]
                # c: a task in at most one slot
                expect("c", task_id not in holders, f"{task_id} in {holders.get(task_id)} and {(pool, name, key)}")
                holders[task_id] = (pool, name, key)
                task = tasks.get(task_id)
                expected = {"reserved": "apply_pending", "running": "running"}[slot["status"]["S"]]
                # d: a slot names its task, which names the slot back in the matching status
                found = None if task is None else _placement(task)
                wanted = (pool, name, key, expected)
                expect("d", found == wanted, f"{wanted[:3]} {slot['status']['S']} for {task_id}, whose item is {found}")
        for task_id, task in tasks.items():
            status = task["status"]["S"]
            if status in ("running", "apply_pending"):
                expect("d", task_id in holders, f"{task_id} {status} in no slot")
            if task_id in self.reserved:
                # b: the plan's slot until the reservation ends
                plan = self.reserved[task_id]
                expect("b", holders.get(task_id) == plan, f"{task_id} on {holders.get(task_id)}, its plan on {plan}")

    @invariant()
    def pools_closed_or_gone_hold_nothing_open(self) -> None:
        """g, h."""
        items = self._items()
        configs = {i["pk"]["S"].removeprefix(POOL_PREFIX): i for i in items if i["sk"]["S"] == CONFIG_SK}
        labelled = {n: (p["metadata"].get("labels") or {}).get(POOL_LABEL) for n, p in self._cluster().items()}
        for pool in (ALPHA, BETA):
            mine = [i for i in items if i["pk"]["S"] == pool_pk(pool)]
            config = configs.get(pool)
            if config is not None and config.get("deleting", {}).get("BOOL"):
                # g: a deleting pool takes no new task
                opened = [i["name"]["S"] for i in mine if "open_pool" in i]
                expect("g", not opened, f"{opened} open to new tasks in deleting {pool}")
            if config is None:
                # h: a pool goes with all it had
                left = [i["sk"]["S"] for i in mine if not i["sk"]["S"].startswith(EVENT_PREFIX)]
                expect("h", not left, f"{pool} gone, left {left}")
                strays = [n for n, p in labelled.items() if p == pool]
                expect("h", not strays, f"{pool} gone, its pods {strays} left in the cluster")


# Short, in `make unit`: a few seconds. Long (slow): 50 examples, about 35 s on one quiet core;
# PODSLOTS_PROMISE_EXAMPLES=200 runs the long search (about 2.5 minutes).
LONG_EXAMPLES = int(os.environ.get("PODSLOTS_PROMISE_EXAMPLES", "50"))
TestPromiseShort = PromiseMachine.TestCase
TestPromiseShort.settings = settings(
    max_examples=3,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.slow
class TestPromiseLong(PromiseMachine.TestCase):  # type: ignore[valid-type,misc]
    pass


TestPromiseLong.settings = settings(
    max_examples=LONG_EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


# ---- the machine's checks on the failures, step by step --------------------------------
# Each replays, through the machine's own rules and invariants, a failure the issue names; they
# show the checks see it (each fails on the code before its fix, and its letter says which check).


def replay(*steps: Callable[[PromiseMachine], object]) -> None:
    """Pool alpha with its pod up, faults on only where a step injects them; every invariant is
    checked after each step, as Hypothesis does."""
    machine = PromiseMachine()
    try:
        machine.alpha_with_faults_on(seed=0)
        machine.faults.clear()
        for step in steps:
            step(machine)
            machine.nothing_busy_or_owned_was_deleted()
            machine.every_slot_names_its_task_and_every_task_one_slot()
            machine.pools_closed_or_gone_hold_nothing_open()
    finally:
        machine.teardown()


def approve_after_a_conflict(machine: PromiseMachine) -> None:
    """The next transaction after the first (the resume, or its retry) meets a TransactionConflict."""
    machine.faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT, after=1)
    machine.the_queue_dispatches("a0")


def test_the_machine_keeps_an_approved_apply_on_its_plans_slot_through_a_conflict():
    # Given a plan_and_apply reserved on its slot, When its approval meets a TransactionConflict,
    # Then the apply runs on the plan's slot or the answer is an error (b, c, d)
    replay(
        lambda m: m.the_queue_dispatches("a0"),
        lambda m: m._sent(lambda: m.api.status("a0", "apply_pending"), "apply_pending"),
        approve_after_a_conflict,
    )


def silent_beat(machine: PromiseMachine) -> None:
    (pod,) = [p["name"]["S"] for p in machine._pods()]
    machine.clock.advance(10)
    machine._sent(
        lambda: machine.api.call("POST", "/pools/{pool}/pods/{pod}/heartbeat", {}, pool=ALPHA, pod=pod), "beat"
    )


def test_the_machine_frees_no_slot_on_a_beat_without_held_tasks():
    # Given a running task, and its agent's beat without `held_tasks`, When reconcile runs past the
    # leak grace, Then the task keeps its slot (k)
    replay(
        lambda m: m.the_queue_dispatches("a1"),
        silent_beat,
        lambda m: m.time_passes(400),
        lambda m: m.a_scheduled_step_runs("reconcile"),
    )


def test_the_machine_keeps_a_deleting_pools_pod_closed_after_an_uncordon():
    # Given an operator's cordon, a running task and the pool's DELETE, When the operator takes the
    # cordon back and a new task asks, Then the pod stays closed and the task is refused (g)
    replay(
        lambda m: m.cordon(ALPHA, f"{ALPHA}-up0"),
        lambda m: m.an_operator_deletes_a_pool(ALPHA),
        lambda m: m.uncordon(ALPHA, f"{ALPHA}-up0"),
        lambda m: m.the_queue_dispatches("a2"),
    )


def test_the_machine_keeps_each_pod_in_one_pool_when_selectors_overlap():
    # Given alpha's pods (labelled app=tf-agent, team=infra), When pool beta adopts those labels
    # and reconcile runs, Then no pod is in both pools' items (e)
    replay(
        lambda m: m.an_operator_puts_beta_adopting(dict(APP)),
        lambda m: m.a_scheduled_step_runs("reconcile"),
    )


def test_the_machine_never_deletes_a_deployments_pod():
    # Given pool beta adopting tier=legacy and a Deployment's pod so labelled, When the scheduled
    # steps run for a while, Then the ReplicaSet's pod is not deleted (f)
    steps: list[Callable[[PromiseMachine], object]] = [
        lambda m: m.an_operator_puts_beta_adopting({"tier": "legacy"}),
        lambda m: m.a_deployment_brings_a_pod(BETA, dict(LEGACY)),
    ]
    for _ in range(3):
        steps += [lambda m: m.a_scheduled_step_runs("reconcile"), lambda m: m.a_scheduled_step_runs("autoscale")]
        steps += [lambda m: m.time_passes(400)]
    replay(*steps)


def test_the_machine_leaves_nothing_of_a_deleted_pool():
    # Given an idle pool, When it is deleted and the scheduled steps finish the delete, Then no
    # item of it is left, the autoscale lease included (h)
    replay(
        lambda m: m.an_operator_deletes_a_pool(ALPHA),
        lambda m: m.a_scheduled_step_runs("autoscale"),
        lambda m: m.a_scheduled_step_runs("reconcile"),
        lambda m: m.a_scheduled_step_runs("autoscale"),
    )


def test_the_machine_keeps_an_outdated_pod_closed_after_an_operators_uncordon():
    # Given a busy pod an operator cordoned, then a template change and a roll-out step, When the
    # operator takes the cordon back, Then the outdated pod is not a first choice again (i)
    replay(
        lambda m: m.the_queue_dispatches("a1"),
        lambda m: m.cordon(ALPHA, f"{ALPHA}-up0"),
        lambda m: m.an_operator_changes_settings("image"),
        lambda m: m.a_scheduled_step_runs("autoscale"),
        lambda m: m.uncordon(ALPHA, f"{ALPHA}-up0"),
    )


@pytest.mark.parametrize("after", [0, 1], ids=["marking it deleting", "removing it"])
def test_the_machine_deletes_an_empty_pool_through_a_conflict(after: int):
    # Given pool beta with no pod, When a transaction of its DELETE meets a TransactionConflict,
    # Then the answer is neither a 5xx nor a 404 for the pool that is there (5xx, 404)
    def delete_in_conflict(machine: PromiseMachine) -> None:
        machine.faults.next("TransactWriteItems", Fault.TRANSACTION_CONFLICT, after=after)
        machine.an_operator_deletes_a_pool(BETA)

    replay(lambda m: m.an_operator_puts_beta_adopting({"tier": "legacy"}), delete_in_conflict)
