"""Queue options: several queues, quorum queues, priorities and unlimited prefetch."""

import time

import pytest
from celery import Celery
from kombu import Exchange, Queue

import support
from conftest import run_task
from support import (RESULT_TIMEOUT, amqp_connection, delete_queue, queue_arguments,
                     unique_name, wait_for_depths)

MAX_PRIORITY = 10


@pytest.fixture
def extra_queues():
    """Names of queues that a test creates besides its worker's, deleted afterwards."""
    names = []
    yield names
    for name in names:
        delete_queue(name)


@pytest.fixture
def priority_client(broker):
    """A Celery client with task_queue_max_priority set, so it declares x-max-priority."""
    app = Celery("interop-priority-client", broker=broker, backend=support.RESULT_BACKEND)
    app.conf.broker_connection_retry = False
    app.conf.task_queue_max_priority = MAX_PRIORITY
    yield app
    app.close()


def test_two_queues_both_consumed(client, worker_factory, extra_queues):
    first = unique_name("interop.test_queues.first")
    second = unique_name("interop.test_queues.second")
    extra_queues.append(second)
    # The later -Q replaces the one the harness puts on the command line.
    worker = worker_factory(queue=first, extra_args=["-Q", f"{first},{second}"])
    on_first = [client.send_task("tasks.add", args=[i, 1], queue=first) for i in range(3)]
    on_second = [client.send_task("tasks.add", args=[i, 2], queue=second) for i in range(3)]
    assert client.ResultSet(on_first).get(timeout=RESULT_TIMEOUT) == [1, 2, 3]
    assert client.ResultSet(on_second).get(timeout=RESULT_TIMEOUT) == [2, 3, 4]
    context = client.send_task("tasks.context", queue=second).get(timeout=RESULT_TIMEOUT)
    assert context["routing_key"] == second
    assert context["hostname"] == worker.hostname


@pytest.mark.python_xfail(
    reason="Celery 5.2 declares -Q queues without x-queue-type, which RabbitMQ "
    "rejects with PRECONDITION_FAILED for an existing quorum queue"
)
def test_existing_quorum_queue_consumed(client, worker_factory, extra_queues):
    name = unique_name("interop.test_queues.quorum")
    extra_queues.append(name)
    with amqp_connection() as connection:
        channel = connection.channel()
        channel.exchange_declare(name, "direct", durable=True, auto_delete=False)
        channel.queue_declare(name, durable=True, auto_delete=False,
                              arguments={"x-queue-type": "quorum"})
        channel.queue_bind(name, name, name)
    worker = worker_factory(queue=name)
    # A Celery client must declare the quorum queue as it is, or the broker
    # rejects its declaration.
    quorum = Queue(name, Exchange(name, type="direct"), routing_key=name,
                   queue_arguments={"x-queue-type": "quorum"})
    results = [client.send_task("tasks.add", args=[i, 5], queue=quorum) for i in range(4)]
    assert client.ResultSet(results).get(timeout=RESULT_TIMEOUT) == [5, 6, 7, 8]
    assert queue_arguments(name).get("x-queue-type") == "quorum"
    assert run_task(client, worker, "tasks.echo", args=["quorum"]) == "quorum"
    # RabbitMQ applies a later basic.qos only to new consumers, so the log
    # warns that ETA tasks take up places in the fixed prefetch.
    assert "per-consumer prefetch that stays fixed" in worker.log_text()


def test_max_priority_declared(worker_factory):
    worker = worker_factory(env={"CELERY_TASK_QUEUE_MAX_PRIORITY": str(MAX_PRIORITY)})
    assert queue_arguments(worker.queue) == {"x-max-priority": MAX_PRIORITY}


def test_max_priority_matches_python_producer(priority_client, worker_factory):
    """A Celery client with the same setting declares the queue without a conflict."""
    worker = worker_factory(env={"CELERY_TASK_QUEUE_MAX_PRIORITY": str(MAX_PRIORITY)})
    results = [
        priority_client.send_task("tasks.add", args=[i, 0], queue=worker.queue, priority=i)
        for i in range(MAX_PRIORITY + 1)
    ]
    expected = list(range(MAX_PRIORITY + 1))
    assert priority_client.ResultSet(results).get(timeout=RESULT_TIMEOUT) == expected
    assert queue_arguments(worker.queue) == {"x-max-priority": MAX_PRIORITY}


def test_existing_priority_queue_consumed(priority_client, worker_factory, extra_queues):
    """The worker consumes a queue that a producer declared first with x-max-priority."""
    name = unique_name("interop.test_queues.priority")
    extra_queues.append(name)
    with amqp_connection() as connection:
        channel = connection.channel()
        channel.exchange_declare(name, "direct", durable=True, auto_delete=False)
        channel.queue_declare(name, durable=True, auto_delete=False,
                              arguments={"x-max-priority": MAX_PRIORITY})
        channel.queue_bind(name, name, name)
    worker = worker_factory(queue=name,
                            env={"CELERY_TASK_QUEUE_MAX_PRIORITY": str(MAX_PRIORITY)})
    assert run_task(priority_client, worker, "tasks.add", args=[4, 5]) == 9


def test_prefetch_multiplier_zero_unlimited(client, worker_factory):
    """Multiplier 0 removes the prefetch limit: every queued message is delivered at once.

    With acks_late every delivered message stays unacked until its task ends,
    so the unacked count shows how many the worker took.
    """
    worker = worker_factory(env={"CELERY_WORKER_PREFETCH_MULTIPLIER": "0",
                                 "CELERY_TASK_ACKS_LATE": "true"})
    sleeping = client.send_task("tasks.sleep", args=[2.0], queue=worker.queue)
    time.sleep(0.3)
    adds = [client.send_task("tasks.add", args=[i, i], queue=worker.queue)
            for i in range(12)]
    total = len(adds) + 1
    assert wait_for_depths(worker.queue, (0, total), timeout=1.5) == (0, total)
    assert sleeping.get(timeout=RESULT_TIMEOUT) is None
    assert client.ResultSet(adds).get(timeout=RESULT_TIMEOUT) == [2 * i for i in range(12)]


def test_default_prefetch_is_limited(client, worker_factory):
    """The default multiplier 4 with one process leaves all but 4 messages in the queue."""
    worker = worker_factory(env={"CELERY_TASK_ACKS_LATE": "true"})
    sleeping = client.send_task("tasks.sleep", args=[1.5], queue=worker.queue)
    time.sleep(0.3)
    adds = [client.send_task("tasks.add", args=[i, 1], queue=worker.queue)
            for i in range(12)]
    total = len(adds) + 1
    assert wait_for_depths(worker.queue, (total - 4, 4), timeout=1.0) == (total - 4, 4)
    assert sleeping.get(timeout=RESULT_TIMEOUT) is None
    assert client.ResultSet(adds).get(timeout=RESULT_TIMEOUT) == [i + 1 for i in range(12)]
