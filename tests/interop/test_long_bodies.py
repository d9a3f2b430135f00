"""Bodies longer than one AMQP frame on the prefork pool.

The main process keeps such a body as received and the child parses it, so
these tests check that the arguments still reach the task, a retry and
``inspect active``, also when only the embedded callbacks make the body long.
"""

import time

from conftest import run_task
from support import RESULT_TIMEOUT

PREFORK = ["-c", "2", "-P", "prefork"]
# Three body frames at RabbitMQ's default frame_max of 128 KiB.
LONG_TEXT = "z" * (3 * 131072)
INSPECT_TIMEOUT = 5.0


def long_errback(client):
    """A link_error signature that makes any message carrying it long."""
    return client.signature("tasks.echo", args=[LONG_TEXT])


def test_long_keyword_argument(client, worker_factory):
    worker = worker_factory(pool_args=PREFORK)
    returned = run_task(client, worker, "tasks.echo", kwargs={"value": LONG_TEXT}, timeout=30)
    assert returned == LONG_TEXT


def test_long_list_argument(client, worker_factory):
    worker = worker_factory(pool_args=PREFORK)
    numbers = [1] * 200000
    assert run_task(client, worker, "tasks.xsum", args=[numbers], timeout=30) == 200000


def test_small_arguments_in_long_body(client, worker_factory):
    worker = worker_factory(pool_args=PREFORK)
    result = client.send_task("tasks.add", kwargs={"x": 2, "y": 3}, queue=worker.queue,
                              link_error=long_errback(client))
    assert result.get(timeout=RESULT_TIMEOUT) == 5


def test_retry_of_long_body_keeps_arguments(client, worker_factory):
    worker = worker_factory(pool_args=PREFORK)
    result = client.send_task("tasks.flaky", args=[2], queue=worker.queue,
                              link_error=long_errback(client))
    assert result.get(timeout=30) == 2


def test_active_shows_arguments_of_long_body(client, worker_factory):
    worker = worker_factory(pool_args=PREFORK)
    inspect = client.control.inspect(destination=[worker.hostname], timeout=INSPECT_TIMEOUT)
    sleeping = client.send_task("tasks.sleep", args=[2.0], queue=worker.queue,
                                link_error=long_errback(client))
    deadline = time.monotonic() + INSPECT_TIMEOUT
    entry = None
    while entry is None and time.monotonic() < deadline:
        replies = inspect.active() or {}
        entry = next((task for task in replies.get(worker.hostname, [])
                      if task["id"] == sleeping.id), None)
    assert entry is not None, f"task {sleeping.id} never showed in active"
    assert entry["args"] == [2.0]
    assert entry["kwargs"] == {}
    assert sleeping.get(timeout=RESULT_TIMEOUT) is None
