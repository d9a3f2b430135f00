"""tasks.flaky retries itself with countdown 0.2 s and max_retries 5."""

import time
import uuid

import pytest

from support import (RESULT_TIMEOUT, publish_raw, publish_task_v2,
                     queue_message_count, task_body_v2)

RETRY_COUNTDOWN = 0.2


def test_flaky_without_retries(run):
    assert run("tasks.flaky", 0) == 0


def test_flaky_two_retries_returns_two(client, worker):
    started = time.monotonic()
    result = client.send_task("tasks.flaky", args=[2], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    elapsed = time.monotonic() - started
    assert elapsed >= 2 * RETRY_COUNTDOWN - 0.05, f"two retries took only {elapsed:.3f} s"


def test_flaky_max_retries_returns_five(run):
    assert run("tasks.flaky", 5) == 5


def test_flaky_beyond_max_retries_raises(client, worker):
    result = client.send_task("tasks.flaky", args=[6], queue=worker.queue)
    with pytest.raises(RuntimeError) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(error.value) is RuntimeError
    assert error.value.args == ("flaky retry 5",)


def test_flaky_sends_retry_states(worker, reply_queue):
    task_id = publish_task_v2(worker.queue, "tasks.flaky", args=[2],
                              reply_to=reply_queue.name)
    messages = reply_queue.wait_for(task_id)
    states = [meta["status"] for meta in messages if meta["task_id"] == task_id]
    assert states == ["RETRY", "RETRY", "SUCCESS"]
    retries = [meta for meta in messages if meta["status"] == "RETRY"]
    assert retries[0]["result"] == {
        "exc_type": "RuntimeError",
        "exc_message": ["flaky retry 0"],
        "exc_module": "builtins",
    }
    assert retries[1]["result"]["exc_message"] == ["flaky retry 1"]
    assert messages[-1]["result"] == 2


def test_retries_leave_queue_empty(client, worker):
    result = client.send_task("tasks.flaky", args=[6], queue=worker.queue)
    with pytest.raises(RuntimeError):
        result.get(timeout=RESULT_TIMEOUT)
    assert queue_message_count(worker.queue) == 0


def test_retry_of_message_near_header_cap(worker, worker_kind, reply_queue):
    """A message with few standard headers and many custom ones, 256 in all
    (the cap), must still retry: the standard headers a retry adds would
    take it past the cap, so celeriac leaves the custom ones out."""
    task_id = str(uuid.uuid4())
    headers = {"lang": "py", "task": "tasks.flaky", "id": task_id}
    headers.update({f"x-{i:04d}": i for i in range(256 - len(headers))})
    publish_raw(worker.queue, task_body_v2([1]), headers=headers,
                correlation_id=task_id, reply_to=reply_queue.name)
    messages = reply_queue.wait_for(task_id)
    states = [meta["status"] for meta in messages if meta["task_id"] == task_id]
    assert states == ["RETRY", "SUCCESS"]
    assert messages[-1]["result"] == 1
    if worker_kind != "python":
        assert "is retried without its custom headers" in worker.log_text()
