#!/usr/bin/python3
"""Capture golden task messages published by the real Celery client.

Each case publishes one or more task messages with Celery 5.2.6 to a private
queue ``golden-<case>`` on the local RabbitMQ, fetches the first message with
py-amqp ``basic_get`` and writes it to ``tests/data/golden/<case>.json``:

    {"description", "celery", "kombu",
     "properties": {content_type, content_encoding, correlation_id, reply_to,
                    delivery_mode, priority, expiration},
     "delivery": {exchange, routing_key, redelivered},
     "headers": {name: [tag, value]},
     "body_b64": base64 of the exact body bytes}

Header tags are the AMQP field-table type octets read from the raw content
header frame, nested inside arrays (``A``) and tables (``F``), for example
``"timelimit": ["A", [["V", null], ["V", null]]]``.

The script declares, purges and deletes only queues and exchanges whose names
start with ``golden-``. Run it with Debian's Python, which has Celery:

    /usr/bin/python3 tests/tools/capture_golden.py [--broker URL] [--out DIR]
"""

import argparse
import base64
import datetime
import decimal
import json
import pathlib
import struct
import sys
import time
import uuid

import amqp
import amqp.basic_message
import celery
import kombu
from celery import Celery, chain, group
from kombu.utils.url import url_to_parts

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "golden"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
QUEUE_PREFIX = "golden-"
FETCH_TIMEOUT_SECONDS = 10.0

# Properties every golden file lists, with null when the message lacks one.
LISTED_PROPERTIES = (
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "delivery_mode",
    "priority",
    "expiration",
)


# --- raw header capture -----------------------------------------------------

_original_inbound_header = amqp.basic_message.Message.inbound_header


def _inbound_header_keeping_raw(self, buf, offset=0):
    """Store a copy of the content header frame before py-amqp decodes it."""
    self.raw_content_header = bytes(buf[offset:])
    return _original_inbound_header(self, buf, offset)


amqp.basic_message.Message.inbound_header = _inbound_header_keeping_raw


class FieldTableReader:
    """Decoder of AMQP 0-9-1 field tables that keeps each value's type tag.

    The tags and widths are the ones py-amqp 5.1.1 reads, because py-amqp is
    the library that wrote these messages.
    """

    def __init__(self, data):
        self.data = data
        self.offset = 0

    def take(self, fmt):
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def take_bytes(self, length):
        chunk = self.data[self.offset : self.offset + length]
        if len(chunk) != length:
            raise ValueError(f"field value truncated at offset {self.offset}")
        self.offset += length
        return chunk

    def read_table(self):
        size = self.take(">I")
        end = self.offset + size
        table = {}
        while self.offset < end:
            key_length = self.take(">B")
            key = self.take_bytes(key_length).decode("utf-8")
            table[key] = self.read_value()
        return table

    def read_array(self):
        size = self.take(">I")
        end = self.offset + size
        items = []
        while self.offset < end:
            items.append(self.read_value())
        return items

    def read_value(self):
        tag = self.take_bytes(1).decode("ascii")
        if tag == "S":
            value = self.take_bytes(self.take(">I")).decode("utf-8", "surrogatepass")
        elif tag == "s":
            value = self.take_bytes(self.take(">B")).decode("utf-8", "surrogatepass")
        elif tag == "x":
            value = base64.b64encode(self.take_bytes(self.take(">I"))).decode("ascii")
        elif tag == "t":
            value = bool(self.take(">B"))
        elif tag in FIXED_WIDTH_FORMATS:
            value = self.take(FIXED_WIDTH_FORMATS[tag])
        elif tag == "D":
            scale, unscaled = self.take(">Bi")
            value = str(decimal.Decimal(unscaled).scaleb(-scale))
        elif tag == "F":
            value = self.read_table()
        elif tag == "A":
            value = self.read_array()
        elif tag == "V":
            value = None
        else:
            raise ValueError(f"unknown field type tag {tag!r} at offset {self.offset - 1}")
        return [tag, value]


# py-amqp's reading of the fixed-width tags. It swaps b and B relative to the
# AMQP 0-9-1 specification and reads l as unsigned.
FIXED_WIDTH_FORMATS = {
    "b": ">B",
    "B": ">b",
    "U": ">h",
    "u": ">H",
    "I": ">i",
    "i": ">I",
    "L": ">q",
    "l": ">Q",
    "f": ">f",
    "d": ">d",
    "T": ">Q",
}

# Presence bits of the basic content header properties, in wire order, with
# the encoding of each: short string, octet, table or 64-bit timestamp.
BASIC_PROPERTY_LAYOUT = (
    (0x8000, "content_type", "shortstr"),
    (0x4000, "content_encoding", "shortstr"),
    (0x2000, "application_headers", "table"),
    (0x1000, "delivery_mode", "octet"),
    (0x0800, "priority", "octet"),
    (0x0400, "correlation_id", "shortstr"),
    (0x0200, "reply_to", "shortstr"),
    (0x0100, "expiration", "shortstr"),
    (0x0080, "message_id", "shortstr"),
    (0x0040, "timestamp", "timestamp"),
    (0x0020, "type", "shortstr"),
    (0x0010, "user_id", "shortstr"),
    (0x0008, "app_id", "shortstr"),
    (0x0004, "cluster_id", "shortstr"),
)


def decode_raw_properties(raw_header):
    """Decode a basic content header frame, keeping the header type tags.

    Returns (properties, tagged headers). The frame starts with class id,
    weight and body size (12 bytes), then the 16-bit property flags.
    """
    reader = FieldTableReader(raw_header)
    reader.offset = 12
    flags = reader.take(">H")
    properties = {}
    headers = {}
    for bit, name, kind in BASIC_PROPERTY_LAYOUT:
        if not flags & bit:
            continue
        if kind == "shortstr":
            properties[name] = reader.take_bytes(reader.take(">B")).decode("utf-8")
        elif kind == "octet":
            properties[name] = reader.take(">B")
        elif kind == "timestamp":
            properties[name] = reader.take(">Q")
        else:
            headers = reader.read_table()
    return properties, headers


def untag(tagged):
    """Drop the type tags, for comparison with py-amqp's decoded headers."""
    tag, value = tagged
    if tag == "A":
        return [untag(item) for item in value]
    if tag == "F":
        return {key: untag(item) for key, item in value.items()}
    return value


# --- the Celery client side -------------------------------------------------


def make_app(broker_url, protocol=2):
    """Build a client app with stub tasks named like the demo module's tasks.

    Only the names and signatures matter here, because no worker runs them.
    There is no result backend, so no reply queue is declared, but Celery
    still sets reply_to to the client's oid as it always does.
    """
    app = Celery("golden", broker=broker_url, set_as_current=False)
    app.conf.task_protocol = protocol
    app.conf.broker_connection_retry = False

    @app.task(name="tasks.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="tasks.mul", shared=False)
    def mul(x, y):
        return x * y

    @app.task(name="tasks.echo", shared=False)
    def echo(value):
        return value

    @app.task(name="tasks.fail", shared=False)
    def fail(message):
        raise ValueError(message)

    @app.task(name="tasks.on_error", shared=False)
    def on_error(task_id):
        return task_id

    @app.task(name="tasks.flaky", bind=True, max_retries=5, shared=False)
    def flaky(self, n):
        return self.request.retries

    return app


def publish_retry(app, queue):
    """Publish the message that ``Task.retry`` sends on a task's second retry.

    The task request is pushed by hand as the worker would (retries=1, taken
    from the anonymous exchange), so retry() builds the next message itself.
    """
    flaky = app.tasks["tasks.flaky"]
    task_id = str(uuid.uuid4())
    flaky.push_request(
        id=task_id,
        args=[3],
        kwargs={},
        retries=1,
        root_id=task_id,
        parent_id=None,
        reply_to=app.thread_oid,
        correlation_id=task_id,
        # The worker copies the message's priority property, which
        # Task.apply_async leaves out, so priority is None here.
        delivery_info={"exchange": "", "routing_key": queue, "priority": None, "redelivered": False},
        hostname="celery@golden",
        called_directly=False,
        is_eager=False,
    )
    try:
        flaky.retry(exc=RuntimeError("flaky retry 1"), countdown=0.2, throw=False)
    finally:
        flaky.pop_request()


def queued_signature(app, name, *args, queue, **options):
    return app.signature(name, args=args, options=dict(options, queue=queue), app=app)


FIXED_ETA = datetime.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc)
NAIVE_ETA = datetime.datetime(2030, 1, 2, 3, 4, 5)

# Each case: (name, description, protocol, publish(app, queue)).
CASES = [
    (
        "add",
        "tasks.add(2, 3) with default options, sent with Task.apply_async: no priority property",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), queue=q),
    ),
    (
        "send_task",
        "app.send_task('tasks.add', (2, 3)) for a task the client does not define: priority property 0",
        2,
        lambda app, q: app.send_task("tasks.add", args=(2, 3), queue=q),
    ),
    (
        "kwargs_only",
        "tasks.add(x=2, y=3): keyword arguments only, empty args",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async(kwargs={"x": 2, "y": 3}, queue=q),
    ),
    (
        "unicode_args",
        "tasks.echo with non-ASCII text, including a character outside the BMP",
        2,
        lambda app, q: app.tasks["tasks.echo"].apply_async(("h\u00e9llo w\u00f6rld \u2603 \u65e5\u672c \U0001f600",), queue=q),
    ),
    (
        "countdown",
        "tasks.add(2, 3) with countdown=10: the client turns it into an ISO-8601 eta header",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), countdown=10, queue=q),
    ),
    (
        "eta_datetime",
        "tasks.add(2, 3) with eta given as an aware UTC datetime",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), eta=FIXED_ETA, queue=q),
    ),
    (
        "eta_naive_datetime",
        "tasks.add(2, 3) with eta given as a naive datetime: the eta string has no UTC offset",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), eta=NAIVE_ETA, queue=q),
    ),
    (
        "expires",
        "tasks.add(2, 3) with expires=60: expires header plus expiration property in ms",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), expires=60, queue=q),
    ),
    (
        "link",
        "tasks.add(2, 3) with link=tasks.mul.s(10): one callback signature in embed",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async(
            (2, 3), link=queued_signature(app, "tasks.mul", 10, queue=q), queue=q
        ),
    ),
    (
        "link_error",
        "tasks.fail('boom') with link_error=tasks.on_error.s(): one errback signature in embed",
        2,
        lambda app, q: app.tasks["tasks.fail"].apply_async(
            ("boom",), link_error=queued_signature(app, "tasks.on_error", queue=q), queue=q
        ),
    ),
    (
        "chain_first",
        "first message of chain(add(1, 2), add(3), mul(4)): embed.chain holds the rest, reversed",
        2,
        lambda app, q: chain(
            queued_signature(app, "tasks.add", 1, 2, queue=q),
            queued_signature(app, "tasks.add", 3, queue=q),
            queued_signature(app, "tasks.mul", 4, queue=q),
        ).apply_async(),
    ),
    (
        "group_member",
        "first message of group(add(1, 1), add(2, 2)): group header set, group_index null in 5.2",
        2,
        lambda app, q: group(
            queued_signature(app, "tasks.add", 1, 1, queue=q),
            queued_signature(app, "tasks.add", 2, 2, queue=q),
        ).apply_async(),
    ),
    (
        "custom_headers",
        "tasks.add(2, 3) with headers={...}: custom keys merged into the top-level headers",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async(
            (2, 3),
            headers={"x-trace-id": "trace-1234", "tenant": 42, "flags": [True, None, 1.5], "meta": {"k": "v"}},
            queue=q,
        ),
    ),
    (
        "ignore_result",
        "tasks.add(2, 3) with ignore_result=True",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), ignore_result=True, queue=q),
    ),
    (
        "time_limits",
        "tasks.add(2, 3) with time_limit=30, soft_time_limit=20: timelimit is [hard, soft]",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), time_limit=30, soft_time_limit=20, queue=q),
    ),
    (
        "shadow",
        "tasks.add(2, 3) with shadow='tasks.add.shadowed'",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), shadow="tasks.add.shadowed", queue=q),
    ),
    (
        "priority",
        "tasks.add(2, 3) with priority=5",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), priority=5, queue=q),
    ),
    (
        "protocol_v1",
        "tasks.add(2, 3) with task_protocol=1: no headers, the body is a JSON object",
        1,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), queue=q),
    ),
    (
        "protocol_v1_countdown",
        "tasks.add(2, 3) with task_protocol=1 and countdown=10",
        1,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), countdown=10, queue=q),
    ),
    (
        "compression_zlib",
        "tasks.add(2, 3) with compression='zlib': zlib stream body, compression header application/x-gzip",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2, 3), compression="zlib", queue=q),
    ),
    (
        "retry",
        "message that Task.retry sends for tasks.flaky(3) on its second retry: retries=2, countdown 0.2 s",
        2,
        publish_retry,
    ),
    (
        "large_int",
        "tasks.add(2**40, 1): an integer argument beyond 32 bits",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2**40, 1), queue=q),
    ),
    (
        "float_args",
        "tasks.add(2.5, 0.1): float arguments",
        2,
        lambda app, q: app.tasks["tasks.add"].apply_async((2.5, 0.1), queue=q),
    ),
    (
        "nested_args",
        "tasks.echo with nested lists and objects, null, bools and an empty string",
        2,
        lambda app, q: app.tasks["tasks.echo"].apply_async(
            ({"a": [1, 2, {"b": None, "c": [True, False]}], "d": {"e": {"f": ""}}, "g": []},),
            queue=q,
        ),
    ),
]


# --- broker side ------------------------------------------------------------


def fetch_first_message(channel, queue):
    """Return the first message on ``queue``, waiting up to the fetch timeout."""
    deadline = time.monotonic() + FETCH_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        message = channel.basic_get(queue=queue, no_ack=True)
        if message is not None:
            return message
        time.sleep(0.05)
    raise TimeoutError(f"no message arrived on queue {queue} within {FETCH_TIMEOUT_SECONDS}s")


def golden_record(description, message):
    properties, headers = decode_raw_properties(message.raw_content_header)
    decoded_headers = message.properties.get("application_headers") or {}
    untagged = {key: untag(value) for key, value in headers.items()}
    if untagged != decoded_headers:
        raise AssertionError(f"tagged headers differ from py-amqp's decoding: {untagged!r} != {decoded_headers!r}")

    listed = {name: properties.get(name) for name in LISTED_PROPERTIES}
    extra = {name: value for name, value in properties.items() if name not in listed and name != "application_headers"}
    listed.update(extra)
    body = bytes(message.body)
    return {
        "description": description,
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "properties": listed,
        "delivery": {
            "exchange": message.delivery_info["exchange"],
            "routing_key": message.delivery_info["routing_key"],
            "redelivered": message.delivery_info["redelivered"],
        },
        "headers": headers,
        "body_b64": base64.b64encode(body).decode("ascii"),
    }


def delete_golden_entities(channel, queue):
    """Delete the queue and the same-named direct exchange that Celery declared."""
    assert queue.startswith(QUEUE_PREFIX)
    channel.queue_delete(queue=queue)
    channel.exchange_delete(exchange=queue)


def capture_case(broker_url, channel, case):
    name, description, protocol, publish = case
    queue = QUEUE_PREFIX + name.replace("_", "-")
    channel.queue_declare(queue=queue, durable=True, auto_delete=False)
    channel.queue_purge(queue=queue)

    app = make_app(broker_url, protocol)
    try:
        publish(app, queue)
        message = fetch_first_message(channel, queue)
    finally:
        app.close()
    record = golden_record(description, message)
    delete_golden_entities(channel, queue)
    return name, record


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", default=DEFAULT_BROKER, help="AMQP URL of the broker (default: %(default)s)")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT, help="output directory (default: tests/data/golden)")
    parser.add_argument("cases", nargs="*", help="case names to capture (default: all)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    known = {case[0] for case in CASES}
    unknown = set(args.cases) - known
    if unknown:
        sys.exit(f"unknown case(s): {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    selected = [case for case in CASES if not args.cases or case[0] in args.cases]

    args.out.mkdir(parents=True, exist_ok=True)
    parts = url_to_parts(args.broker)
    connection = amqp.Connection(
        host=f"{parts.hostname}:{parts.port or 5672}",
        userid=parts.username or "guest",
        password=parts.password or "guest",
        virtual_host=parts.path or "/",
    )
    connection.connect()
    channel = connection.channel()
    # Keep message bodies as the exact bytes from the wire instead of text
    # decoded with content_encoding.
    channel.auto_decode = False
    try:
        for case in selected:
            name, record = capture_case(args.broker, channel, case)
            path = args.out / f"{name}.json"
            path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}")
    finally:
        connection.close()


if __name__ == "__main__":
    main()
