"""Task errors reach the client as the real Python exception classes."""

import pytest
from celery.exceptions import NotRegistered

from support import RESULT_TIMEOUT


def test_fail_raises_value_error(client, worker):
    result = client.send_task("tasks.fail", args=["bad input"], queue=worker.queue)
    with pytest.raises(ValueError) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert type(error.value) is ValueError
    assert error.value.args == ("bad input",)


def test_fail_message_with_unicode(client, worker):
    message = "ошибка 😀 \"quoted\" \n second line"
    result = client.send_task("tasks.fail", args=[message], queue=worker.queue)
    with pytest.raises(ValueError) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert error.value.args == (message,)


def test_fail_sets_failure_state(client, worker):
    result = client.send_task("tasks.fail", args=["state check"], queue=worker.queue)
    with pytest.raises(ValueError):
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"
    assert result.failed()
    assert isinstance(result.result, ValueError)
    assert isinstance(result.traceback, str)
    assert "ValueError" in result.traceback


def test_fail_without_propagate(client, worker):
    result = client.send_task("tasks.fail", args=["quiet"], queue=worker.queue)
    value = result.get(timeout=RESULT_TIMEOUT, propagate=False)
    assert isinstance(value, ValueError)
    assert value.args == ("quiet",)


def test_unknown_task_raises_not_registered(client, worker):
    result = client.send_task("tasks.nope", args=[1], queue=worker.queue)
    with pytest.raises(NotRegistered) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert "tasks.nope" in str(error.value)


def test_worker_runs_tasks_after_failures(run, client, worker):
    for _ in range(3):
        result = client.send_task("tasks.fail", args=["again"], queue=worker.queue)
        with pytest.raises(ValueError):
            result.get(timeout=RESULT_TIMEOUT)
    assert run("tasks.add", 20, 22) == 42
