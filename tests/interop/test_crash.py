"""A prefork child that dies takes only its task down, and acks_late survives kill -9.

tasks.crash dereferences a null pointer (the Python twin reads address 0
through ctypes), so the child process dies of SIGSEGV.
"""

import re
import signal
import time

import pytest
from billiard.exceptions import WorkerLostError

from conftest import make_worker, run_task, start_worker, stop_worker
from support import RESULT_TIMEOUT, publish_task_v2, wait_for_depths, wait_for_empty_queue

PREFORK_ONE_CHILD = ["-c", "1", "-P", "prefork"]
ACKS_LATE = {"CELERY_TASK_ACKS_LATE": "true"}
REQUEUE_ON_LOST = {
    "CELERY_TASK_ACKS_LATE": "true",
    "CELERY_TASK_REJECT_ON_WORKER_LOST": "true",
}
# Seconds to wait for a log line or for queue counts to settle.
LOG_WAIT = 10.0


@pytest.fixture(scope="module")
def worker(worker_kind, broker):
    """A prefork worker with one child, so every crash empties the whole pool."""
    process = make_worker(worker_kind, "test_crash", pool_args=PREFORK_ONE_CHILD,
                          new_session=True)
    start_worker(process)
    yield process
    stop_worker(process)


def received_count(worker, task_id, task="tasks.crash"):
    """Return how often the worker logged that it received ``task_id``.

    Both workers log ``Task <name>[<id>] received`` for every delivery.
    """
    pattern = re.escape(f"Task {task}[{task_id}] received")
    return len(re.findall(pattern, worker.log_text()))


def wait_for_received(worker, task_id, count, task="tasks.crash", timeout=LOG_WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if received_count(worker, task_id, task) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(
        f"{task}[{task_id}] was received {received_count(worker, task_id, task)} times "
        f"in {timeout} s, expected {count}; log {worker.log_path}:\n{worker.log_tail()}"
    )


def test_crash_raises_worker_lost(client, worker):
    result = client.send_task("tasks.crash", queue=worker.queue)
    with pytest.raises(WorkerLostError) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"
    message = str(error.value)
    assert "SIGSEGV" in message or "signal 11" in message, message


def test_task_after_crash_succeeds(client, worker):
    crashed = client.send_task("tasks.crash", queue=worker.queue)
    following = client.send_task("tasks.add", args=[20, 22], queue=worker.queue)
    with pytest.raises(WorkerLostError):
        crashed.get(timeout=RESULT_TIMEOUT)
    assert following.get(timeout=RESULT_TIMEOUT) == 42


def test_crash_result_fields(worker, reply_queue):
    task_id = publish_task_v2(worker.queue, "tasks.crash", reply_to=reply_queue.name)
    messages = reply_queue.wait_for(task_id)
    failures = [meta for meta in messages
                if meta["task_id"] == task_id and meta["status"] == "FAILURE"]
    assert len(failures) == 1, messages
    assert failures[0]["result"]["exc_type"] == "WorkerLostError"
    assert failures[0]["result"]["exc_module"] == "billiard.exceptions"


def test_repeated_crashes_keep_pool(client, worker):
    crashes = [client.send_task("tasks.crash", queue=worker.queue) for _ in range(3)]
    for crashed in crashes:
        with pytest.raises(WorkerLostError):
            crashed.get(timeout=RESULT_TIMEOUT)
    results = [client.send_task("tasks.mul", args=[i, 3], queue=worker.queue)
               for i in range(4)]
    assert client.ResultSet(results).get(timeout=RESULT_TIMEOUT) == [0, 3, 6, 9]
    assert wait_for_empty_queue(worker.queue) == (0, 0)


def test_crash_spares_other_child(client, worker_factory):
    worker = worker_factory(pool_args=["-c", "2", "-P", "prefork"], new_session=True)
    sleeping = client.send_task("tasks.sleep", args=[1.5], queue=worker.queue)
    crashed = client.send_task("tasks.crash", queue=worker.queue)
    with pytest.raises(WorkerLostError):
        crashed.get(timeout=RESULT_TIMEOUT)
    assert sleeping.get(timeout=RESULT_TIMEOUT) is None


def test_acks_late_crash_is_acked_as_failure(client, worker_factory):
    worker = worker_factory(env=ACKS_LATE, pool_args=PREFORK_ONE_CHILD, new_session=True)
    result = client.send_task("tasks.crash", queue=worker.queue)
    with pytest.raises(WorkerLostError):
        result.get(timeout=RESULT_TIMEOUT)
    assert wait_for_empty_queue(worker.queue) == (0, 0)
    assert run_task(client, worker, "tasks.add", args=[1, 1]) == 2


def test_reject_on_worker_lost_requeues(worker_factory, reply_queue):
    """The crashed message goes back to the queue and comes back, with no FAILURE.

    The crash repeats on every delivery, so the test stops after the second
    one and finds the message in the queue once the worker has exited.
    """
    worker = worker_factory(env=REQUEUE_ON_LOST, pool_args=PREFORK_ONE_CHILD,
                            new_session=True)
    task_id = publish_task_v2(worker.queue, "tasks.crash", reply_to=reply_queue.name)
    wait_for_received(worker, task_id, 2)
    exit_code = worker.stop()
    if worker.kind == "c":
        assert exit_code == 0
    results = [meta for meta in reply_queue.get_all() if meta["task_id"] == task_id]
    assert results == []
    assert wait_for_depths(worker.queue, (1, 0)) == (1, 0)


def test_acks_late_survives_kill_9(client, worker_factory):
    """Kill -9 a worker's process group mid-task, and a second worker reruns its messages.

    tasks.sleep runs while tasks.context waits prefetched and unacked. Both
    messages return to the queue, and tasks.context then reports the
    redelivery and the second worker's name.
    """
    first = worker_factory(env=ACKS_LATE, pool_args=PREFORK_ONE_CHILD, new_session=True)
    sleeping = client.send_task("tasks.sleep", args=[2.0], queue=first.queue)
    context = client.send_task("tasks.context", queue=first.queue)
    wait_for_received(first, sleeping.id, 1, task="tasks.sleep")
    assert wait_for_depths(first.queue, (0, 2)) == (0, 2)
    time.sleep(0.3)

    first.send_signal(signal.SIGKILL, group=True)
    assert first.wait_exit(timeout=5) == -signal.SIGKILL
    assert wait_for_depths(first.queue, (2, 0)) == (2, 0)

    second = worker_factory(env=ACKS_LATE, pool_args=PREFORK_ONE_CHILD,
                            new_session=True, queue=first.queue)
    assert sleeping.get(timeout=RESULT_TIMEOUT) is None
    request = context.get(timeout=RESULT_TIMEOUT)
    assert request["redelivered"] is True
    assert request["hostname"] == second.hostname
    assert request["id"] == context.id
    assert wait_for_empty_queue(first.queue) == (0, 0)
