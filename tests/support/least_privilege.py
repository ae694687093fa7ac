"""Least privilege, proved by the suite: each function's AWS calls, recorded while the tests run,
checked against that function's role in template.yaml (docs/security.md, "Least privilege").

Recording. `install()` adds a botocore `before-call` handler to `botocore.handlers.BUILTIN_HANDLERS`,
the list every botocore Session registers when it is made (moto hooks in the same way): boto3's
default session, the session PynamoDB makes per connection and thread, every client a test makes.
`before-call` is emitted once per API call (botocore retries below it) and never for a presigned
URL: an EKS token is a presigned sts:GetCallerIdentity that podslots signs and never sends.

Attribution. A call is a function's when that function's handler module (its CodeUri and Handler
in the template, `functions/<name>/app.py`) is on the calling thread's stack. How the handler was
reached (the API test client, the local stack, a test calling `lambda_handler`) does not matter,
and a call made outside any handler (a test's setup, a step a test drives directly) is nobody's.
The innermost handler wins, should one ever run inside another. A test that plays another
process inside a handler's call wraps it in `as_another_process`, whose frame ends the walk.
podslots starts no thread inside a handler; a call from one would go unattributed, not
misattributed.

What is recorded: (function, action, resource, environment) as IAM authorises the call. A
TransactWriteItems is authorised per item (PutItem, UpdateItem, DeleteItem, ConditionCheckItem on
the item's table), a TransactGetItems per item (GetItem); a Query or Scan of an index on the
index's ARN. A table made with the template's SlotTable definition stands for SlotTable, the bus
the function's EVENT_BUS_NAME names for EventBus (the template sets both), a secret is named as
asked. ARNs are built in `tests.support.cfn`'s account and region, the ones the template is
resolved in; anything not modelled is recorded on `*`, which only a grant on `*` allows.

Checking. `check()` evaluates each recorded call against the function's role policies (resolved
for the call's environment, with `iam_eval`, so Deny and Conditions count): one not allowed is a
problem, whatever ran. After a whole run only, each granted (action, resource) never seen must be
listed in `tests/least_privilege_allowances.py`, and each entry there must still be granted and
still never seen. `LeastPrivilegePlugin` collects the records across pytest-xdist workers
(`workeroutput`) and fails the session on the controller.
"""

from __future__ import annotations

import fnmatch
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import botocore.handlers
import botocore.session
import pytest

from local.template import ROOT, function_ids, function_property, table_definition, template
from tests.support.cfn import ACCOUNT, REGION, Resolver, function_role_policies
from tests.support.iam_eval import Request, is_allowed, statement_applies, statements

ENVIRONMENT_VAR = "PODSLOTS_ENVIRONMENT"
DEFAULT_ENVIRONMENT = "dev"  # podslots.settings' default where nothing sets it (tests, the local stack)
OUTPUT_KEY = "least_privilege"
# The request context every call carries; a grant conditional on anything else is not met here.
BASE_CONTEXT: Mapping[str, str | bool] = {
    "aws:SecureTransport": True,
    "aws:RequestedRegion": REGION,
    "aws:PrincipalAccount": ACCOUNT,
}


@dataclass(frozen=True, order=True)
class Call:
    """One AWS request a function's code made, as IAM authorises it."""

    function: str  # the template's logical id, e.g. AutoscaleFunction
    action: str  # IAM spelling, e.g. dynamodb:ConditionCheckItem
    resource: str  # ARN in the test account and region, or `*`
    environment: str = DEFAULT_ENVIRONMENT  # the template's Environment the call ran in
    # The service's own condition keys of the request, as IAM sees them: so far events:source and
    # events:detail-type, per entry of a PutEvents (a grant may be conditional on them).
    context: tuple[tuple[str, str], ...] = ()

    @property
    def request(self) -> Request:
        return Request(self.action, self.resource, {**BASE_CONTEXT, **dict(self.context)})


@dataclass(frozen=True)
class Allowance:
    """A granted action the suite never sees a function call, and why the function needs it.

    `function` and `resource` are fnmatch patterns over logical ids and granted resources.
    """

    function: str
    action: str
    resource: str
    why: str


@dataclass(frozen=True)
class Grant:
    """One action on one resource pattern an Allow statement of a function's role grants."""

    function: str
    action: str
    resource: str
    statement: Mapping[str, Any]


# ---- recording --------------------------------------------------------------------------------


class Recorder:
    """The calls of the functions, first test that made each (for the report)."""

    def __init__(self) -> None:
        self.calls: dict[Call, str] = {}
        self.slot_tables: set[str] = set()
        self._handler_files: dict[str, str | None] = {}
        self._slot_shape = _table_shape(table_definition("SlotTable"))
        self._handlers = {
            os.path.realpath(
                ROOT
                / str(function_property(f, "CodeUri"))
                / (str(function_property(f, "Handler")).rpartition(".")[0] + ".py")
            ): f
            for f in function_ids()
        }

    @contextmanager
    def fresh(self) -> Iterator[dict[Call, str]]:
        """The calls made inside the block alone (a test of the recorder); kept for the session too."""
        kept, self.calls = self.calls, {}
        try:
            yield self.calls
        finally:
            for call, test in self.calls.items():
                kept.setdefault(call, test)
            self.calls = kept

    def before_call(self, model: Any, params: Mapping[str, Any], **_: Any) -> None:
        operation = model.name
        service = model.service_model.signing_name
        if service == "dynamodb" and operation == "CreateTable":
            body = _json_body(params)
            if _table_shape(body) == self._slot_shape:
                self.slot_tables.add(str(body["TableName"]))
            return
        function = self._function_on_stack(sys._getframe(1))
        if function is None:
            return
        environment = os.environ.get(ENVIRONMENT_VAR) or DEFAULT_ENVIRONMENT
        test = os.environ.get("PYTEST_CURRENT_TEST", "").rpartition(" ")[0]
        try:
            authorised = self._authorised(service, operation, params, environment)
        except Exception as exc:  # never break the call: the check names it instead
            authorised = [(f"{service}:{operation}", f"<request not read: {type(exc).__name__}>")]
        for action, resource, *context in authorised:
            self.calls.setdefault(Call(function, action, resource, environment, tuple(context)), test)

    def _function_on_stack(self, frame: Any) -> str | None:
        """The function whose handler module is on the stack; the walk ends at pytest's own frames
        (a handler runs above the test that reached it), so a test's setup call costs little."""
        while frame is not None:
            filename = frame.f_code.co_filename
            function = self._handler_files.get(filename, "")
            if function == "":
                function = self._handlers.get(os.path.realpath(filename))
                if function is None and os.sep + "_pytest" + os.sep in filename:
                    function = _PYTEST
                self._handler_files[filename] = function
            if function is _PYTEST or frame.f_code is _ANOTHER_PROCESS:
                return None
            if function is not None:
                return function
            frame = frame.f_back
        return None

    def _authorised(
        self, service: str, operation: str, params: Mapping[str, Any], environment: str
    ) -> list[tuple[Any, ...]]:
        """(action, resource, *condition key pairs) of each authorisation the call needs."""
        if service == "dynamodb":
            return self._dynamodb(operation, _json_body(params), environment)
        if service == "events" and operation == "PutEvents":  # IAM authorises each entry on its own
            entries = {
                (
                    str(e.get("EventBusName") or "default"),
                    ("events:detail-type", str(e.get("DetailType"))),
                    ("events:source", str(e.get("Source"))),
                )
                for e in _json_body(params).get("Entries", [])
            }
            return [("events:PutEvents", _bus_arn(bus, environment), *keys) for bus, *keys in sorted(entries)]
        if service == "secretsmanager" and "SecretId" in (body := _json_body(params)):
            return [(f"secretsmanager:{operation}", _secret_arn(str(body["SecretId"])))]
        if service == "sqs" and "QueueUrl" in (body := _json_body(params)):
            action = "SendMessage" if operation == "SendMessageBatch" else operation  # IAM's spelling
            return [(f"sqs:{action}", _queue_arn(str(body["QueueUrl"]), environment))]
        if service == "sts" and operation == "AssumeRole":
            form = params.get("body") or {}
            role = form.get("RoleArn") if isinstance(form, Mapping) else parse_qs(str(form)).get("RoleArn", ["*"])[0]
            return [("sts:AssumeRole", str(role or "*"))]
        return [(f"{service}:{operation}", "*")]

    def _dynamodb(self, operation: str, body: Mapping[str, Any], environment: str) -> list[tuple[str, str]]:
        if operation in ("TransactWriteItems", "TransactGetItems"):
            return [
                (f"dynamodb:{ITEM_ACTIONS[kind]}", self._table_arn(str(part["TableName"]), environment))
                for item in body.get("TransactItems", [])
                for kind, part in item.items()
            ]
        if operation in ("BatchWriteItem", "BatchGetItem"):
            return [(f"dynamodb:{operation}", self._table_arn(t, environment)) for t in body.get("RequestItems", {})]
        if "TableName" not in body:
            return [(f"dynamodb:{operation}", "*")]  # ListTables and kin act on no table
        arn = self._table_arn(str(body["TableName"]), environment)
        if body.get("IndexName"):
            arn = f"{arn}/index/{body['IndexName']}"
        return [(f"dynamodb:{operation}", arn)]

    def _table_arn(self, name: str, environment: str) -> str:
        if name in self.slot_tables:
            return str(_resolver(environment).resolve({"Fn::GetAtt": "SlotTable.Arn"}))
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


_PYTEST = "<pytest>"  # a frame of pytest itself: no handler is further down the stack


def as_another_process[T](step: Callable[[], T]) -> T:
    """Run `step` as another process: a test's interloper inside a handler's call (a concurrent
    reconcile, an expiry racing an approval, a beat between a read and a write). Its own calls
    are nobody's, not the handler's it interrupts; a handler it invokes has its calls as usual
    (the walk meets that handler's frame first)."""
    return step()


_ANOTHER_PROCESS = as_another_process.__code__

ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _json_body(params: Mapping[str, Any]) -> dict[str, Any]:
    body = params.get("body")
    if isinstance(body, bytes | str) and body:
        parsed = json.loads(body)
        return parsed if isinstance(parsed, dict) else {}
    return dict(body) if isinstance(body, Mapping) else {}


def _table_shape(definition: Mapping[str, Any]) -> str:
    keys = ("KeySchema", "AttributeDefinitions", "GlobalSecondaryIndexes")
    return json.dumps({k: definition.get(k) for k in keys}, sort_keys=True)


def _bus_arn(bus: str, environment: str) -> str:
    if bus.startswith("arn:"):
        return bus
    if bus == os.environ.get("EVENT_BUS_NAME"):  # the template sets it to !Ref EventBus
        return str(_resolver(environment).resolve({"Fn::GetAtt": "EventBus.Arn"}))
    return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{bus}"


def _secret_arn(secret: str) -> str:
    if secret.startswith("arn:"):
        return secret
    return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{secret}-AbCdEf"  # Secrets Manager's suffix


def _queue_arn(url: str, environment: str) -> str:
    """A queue of the template (named by its QueueName) as the template's ARN, else in the test account."""
    name = url.rstrip("/").rpartition("/")[2]
    resolver = _resolver(environment)
    for logical_id, declared in template()["Resources"].items():
        props = declared.get("Properties", {})
        if declared.get("Type") == "AWS::SQS::Queue" and resolver.resolve(props.get("QueueName")) == name:
            return str(resolver.resolve({"Fn::GetAtt": f"{logical_id}.Arn"}))
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


@cache
def _resolver(environment: str) -> Resolver:
    return Resolver({"Environment": environment})


RECORDER: Recorder | None = None


def install() -> Recorder:
    """Record from now on: every botocore session made after this (and boto3's, if made) carries it."""
    global RECORDER  # noqa: PLW0603 (one recorder per process, as botocore's handler list is)
    if RECORDER is None:
        RECORDER = Recorder()
        botocore.handlers.BUILTIN_HANDLERS.append(("before-call", RECORDER.before_call))
        import boto3

        if boto3.DEFAULT_SESSION is not None:
            boto3.DEFAULT_SESSION.events.register("before-call", RECORDER.before_call)
    return RECORDER


# ---- checking ---------------------------------------------------------------------------------


def check(
    calls: Iterable[Call],
    *,
    whole_run: bool,
    allowances: Sequence[Allowance],
    resources: Mapping[str, Any] | None = None,
) -> list[str]:
    """What is wrong, one line each: calls not granted; after a whole run also grants never seen
    and unlisted, and allowances no longer true. `resources` replaces the template's (tests)."""
    calls = sorted(set(calls))
    problems = [
        f"NOT GRANTED: {c.function} calls {c.action} on {c.resource}"
        + ("" if c.environment == DEFAULT_ENVIRONMENT else f" (Environment={c.environment})")
        for c in calls
        if not is_allowed(_policies(c.function, c.environment, resources), c.request)
    ]
    if whole_run:
        problems += _unseen(calls, allowances, resources)
    return problems


def _policies(function: str, environment: str, resources: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return function_role_policies(_resolver(environment), function, resources)


def grants(function: str, resources: Mapping[str, Any] | None = None) -> list[Grant]:
    """Each action (a wildcard spelled out over the service's operations) on each resource pattern."""
    found = []
    for policy in _policies(function, DEFAULT_ENVIRONMENT, resources):
        for statement in statements(policy):
            if statement["Effect"] != "Allow":
                continue
            if "Action" not in statement or "Resource" not in statement:
                raise NotImplementedError(f"{function}: NotAction/NotResource grants are not spelled out")
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            found += [
                Grant(function, action, str(resource), statement)
                for pattern in actions
                for action in _spelled_out(str(pattern))
                for resource in targets
            ]
    return found


def _unseen(calls: Sequence[Call], allowances: Sequence[Allowance], resources: Mapping[str, Any] | None) -> list[str]:
    problems = []
    every = [g for f in function_ids() for g in grants(f, resources)]
    seen = [g for g in every if _seen(g, calls)]
    unseen = [g for g in every if g not in seen]
    used: set[Allowance] = set()
    for grant in unseen:
        allowance = next((a for a in allowances if _covers(a, grant)), None)
        if allowance is None:
            problems.append(
                f"GRANTED, NEVER SEEN: {grant.function} may {grant.action} on {grant.resource}: no test makes it"
                " call that; add the test, or remove the grant, or list it in tests/least_privilege_allowances.py"
            )
        else:
            used.add(allowance)
    for grant in every:
        if grant.resource == "*" and grant in seen:
            problems.append(f"WIDER THAN ITS CALLS: {grant.function} may {grant.action} on every resource")
    for allowance in allowances:
        if allowance in used:
            continue
        if not any(_covers(allowance, g) for g in every):
            problems.append(
                f"ALLOWANCE NO LONGER GRANTED: {allowance.function} {allowance.action} {allowance.resource}"
            )
        else:
            problems.append(f"ALLOWANCE SEEN: {allowance.function} {allowance.action} {allowance.resource} is called")
    return problems


def _seen(grant: Grant, calls: Iterable[Call]) -> bool:
    alone = {**grant.statement, "Action": grant.action, "Resource": grant.resource}
    return any(
        c.function == grant.function and c.environment == DEFAULT_ENVIRONMENT and statement_applies(alone, c.request)
        for c in calls
    )


def _covers(allowance: Allowance, grant: Grant) -> bool:
    return (
        fnmatch.fnmatchcase(grant.function, allowance.function)
        and allowance.action.lower() == grant.action.lower()
        and fnmatch.fnmatchcase(grant.resource, allowance.resource)
    )


# IAM actions with no API operation of their own name (authorised inside another operation).
IAM_ONLY_ACTIONS = {"dynamodb": ("ConditionCheckItem",)}


def _spelled_out(pattern: str) -> list[str]:
    """`dynamodb:*` as every DynamoDB action; a pattern over an unknown service stays as it is."""
    if "*" not in pattern and "?" not in pattern:
        return [pattern]
    service = pattern.partition(":")[0]
    known = _service_actions(service) if "*" not in service and "?" not in service else ()
    matching = [a for a in known if fnmatch.fnmatchcase(a.lower(), pattern.lower())]
    return matching or [pattern]


@cache
def _service_actions(prefix: str) -> tuple[str, ...]:
    session = botocore.session.get_session()
    try:  # the IAM prefixes podslots' grants use are botocore's service names too
        model = session.get_service_model(prefix)
    except Exception:  # botocore raises several kinds for an unknown name
        return ()
    return tuple(f"{prefix}:{op}" for op in (*model.operation_names, *IAM_ONLY_ACTIONS.get(prefix, ())))


# ---- the pytest plugin ------------------------------------------------------------------------


class LeastPrivilegePlugin:
    """Collects the records (from each xdist worker) and fails the session on what `check` finds."""

    def __init__(self, config: pytest.Config, recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.deselected = False
        self.workers: list[dict[str, Any]] = []
        self.workers_lost = False
        self.first_test: dict[Call, str] = {}
        self.whole = False
        self.problems: list[str] | None = None

    @pytest.hookimpl
    def pytest_deselected(self, items: Sequence[pytest.Item]) -> None:
        if items:
            self.deselected = True

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {}).get(OUTPUT_KEY)
        if error or output is None:
            self.workers_lost = True
        else:
            self.workers.append(output)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        own = self._output(session)
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller checks
            self.config.workeroutput[OUTPUT_KEY] = own  # type: ignore[attr-defined]
            return
        if self.config.option.collectonly:
            return
        outputs = [own, *self.workers]
        self.first_test = {
            Call(c[0], c[1], c[2], c[3], tuple((k, v) for k, v in c[4])): t
            for out in outputs
            for c, t in zip(out["calls"], out["tests"], strict=True)
        }
        self.whole = self._whole_run(session, outputs)
        self.problems = check(self.first_test, whole_run=self.whole, allowances=_allowances())
        if self.problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if dump := os.environ.get("LEAST_PRIVILEGE_CALLS"):  # every call seen, for a reviewer
            rows = [[*vars(c).values(), t] for c, t in sorted(self.first_test.items())]
            Path(dump).write_text(json.dumps(rows, indent=1))

    @pytest.hookimpl
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.problems is None:
            return
        calls = self.first_test
        scope = "the whole run: calls and grants" if self.whole else "a partial run: calls only"
        functions = len({c.function for c in calls})
        terminalreporter.write_sep("-", f"least privilege ({scope}): {len(calls)} calls of {functions} functions")
        for problem in self.problems:
            terminalreporter.write_line(problem, red=True)
        for call, test in sorted(calls.items()):
            if f"NOT GRANTED: {call.function} calls {call.action} on {call.resource}" in " ".join(self.problems):
                terminalreporter.write_line(f"  {call.function} {call.action}: first made in {test}")

    def _output(self, session: pytest.Session) -> dict[str, Any]:
        calls = sorted(self.recorder.calls.items())
        return {
            "calls": [
                [c.function, c.action, c.resource, c.environment, [list(p) for p in c.context]] for c, _ in calls
            ],
            "tests": [t for _, t in calls],
            "deselected": self.deselected,
            "stopped": bool(session.shouldstop or session.shouldfail),
        }

    def _whole_run(self, session: pytest.Session, outputs: Sequence[Mapping[str, Any]]) -> bool:
        """Every test of the testpaths ran: no path or node id narrowed it, nothing deselected (-k,
        -m, --deselect), no early stop (-x, --maxfail), no worker lost."""
        root = Path(str(self.config.rootpath))
        wanted = [root / p for p in self.config.getini("testpaths")]
        given = [root / a.split("::")[0] for a in self.config.args] if self.config.args else wanted
        covered = all(any(w == g or g in w.parents for g in given) for w in wanted)
        narrowed = any("::" in a for a in self.config.args)
        return (
            covered
            and not narrowed
            and not self.workers_lost
            and session.exitstatus != pytest.ExitCode.INTERRUPTED
            and not any(out["deselected"] or out["stopped"] for out in outputs)
        )


def _allowances() -> Sequence[Allowance]:
    from tests.least_privilege_allowances import ALLOWANCES  # read at check time: no import cycle

    return ALLOWANCES


def register(config: pytest.Config) -> None:
    """Install the recorder and the plugin (from tests/conftest.py's pytest_configure)."""
    config.pluginmanager.register(LeastPrivilegePlugin(config, install()), "least-privilege")
