"""Worker log lines in Celery's format, and settings from a --config file."""

import re
import time

import pytest

from conftest import run_task
from support import LOG_DIR, RESULT_TIMEOUT, queue_depths, unique_name, wait_for_empty_queue

LOG_PREFIX = r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}: (?P<level>[A-Z]+)/MainProcess\] "


def test_ready_line_names_node(worker):
    assert re.search(re.escape(worker.hostname) + r" ready\.$", worker.log_text(), re.MULTILINE)


def test_success_line_format(client, worker):
    offset = worker.log_offset()
    result = client.send_task("tasks.add", args=[2, 3], queue=worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 5
    pattern = (LOG_PREFIX + r"Task tasks\.add\[" + re.escape(result.id)
               + r"\] succeeded in \d+(\.\d+)?(e-\d+)?s: 5$")
    deadline = time.monotonic() + 5
    while not re.search(pattern, worker.log_since(offset), re.MULTILINE):
        assert time.monotonic() < deadline, (
            f"no success line for {result.id} in:\n{worker.log_since(offset)}"
        )
        time.sleep(0.05)


@pytest.mark.c_only(reason="the Python twin has no --config option")
def test_config_file_sets_acks_late(client, worker_factory):
    config_path = LOG_DIR / f"{unique_name('acks-late')}.conf"
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(
        "# Settings use Celery's names.\n"
        "task_acks_late = true\n"
        "worker_prefetch_multiplier = 1\n"
    )
    worker = worker_factory(extra_args=["--config", str(config_path)])
    result = client.send_task("tasks.sleep", args=[3], queue=worker.queue)
    # The task runs for 3 s; its message must stay unacked meanwhile.
    deadline = time.monotonic() + 2.0
    depths = queue_depths(worker.queue)
    while depths != (0, 1) and time.monotonic() < deadline:
        time.sleep(0.05)
        depths = queue_depths(worker.queue)
    assert depths == (0, 1)
    assert result.get(timeout=RESULT_TIMEOUT) is None
    assert run_task(client, worker, "tasks.add", args=[1, 1]) == 2
    assert wait_for_empty_queue(worker.queue) == (0, 0)
