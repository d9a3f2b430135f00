"""The request context that tasks.context returns from inside a task."""

import uuid
from datetime import datetime, timedelta, timezone

from support import RESULT_TIMEOUT, publish_task_v2

CONTEXT_KEYS = {
    "id", "retries", "root_id", "parent_id", "group", "hostname", "eta", "expires",
    "routing_key", "redelivered",
}


def test_context_keys(run):
    assert set(run("tasks.context")) == CONTEXT_KEYS


def test_context_defaults(client, worker):
    result = client.send_task("tasks.context", queue=worker.queue)
    context = result.get(timeout=RESULT_TIMEOUT)
    assert context["id"] == result.id
    assert context["retries"] == 0
    assert context["root_id"] == result.id
    assert context["parent_id"] is None
    assert context["group"] is None
    assert context["eta"] is None
    assert context["expires"] is None
    assert context["redelivered"] is False


def test_context_hostname_is_node_name(run, worker):
    assert run("tasks.context")["hostname"] == worker.hostname


def test_context_routing_key_is_queue(run, worker):
    assert run("tasks.context")["routing_key"] == worker.queue


def test_context_workflow_ids(client, worker):
    task_id = str(uuid.uuid4())
    result = client.send_task(
        "tasks.context", queue=worker.queue, task_id=task_id,
        root_id="root-0001", parent_id="parent-0002", group_id="group-0003",
    )
    context = result.get(timeout=RESULT_TIMEOUT)
    assert context["id"] == task_id
    assert context["root_id"] == "root-0001"
    assert context["parent_id"] == "parent-0002"
    assert context["group"] == "group-0003"


def test_context_eta_and_expires_strings(worker, reply_queue):
    now = datetime.now(timezone.utc)
    eta = (now + timedelta(seconds=0.5)).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    expires = (now + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    task_id = publish_task_v2(worker.queue, "tasks.context", reply_to=reply_queue.name,
                              eta=eta, expires=expires)
    context = reply_queue.wait_for(task_id)[-1]["result"]
    assert context["eta"] == eta
    assert context["expires"] == expires


def test_context_retries_header(worker, reply_queue):
    task_id = publish_task_v2(worker.queue, "tasks.context", reply_to=reply_queue.name,
                              retries=3)
    context = reply_queue.wait_for(task_id)[-1]["result"]
    assert context["retries"] == 3


def test_context_retries_counted_by_flaky(run):
    # flaky(n) returns request.retries once it stops retrying.
    assert run("tasks.flaky", 3) == 3
