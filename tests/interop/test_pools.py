"""Execution pools: prefork and threads run tasks in parallel, solo one at a time."""

import time

import pytest
from billiard.exceptions import WorkerLostError

from conftest import run_task
from support import RESULT_TIMEOUT

TASK_COUNT = 4
TASK_SECONDS = 1.0
# Four parallel one-second sleeps must all finish within this many seconds of
# sending. The bound is loose on purpose: it proves parallelism, not speed.
PARALLEL_BOUND = 2.5
# Four one-second sleeps run one after another take at least this long.
SERIAL_MINIMUM = 3.5


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
