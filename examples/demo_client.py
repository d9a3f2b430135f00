"""Run the celeriac demo: start the C worker and send it tasks from Celery.

Used by `make demo`. It starts build/celeriac on the demo task module,
sends a few tasks with the stock Python Celery client, prints each result
and stops the worker. The broker URL comes from CELERY_BROKER_URL
(default amqp://guest:guest@127.0.0.1:5672//).
"""
import os
import signal
import subprocess
import sys
import time

from celery import Celery

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BROKER = os.environ.get("CELERY_BROKER_URL",
                        "amqp://guest:guest@127.0.0.1:5672//")
QUEUE = "celeriac-demo"


def start_worker():
    log_path = os.path.join(ROOT, "build", "demo-worker.log")
    log = open(log_path, "w")
    worker = subprocess.Popen(
        [os.path.join(ROOT, "build", "celeriac"), "worker",
         "-A", os.path.join(ROOT, "build", "demo_tasks.so"),
         "-b", BROKER, "--result-backend", "rpc://", "-Q", QUEUE,
         "-P", "solo", "-l", "info"],
        stderr=log, stdout=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(log_path) as text:
            if " ready." in text.read():
                return worker, log_path
        if worker.poll() is not None:
            break
        time.sleep(0.1)
    worker.kill()
    with open(log_path) as text:
        sys.exit("the worker did not start:\n" + text.read())


def show(label, call):
    try:
        print(f"{label:<42} -> {call()!r}")
    except Exception as exc:  # the demo prints every outcome, errors too
        print(f"{label:<42} -> raised {type(exc).__name__}: {exc}")


def main():
    worker, log_path = start_worker()
    app = Celery("demo", broker=BROKER, backend="rpc://")

    def send(name, *args, **options):
        return app.send_task(name, args=args, queue=QUEUE, **options)

    try:
        show("tasks.add(2, 3)", lambda: send("tasks.add", 2, 3).get(10))
        show("tasks.mul(1.5, 4)", lambda: send("tasks.mul", 1.5, 4).get(10))
        show("tasks.xsum([1, 2, 3.5])",
             lambda: send("tasks.xsum", [1, 2, 3.5]).get(10))
        show("tasks.echo({'text': 'héllo ✓'})",
             lambda: send("tasks.echo", {"text": "héllo ✓"}).get(10))
        show("tasks.add(1, 1) with countdown=1",
             lambda: send("tasks.add", 1, 1, countdown=1).get(10))
        show("tasks.flaky(2) (retries twice)",
             lambda: send("tasks.flaky", 2).get(10))
        show("tasks.fail('bad input')",
             lambda: send("tasks.fail", "bad input").get(10))
        show("tasks.missing() (not registered)",
             lambda: send("tasks.missing").get(10))
        show("tasks.context()['hostname']",
             lambda: send("tasks.context").get(10)["hostname"])
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(10)
    print(f"worker log: {log_path}")


if __name__ == "__main__":
    main()
