"""Warm and cold shutdown of a prefork worker with running, held and prefetched tasks.

Warm shutdown (SIGTERM, or a first SIGINT) lets the running tasks finish and
send their results, and returns every message that did not start to the
queue. Cold shutdown (SIGQUIT, or a second SIGINT) exits at once.
"""

import signal
import time

import pytest

from support import RESULT_TIMEOUT, STOP_TIMEOUT, wait_for_depths

POOL_ARGS = ["-c", "2", "-P", "prefork"]
RUNNING_COUNT = 2
# Warm shutdown waits this long for the running sleeps.
WARM_RUNNING_SECONDS = 2.0
# Cold shutdown must not wait for these sleeps.
COLD_RUNNING_SECONDS = 6.0
COLD_EXIT_BOUND = 3.0
HELD_COUNT = 4
# Countdown of the held tasks, in seconds: long enough that they are still
# held when the first worker exits, short enough for the second to run them soon.
HELD_COUNTDOWN = 5.0
PREFETCHED_COUNT = 6
# Seconds that pool children may outlive the main process.
CHILD_EXIT_WAIT = 3.0


def wait_until_started(worker, results, timeout=RESULT_TIMEOUT):
    """Wait until the worker has logged receiving every task in ``results``.

    A prefork child is idle in this test, so a received sleep starts at once,
    and the short pause after lets it get going.
    """
    deadline = time.monotonic() + timeout
    for result in results:
        worker.wait_for_log(f"Task tasks.sleep[{result.id}] received",
                            max(0.0, deadline - time.monotonic()))
    time.sleep(0.3)


def send_running(client, worker, seconds):
    running = [client.send_task("tasks.sleep", args=[seconds], queue=worker.queue)
               for _ in range(RUNNING_COUNT)]
    wait_until_started(worker, running)
    return running


def send_waiting(client, worker):
    """Send tasks that cannot start yet and return ``(results, expected values)``.

    The held ones have a countdown, the others queue behind the running sleeps.
    Both kinds reach the worker unacked, as far as its prefetch limit allows.
    """
    results = []
    expected = []
    for i in range(HELD_COUNT):
        results.append(client.send_task("tasks.add", args=[i, 100], queue=worker.queue,
                                        countdown=HELD_COUNTDOWN))
        expected.append(i + 100)
    for i in range(PREFETCHED_COUNT):
        results.append(client.send_task("tasks.add", args=[i, 200], queue=worker.queue))
        expected.append(i + 200)
    # Let the broker deliver what the prefetch limit allows before the signal.
    wait_for_depths(worker.queue, (0, len(results)), timeout=1.0)
    return results, expected


def check_warm_shutdown(client, worker, worker_factory, running, waiting, expected):
    exit_code = worker.wait_exit(timeout=WARM_RUNNING_SECONDS + STOP_TIMEOUT)
    assert exit_code == 0, (
        f"worker status {exit_code} after warm shutdown (None = still running); "
        f"log {worker.log_path}:\n{worker.log_tail()}"
    )
    assert worker.wait_for_group_exit(CHILD_EXIT_WAIT) == []
    assert client.ResultSet(running).get(timeout=RESULT_TIMEOUT) == [None] * RUNNING_COUNT
    assert wait_for_depths(worker.queue, (len(waiting), 0)) == (len(waiting), 0)
    log = worker.log_text()
    started = [result.id for result in waiting if f"[{result.id}] succeeded" in log]
    assert started == []

    worker_factory(pool_args=POOL_ARGS, queue=worker.queue)
    assert client.ResultSet(waiting).get(timeout=RESULT_TIMEOUT) == expected


def test_sigterm_warm_shutdown(client, worker_factory):
    worker = worker_factory(pool_args=POOL_ARGS, new_session=True)
    running = send_running(client, worker, WARM_RUNNING_SECONDS)
    waiting, expected = send_waiting(client, worker)
    worker.send_signal(signal.SIGTERM)
    check_warm_shutdown(client, worker, worker_factory, running, waiting, expected)


@pytest.mark.python_xfail(
    reason="Celery 5.2 resets SIGTERM to its default action in prefork children, so "
    "the group SIGTERM kills the running tasks with WorkerLostError"
)
def test_group_sigterm_warm_shutdown(client, worker_factory):
    """SIGTERM to every process of the group, as systemd's default KillMode sends it."""
    worker = worker_factory(pool_args=POOL_ARGS, new_session=True)
    running = send_running(client, worker, WARM_RUNNING_SECONDS)
    waiting, expected = send_waiting(client, worker)
    worker.send_signal(signal.SIGTERM, group=True)
    check_warm_shutdown(client, worker, worker_factory, running, waiting, expected)


def test_first_sigint_warm_shutdown(client, worker_factory):
    worker = worker_factory(pool_args=POOL_ARGS, new_session=True)
    running = send_running(client, worker, WARM_RUNNING_SECONDS)
    waiting, expected = send_waiting(client, worker)
    worker.send_signal(signal.SIGINT)
    check_warm_shutdown(client, worker, worker_factory, running, waiting, expected)


@pytest.mark.parametrize("signals", [
    pytest.param([signal.SIGINT, signal.SIGINT], id="second-sigint"),
    pytest.param([signal.SIGQUIT], id="sigquit"),
    pytest.param([signal.SIGTERM, signal.SIGQUIT], id="sigquit-during-warm"),
])
def test_cold_shutdown_exits_quickly(client, worker_factory, signals):
    worker = worker_factory(pool_args=POOL_ARGS, new_session=True)
    send_running(client, worker, COLD_RUNNING_SECONDS)
    waiting, _ = send_waiting(client, worker)
    signalled = time.monotonic()
    for signum in signals:
        worker.send_signal(signum)
        time.sleep(0.2)
    exit_code = worker.wait_exit(timeout=COLD_EXIT_BOUND)
    elapsed = time.monotonic() - signalled
    assert exit_code is not None, (
        f"worker still running {COLD_EXIT_BOUND} s after cold shutdown; "
        f"log {worker.log_path}:\n{worker.log_tail()}"
    )
    assert elapsed < COLD_EXIT_BOUND
    assert worker.wait_for_group_exit(CHILD_EXIT_WAIT) == []
    assert wait_for_depths(worker.queue, (len(waiting), 0)) == (len(waiting), 0)
    log = worker.log_text()
    started = [result.id for result in waiting if f"[{result.id}] succeeded" in log]
    assert started == []

