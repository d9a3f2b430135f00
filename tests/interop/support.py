"""Helpers shared by the interop tests: worker processes, raw AMQP access.

The fixtures in conftest.py build on these. Test modules import the message
builders and constants from here directly.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import amqp

INTEROP_DIR = Path(__file__).resolve().parent
REPO_DIR = INTEROP_DIR.parents[1]
BUILD_DIR = REPO_DIR / "build"
LOG_DIR = BUILD_DIR / "interop-logs"
C_WORKER = BUILD_DIR / "celeriac"
C_TASK_MODULE = BUILD_DIR / "demo_tasks.so"
PYTHON = "/usr/bin/python3"

BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672
BROKER_URL = f"amqp://guest:guest@{BROKER_HOST}:{BROKER_PORT}//"
RESULT_BACKEND = "rpc://"

# Seconds that every result wait may take before the test fails.
RESULT_TIMEOUT = 15
READY_TIMEOUT = 20
STOP_TIMEOUT = 10
LOG_TAIL_LINES = 40

WORKER_KINDS = ("c", "python")


def worker_kind():
    """Return ``"c"`` or ``"python"``: which worker the suite drives.

    conftest.py copies the ``--worker`` option into ``CELERIAC_WORKER`` before
    test modules are imported, so this also works at import time.
    """
    kind = os.environ.get("CELERIAC_WORKER", "c").strip().lower() or "c"
    if kind not in WORKER_KINDS:
        raise ValueError(
            f"invalid CELERIAC_WORKER value {kind!r}: expected 'c' or 'python'"
        )
    return kind


def broker_is_reachable(timeout=2.0):
    try:
        with socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=timeout):
            return True
    except OSError:
        return False


def unique_name(prefix):
    """Return a name for a queue or node that no other test run uses."""
    safe_prefix = re.sub(r"[^A-Za-z0-9_.-]", "-", prefix)
    return f"{safe_prefix}.{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------


class WorkerProcess:
    """One worker (C or Python twin) consuming from one queue.

    stderr goes to ``log_path``; the tests read it to wait for readiness and
    to check the WARNING lines the C worker writes for dropped messages.
    """

    def __init__(self, kind, queue, node_base, log_path, env=None, extra_args=()):
        self.kind = kind
        self.queue = queue
        self.node_name = f"{node_base}@%h"
        # The name tasks see in request.hostname, after %h is expanded.
        self.hostname = f"{node_base}@{socket.gethostname()}"
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.process = None
        self.exit_code = None
        self.stopped = False

    def command(self):
        if self.kind == "python":
            return [
                PYTHON, "-m", "celery", "-A", "pytasks",
                "-b", BROKER_URL, "--result-backend", RESULT_BACKEND,
                "worker", "-Q", self.queue, "-c", "1", "-P", "solo",
                "-n", self.node_name, "-l", "info",
                "--without-mingle", "--without-gossip", "--without-heartbeat",
                *self.extra_args,
            ]
        return [
            str(C_WORKER), "worker", "-A", str(C_TASK_MODULE),
            "-b", BROKER_URL, "--result-backend", RESULT_BACKEND,
            "-Q", self.queue, "-c", "1", "-P", "solo",
            "-n", self.node_name, "-l", "info",
            *self.extra_args,
        ]

    def start(self):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = os.environ.copy()
        env.update(self.env)
        cwd = INTEROP_DIR if self.kind == "python" else REPO_DIR
        with open(self.log_path, "wb") as log_file:
            log_file.write(("$ " + " ".join(self.command()) + "\n").encode())
            log_file.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait for the `` ready.`` log line; raise RuntimeError with the log tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log_text():
                return
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} worker exited with status {self.process.returncode} "
                    f"before it was ready; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.kind} worker did not log ' ready.' within {timeout} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout=STOP_TIMEOUT):
        """Send SIGTERM and return the exit status, or None if it had to be killed."""
        if self.process is None:
            return None
        if self.stopped:
            return self.exit_code
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.exit_code = None
        return self.exit_code

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_offset(self):
        """Return the current log size, to read only later lines with ``log_since``."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, offset):
        with open(self.log_path, "rb") as log_file:
            log_file.seek(offset)
            return log_file.read().decode("utf-8", errors="replace")

    def warnings_since(self, offset):
        return [
            line
            for line in self.log_since(offset).splitlines()
            if "WARNING/" in line or ": WARNING" in line
        ]


# ---------------------------------------------------------------------------
# Raw AMQP access (py-amqp), for what the Celery client cannot send
# ---------------------------------------------------------------------------


def amqp_connection():
    connection = amqp.Connection(
        host=f"{BROKER_HOST}:{BROKER_PORT}", userid="guest", password="guest",
        virtual_host="/",
    )
    connection.connect()
    return connection


def declare_task_queue(channel, queue):
    """Declare ``queue`` exactly as Celery does: durable direct exchange and queue."""
    channel.exchange_declare(queue, "direct", durable=True, auto_delete=False)
    channel.queue_declare(queue, durable=True, exclusive=False, auto_delete=False)
    channel.queue_bind(queue, queue, queue)


def queue_message_count(queue):
    """Return the number of ready messages in ``queue`` (passive queue.declare).

    Messages delivered to a consumer but not yet acknowledged are not counted;
    use ``queue_depths`` for those.
    """
    with amqp_connection() as connection:
        channel = connection.channel()
        _, message_count, _ = channel.queue_declare(queue, passive=True)
        return message_count


def queue_depths(queue):
    """Return ``(ready, unacknowledged)`` message counts from rabbitmqctl."""
    output = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "--no-table-headers",
         "name", "messages_ready", "messages_unacknowledged"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == queue:
            return int(fields[1]), int(fields[2])
    raise LookupError(f"queue {queue!r} not found in rabbitmqctl list_queues")


def wait_for_empty_queue(queue, timeout=10.0):
    """Poll ``queue_depths`` until both counts are 0; return the last counts.

    Workers may send an ack just after the result (Celery defers it to its
    next event-loop pass), so a single look can catch it in flight.
    """
    deadline = time.monotonic() + timeout
    depths = queue_depths(queue)
    while depths != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
        depths = queue_depths(queue)
    return depths


def delete_queue(queue):
    with amqp_connection() as connection:
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)


def publish_raw(queue, body, headers=None, content_type="application/json",
                content_encoding="utf-8", correlation_id=None, reply_to=None,
                **properties):
    """Publish ``body`` (bytes or str) to ``queue`` through the default exchange.

    Nothing is serialized or compressed here, so malformed messages reach the
    worker byte for byte.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    message_properties = {
        "content_type": content_type,
        "content_encoding": content_encoding,
        "delivery_mode": 2,
        "priority": 0,
        "application_headers": headers or {},
    }
    if correlation_id is not None:
        message_properties["correlation_id"] = correlation_id
    if reply_to is not None:
        message_properties["reply_to"] = reply_to
    message_properties.update(properties)
    with amqp_connection() as connection:
        channel = connection.channel()
        channel.basic_publish(
            amqp.Message(body, **message_properties), exchange="", routing_key=queue,
        )


def task_headers_v2(task, task_id, **overrides):
    """Return the v2 header table a Celery 5.2 client sends, with ``overrides``."""
    headers = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": "()",
        "kwargsrepr": "{}",
        "origin": f"gen{os.getpid()}@{socket.gethostname()}",
        "ignore_result": False,
    }
    headers.update(overrides)
    return headers


def task_body_v2(args=(), kwargs=None, ensure_ascii=True):
    """Return the JSON bytes of a v2 body ``[args, kwargs, embed]``."""
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = [list(args), kwargs or {}, embed]
    return json.dumps(body, ensure_ascii=ensure_ascii).encode("utf-8")


def publish_task_v2(queue, task, args=(), kwargs=None, task_id=None, reply_to=None,
                    body=None, **header_overrides):
    """Publish a v2 task message built by hand; return its task id."""
    task_id = task_id or str(uuid.uuid4())
    headers = task_headers_v2(task, task_id, **header_overrides)
    if body is None:
        body = task_body_v2(args, kwargs)
    publish_raw(queue, body, headers=headers, correlation_id=task_id, reply_to=reply_to)
    return task_id


class ReplyQueue:
    """A private queue used as ``reply_to``, read with basic.get.

    It lets a test see every result message a worker sends for a task
    (including none at all), which ``AsyncResult.get()`` cannot show.
    """

    def __init__(self):
        self.name = unique_name("interop-replies")
        self.connection = amqp_connection()
        self.channel = self.connection.channel()
        self.channel.queue_declare(self.name, durable=False, exclusive=True,
                                   auto_delete=True)

    def get_all(self):
        """Return the decoded bodies of the queued messages, oldest first."""
        results = []
        while True:
            message = self.channel.basic_get(self.name, no_ack=True)
            if message is None:
                return results
            results.append(json.loads(message.body))

    def wait_for(self, task_id, timeout=RESULT_TIMEOUT, states=("SUCCESS", "FAILURE", "REVOKED")):
        """Return all messages read until one for ``task_id`` has a state in ``states``."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            batch = self.get_all()
            seen.extend(batch)
            if any(meta.get("task_id") == task_id and meta.get("status") in states
                   for meta in batch):
                return seen
            time.sleep(0.05)
        raise TimeoutError(
            f"no {'/'.join(states)} result for task {task_id} on {self.name} within "
            f"{timeout} s; received: {seen!r}"
        )

    def close(self):
        self.connection.close()


class DeadLetterQueue:
    """A RabbitMQ policy that dead-letters rejected messages of one queue.

    A policy leaves the queue's declared arguments alone, so Celery's and the
    C worker's passive-compatible declarations keep working. Messages that the
    worker rejects with requeue=False land in ``self.name``; acked ones do not.
    """

    POLICY_WAIT = 10

    def __init__(self, queue):
        self.queue = queue
        self.name = f"{queue}.dead"
        self.exchange = f"{queue}.dlx"
        self.policy = f"interop-dlx-{queue}"
        self.connection = amqp_connection()
        self.channel = self.connection.channel()
        self.channel.exchange_declare(self.exchange, "fanout", durable=False,
                                      auto_delete=False)
        self.channel.queue_declare(self.name, durable=False, auto_delete=False)
        self.channel.queue_bind(self.name, self.exchange, "")
        definition = json.dumps({"dead-letter-exchange": self.exchange})
        subprocess.run(
            ["rabbitmqctl", "-q", "set_policy", "--apply-to", "queues",
             "--priority", "100", self.policy, f"^{re.escape(queue)}$", definition],
            check=True, capture_output=True, timeout=30,
        )
        self._wait_for_policy()

    def _wait_for_policy(self):
        deadline = time.monotonic() + self.POLICY_WAIT
        while time.monotonic() < deadline:
            output = subprocess.run(
                ["rabbitmqctl", "-q", "list_queues", "--no-table-headers",
                 "name", "policy"],
                check=True, capture_output=True, text=True, timeout=30,
            ).stdout
            for line in output.splitlines():
                fields = line.split()
                if fields[:2] == [self.queue, self.policy]:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"policy {self.policy} was not applied to {self.queue}")

    def get_all(self):
        """Return the dead-lettered messages (py-amqp Message objects) and remove them."""
        messages = []
        while True:
            message = self.channel.basic_get(self.name, no_ack=True)
            if message is None:
                return messages
            messages.append(message)

    def close(self):
        subprocess.run(
            ["rabbitmqctl", "-q", "clear_policy", self.policy],
            check=False, capture_output=True, timeout=30,
        )
        self.channel.queue_delete(self.name)
        self.channel.exchange_delete(self.exchange)
        self.connection.close()
