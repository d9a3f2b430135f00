"""Malformed task messages: the worker rejects or drops them and keeps running.

Each case starts a worker of its own, publishes one bad message, then a
normal task. When the normal task's result arrives, the bad message has been
handled (the worker reads its queue in order). A dead-letter policy on the
queue distinguishes a reject (requeue=False: the message is dead-lettered)
from an ack (the message is gone).
"""

import json
import re
import uuid
from dataclasses import dataclass, field

import pytest

from support import (
    DeadLetterQueue,
    amqp_connection,
    declare_task_queue,
    unique_name,
    publish_raw,
    wait_for_empty_queue,
    task_body_v2,
    task_headers_v2,
)

REJECT = "reject"
ACK = "ack"


@dataclass
class BadMessage:
    body: bytes
    headers: dict
    outcome: str
    # Words of which the C worker's WARNING line must contain at least one.
    reason_pattern: str
    content_type: str = "application/json"
    task_id: str = None
    properties: dict = field(default_factory=dict)


def v2_headers(task_id, task="tasks.add", **overrides):
    return task_headers_v2(task, task_id, **overrides)


def build_unknown_task(task_id):
    return BadMessage(task_body_v2([1, 2]), v2_headers(task_id, task="tasks.nope"),
                      REJECT, r"tasks\.nope|unknown|not registered|unregistered", task_id=task_id)


def build_body_two_items(task_id):
    return BadMessage(json.dumps([[1, 2], {}]).encode(), v2_headers(task_id),
                      REJECT, r"body|list|array|invalid", task_id=task_id)


def build_body_string(task_id):
    return BadMessage(json.dumps("just a string").encode(), v2_headers(task_id),
                      REJECT, r"body|list|array|invalid", task_id=task_id)


def build_args_not_list(task_id):
    body = json.dumps([{"x": 1}, {}, {}]).encode()
    return BadMessage(body, v2_headers(task_id), REJECT, r"args|arguments", task_id=task_id)


def build_kwargs_not_dict(task_id):
    body = json.dumps([[1, 2], [3], {}]).encode()
    return BadMessage(body, v2_headers(task_id), REJECT, r"kwargs|keyword", task_id=task_id)


def build_missing_id(task_id):
    headers = v2_headers(task_id)
    del headers["id"]
    return BadMessage(task_body_v2([1, 2]), headers, REJECT, r"\bid\b|task id")


def build_bad_eta(task_id):
    headers = v2_headers(task_id, eta="next tuesday")
    return BadMessage(task_body_v2([1, 2]), headers, REJECT, r"eta", task_id=task_id)


def build_bad_expires(task_id):
    headers = v2_headers(task_id, expires="2024-13-45T99:99:99")
    return BadMessage(task_body_v2([1, 2]), headers, REJECT, r"expires", task_id=task_id)


def build_unsupported_content_type(task_id):
    return BadMessage(b"- 1\n- 2\n", v2_headers(task_id), REJECT,
                      r"content|x-yaml|serializ", content_type="application/x-yaml",
                      task_id=task_id)


def build_unknown_compression(task_id):
    headers = v2_headers(task_id, compression="application/x-nonexistent")
    return BadMessage(task_body_v2([1, 2]), headers, REJECT, r"compress", task_id=task_id)


def build_v1_without_task(task_id):
    body = json.dumps({"id": task_id, "args": [1, 2], "kwargs": {}}).encode()
    return BadMessage(body, {}, REJECT, r"task|unknown|invalid", task_id=task_id)


def build_invalid_json(task_id):
    return BadMessage(b'[[1, 2], {}, {"callbacks": nul', v2_headers(task_id), ACK,
                      r"json|decode|parse", task_id=task_id)


def build_invalid_utf8(task_id):
    return BadMessage(b'[["\xff\xfe"], {}, {}]', v2_headers(task_id, task="tasks.echo"), ACK,
                      r"utf-?8|decode|json|invalid", task_id=task_id)


def build_invalid_zlib(task_id):
    headers = v2_headers(task_id, compression="application/x-gzip")
    return BadMessage(b"this is not a zlib stream", headers, ACK,
                      r"zlib|decompress|compress|decode", task_id=task_id)


def build_header_key_with_nul(task_id):
    headers = v2_headers(task_id)
    headers["x-a\x00b"] = "v"
    return BadMessage(task_body_v2([1, 2]), headers, REJECT, r"header|NUL|JSON",
                      task_id=task_id)


def build_task_name_with_nul(task_id):
    return BadMessage(task_body_v2([1, 2]), v2_headers(task_id, task="tasks.add\x00junk"),
                      REJECT, r"NUL|unknown|not registered|unregistered", task_id=task_id)


PYTHON_STOPS = "the worker logs 'Unrecoverable error' and stops consuming"

CASES = [
    pytest.param(build_unknown_task, id="unknown-task"),
    pytest.param(build_body_two_items, id="body-two-items",
                 marks=pytest.mark.python_xfail(reason=PYTHON_STOPS)),
    pytest.param(build_body_string, id="body-string",
                 marks=pytest.mark.python_xfail(reason=PYTHON_STOPS)),
    pytest.param(build_args_not_list, id="args-not-list",
                 marks=pytest.mark.python_xfail(
                     reason="a dict of args is unpacked into its keys and the task runs")),
    pytest.param(build_kwargs_not_dict, id="kwargs-not-dict",
                 marks=pytest.mark.python_xfail(
                     reason="the message is acked and the task fails with InvalidTaskError")),
    pytest.param(build_missing_id, id="missing-id",
                 marks=pytest.mark.python_xfail(reason=PYTHON_STOPS)),
    pytest.param(build_bad_eta, id="bad-eta"),
    pytest.param(build_bad_expires, id="bad-expires"),
    pytest.param(build_unsupported_content_type, id="unsupported-content-type"),
    pytest.param(build_unknown_compression, id="unknown-compression",
                 marks=pytest.mark.python_xfail(
                     reason="kombu reports an unknown compression as a decode error, "
                     "so the message is acked, not rejected")),
    pytest.param(build_v1_without_task, id="v1-without-task"),
    pytest.param(build_invalid_json, id="invalid-json"),
    pytest.param(build_invalid_utf8, id="invalid-utf8"),
    pytest.param(build_invalid_zlib, id="invalid-zlib"),
    pytest.param(build_header_key_with_nul, id="header-key-with-nul",
                 marks=pytest.mark.python_xfail(
                     reason="Python Celery 5.2 runs the task; celeriac rejects the key "
                     "because jansson's copies would cut it at the NUL")),
    pytest.param(build_task_name_with_nul, id="task-name-with-nul"),
]


@pytest.fixture
def dead_letters():
    """A task queue with a dead-letter policy, declared before its worker starts."""
    queue = unique_name("interop.test_malformed")
    with amqp_connection() as connection:
        declare_task_queue(connection.channel(), queue)
    dead_letter_queue = DeadLetterQueue(queue)
    yield dead_letter_queue
    dead_letter_queue.close()


@pytest.fixture
def worker(worker_factory, dead_letters):
    return worker_factory(queue=dead_letters.queue)


def publish_bad_message(worker, message, reply_to):
    publish_raw(
        worker.queue, message.body, headers=message.headers,
        content_type=message.content_type, correlation_id=message.task_id,
        reply_to=reply_to, **message.properties,
    )


def publish_marker(worker, reply_to):
    marker_id = str(uuid.uuid4())
    publish_raw(worker.queue, task_body_v2([20, 22]), headers=v2_headers(marker_id),
                correlation_id=marker_id, reply_to=reply_to)
    return marker_id


@pytest.mark.parametrize("build", CASES)
def test_malformed_message(worker, worker_kind, dead_letters, reply_queue, build):
    message = build(str(uuid.uuid4()))
    dead_letters.get_all()
    log_offset = worker.log_offset()

    publish_bad_message(worker, message, reply_queue.name)
    marker_id = publish_marker(worker, reply_queue.name)
    replies = reply_queue.wait_for(marker_id)

    assert replies[-1]["task_id"] == marker_id
    assert replies[-1]["result"] == 42, "worker did not run a normal task afterwards"
    assert wait_for_empty_queue(worker.queue) == (0, 0), "queue not empty (ready, unacked)"

    dead = dead_letters.get_all()
    if message.outcome == REJECT:
        assert len(dead) == 1, "message was not rejected (nothing dead-lettered)"
        dead_body = dead[0].body
        if isinstance(dead_body, str):
            dead_body = dead_body.encode("utf-8")
        assert dead_body == message.body
    else:
        assert dead == [], "message was rejected, expected an ack"

    if worker_kind == "c":
        check_warning_logged(worker, log_offset, message)
        check_failure_reply(replies, message)


def check_warning_logged(worker, log_offset, message):
    warnings = worker.warnings_since(log_offset)
    if message.task_id and "id" in message.headers:
        warnings = [line for line in warnings if message.task_id in line]
        assert len(warnings) == 1, (
            f"expected one WARNING naming task {message.task_id}, got {warnings!r}"
        )
    else:
        assert len(warnings) == 1, f"expected one WARNING line, got {warnings!r}"
    assert re.search(message.reason_pattern, warnings[0], re.IGNORECASE), (
        f"WARNING line does not name the reason ({message.reason_pattern}): {warnings[0]!r}"
    )


def check_failure_reply(replies, message):
    """Check the FAILURE the C worker sends for unknown tasks and undecodable bodies."""
    own = [meta for meta in replies if meta.get("task_id") == message.task_id]
    if message.headers.get("task") == "tasks.nope":
        assert [meta["status"] for meta in own] == ["FAILURE"]
        assert own[0]["result"]["exc_type"] == "NotRegistered"
        assert own[0]["result"]["exc_module"] == "celery.exceptions"
    elif message.outcome == ACK:
        assert [meta["status"] for meta in own] == ["FAILURE"]
        assert own[0]["result"]["exc_type"] == "DecodeError"
        assert own[0]["result"]["exc_module"] == "kombu.exceptions"
