#!/usr/bin/python3
"""Build tests/data/malformed.json, the table of invalid task messages.

Each entry is {name, properties, headers (tagged as in the golden files),
body_b64, expected, python, reason}:

- ``expected`` is what celeriac must do: ``reject`` (basic.reject with
  requeue=False), ``ack_drop`` (ack and drop the message), ``not_registered``
  (reject and send a NotRegistered FAILURE to reply_to) or ``decode_failure``
  (ack and send a FAILURE to reply_to, because the body cannot become task
  arguments).
- ``python`` is what the Python Celery 5.2.6 solo worker did with the same
  message, as observed with ``--check-python``: ``reject``, ``ack_drop``,
  ``not_registered``, ``task_failure`` (acked, the task ran and failed),
  ``task_success`` or ``consumer_crash``. The check prints ``no_outcome``
  when the worker logs none of these within 5 seconds.

Usage:
    /usr/bin/python3 tests/tools/malformed_cases.py            write the table
    /usr/bin/python3 tests/tools/malformed_cases.py --check-python
        publish every case to a queue golden-malformed on the local RabbitMQ,
        run tests/interop/pytasks.py under the Python Celery worker and
        compare what it does with the ``python`` column.

The check adds a RabbitMQ policy ``golden-malformed-dlx`` that dead-letters
rejected messages of that queue to golden-malformed-rejected, so a reject can
be told from an ack, and removes the policy, queues and exchange afterwards.
"""

import argparse
import base64
import bz2
import json
import os
import pathlib
import pickle
import subprocess
import sys
import time
import uuid

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / "tests" / "data" / "malformed.json"
CHECK_QUEUE = "golden-malformed"
REJECTED_QUEUE = "golden-malformed-rejected"
POLICY_NAME = "golden-malformed-dlx"
WORKER_START_TIMEOUT = 30.0
CASE_TIMEOUT = 5.0

# Fixed ids keep the generated file stable between runs.
TASK_ID = "9f3c2b1a-0d4e-4f5a-8b6c-7d8e9f0a1b2c"
REPLY_TO = "5e6f7a8b-9c0d-3e1f-a2b3-c4d5e6f7a8b9"

JSON_BODY = [[2, 3], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]


def tagged(value):
    """Tag a Python header value the way py-amqp 5.1.1 writes it."""
    if isinstance(value, bool):
        return ["t", value]
    if isinstance(value, int):
        return ["I" if -2147483647 <= value <= 2147483647 else "L", value]
    if isinstance(value, float):
        return ["d", value]
    if isinstance(value, str):
        return ["S", value]
    if value is None:
        return ["V", None]
    if isinstance(value, (list, tuple)):
        return ["A", [tagged(item) for item in value]]
    if isinstance(value, dict):
        return ["F", {key: tagged(item) for key, item in value.items()}]
    raise TypeError(f"no AMQP field type for {type(value).__name__}")


def v2_headers(task="tasks.add", **changes):
    """Return the headers of a Celery 5.2.6 v2 message, with ``changes`` applied.

    A change whose value is ``...`` removes that header.
    """
    headers = {
        "lang": "py",
        "task": task,
        "id": TASK_ID,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": TASK_ID,
        "parent_id": None,
        "argsrepr": "(2, 3)",
        "kwargsrepr": "{}",
        "origin": "gen1234@golden",
        "ignore_result": False,
    }
    for key, value in changes.items():
        if value is ...:
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


def json_bytes(value):
    return json.dumps(value).encode("utf-8")


def v1_body(**changes):
    body = {
        "task": "tasks.add",
        "id": TASK_ID,
        "args": [2, 3],
        "kwargs": {},
        "group": None,
        "group_index": None,
        "retries": 0,
        "eta": None,
        "expires": None,
        "utc": True,
        "callbacks": None,
        "errbacks": None,
        "timelimit": [None, None],
        "taskset": None,
        "chord": None,
    }
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return json_bytes(body)


def deeply_nested_body(depth):
    """Return a v2 body whose only argument is ``depth`` nested lists."""
    nested = "[" * depth + "]" * depth
    return f'[[{nested}], {{}}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]'.encode()


def case(name, expected, python, reason, body, headers=None, **properties):
    props = {
        "content_type": "application/json",
        "content_encoding": "utf-8",
        "correlation_id": TASK_ID,
        "reply_to": REPLY_TO,
        "delivery_mode": 2,
        "priority": 0,
        "expiration": None,
    }
    props.update(properties)
    return {
        "name": name,
        "properties": props,
        "headers": {key: tagged(value) for key, value in (v2_headers() if headers is None else headers).items()},
        "body_b64": base64.b64encode(body).decode("ascii"),
        "expected": expected,
        "python": python,
        "reason": reason,
    }


def build_cases():
    return [
        case(
            "body_not_json",
            "ack_drop",
            "ack_drop",
            "The body is not valid JSON, so it cannot be decoded. Python 5.2.6 logs \"Can't decode "
            "message body\" and acks it.",
            b"[[2, 3], {}, {not json",
        ),
        case(
            "body_json_string",
            "reject",
            "consumer_crash",
            "A v2 body must be a list of [args, kwargs, embed]. In Python 5.2.6 Request() fails "
            "to unpack it, the worker stops with \"Unrecoverable error\" and the unacked message "
            "stops the next worker too.",
            json_bytes("hello"),
        ),
        case(
            "v2_body_two_elements",
            "reject",
            "consumer_crash",
            "A v2 body must have exactly 3 elements. In Python 5.2.6 Request() fails to unpack it "
            "and the worker stops with \"Unrecoverable error\".",
            json_bytes([[2, 3], {}]),
        ),
        case(
            "args_not_list",
            "reject",
            "task_failure",
            "args must be a JSON array. Python 5.2.6 does not check the type, calls add('x') and "
            "the task fails with TypeError.",
            json_bytes([{"x": 2}, {}, JSON_BODY[2]]),
        ),
        case(
            "kwargs_not_dict",
            "reject",
            "ack_drop",
            "kwargs must be a JSON object. Python 5.2.6 raises InvalidTaskError outside the task "
            "body, logs it as a warning and acks the message.",
            json_bytes([[2, 3], [1], JSON_BODY[2]]),
        ),
        case(
            "embed_not_object",
            "reject",
            "consumer_crash",
            "embed must be a JSON object or null. In Python 5.2.6 merging it into the request "
            "raises TypeError and the worker stops with \"Unrecoverable error\".",
            json_bytes([[2, 3], {}, "embed"]),
        ),
        case(
            "missing_id_header",
            "reject",
            "consumer_crash",
            "Every v2 message needs the id header, the task id that results and acks refer to. "
            "Python 5.2.6 raises KeyError('id') in Request() and the worker stops with "
            "\"Unrecoverable error\". In some check runs the worker instead held the message "
            "unacked for over 5 s without a log line.",
            json_bytes(JSON_BODY),
            headers=v2_headers(id=...),
        ),
        case(
            "eta_not_a_date",
            "reject",
            "reject",
            "The eta header is not an ISO-8601 time. Python 5.2.6 logs \"Received invalid task "
            "message\" and rejects.",
            json_bytes(JSON_BODY),
            headers=v2_headers(eta="not-a-date"),
        ),
        case(
            "expires_garbage",
            "reject",
            "reject",
            "The expires header is not an ISO-8601 time. Python 5.2.6 logs \"Received invalid task "
            "message\" and rejects.",
            json_bytes(JSON_BODY),
            headers=v2_headers(expires="garbage"),
        ),
        case(
            "content_type_pickle",
            "reject",
            "reject",
            "Pickle bodies are never accepted (accept_content is json only), so the message is "
            "rejected without decoding it, as Python 5.2.6 does.",
            pickle.dumps(JSON_BODY, protocol=2),
            content_type="application/x-python-serialize",
            content_encoding="binary",
        ),
        case(
            "compression_invalid_zlib",
            "ack_drop",
            "ack_drop",
            "The compression header says application/x-gzip but the body is not a zlib stream, so "
            "it cannot be decoded. Python 5.2.6 logs \"Can't decode message body\" and acks it.",
            b"this is not zlib data",
            headers=v2_headers(compression="application/x-gzip"),
        ),
        case(
            "compression_bzip2",
            "reject",
            "task_success",
            "celeriac supports only zlib compression, so an application/x-bz2 body is rejected. "
            "Python 5.2.6 decompresses bz2 and runs the task.",
            bz2.compress(json_bytes(JSON_BODY)),
            headers=v2_headers(compression="application/x-bz2"),
        ),
        case(
            "v1_body_without_task",
            "reject",
            "reject",
            "Without a task header the body must be a v1 object with a task field. Python 5.2.6 "
            "logs \"Received and deleted unknown message\" and rejects it.",
            v1_body(task=...),
            headers={},
        ),
        case(
            "v1_args_not_list",
            "reject",
            "task_failure",
            "v1 args must be a JSON array. Python 5.2.6 does not check the type and the task "
            "fails with TypeError.",
            v1_body(args="2, 3"),
            headers={},
        ),
        case(
            "empty_body",
            "ack_drop",
            "consumer_crash",
            "An empty body is not valid JSON. Python 5.2.6 passes it on undecoded, Request() "
            "fails to unpack it and the worker stops with \"Unrecoverable error\".",
            b"",
        ),
        case(
            "body_nested_10000_levels",
            "ack_drop",
            "ack_drop",
            "The argument is 10000 nested arrays, deeper than a JSON decoder should follow "
            "(jansson stops at 2048 levels). Python 5.2.6 hits a RecursionError while decoding, "
            "logs \"Can't decode message body\" and acks it.",
            deeply_nested_body(10000),
        ),
        case(
            "unknown_task",
            "not_registered",
            "not_registered",
            "No task of that name is registered. The message is rejected and a NotRegistered "
            "FAILURE goes to reply_to, as in Python 5.2.6.",
            json_bytes(JSON_BODY),
            headers=v2_headers(task="tasks.no_such_task"),
        ),
        case(
            "int_beyond_64_bits",
            "decode_failure",
            "task_success",
            "2**70 does not fit in 64 bits, so celeriac acks the message and sends a FAILURE to "
            "reply_to instead of passing a wrong number. Python has unbounded ints and runs the "
            "task.",
            json_bytes([[2**70, 3], {}, JSON_BODY[2]]),
            headers=v2_headers(argsrepr=repr((2**70, 3))),
        ),
    ]


# --- checking the table against the Python worker ----------------------------


def rabbitmqctl(*args):
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60)


def untag(value):
    tag, inner = value
    if tag == "A":
        return [untag(item) for item in inner]
    if tag == "F":
        return {key: untag(item) for key, item in inner.items()}
    return inner


def publish(channel, entry, message_id):
    import amqp

    properties = {key: value for key, value in entry["properties"].items() if value is not None}
    headers = {key: untag(value) for key, value in entry["headers"].items()}
    message = amqp.Message(
        base64.b64decode(entry["body_b64"]),
        application_headers=headers,
        message_id=message_id,
        **properties,
    )
    channel.basic_publish(message, exchange="", routing_key=CHECK_QUEUE)


def start_python_worker(log_path):
    command = [
        "/usr/bin/python3", "-m", "celery", "-A", "pytasks", "-b", "amqp://guest:guest@127.0.0.1:5672//",
        "--result-backend", "rpc://", "worker", "-P", "solo", "-c", "1", "-Q", CHECK_QUEUE,
        "-n", "malformed-check@%h", "-l", "info", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]
    log_file = open(log_path, "a")
    environment = dict(os.environ, PYTHONPATH=str(REPO_ROOT / "tests" / "interop"))
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=environment)
    start_offset = log_path.stat().st_size if log_path.exists() else 0
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if " ready." in log_path.read_text()[start_offset:]:
            return process
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    process.wait()
    sys.exit(f"the Python worker did not become ready; see {log_path}")


# Log lines of the Python worker that end the handling of one message.
OUTCOME_LOG_MARKERS = (
    "Unrecoverable error",
    "succeeded in",
    "raised unexpected",
    "Can't decode message body",
    "Received invalid task message",
    "Received unregistered task",
    "Received and deleted unknown message",
    "Exception raised outside body",
)


def wait_for_outcome(log_path, log_offset, process):
    """Wait up to CASE_TIMEOUT seconds for the worker to log an outcome line."""
    deadline = time.monotonic() + CASE_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        new_log = log_path.read_text()[log_offset:]
        if any(marker in new_log for marker in OUTCOME_LOG_MARKERS):
            break
        time.sleep(0.05)
    # Give the worker time to finish the log record and the dead letter
    # time to reach the rejected queue.
    time.sleep(0.5)


def stop_process(process):
    """Stop the worker with SIGTERM, or SIGKILL after 20 seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def classify(channel, new_log, entry, process):
    """Return the observed outcome of one case from the queues and the new log lines."""
    if process.poll() is not None or "Unrecoverable error" in new_log:
        return "consumer_crash"
    rejected = channel.basic_get(queue=REJECTED_QUEUE, no_ack=True)
    if rejected is not None:
        if "Received unregistered task" in new_log:
            return "not_registered"
        return "reject"
    if "succeeded in" in new_log:
        return "task_success"
    if "raised unexpected" in new_log:
        return "task_failure"
    if "Can't decode message body" in new_log or "Exception raised outside body" in new_log:
        return "ack_drop"
    return "no_outcome"


def check_python(entries):
    import amqp

    work_dir = REPO_ROOT / "build" / "malformed-check"
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / "worker.log"

    rabbitmqctl("set_policy", "--apply-to", "queues", POLICY_NAME, f"^{CHECK_QUEUE}$",
                json.dumps({"dead-letter-exchange": "", "dead-letter-routing-key": REJECTED_QUEUE}))
    connection = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    channel = connection.channel()
    process = None
    mismatches = 0
    try:
        channel.queue_declare(queue=REJECTED_QUEUE, durable=False, auto_delete=False)
        channel.queue_purge(queue=REJECTED_QUEUE)
        log_path.write_text("")
        process = start_python_worker(log_path)
        for entry in entries:
            log_offset = len(log_path.read_text())
            publish(channel, entry, entry["name"])
            wait_for_outcome(log_path, log_offset, process)
            new_log = log_path.read_text()[log_offset:]
            observed = classify(channel, new_log, entry, process)
            if observed in ("consumer_crash", "no_outcome"):
                # The message that stopped (or stalled) the worker is still
                # unacked and would reach the next worker too, so drop it.
                stop_process(process)
                channel.queue_purge(queue=CHECK_QUEUE)
                process = start_python_worker(log_path)
            marker = "ok" if observed == entry["python"] else "MISMATCH"
            mismatches += marker != "ok"
            print(f"{marker:8} {entry['name']:28} python={observed:16} table={entry['python']}")
            if marker != "ok":
                print("         " + "\n         ".join(new_log.strip().splitlines()[-6:]))
    finally:
        if process is not None:
            stop_process(process)
        channel.queue_delete(queue=CHECK_QUEUE)
        channel.queue_delete(queue=REJECTED_QUEUE)
        channel.exchange_delete(exchange=CHECK_QUEUE)
        connection.close()
        rabbitmqctl("clear_policy", POLICY_NAME)
    return mismatches


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-python", action="store_true",
                        help="run the cases through the Python Celery worker and compare")
    parser.add_argument("cases", nargs="*", help="with --check-python, the case names to run (default: all)")
    args = parser.parse_args(argv)

    entries = build_cases()
    if args.check_python:
        if args.cases:
            entries = [entry for entry in entries if entry["name"] in args.cases]
        sys.exit(1 if check_python(entries) else 0)
    OUTPUT.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)} ({len(entries)} cases)")


if __name__ == "__main__":
    main()
