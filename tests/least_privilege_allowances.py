"""The reviewed table: each action a function's role grants that no test sees it call, and why.

tests/support/least_privilege.py fails a whole run for a granted action never seen that is not
listed here, and for an entry here that is seen or no longer granted, so the table stays true.
`function` and `resource` are fnmatch patterns (the resource as the template grants it, resolved in
the tests' account and region, Environment=dev). docs/security.md says how to read and change it.
"""

from __future__ import annotations

from tests.support.least_privilege import Allowance

OWN_LOG_GROUP = "arn:aws:logs:us-east-1:111122223333:log-group:/aws/lambda/*Function-id:*"

ALLOWANCES: tuple[Allowance, ...] = (
    # ---- Lambda's runtime, not the code: no test process is a Lambda runtime ----
    Allowance(
        "*",
        "xray:PutTraceSegments",
        "*",
        "Tracing: Active: the runtime and the Powertools Tracer send each invocation's segments"
        " (FunctionTracesPolicy; X-Ray has no resource-level permissions)",
    ),
    Allowance(
        "*",
        "xray:PutTelemetryRecords",
        "*",
        "Tracing: Active: the X-Ray daemon in the runtime reports its telemetry (FunctionTracesPolicy)",
    ),
    Allowance(
        "*",
        "logs:CreateLogStream",
        OWN_LOG_GROUP,
        "the runtime opens a stream per execution environment in the function's own log group (<Name>Logs)",
    ),
    Allowance(
        "*",
        "logs:PutLogEvents",
        OWN_LOG_GROUP,
        "the runtime writes the function's stdout (Powertools' JSON logs, EMF metrics) to its own log group",
    ),
    # ---- Lambda's SQS event source mappings poll with the function's role, not its code ----
    *(
        Allowance(
            f"{step}Function",
            f"sqs:{action}",
            f"arn:aws:sqs:us-east-1:111122223333:podslots-dev-{step.lower()}.fifo",
            "the event source mapping (PoolRuns) receives the step's fan-out messages, deletes those that"
            " succeeded and reads the queue's attributes with this role; the local stack's poller plays it",
        )
        for step in ("Reconcile", "Autoscale", "Expire")
        for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
    ),
)
