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
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
# The database the interop tests own on the shared Redis; tests use unique
# ids and never flush it.
REDIS_DB = 9
REDIS_BACKEND = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"

# Seconds that every result wait may take before the test fails.
RESULT_TIMEOUT = 15
READY_TIMEOUT = 20
STOP_TIMEOUT = 10
LOG_TAIL_LINES = 40

WORKER_KINDS = ("c", "python")

# Pool options every worker gets unless a test passes its own ``pool_args``.
DEFAULT_POOL_ARGS = ("-c", "1", "-P", "solo")


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

    def __init__(self, kind, queue, node_base, log_path, env=None, extra_args=(),
                 pool_args=DEFAULT_POOL_ARGS, new_session=False, broker_url=BROKER_URL,
                 send_heartbeats=False, mingle=False, result_backend=RESULT_BACKEND):
        self.kind = kind
        self.queue = queue
        self.node_name = f"{node_base}@%h"
        # The name tasks see in request.hostname, after %h is expanded.
        self.hostname = f"{node_base}@{socket.gethostname()}"
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        # Concurrency and pool options. An empty list leaves both at their defaults.
        self.pool_args = list(pool_args)
        # A session of its own puts the worker and its pool children in one
        # process group, which tests can signal like a service manager does.
        self.new_session = new_session
        self.broker_url = broker_url
        # The Python twin runs with --without-heartbeat unless this is set, so
        # it sends no worker-online, worker-heartbeat or worker-offline events.
        # The C worker ignores it.
        self.send_heartbeats = send_heartbeats
        # Both workers skip mingle unless this is set, so a test never picks
        # up revoked ids from other workers on the shared broker.
        self.mingle = mingle
        self.result_backend = result_backend
        self.process = None
        self.exit_code = None
        self.stopped = False
        # Set once a test signals the worker itself, so teardown only cleans up.
        self.signalled_by_test = False

    def command(self):
        if self.kind == "python":
            heartbeat_args = [] if self.send_heartbeats else ["--without-heartbeat"]
            mingle_args = [] if self.mingle else ["--without-mingle"]
            return [
                PYTHON, "-m", "celery", "-A", "pytasks",
                "-b", self.broker_url, "--result-backend", self.result_backend,
                "worker", "-Q", self.queue, *self.pool_args,
                "-n", self.node_name, "-l", "info",
                *mingle_args, "--without-gossip", *heartbeat_args,
                *self.extra_args,
            ]
        return [
            str(C_WORKER), "worker", "-A", str(C_TASK_MODULE),
            "-b", self.broker_url, "--result-backend", self.result_backend,
            "-Q", self.queue, *self.pool_args,
            "-n", self.node_name, "-l", "info",
            *([] if self.mingle else ["--without-mingle"]),
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
                start_new_session=self.new_session,
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
        self.kill_process_group()
        return self.exit_code

    def send_signal(self, signum, group=False):
        """Send ``signum`` to the main process, or with ``group`` to its process group.

        Teardown then checks no exit status, because the test owns the outcome.
        """
        self.signalled_by_test = True
        if group:
            if not self.new_session:
                raise ValueError("signalling the group needs a worker started with "
                                 "new_session=True, or it would hit pytest too")
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def wait_exit(self, timeout):
        """Wait up to ``timeout`` s for the worker to exit and return its status.

        Returns None if the worker is still running.
        """
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def wait_for_group_exit(self, timeout):
        """Wait up to ``timeout`` s for the worker's whole process group to exit.

        Returns the pids still alive, so an empty list means no pool child
        outlived the main process.
        """
        deadline = time.monotonic() + timeout
        pids = process_group_pids(self.process.pid)
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = process_group_pids(self.process.pid)
        return pids

    def kill_process_group(self):
        """SIGKILL pool children left behind in the worker's own process group.

        Linux does not hand out a group's id as a new pid while the group has
        members, so this cannot hit an unrelated process after the main one exited.
        """
        if not self.new_session or self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def process_ids(self):
        """Return the pids of the main process and all its descendants."""
        pids = [self.process.pid]
        index = 0
        while index < len(pids):
            pids.extend(child_pids(pids[index]))
            index += 1
        return pids

    def broker_client_ports(self):
        """Return the local ports of this worker's TCP connections to the broker."""
        return broker_client_ports(self.process_ids())

    def is_running(self):
        return self.process is not None and self.process.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, text, timeout):
        """Wait until the log contains ``text``; raise AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{text!r} not logged in {timeout} s; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

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


def child_pids(pid):
    """Return the pids of the children of ``pid`` (an empty list once it has exited)."""
    children = []
    try:
        thread_ids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return children
    for thread_id in thread_ids:
        try:
            with open(f"/proc/{pid}/task/{thread_id}/children") as children_file:
                children.extend(int(child) for child in children_file.read().split())
        except FileNotFoundError:
            continue
    return children


def process_group_pids(pgid):
    """Return the pids of the live (not zombie) processes in process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat_file:
                stat = stat_file.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # The command name in brackets may contain spaces, so split after it.
        fields = stat.rsplit(")", 1)[1].split()
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state != "Z":
            pids.append(int(entry))
    return pids


def socket_inodes(pid):
    """Return the inodes of the sockets that process ``pid`` has open."""
    inodes = set()
    try:
        fd_names = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, PermissionError):
        return inodes
    for fd_name in fd_names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd_name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def broker_client_ports(pids, broker_port=BROKER_PORT):
    """Return the local ports of the established connections from ``pids`` to the broker.

    It reads /proc/net/tcp and tcp6, whose ports are hexadecimal and whose
    state 01 is ESTABLISHED.
    """
    inodes = set()
    for pid in pids:
        inodes |= socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as table_file:
                rows = table_file.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local_address, remote_address, state, inode = (
                fields[1], fields[2], fields[3], fields[9])
            if (state == "01" and inode in inodes
                    and int(remote_address.rsplit(":", 1)[1], 16) == broker_port):
                ports.add(int(local_address.rsplit(":", 1)[1], 16))
    return ports


def rabbitmqctl_json(*arguments, node=None):
    """Run ``rabbitmqctl`` with JSON output and return the decoded list."""
    command = ["rabbitmqctl", "-q"]
    if node is not None:
        command += ["-n", node]
    command += [*arguments, "--formatter", "json"]
    output = subprocess.run(command, check=True, capture_output=True, text=True,
                            timeout=30).stdout
    return json.loads(output or "[]")


def close_broker_connections(client_ports, reason="closed by an interop test"):
    """Close the broker connections whose client port is in ``client_ports``.

    Only these connections are closed, because other work shares the broker.
    Returns the pids of the closed connections.
    """
    # close_connection takes the connection pid as the table output prints
    # it (<rabbit@host.N.N.N>), not as the JSON output does (#PID<N.N.N>).
    output = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "pid", "peer_port"],
        check=True, capture_output=True, text=True, timeout=30,
    ).stdout
    closed = []
    for line in output.splitlines():
        fields = line.split()
        if len(fields) != 2 or int(fields[1]) not in client_ports:
            continue
        subprocess.run(["rabbitmqctl", "-q", "close_connection", fields[0], reason],
                       check=True, capture_output=True, timeout=30)
        closed.append(fields[0])
    return closed


def queue_arguments(queue):
    """Return the declared arguments of ``queue`` as a dict, from rabbitmqctl.

    rabbitmqctl lists each argument as ``[name, AMQP type, value]``.
    """
    for row in rabbitmqctl_json("list_queues", "name", "arguments"):
        if row["name"] == queue:
            return {name: value for name, _, value in row["arguments"]}
    raise LookupError(f"queue {queue!r} not found in rabbitmqctl list_queues")


def wait_for_depths(queue, expected, timeout=10.0):
    """Poll ``queue_depths`` until it equals ``expected``; return the last counts.

    The broker returns unacked messages to the queue when the consumer's
    connection closes, so the counts change a moment after the worker exits.
    """
    deadline = time.monotonic() + timeout
    depths = queue_depths(queue)
    while depths != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        depths = queue_depths(queue)
    return depths


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


class EventQueue:
    """A private queue bound to the ``celeryev`` topic exchange with ``#``.

    It receives the events of every worker on the broker, so the readers
    filter by the ``hostname`` field. Messages are read with basic.get, which
    keeps each event's routing key and headers for the tests to check. A
    message body is one event or, from a Python prefork worker, a list of them.
    """

    EXCHANGE = "celeryev"

    def __init__(self):
        self.name = unique_name("interop-events")
        self.connection = amqp_connection()
        self.channel = self.connection.channel()
        # Celery declares the exchange this way; declaring it again is a no-op.
        self.channel.exchange_declare(self.EXCHANGE, "topic", durable=True,
                                      auto_delete=False)
        self.channel.queue_declare(self.name, durable=False, exclusive=True,
                                   auto_delete=True)
        self.channel.queue_bind(self.name, self.EXCHANGE, "#")
        # (event, message) pairs in arrival order, for all hostnames.
        self.received = []

    def poll(self):
        """Read the queued messages into ``received`` and return how many events came."""
        count = 0
        while True:
            message = self.channel.basic_get(self.name, no_ack=True)
            if message is None:
                return count
            body = json.loads(message.body)
            for event in body if isinstance(body, list) else [body]:
                self.received.append((event, message))
                count += 1

    def events(self, hostname, event_type=None):
        """Return the events received so far from ``hostname``, of ``event_type`` if given."""
        self.poll()
        return [
            event for event, _ in self.received
            if event.get("hostname") == hostname
            and (event_type is None or event.get("type") == event_type)
        ]

    def messages(self, hostname):
        """Return ``(event, message)`` pairs received so far from ``hostname``."""
        self.poll()
        return [(event, message) for event, message in self.received
                if event.get("hostname") == hostname]

    def wait_for(self, hostname, predicate, timeout=RESULT_TIMEOUT, count=1):
        """Return the first ``count`` events from ``hostname`` that match ``predicate``.

        Raises TimeoutError, listing the event types seen, if fewer arrive
        within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            matches = [event for event in self.events(hostname) if predicate(event)]
            if len(matches) >= count:
                return matches[:count]
            if time.monotonic() >= deadline:
                seen = [event.get("type") for event in self.events(hostname)]
                raise TimeoutError(
                    f"{len(matches)} of {count} matching events from {hostname} within "
                    f"{timeout} s; event types seen: {seen}"
                )
            time.sleep(0.05)

    def wait_for_task(self, hostname, event_type, task_id, timeout=RESULT_TIMEOUT):
        """Return the ``event_type`` event for ``task_id`` from ``hostname``."""
        return self.wait_for(
            hostname,
            lambda event: event.get("type") == event_type and event.get("uuid") == task_id,
            timeout=timeout,
        )[0]

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


# ---------------------------------------------------------------------------
# Redis result backend
# ---------------------------------------------------------------------------

REDIS_START_TIMEOUT = 10.0


def is_redis_backend(url):
    return url.startswith(("redis://", "rediss://"))


def redis_client(url=REDIS_BACKEND):
    """Return a redis-py client for a redis:// or rediss:// backend URL."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def redis_meta(client, task_id):
    """Return the decoded meta stored for ``task_id``, or None."""
    raw = client.get(f"celery-task-meta-{task_id}")
    return None if raw is None else json.loads(raw)


def wait_for_redis_meta(client, task_id, timeout=RESULT_TIMEOUT,
                        states=("SUCCESS", "FAILURE", "REVOKED")):
    """Poll Redis until the meta of ``task_id`` has a state in ``states``; return it."""
    deadline = time.monotonic() + timeout
    meta = None
    while time.monotonic() < deadline:
        try:
            meta = redis_meta(client, task_id)
        except OSError:
            meta = None
        if meta is not None and meta.get("status") in states:
            return meta
        time.sleep(0.05)
    raise TimeoutError(
        f"no {'/'.join(states)} meta for task {task_id} in Redis within {timeout} s; "
        f"last seen: {meta!r}"
    )


def port_is_listening(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class PrivateRedis:
    """A redis-server of the test's own on 127.0.0.1, in a temporary folder.

    The shared Redis on 6379 serves other work, so tests that need a
    password, TLS or a restart start one of these. With ``tls`` the server
    listens with TLS only, on ``port``, using a self-signed certificate made
    with openssl for 127.0.0.1 (``self.ca_file``). Data is kept in an
    append-only file with fsync on every write, so a restart keeps it.
    """

    def __init__(self, port, password=None, tls=False):
        import shutil
        import tempfile

        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed")
        if port_is_listening(port):
            raise RuntimeError(f"port {port} is already in use")
        self.port = port
        self.password = password
        self.tls = tls
        self.folder = Path(tempfile.mkdtemp(prefix="interop-redis-"))
        self.log_path = self.folder / "redis.log"
        self.ca_file = self.folder / "cert.pem"
        self.key_file = self.folder / "key.pem"
        self.process = None
        if tls:
            self._make_certificate()

    def _make_certificate(self):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
             "-keyout", str(self.key_file), "-out", str(self.ca_file), "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )

    def command(self):
        command = ["redis-server", "--bind", "127.0.0.1", "--dir", str(self.folder),
                   "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                   "--logfile", str(self.log_path)]
        if self.tls:
            command += ["--port", "0", "--tls-port", str(self.port),
                        "--tls-cert-file", str(self.ca_file),
                        "--tls-key-file", str(self.key_file),
                        "--tls-auth-clients", "no"]
        else:
            command += ["--port", str(self.port)]
        if self.password is not None:
            command += ["--requirepass", self.password]
        return command

    def url(self, db=0, password=None, query=""):
        """Return the backend URL; ``password`` overrides the server's own."""
        password = self.password if password is None else password
        auth = f":{password}@" if password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}127.0.0.1:{self.port}/{db}{query}"

    def tls_url(self, db=0, cert_reqs="required"):
        """Return a rediss:// URL that trusts this server's certificate."""
        return self.url(db, query=f"?ssl_cert_reqs={cert_reqs}&ssl_ca_certs={self.ca_file}")

    def start(self):
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with status {self.process.returncode}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if port_is_listening(self.port):
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not listen on {self.port} within "
                           f"{REDIS_START_TIMEOUT} s; log {self.log_path}")

    def kill(self):
        """SIGKILL the server, as a crash would end it, and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self):
        import shutil

        self.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log_tail(self, lines=LOG_TAIL_LINES):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])
