"""Task protocol v1 messages and compressed bodies from a real Celery client."""

import uuid
import zlib

import pytest
from celery import Celery

from conftest import run_task
from support import (
    BROKER_URL,
    RESULT_BACKEND,
    RESULT_TIMEOUT,
    publish_raw,
    task_body_v2,
    task_headers_v2,
)


@pytest.fixture(scope="module")
def client_v1():
    """A Celery client that sends task protocol v1 (body dict, no headers)."""
    app = Celery("interop-client-v1", broker=BROKER_URL, backend=RESULT_BACKEND)
    app.conf.task_protocol = 1
    app.conf.broker_connection_retry = False
    yield app
    app.close()


def test_v1_add_args(client_v1, worker):
    assert run_task(client_v1, worker, "tasks.add", args=[2, 3]) == 5


def test_v1_add_kwargs(client_v1, worker):
    assert run_task(client_v1, worker, "tasks.add", kwargs={"x": 4, "y": 5}) == 9


def test_v1_unicode_echo(client_v1, worker):
    text = "v1 ✓ 日本 😀"
    assert run_task(client_v1, worker, "tasks.echo", args=[text]) == text


def test_v1_fail_raises_value_error(client_v1, worker):
    result = client_v1.send_task("tasks.fail", args=["v1 failure"], queue=worker.queue)
    with pytest.raises(ValueError) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert error.value.args == ("v1 failure",)


def test_v1_context_fields(client_v1, worker):
    result = client_v1.send_task("tasks.context", queue=worker.queue, expires=120)
    context = result.get(timeout=RESULT_TIMEOUT)
    assert context["id"] == result.id
    assert context["retries"] == 0
    assert context["hostname"] == worker.hostname
    assert context["routing_key"] == worker.queue
    assert context["eta"] is None
    assert isinstance(context["expires"], str)


def test_v1_countdown(client_v1, worker):
    result = client_v1.send_task("tasks.add", args=[1, 1], queue=worker.queue, countdown=1)
    assert result.get(timeout=RESULT_TIMEOUT) == 2


def test_v1_retries(client_v1, worker):
    assert run_task(client_v1, worker, "tasks.flaky", args=[2]) == 2


@pytest.mark.parametrize("compression", ["zlib", "gzip"])
def test_compressed_add(client, worker, compression):
    assert run_task(client, worker, "tasks.add", args=[6, 7], compression=compression) == 13


@pytest.mark.parametrize("compression", ["zlib", "gzip"])
def test_compressed_unicode_echo(client, worker, compression):
    text = "сжатие 压缩 😀" * 100
    assert run_task(client, worker, "tasks.echo", args=[text], compression=compression) == text


def test_compressed_two_megabyte_echo(client, worker):
    value = "compressible " * 170000
    returned = run_task(client, worker, "tasks.echo", args=[value], compression="zlib",
                        timeout=30)
    assert returned == value


def test_compressed_v1_message(client_v1, worker):
    assert run_task(client_v1, worker, "tasks.add", args=[8, 9], compression="zlib") == 17


def test_compressed_raw_message(worker, reply_queue):
    task_id = str(uuid.uuid4())
    headers = task_headers_v2("tasks.add", task_id, compression="application/x-gzip")
    publish_raw(worker.queue, zlib.compress(task_body_v2([20, 22])), headers=headers,
                correlation_id=task_id, reply_to=reply_queue.name)
    messages = reply_queue.wait_for(task_id)
    assert messages[-1]["status"] == "SUCCESS"
    assert messages[-1]["result"] == 42
