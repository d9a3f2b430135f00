"""Execution pools: prefork and threads run tasks in parallel, solo one at a time."""

import os
import signal
import time

import pytest
from billiard.exceptions import WorkerLostError

from conftest import run_task
from support import RESULT_TIMEOUT, child_pids

TASK_COUNT = 4
TASK_SECONDS = 1.0
# Four parallel one-second sleeps must all finish within this many seconds of
# sending. The bound is loose on purpose: it proves parallelism, not speed.
PARALLEL_BOUND = 2.5
# Four one-second sleeps run one after another take at least this long.
SERIAL_MINIMUM = 3.5
# Beside a long task, a shorter one occupies the other prefork child while
# short tasks arrive, so the worker lines one of them up behind each.
LONG_SECONDS = 4.0
BRIEF_SECONDS = 1.0
SHORT_COUNT = 6
# The short tasks must all have finished this long after they were sent,
# well before the long task ends.
SHORT_BOUND = 2.5
# Echoes whose arguments and results are each longer than a Unix socket's
# buffer, more of them than two busy children take at once.
LONG_TEXT_BYTES = 300 * 1024
LONG_ECHO_COUNT = 8
# Seconds to wait for a worker to log that it received a task.
LOG_WAIT = 10.0


def run_sleeps(client, worker):
    """Send TASK_COUNT sleeps at once and return the seconds until all results arrived.

    A ResultSet collects the results as they come. With Celery 5.2's rpc
    backend, calling get() on each AsyncResult in turn added about a second
    per result from the second round of sleeps on, so that would time the client.
    """
    started = time.monotonic()
    results = [
        client.send_task("tasks.sleep", args=[TASK_SECONDS], queue=worker.queue)
        for _ in range(TASK_COUNT)
    ]
    assert client.ResultSet(results).get(timeout=RESULT_TIMEOUT) == [None] * TASK_COUNT
    return time.monotonic() - started


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_pool_runs_tasks_in_parallel(client, worker_factory, pool):
    worker = worker_factory(pool_args=["-c", str(TASK_COUNT), "-P", pool])
    elapsed = run_sleeps(client, worker)
    assert elapsed < PARALLEL_BOUND, (
        f"{TASK_COUNT} sleeps of {TASK_SECONDS} s took {elapsed:.2f} s on -P {pool} "
        f"-c {TASK_COUNT}"
    )


def test_solo_pool_runs_one_at_a_time(client, worker_factory):
    worker = worker_factory(pool_args=["-P", "solo"])
    elapsed = run_sleeps(client, worker)
    assert elapsed >= SERIAL_MINIMUM, (
        f"{TASK_COUNT} sleeps of {TASK_SECONDS} s took only {elapsed:.2f} s on -P solo"
    )


def test_default_pool_is_prefork(client, worker_factory):
    """Without -P the worker runs tasks in parallel child processes.

    Only a process pool survives tasks.crash, so the WorkerLostError shows
    that the default is prefork rather than threads.
    """
    worker = worker_factory(pool_args=["-c", str(TASK_COUNT)], new_session=True)
    elapsed = run_sleeps(client, worker)
    assert elapsed < PARALLEL_BOUND, (
        f"{TASK_COUNT} sleeps of {TASK_SECONDS} s took {elapsed:.2f} s without -P"
    )
    crashed = client.send_task("tasks.crash", queue=worker.queue)
    with pytest.raises(WorkerLostError):
        crashed.get(timeout=RESULT_TIMEOUT)
    assert run_task(client, worker, "tasks.add", args=[2, 3]) == 5


def wait_for_received(worker, task_name, task_id):
    """Wait until the worker has logged receiving ``task_id``, then a little more.

    The pause lets the worker hand the task on after the log line.
    """
    worker.wait_for_log(f"Task {task_name}[{task_id}] received", LOG_WAIT)
    time.sleep(0.3)


def test_short_tasks_pass_long_one(client, worker_factory):
    """Once the brief task ends, its child runs every short one.

    No short task waits for the long one, not even one that the worker had
    already lined up behind it.
    """
    worker = worker_factory(pool_args=["-c", "2", "-P", "prefork"])
    long_task = client.send_task("tasks.sleep", args=[LONG_SECONDS], queue=worker.queue)
    wait_for_received(worker, "tasks.sleep", long_task.id)
    brief_task = client.send_task("tasks.sleep", args=[BRIEF_SECONDS], queue=worker.queue)
    wait_for_received(worker, "tasks.sleep", brief_task.id)
    started = time.monotonic()
    short = [client.send_task("tasks.add", args=[i, i], queue=worker.queue)
             for i in range(SHORT_COUNT)]
    expected = [2 * i for i in range(SHORT_COUNT)]
    assert client.ResultSet(short).get(timeout=RESULT_TIMEOUT) == expected
    elapsed = time.monotonic() - started
    assert elapsed < SHORT_BOUND, (
        f"{SHORT_COUNT} adds took {elapsed:.2f} s beside a sleep of {LONG_SECONDS} s"
    )
    assert brief_task.get(timeout=RESULT_TIMEOUT) is None
    assert long_task.get(timeout=RESULT_TIMEOUT) is None


def test_killed_child_spares_next_task(client, worker_factory):
    """A task waiting for the only child runs on its replacement after a kill -9."""
    worker = worker_factory(pool_args=["-c", "1", "-P", "prefork"], new_session=True)
    sleeping = client.send_task("tasks.sleep", args=[30], queue=worker.queue)
    wait_for_received(worker, "tasks.sleep", sleeping.id)
    waiting = client.send_task("tasks.add", args=[2, 3], queue=worker.queue)
    wait_for_received(worker, "tasks.add", waiting.id)
    children = child_pids(worker.process.pid)
    assert len(children) == 1, f"pool processes: {children}"

    os.kill(children[0], signal.SIGKILL)
    with pytest.raises(WorkerLostError):
        sleeping.get(timeout=RESULT_TIMEOUT)
    assert waiting.get(timeout=RESULT_TIMEOUT) == 5


def test_long_echoes_with_busy_children(client, worker_factory):
    """Long arguments and results pass while every child is busy, with no stall.

    The echoes wait until two sleeps end, then reach the children back to back.
    """
    worker = worker_factory(pool_args=["-c", "2", "-P", "prefork"])
    sleeps = [client.send_task("tasks.sleep", args=[BRIEF_SECONDS], queue=worker.queue)
              for _ in range(2)]
    for sleep in sleeps:
        wait_for_received(worker, "tasks.sleep", sleep.id)
    texts = [str(i) * LONG_TEXT_BYTES for i in range(LONG_ECHO_COUNT)]
    results = [client.send_task("tasks.echo", args=[text], queue=worker.queue)
               for text in texts]
    assert client.ResultSet(sleeps).get(timeout=RESULT_TIMEOUT) == [None, None]
    assert client.ResultSet(results).get(timeout=RESULT_TIMEOUT) == texts
