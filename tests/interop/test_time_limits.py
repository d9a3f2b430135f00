"""Hard and soft time limits, from the command line and from the task message.

Hard limits need the prefork pool, where the worker kills the child process
and starts a new one. tasks.spin burns CPU and ignores the soft limit, and
tasks.sleep fails with SoftTimeLimitExceeded when a soft limit passes.
"""

import time

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from conftest import make_worker, run_task, start_worker, stop_worker
from support import RESULT_TIMEOUT, publish_task_v2, wait_for_empty_queue

PREFORK_ONE_CHILD = ["-c", "1", "-P", "prefork"]
HARD_LIMIT = 1.0
SOFT_LIMIT = 0.5
# tasks.spin and tasks.sleep run this long unless a limit stops them.
TASK_SECONDS = 5.0
# A limited task must end well before TASK_SECONDS. The margin over the limit
# leaves room for a slow machine to kill and replace the child.
LIMITED_BOUND = 3.5


@pytest.fixture(scope="module")
def worker(worker_kind, broker):
    """A prefork worker with one child and no time limits of its own."""
    process = make_worker(worker_kind, "test_time_limits", pool_args=PREFORK_ONE_CHILD,
                          new_session=True)
    start_worker(process)
    yield process
    stop_worker(process)


def start_limited_worker(worker_kind, tag, extra_args):
    process = make_worker(worker_kind, tag, pool_args=PREFORK_ONE_CHILD,
                          new_session=True, extra_args=extra_args)
    start_worker(process)
    return process


@pytest.fixture(scope="module")
def hard_limited_worker(worker_kind, broker):
    """A prefork worker with one child, started with --time-limit."""
    process = start_limited_worker(worker_kind, "test_time_limits.hard",
                                   ["--time-limit", str(HARD_LIMIT)])
    yield process
    stop_worker(process)


@pytest.fixture(scope="module")
def soft_limited_worker(worker_kind, broker):
    """A prefork worker with one child, started with --soft-time-limit.

    It gets a worker of its own because the Python twin's tasks.spin, unlike
    the C one, stops at a soft limit.
    """
    process = start_limited_worker(worker_kind, "test_time_limits.soft",
                                   ["--soft-time-limit", str(SOFT_LIMIT)])
    yield process
    stop_worker(process)


def expect_failure(client, worker, name, args, exception_type, **options):
    """Run ``name`` and return the seconds until it failed with ``exception_type``."""
    started = time.monotonic()
    result = client.send_task(name, args=args, queue=worker.queue, **options)
    with pytest.raises(exception_type):
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"
    return time.monotonic() - started


def test_time_limit_option_kills_spin(client, hard_limited_worker):
    worker = hard_limited_worker
    elapsed = expect_failure(client, worker, "tasks.spin", [TASK_SECONDS], TimeLimitExceeded)
    assert elapsed < LIMITED_BOUND, f"spin ran {elapsed:.2f} s past --time-limit {HARD_LIMIT}"
    assert run_task(client, worker, "tasks.add", args=[1, 2]) == 3


def test_soft_time_limit_option_stops_sleep(client, soft_limited_worker):
    worker = soft_limited_worker
    elapsed = expect_failure(client, worker, "tasks.sleep", [TASK_SECONDS],
                             SoftTimeLimitExceeded)
    assert elapsed < LIMITED_BOUND
    assert run_task(client, worker, "tasks.add", args=[2, 2]) == 4


def test_message_time_limit_kills_spin(client, worker):
    elapsed = expect_failure(client, worker, "tasks.spin", [TASK_SECONDS],
                             TimeLimitExceeded, time_limit=HARD_LIMIT)
    assert elapsed < LIMITED_BOUND, f"spin ran {elapsed:.2f} s past time_limit={HARD_LIMIT}"
    assert run_task(client, worker, "tasks.add", args=[3, 4]) == 7


def test_message_soft_time_limit_stops_sleep(client, worker):
    elapsed = expect_failure(client, worker, "tasks.sleep", [TASK_SECONDS],
                             SoftTimeLimitExceeded, soft_time_limit=SOFT_LIMIT)
    assert elapsed < LIMITED_BOUND
    assert run_task(client, worker, "tasks.add", args=[4, 4]) == 8


def time_limit_failures(worker, reply_queue):
    """Run a spin that hits its message time limit and return its FAILURE result messages.

    It waits a second past the first FAILURE to catch any repeat.
    """
    task_id = publish_task_v2(worker.queue, "tasks.spin", args=[TASK_SECONDS],
                              reply_to=reply_queue.name, timelimit=[HARD_LIMIT, None])
    messages = reply_queue.wait_for(task_id)
    time.sleep(1.0)
    messages += reply_queue.get_all()
    return [meta for meta in messages
            if meta["task_id"] == task_id and meta["status"] == "FAILURE"]


def test_time_limit_error_fields(worker, reply_queue):
    failures = time_limit_failures(worker, reply_queue)
    assert failures
    for meta in failures:
        assert meta["result"]["exc_type"] == "TimeLimitExceeded"
        assert meta["result"]["exc_module"] == "billiard.exceptions"
        assert meta["result"]["exc_message"] == [HARD_LIMIT]


@pytest.mark.python_xfail(
    reason="Celery 5.2 stores a hard time limit failure twice, once in its timeout "
    "handler and once in its failure handler"
)
def test_time_limit_sends_one_failure(worker, reply_queue):
    failures = time_limit_failures(worker, reply_queue)
    assert len(failures) == 1, failures


def test_next_tasks_after_limits_succeed(client, worker):
    expect_failure(client, worker, "tasks.spin", [TASK_SECONDS], TimeLimitExceeded,
                   time_limit=HARD_LIMIT)
    expect_failure(client, worker, "tasks.spin", [TASK_SECONDS], TimeLimitExceeded,
                   time_limit=HARD_LIMIT)
    results = [client.send_task("tasks.add", args=[i, i], queue=worker.queue)
               for i in range(5)]
    assert client.ResultSet(results).get(timeout=RESULT_TIMEOUT) == [0, 2, 4, 6, 8]


def test_time_limit_spares_other_child(client, worker_factory):
    """Killing the child over its limit leaves the task in the other child running."""
    worker = worker_factory(pool_args=["-c", "2", "-P", "prefork"], new_session=True)
    sleeping = client.send_task("tasks.sleep", args=[2.0], queue=worker.queue)
    expect_failure(client, worker, "tasks.spin", [TASK_SECONDS], TimeLimitExceeded,
                   time_limit=HARD_LIMIT)
    assert sleeping.get(timeout=RESULT_TIMEOUT) is None


def test_acks_late_time_limit_acked(client, worker_factory):
    """A task over its hard limit is acked as failed, not requeued as a lost worker."""
    worker = worker_factory(
        env={"CELERY_TASK_ACKS_LATE": "true", "CELERY_TASK_REJECT_ON_WORKER_LOST": "true"},
        pool_args=PREFORK_ONE_CHILD, new_session=True,
    )
    expect_failure(client, worker, "tasks.spin", [TASK_SECONDS], TimeLimitExceeded,
                   time_limit=HARD_LIMIT)
    assert wait_for_empty_queue(worker.queue) == (0, 0)
    assert run_task(client, worker, "tasks.add", args=[5, 5]) == 10


@pytest.mark.c_only("checks the C worker's startup WARNING")
@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_hard_limit_unenforceable_warns(worker_factory, pool):
    worker = worker_factory(pool_args=["-c", "1", "-P", pool],
                            extra_args=["--time-limit", str(HARD_LIMIT)])
    warnings = worker.warnings_since(0)
    assert any("limit" in line.lower() for line in warnings), (
        f"no startup WARNING about the hard time limit on -P {pool}; "
        f"log {worker.log_path}:\n{worker.log_tail()}"
    )


@pytest.mark.c_only("Python Celery enforces no time limits on the threads or solo pool")
@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_soft_limit_without_prefork(client, worker_factory, pool):
    worker = worker_factory(pool_args=["-c", "2", "-P", pool])
    elapsed = expect_failure(client, worker, "tasks.sleep", [TASK_SECONDS],
                             SoftTimeLimitExceeded, soft_time_limit=SOFT_LIMIT)
    assert elapsed < LIMITED_BOUND
