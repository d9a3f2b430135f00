"""When the worker acks: early by default, after the task with task_acks_late."""

import time

import pytest

from conftest import run_task
from support import RESULT_TIMEOUT, queue_depths, wait_for_empty_queue

# How long tasks.sleep runs while the test looks at the queue, in seconds.
TASK_SECONDS = 2.0


def unacked_while_running(client, worker):
    result = client.send_task("tasks.sleep", args=[TASK_SECONDS], queue=worker.queue)
    time.sleep(TASK_SECONDS / 3)
    depths = queue_depths(worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) is None
    return depths


@pytest.mark.python_xfail(
    reason="with the solo pool the early ack is sent only after the task has run"
)
def test_default_acks_before_running(client, worker_factory):
    worker = worker_factory()
    assert unacked_while_running(client, worker) == (0, 0)
    assert wait_for_empty_queue(worker.queue) == (0, 0)


def test_acks_late_from_env_acks_after_running(client, worker_factory):
    worker = worker_factory(env={"CELERY_TASK_ACKS_LATE": "true"})
    assert unacked_while_running(client, worker) == (0, 1)
    assert wait_for_empty_queue(worker.queue) == (0, 0)


def test_acks_late_failure_is_acked(client, worker_factory):
    worker = worker_factory(env={"CELERY_TASK_ACKS_LATE": "true"})
    result = client.send_task("tasks.fail", args=["late"], queue=worker.queue)
    with pytest.raises(ValueError):
        result.get(timeout=RESULT_TIMEOUT)
    assert wait_for_empty_queue(worker.queue) == (0, 0)


def test_acks_late_retries_are_acked(client, worker_factory):
    worker = worker_factory(env={"CELERY_TASK_ACKS_LATE": "true"})
    result = client.send_task("tasks.flaky", args=[2], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    assert run_task(client, worker, "tasks.add", args=[1, 2]) == 3
    assert wait_for_empty_queue(worker.queue) == (0, 0)


@pytest.mark.python_xfail(
    reason="SIGTERM interrupts the task running in the solo pool, so no result is sent"
)
def test_sigterm_finishes_running_task(client, worker_factory):
    worker = worker_factory()
    running = client.send_task("tasks.sleep", args=[1.0], queue=worker.queue)
    time.sleep(0.3)
    exit_code = worker.stop()
    assert running.get(timeout=RESULT_TIMEOUT) is None
    if worker.kind == "c":
        assert exit_code == 0
