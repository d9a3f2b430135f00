"""Many tasks in flight at once: every result arrives and is correct."""

import time

from support import queue_message_count

TASK_COUNT = 1000
# Seconds for all results to arrive; the C worker needs a small part of this.
COLLECT_TIMEOUT = 120


def test_thousand_adds_all_correct(client, worker):
    results = [
        client.send_task("tasks.add", args=[i, i * 2], queue=worker.queue)
        for i in range(TASK_COUNT)
    ]
    deadline = time.monotonic() + COLLECT_TIMEOUT
    wrong = []
    for i, result in enumerate(results):
        remaining = max(deadline - time.monotonic(), 1.0)
        value = result.get(timeout=remaining)
        if value != i * 3:
            wrong.append((i, value))
    assert wrong == []
    assert len({result.id for result in results}) == TASK_COUNT
    assert queue_message_count(worker.queue) == 0


def test_mixed_tasks_in_flight(client, worker):
    sent = []
    for i in range(100):
        sent.append((client.send_task("tasks.add", args=[i, 1], queue=worker.queue), i + 1))
        sent.append((client.send_task("tasks.echo", args=[f"item-{i}"], queue=worker.queue),
                     f"item-{i}"))
        sent.append((client.send_task("tasks.xsum", args=[[i, 0.5]], queue=worker.queue),
                     i + 0.5))
    for result, expected in sent:
        assert result.get(timeout=30) == expected
