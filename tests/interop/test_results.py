"""Which result messages the worker sends on the rpc backend."""

import time

import pytest

from support import RESULT_TIMEOUT, publish_task_v2


def test_success_result_message(worker, reply_queue):
    task_id = publish_task_v2(worker.queue, "tasks.add", args=[2, 3],
                              reply_to=reply_queue.name)
    messages = reply_queue.wait_for(task_id)
    assert len(messages) == 1
    meta = messages[0]
    assert meta["task_id"] == task_id
    assert meta["status"] == "SUCCESS"
    assert meta["result"] == 5
    assert meta["traceback"] is None
    assert meta["children"] == []


def test_failure_result_message(worker, reply_queue):
    task_id = publish_task_v2(worker.queue, "tasks.fail", args=["boom"],
                              reply_to=reply_queue.name)
    meta = reply_queue.wait_for(task_id)[-1]
    assert meta["status"] == "FAILURE"
    assert meta["result"] == {
        "exc_type": "ValueError",
        "exc_message": ["boom"],
        "exc_module": "builtins",
    }
    assert isinstance(meta["traceback"], str)


def test_ignore_result_header_sends_nothing(worker, reply_queue):
    ignored_id = publish_task_v2(worker.queue, "tasks.add", args=[1, 1],
                                 reply_to=reply_queue.name, ignore_result=True)
    marker_id = publish_task_v2(worker.queue, "tasks.add", args=[2, 2],
                                reply_to=reply_queue.name)
    messages = reply_queue.wait_for(marker_id)
    task_ids = [meta["task_id"] for meta in messages]
    assert ignored_id not in task_ids
    assert task_ids == [marker_id]


def test_ignore_result_option_sends_nothing(client, worker, reply_queue):
    ignored = client.send_task("tasks.add", args=[1, 1], queue=worker.queue,
                               ignore_result=True, reply_to=reply_queue.name)
    marker = client.send_task("tasks.add", args=[2, 2], queue=worker.queue,
                              reply_to=reply_queue.name)
    messages = reply_queue.wait_for(marker.id)
    task_ids = [meta["task_id"] for meta in messages]
    assert ignored.id not in task_ids
    assert task_ids == [marker.id]


def test_ignore_result_header_still_sends_failure(worker, reply_queue):
    # Celery 5.2 applies the ignore_result header to successes only. Failures
    # are stored unless the task itself has ignore_result set.
    failed_id = publish_task_v2(worker.queue, "tasks.fail", args=["not ignored"],
                                reply_to=reply_queue.name, ignore_result=True)
    messages = reply_queue.wait_for(failed_id)
    assert [meta["task_id"] for meta in messages] == [failed_id]
    assert messages[0]["status"] == "FAILURE"


def test_empty_reply_to_sends_nothing(worker, reply_queue, run):
    publish_task_v2(worker.queue, "tasks.add", args=[1, 1], reply_to="")
    assert run("tasks.add", 3, 3) == 6
    assert reply_queue.get_all() == []


def test_result_correlation_id_is_task_id(worker, reply_queue):
    task_id = publish_task_v2(worker.queue, "tasks.echo", args=["x"],
                              reply_to=reply_queue.name)
    message = None
    for _ in range(int(RESULT_TIMEOUT / 0.05)):
        message = reply_queue.channel.basic_get(reply_queue.name, no_ack=True)
        if message is not None:
            break
        time.sleep(0.05)
    assert message is not None, "no result message arrived"
    assert message.properties.get("correlation_id") == task_id
    assert message.properties.get("content_type") == "application/json"
    assert message.properties.get("delivery_mode") == 1


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_unencodable_result_fails_with_encode_error(client, worker_factory, pool):
    worker = worker_factory(pool_args=["-c", "2", "-P", pool])
    result = client.send_task("tasks.unencodable", queue=worker.queue)
    with pytest.raises(Exception) as raised:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(raised.value).__name__ == "EncodeError"
    assert result.state == "FAILURE"
    # The worker goes on.
    assert client.send_task("tasks.add", args=[1, 2], queue=worker.queue).get(
        timeout=RESULT_TIMEOUT) == 3


@pytest.mark.python_xfail(
    reason="Python Celery reads any number of headers; celeriac rejects a "
    "message past celeriac_max_headers (256) and stores InvalidTaskError"
)
def test_too_many_headers_get_invalid_task_error(worker, reply_queue):
    extra = {f"x-extra-{i}": i for i in range(300)}
    task_id = publish_task_v2(worker.queue, "tasks.add", args=[1, 1],
                              reply_to=reply_queue.name, **extra)
    meta = reply_queue.wait_for(task_id)[-1]
    assert meta["status"] == "FAILURE"
    assert meta["result"]["exc_type"] == "InvalidTaskError"
    assert "over the cap of 256" in meta["result"]["exc_message"][0]
