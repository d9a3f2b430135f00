"""Countdown, ETA strings in every offset form, and expiry (REVOKED)."""

import time
from datetime import datetime, timedelta, timezone

import pytest
from celery.exceptions import TaskRevokedError

from support import RESULT_TIMEOUT, publish_task_v2, queue_message_count

DELAY = 1.5
# Allowed clock and timer slack, in seconds, when a task runs before its ETA.
EARLY_SLACK = 0.05
# A task due in DELAY seconds must finish within this many seconds.
LATE_LIMIT = DELAY + 5


def iso_with_micros(moment, suffix):
    """Format ``moment`` with 6 fraction digits, as Celery's 5.2 parser needs."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + suffix


def test_countdown_runs_no_earlier(client, worker):
    started = time.monotonic()
    result = client.send_task("tasks.add", args=[1, 2], queue=worker.queue, countdown=DELAY)
    assert result.get(timeout=RESULT_TIMEOUT) == 3
    elapsed = time.monotonic() - started
    assert elapsed >= DELAY - EARLY_SLACK, f"ran after {elapsed:.3f} s, countdown {DELAY} s"
    assert elapsed < LATE_LIMIT, f"ran after {elapsed:.3f} s, countdown {DELAY} s"


def test_eta_datetime_runs_no_earlier(client, worker):
    eta = datetime.now(timezone.utc) + timedelta(seconds=DELAY)
    result = client.send_task("tasks.context", queue=worker.queue, eta=eta)
    context = result.get(timeout=RESULT_TIMEOUT)
    finished = datetime.now(timezone.utc)
    assert finished >= eta - timedelta(seconds=EARLY_SLACK)
    assert context["eta"] == eta.isoformat()


def test_countdown_task_does_not_block_others(client, worker):
    delayed = client.send_task("tasks.add", args=[1, 1], queue=worker.queue, countdown=3)
    started = time.monotonic()
    immediate = client.send_task("tasks.add", args=[2, 2], queue=worker.queue)
    assert immediate.get(timeout=RESULT_TIMEOUT) == 4
    assert time.monotonic() - started < 2.5, "a waiting ETA task held up the next task"
    assert delayed.get(timeout=RESULT_TIMEOUT) == 2


ETA_FORMATS = {
    "utc-offset": lambda moment: iso_with_micros(moment, "+00:00"),
    "z-suffix": lambda moment: iso_with_micros(moment, "Z"),
    "plus-two-hours": lambda moment: iso_with_micros(
        moment.astimezone(timezone(timedelta(hours=2))), "+02:00"
    ),
    "minus-five-hours": lambda moment: iso_with_micros(
        moment.astimezone(timezone(timedelta(hours=-5))), "-05:00"
    ),
    "naive-is-utc": lambda moment: iso_with_micros(moment, ""),
    "no-fraction": lambda moment: (moment + timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%S+00:00"
    ),
}


@pytest.mark.parametrize("format_eta", ETA_FORMATS.values(), ids=ETA_FORMATS.keys())
def test_eta_header_string(worker, reply_queue, format_eta):
    eta = datetime.now(timezone.utc) + timedelta(seconds=DELAY)
    eta_string = format_eta(eta)
    started = time.monotonic()
    task_id = publish_task_v2(worker.queue, "tasks.context", reply_to=reply_queue.name,
                              eta=eta_string)
    messages = reply_queue.wait_for(task_id)
    elapsed = time.monotonic() - started
    final = messages[-1]
    assert final["status"] == "SUCCESS"
    assert final["result"]["eta"] == eta_string
    assert elapsed >= DELAY - EARLY_SLACK, f"ETA {eta_string} ran after {elapsed:.3f} s"
    assert elapsed < LATE_LIMIT + 1, f"ETA {eta_string} ran after {elapsed:.3f} s"


def test_eta_in_past_runs_now(worker, reply_queue):
    eta_string = iso_with_micros(datetime.now(timezone.utc) - timedelta(hours=1), "+00:00")
    started = time.monotonic()
    task_id = publish_task_v2(worker.queue, "tasks.add", args=[4, 5],
                              reply_to=reply_queue.name, eta=eta_string)
    messages = reply_queue.wait_for(task_id)
    assert messages[-1]["result"] == 9
    assert time.monotonic() - started < 3


def test_expires_in_past_is_revoked(client, worker):
    expires = datetime.now(timezone.utc) - timedelta(minutes=5)
    result = client.send_task("tasks.add", args=[1, 2], queue=worker.queue, expires=expires)
    with pytest.raises(TaskRevokedError) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert "expired" in str(error.value)
    assert result.state == "REVOKED"


def test_expires_header_in_past_is_revoked(worker, reply_queue):
    expires = iso_with_micros(datetime.now(timezone.utc) - timedelta(minutes=5), "+00:00")
    task_id = publish_task_v2(worker.queue, "tasks.add", args=[1, 2],
                              reply_to=reply_queue.name, expires=expires)
    messages = reply_queue.wait_for(task_id)
    final = messages[-1]
    assert final["status"] == "REVOKED"
    assert final["result"] == {
        "exc_type": "TaskRevokedError",
        "exc_message": ["expired"],
        "exc_module": "celery.exceptions",
    }
    assert queue_message_count(worker.queue) == 0


def test_expires_before_countdown_is_revoked(client, worker):
    result = client.send_task("tasks.add", args=[1, 2], queue=worker.queue,
                              countdown=2, expires=1)
    with pytest.raises(TaskRevokedError) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert "expired" in str(error.value)


def test_expires_in_future_runs(client, worker):
    result = client.send_task("tasks.add", args=[3, 4], queue=worker.queue, expires=60)
    assert result.get(timeout=RESULT_TIMEOUT) == 7


def test_expired_tasks_leave_queue_empty(client, worker, run):
    result = client.send_task("tasks.add", args=[1, 2], queue=worker.queue,
                              countdown=1, expires=0.5)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=RESULT_TIMEOUT)
    assert run("tasks.add", 1, 1) == 2
    assert queue_message_count(worker.queue) == 0
