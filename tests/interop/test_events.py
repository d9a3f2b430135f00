"""Events: worker-online, heartbeats, worker-offline and the task events of -E.

A private queue bound to the ``celeryev`` topic exchange collects the events
of every worker on the shared broker, so each check keeps only the events
whose ``hostname`` is the test worker's node name. The queue exists before
the worker starts, so it also receives the worker-online event.
"""

import os
import signal
import subprocess
import time
import uuid

import pytest
from celery.events.state import State
from celery.exceptions import TaskRevokedError

import support
from conftest import make_worker, run_task, start_worker, stop_worker
from support import RESULT_TIMEOUT

POOL_ARGS = ["-c", "1", "-P", "prefork"]
HEARTBEAT_FREQ = 2.0
# Two heartbeats sent every 2 s must arrive within this many seconds.
HEARTBEAT_WINDOW = 5.0
# Seconds to wait for one event after the action that causes it.
EVENT_TIMEOUT = 10.0
# Seconds after which an event that should not come is taken as absent.
QUIET_SECONDS = 1.5
STANDARD_FIELDS = ("type", "hostname", "timestamp", "utcoffset", "pid", "clock")
WORKER_FIELDS = ("freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys")
# Seconds that an event timestamp may differ from the test's clock.
CLOCK_TOLERANCE = 60.0


def local_utcoffset():
    """Return the utcoffset value Celery 5.2 sends: hours west of UTC, floor division."""
    return (time.altzone if time.daylight else time.timezone) // 3600


@pytest.fixture(scope="module")
def events(broker):
    queue = support.EventQueue()
    yield queue
    queue.close()


@pytest.fixture(scope="module")
def worker(worker_kind, events):
    process = make_worker(worker_kind, "test_events", pool_args=POOL_ARGS,
                          send_heartbeats=True, extra_args=["-E"])
    start_worker(process)
    yield process
    stop_worker(process)


def wait_for_type(events, worker, event_type, timeout=EVENT_TIMEOUT, count=1):
    return events.wait_for(worker.hostname, lambda event: event.get("type") == event_type,
                           timeout=timeout, count=count)


def task_event_types(events, worker, task_id):
    return [event["type"] for event in events.events(worker.hostname)
            if event.get("uuid") == task_id]


def check_standard_fields(event, worker):
    for field in STANDARD_FIELDS:
        assert field in event, f"{field} missing from {event!r}"
    assert event["hostname"] == worker.hostname
    assert isinstance(event["timestamp"], float)
    assert abs(event["timestamp"] - time.time()) < CLOCK_TOLERANCE
    assert event["utcoffset"] == local_utcoffset()
    assert event["pid"] == worker.process.pid
    assert isinstance(event["clock"], int)


def check_worker_fields(event):
    for field in WORKER_FIELDS:
        assert field in event, f"{field} missing from {event!r}"
    assert event["freq"] == HEARTBEAT_FREQ
    assert isinstance(event["active"], int)
    assert isinstance(event["processed"], int)
    assert len(event["loadavg"]) == 3
    for load in event["loadavg"]:
        assert isinstance(load, (int, float))
    assert isinstance(event["sw_ident"], str)
    assert event["sw_ident"]
    assert isinstance(event["sw_ver"], str)
    assert event["sw_ver"]
    assert event["sw_sys"] == os.uname().sysname


# ---------------------------------------------------------------------------
# Worker events
# ---------------------------------------------------------------------------


def test_worker_online_event(events, worker):
    online = wait_for_type(events, worker, "worker-online")[0]
    check_standard_fields(online, worker)
    check_worker_fields(online)


def test_heartbeats_every_two_seconds(events, worker):
    already_seen = len(events.events(worker.hostname, "worker-heartbeat"))
    heartbeats = wait_for_type(events, worker, "worker-heartbeat",
                               timeout=HEARTBEAT_WINDOW, count=already_seen + 2)
    for heartbeat in heartbeats:
        check_standard_fields(heartbeat, worker)
        check_worker_fields(heartbeat)
    clocks = [heartbeat["clock"] for heartbeat in heartbeats]
    assert clocks == sorted(clocks)
    assert len(set(clocks)) == len(clocks)


def test_heartbeat_counts_processed_tasks(client, events, worker):
    assert run_task(client, worker, "tasks.add", args=[1, 1]) == 2
    already_seen = len(events.events(worker.hostname, "worker-heartbeat"))
    heartbeat = wait_for_type(events, worker, "worker-heartbeat",
                              timeout=HEARTBEAT_WINDOW, count=already_seen + 1)[-1]
    # The two warm-up tasks and this one.
    assert heartbeat["processed"] >= 3
    assert heartbeat["active"] == 0


def test_event_messages_properties(client, events, worker):
    """Every event message names its worker in a header and is sent transient."""
    result = client.send_task("tasks.add", args=[2, 2], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 4
    events.wait_for_task(worker.hostname, "task-succeeded", result.id)

    messages = events.messages(worker.hostname)
    assert messages
    for event, message in messages:
        check_standard_fields(event, worker)
        assert message.headers.get("hostname") == worker.hostname
        assert message.content_type == "application/json"
        assert message.delivery_mode == 1
        routing_key = message.delivery_info["routing_key"]
        # A Python prefork worker sends buffered task events as one list.
        assert routing_key in (event["type"].replace("-", "."), "task.multi")


# ---------------------------------------------------------------------------
# Task events
# ---------------------------------------------------------------------------


def test_task_success_events(client, events, worker):
    result = client.send_task("tasks.add", args=[2, 3], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 5
    succeeded = events.wait_for_task(worker.hostname, "task-succeeded", result.id)
    received = events.wait_for_task(worker.hostname, "task-received", result.id)
    started = events.wait_for_task(worker.hostname, "task-started", result.id)

    assert task_event_types(events, worker, result.id) == [
        "task-received", "task-started", "task-succeeded"]
    for event in (received, started, succeeded):
        check_standard_fields(event, worker)
    assert received["name"] == "tasks.add"
    # args and kwargs are the argsrepr and kwargsrepr the client sent.
    assert received["args"] == "[2, 3]"
    assert received["kwargs"] == "{}"
    assert received["retries"] == 0
    assert received["root_id"] == result.id
    assert received["parent_id"] is None
    assert received["eta"] is None
    assert received["expires"] is None
    assert succeeded["result"] == "5"
    assert isinstance(succeeded["runtime"], float)
    assert 0 <= succeeded["runtime"] < RESULT_TIMEOUT
    assert received["clock"] < started["clock"] < succeeded["clock"]


def test_task_result_is_repr(client, events, worker):
    result = client.send_task("tasks.echo", args=["abc"], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == "abc"
    succeeded = events.wait_for_task(worker.hostname, "task-succeeded", result.id)
    assert succeeded["result"] == "'abc'"


def test_task_received_event_with_eta(client, events, worker):
    result = client.send_task("tasks.add", args=[1, 2], queue=worker.queue, countdown=1.0,
                              expires=60)
    assert result.get(timeout=RESULT_TIMEOUT) == 3
    received = events.wait_for_task(worker.hostname, "task-received", result.id)
    assert isinstance(received["eta"], str)
    assert received["eta"].startswith(time.strftime("%Y-", time.gmtime()))
    assert isinstance(received["expires"], str)


def test_task_failed_event(client, events, worker):
    result = client.send_task("tasks.fail", args=["boom"], queue=worker.queue)
    with pytest.raises(ValueError):
        result.get(timeout=RESULT_TIMEOUT)
    failed = events.wait_for_task(worker.hostname, "task-failed", result.id)
    check_standard_fields(failed, worker)
    assert failed["exception"] == "ValueError('boom')"
    assert isinstance(failed["traceback"], str)
    assert "ValueError" in failed["traceback"]
    assert "task-succeeded" not in task_event_types(events, worker, result.id)


def test_task_retried_event(client, events, worker):
    result = client.send_task("tasks.flaky", args=[1], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 1
    retried = events.wait_for_task(worker.hostname, "task-retried", result.id)
    check_standard_fields(retried, worker)
    assert retried["exception"] == "RuntimeError('flaky retry 0')"
    assert isinstance(retried["traceback"], str)
    events.wait_for_task(worker.hostname, "task-succeeded", result.id)
    received = [event for event in events.events(worker.hostname, "task-received")
                if event["uuid"] == result.id]
    assert [event["retries"] for event in received] == [0, 1]


def test_task_revoked_event(client, events, worker):
    sleeping = client.send_task("tasks.sleep", args=[1.5], queue=worker.queue)
    events.wait_for_task(worker.hostname, "task-started", sleeping.id, timeout=EVENT_TIMEOUT)
    queued = client.send_task("tasks.add", args=[1, 1], queue=worker.queue)
    client.control.revoke(queued.id, destination=[worker.hostname])
    with pytest.raises(TaskRevokedError):
        queued.get(timeout=RESULT_TIMEOUT)

    revoked = events.wait_for_task(worker.hostname, "task-revoked", queued.id)
    check_standard_fields(revoked, worker)
    assert revoked["terminated"] is False
    assert revoked["expired"] is False
    assert "task-started" not in task_event_types(events, worker, queued.id)
    assert sleeping.get(timeout=RESULT_TIMEOUT) is None


def test_celery_state_follows_events(client, events, worker):
    """Celery's own event State (as Flower uses it) tracks the worker and a task."""
    result = client.send_task("tasks.mul", args=[6, 7], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 42
    events.wait_for_task(worker.hostname, "task-succeeded", result.id)

    state = State()
    with client.connection_for_read() as connection:
        receiver = client.events.Receiver(connection, handlers={})
        for event in events.events(worker.hostname):
            _, localized = receiver.event_from_message(dict(event))
            state.event(localized)
    assert state.workers[worker.hostname].alive
    task = state.tasks[result.id]
    assert task.state == "SUCCESS"
    assert task.name == "tasks.mul"
    assert task.result == "42"
    assert task.worker.hostname == worker.hostname


# ---------------------------------------------------------------------------
# Workers of their own
# ---------------------------------------------------------------------------


def test_enable_and_disable_task_events(client, events, worker_factory):
    quiet = worker_factory(pool_args=POOL_ARGS, send_heartbeats=True)
    destination = [quiet.hostname]

    before = run_task_id(client, quiet)
    time.sleep(QUIET_SECONDS)
    assert task_event_types(events, quiet, before) == []

    replies = client.control.enable_events(destination=destination, reply=True,
                                           timeout=RESULT_TIMEOUT)
    assert replies == [{quiet.hostname: {"ok": "task events enabled"}}]
    enabled = run_task_id(client, quiet)
    events.wait_for_task(quiet.hostname, "task-succeeded", enabled)

    replies = client.control.disable_events(destination=destination, reply=True,
                                            timeout=RESULT_TIMEOUT)
    assert replies == [{quiet.hostname: {"ok": "task events disabled"}}]
    after = run_task_id(client, quiet)
    time.sleep(QUIET_SECONDS)
    assert task_event_types(events, quiet, after) == []
    # Worker events go on without task events.
    already_seen = len(events.events(quiet.hostname, "worker-heartbeat"))
    wait_for_type(events, quiet, "worker-heartbeat", timeout=HEARTBEAT_WINDOW,
                  count=already_seen + 1)


def run_task_id(client, worker):
    result = client.send_task("tasks.add", args=[1, 1], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 2
    return result.id


def test_worker_offline_at_stop(events, worker_factory):
    stopping = worker_factory(pool_args=POOL_ARGS, send_heartbeats=True)
    wait_for_type(events, stopping, "worker-online")
    assert stopping.stop() == 0
    offline = wait_for_type(events, stopping, "worker-offline")[0]
    check_standard_fields(offline, stopping)
    assert offline["sw_ident"]
    types = [event["type"] for event in events.events(stopping.hostname)]
    assert types[-1] == "worker-offline"


def test_events_dump_cli(events, worker):
    """``celery events --dump`` prints the worker's heartbeats."""
    command = [support.PYTHON, "-m", "celery", "-b", support.BROKER_URL, "events", "--dump"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log_path = support.LOG_DIR / f"events-dump.{uuid.uuid4().hex[:8]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log_file:
        dump = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                cwd=support.INTEROP_DIR, env=env, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + EVENT_TIMEOUT
        while time.monotonic() < deadline:
            output = log_path.read_text(errors="replace")
            if f"{worker.hostname} [" in output and "heartbeat" in output:
                break
            time.sleep(0.2)
    finally:
        dump.send_signal(signal.SIGINT)
        try:
            dump.wait(timeout=5)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.wait()
    output = log_path.read_text(errors="replace")
    lines = [line for line in output.splitlines() if line.startswith(f"{worker.hostname} [")]
    assert lines, f"no event of {worker.hostname} in celery events --dump output:\n{output}"
    log_path.unlink()
