import json

from local.apigw import proxy_event

E = "events/"
settings = {
    "namespace": "agents",
    "slots_per_pod": 3,
    "min_pods": 1,
    "max_pods": 10,
    "scale_up_utilization": 0.8,
    "scale_down_utilization": 0.2,
    "scale_down_delay_s": 300,
    "reservation_ttl_s": 86400,
    "heartbeat_timeout_s": 120,
    "startup_timeout_s": 600,
    "pod_template": {
        "image": "registry.example/tf-agent:1.9",
        "service_account": "tf-agent",
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
        "env": {"TF_IN_AUTOMATION": "1"},
        "node_selector": {},
        "tolerations": [],
        "labels": {},
        "annotations": {},
    },
}
ev = {
    "pool_put.json": proxy_event("PUT", "/pools/{pool}", {"pool": "terraform"}, settings),
    "pool_get.json": proxy_event("GET", "/pools/{pool}", {"pool": "terraform"}),
    "pools_list.json": proxy_event("GET", "/pools"),
    "pool_events.json": proxy_event("GET", "/pools/{pool}/events", {"pool": "terraform"}, query={"limit": "20"}),
    "pool_delete.json": proxy_event("DELETE", "/pools/{pool}", {"pool": "terraform"}),
    "heartbeat.json": proxy_event(
        "POST",
        "/pools/{pool}/pods/{pod}/heartbeat",
        {"pool": "terraform", "pod": "terraform-7f3k2"},
        {"held_tasks": [], "pod_ip": "10.0.12.34"},
    ),
    "allocate.json": proxy_event(
        "POST",
        "/pools/{pool}/allocations",
        {"pool": "terraform"},
        {"task_id": "run-42", "task_type": "plan_and_apply"},
    ),
    "status_apply_pending.json": proxy_event(
        "PUT", "/tasks/{task_id}/status", {"task_id": "run-42"}, {"status": "apply_pending"}
    ),
    "status_running.json": proxy_event("PUT", "/tasks/{task_id}/status", {"task_id": "run-42"}, {"status": "running"}),
    "status_success.json": proxy_event("PUT", "/tasks/{task_id}/status", {"task_id": "run-42"}, {"status": "success"}),
    "task_get.json": proxy_event("GET", "/tasks/{task_id}", {"task_id": "run-42"}),
    "pod_cordon.json": proxy_event(
        "POST", "/pools/{pool}/pods/{pod}/cordon", {"pool": "terraform", "pod": "terraform-7f3k2"}
    ),
    "pod_uncordon.json": proxy_event(
        "DELETE", "/pools/{pool}/pods/{pod}/cordon", {"pool": "terraform", "pod": "terraform-7f3k2"}
    ),
}
for name, e in ev.items():
    e["requestContext"]["requestId"] = e["requestContext"]["extendedRequestId"] = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    with open(E + name, "w") as out:
        out.write(json.dumps(e, indent=2) + "\n")
