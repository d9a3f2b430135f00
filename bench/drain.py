#!/usr/bin/python3
"""Time how fast a worker drains a preloaded queue of tasks.add messages.

For each worker (Python Celery's solo pool, then build/celeriac) and each
result mode, the benchmark:

1. publishes N ``tasks.add(i, i)`` messages with the real Celery client
   (``send_task``) to a fresh queue ``bench-<pid>-<worker>-<mode>``,
2. starts the worker on that queue,
3. measures from the first message the worker takes to the last one done,
4. records the worker's peak RSS (VmHWM from /proc/PID/status), stops it and
   deletes the queue.

Result modes:
- ``none``: messages carry ignore_result=True. The clock starts when the
  queue's ready count first drops below N and stops when it reaches 0,
  polled every 50 ms with a passive queue.declare. At that point up to
  prefetch-count messages (4 with -c 1) may still be unacked, so the end
  time is early by the time of those few tasks. The run then checks with
  rabbitmqctl that no message is left.
- ``rpc``: messages carry reply_to = a queue this script declares, and the
  worker runs with --result-backend rpc://. The clock runs from the first
  result received to the N-th.

Everything runs against 127.0.0.1 and every wait has a timeout.
"""

import argparse
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid

import amqp
from celery import Celery

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
POLL_INTERVAL = 0.05
WORKER_START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

PYTHON_TASKS = REPO_ROOT / "tests" / "interop" / "pytasks.py"
FALLBACK_PYTHON_TASKS = REPO_ROOT / "bench" / "pytasks_bench.py"
CELERIAC = REPO_ROOT / "build" / "celeriac"
DEMO_TASKS = REPO_ROOT / "build" / "demo_tasks.so"


def python_worker_command(queue, loglevel, result_mode, prefetch, pool, concurrency):
    module_path = PYTHON_TASKS if PYTHON_TASKS.exists() else FALLBACK_PYTHON_TASKS
    command = [
        "/usr/bin/python3", "-m", "celery", "-A", module_path.stem, "-b", BROKER_URL,
    ]
    if result_mode == "rpc":
        command += ["--result-backend", "rpc://"]
    command += [
        "worker", "-P", pool, "-c", str(concurrency), "-Q", queue, "-n", f"bench-python-{os.getpid()}@%h",
        "-l", loglevel, "--without-mingle", "--without-gossip",
    ]
    if prefetch is not None:
        command += ["--prefetch-multiplier", str(prefetch)]
    environment = dict(os.environ, PYTHONPATH=str(module_path.parent))
    return command, environment


def celeriac_worker_command(queue, loglevel, result_mode, prefetch, pool, concurrency):
    command = [
        str(CELERIAC), "worker", "-A", str(DEMO_TASKS), "-b", BROKER_URL,
        "-Q", queue, "-c", str(concurrency), "-P", pool, "-n", f"bench-celeriac-{os.getpid()}@%h", "-l", loglevel,
    ]
    if result_mode == "rpc":
        command += ["--result-backend", "rpc://"]
    if prefetch is not None:
        command += ["--prefetch-multiplier", str(prefetch)]
    return command, dict(os.environ)


WORKERS = {
    "python": python_worker_command,
    "celeriac": celeriac_worker_command,
}


def preload(queue, count, reply_to):
    """Publish ``count`` tasks.add messages to ``queue`` with the Celery client."""
    app = Celery("bench-client", broker=BROKER_URL, set_as_current=False)
    options = {"queue": queue}
    if reply_to:
        options["reply_to"] = reply_to
    else:
        options["ignore_result"] = True
    with app.producer_or_acquire() as producer:
        for number in range(count):
            app.send_task("tasks.add", args=(number, number), producer=producer, **options)
    app.close()


def queue_ready_count(channel, queue):
    _, ready, _ = channel.queue_declare(queue=queue, passive=True)
    return ready


def queue_total_count(queue):
    """Return ready plus unacked messages of ``queue`` as rabbitmqctl reports them."""
    output = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == queue:
            return int(fields[1])
    raise RuntimeError(f"queue {queue} not found in rabbitmqctl list_queues")


def process_tree(pid):
    """Return ``pid`` and the ids of all its descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def peak_rss_mib(pid):
    """Return the sum of VmHWM over the worker process and its children."""
    total_kib = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024.0


def start_worker(command, environment, log_path):
    log_file = open(log_path, "w")
    return subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, env=environment, start_new_session=True
    )


def stop_worker(process):
    begin = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    log(f"worker stopped in {time.monotonic() - begin:.1f}s")


def log(text):
    print(f"  {text}", file=sys.stderr)


def measure_without_results(channel, queue, count, process, timeout):
    """Return (start, end) monotonic times of the drain, judged by the ready count."""
    deadline = time.monotonic() + timeout
    started = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with status {process.returncode} during the run")
        ready = queue_ready_count(channel, queue)
        now = time.monotonic()
        if started is None and ready < count:
            started = now
        if started is not None and ready == 0:
            return started, now
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"queue {queue} was not drained within {timeout:.0f}s")


def measure_with_results(channel, reply_queue, count, process, timeout):
    """Return (start, end) monotonic times from the first to the last result."""
    received = 0
    started = None
    finished = None

    def on_result(message):
        nonlocal received, started, finished
        received += 1
        now = time.monotonic()
        if started is None:
            started = now
        if received == count:
            finished = now

    consumer_tag = channel.basic_consume(queue=reply_queue, callback=on_result, no_ack=True)
    deadline = time.monotonic() + timeout
    try:
        while finished is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"received {received} of {count} results within {timeout:.0f}s")
            if process.poll() is not None:
                raise RuntimeError(f"worker exited with status {process.returncode} during the run")
            try:
                channel.connection.drain_events(timeout=POLL_INTERVAL)
            except TimeoutError:
                pass
    finally:
        # Cancel before the queue is deleted, because the broker's
        # basic.cancel for a deleted queue raises ConsumerCancelled.
        channel.basic_cancel(consumer_tag)
    return started, finished


def run_one(worker, pool, concurrency, result_mode, count, loglevel, timeout, log_dir, prefetch):
    # A fresh name per run, because kombu caches which queues it declared.
    queue = f"bench-{os.getpid()}-{worker}-{pool}{concurrency}-{result_mode}-{uuid.uuid4().hex[:8]}"
    reply_queue = f"{queue}-replies" if result_mode == "rpc" else None
    connection = amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest")
    connection.connect()
    channel = connection.channel()
    process = None
    try:
        if reply_queue:
            channel.queue_declare(queue=reply_queue, durable=False, auto_delete=False)
        begin = time.monotonic()
        preload(queue, count, reply_queue)
        log(f"preloaded {count} messages in {time.monotonic() - begin:.1f}s")
        # The broker may still be routing the last publishes.
        settle_deadline = time.monotonic() + 10.0
        ready = queue_ready_count(channel, queue)
        while ready < count and time.monotonic() < settle_deadline:
            time.sleep(POLL_INTERVAL)
            ready = queue_ready_count(channel, queue)
        if ready != count:
            raise RuntimeError(f"queue {queue} has {ready} messages after preloading {count}")

        command, environment = WORKERS[worker](queue, loglevel, result_mode, prefetch, pool, concurrency)
        process = start_worker(command, environment, log_dir / f"{worker}-{pool}{concurrency}-{result_mode}.log")
        if result_mode == "rpc":
            started, finished = measure_with_results(channel, reply_queue, count, process, timeout)
        else:
            started, finished = measure_without_results(channel, queue, count, process, timeout)
            drain_deadline = time.monotonic() + 10.0
            while queue_total_count(queue) != 0:
                if time.monotonic() >= drain_deadline:
                    raise TimeoutError(f"queue {queue} still has unacked messages 10s after ready reached 0")
                time.sleep(0.2)
        rss = peak_rss_mib(process.pid)
        log(f"drained in {finished - started:.2f}s, peak RSS {rss:.1f} MiB")
    finally:
        if process is not None:
            stop_worker(process)
        channel.queue_delete(queue=queue)
        channel.exchange_delete(exchange=queue)
        if reply_queue:
            channel.queue_delete(queue=reply_queue)
        connection.close()
    seconds = finished - started
    return {"worker": worker, "pool": f"{pool} -c {concurrency}", "results": result_mode, "tasks": count, "seconds": seconds,
            "rate": count / seconds if seconds > 0 else float("inf"), "rss": rss}


def print_table(rows):
    print("| worker | pool | results | tasks | seconds | tasks/s | peak RSS MiB |")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['worker']} | {row['pool']} | {row['results']} | {row['tasks']} "
              f"| {row['seconds']:.2f} | {row['rate']:.0f} | {row['rss']:.1f} |")
    ratios = []
    for mode in ("none", "rpc"):
        python_rows = [row for row in rows if row["worker"] == "python" and row["results"] == mode]
        if not python_rows:
            continue
        for row in rows:
            if row["worker"] != "celeriac" or row["results"] != mode:
                continue
            same_pool = [p for p in python_rows if p["pool"] == row["pool"]]
            baseline = same_pool[0] if same_pool else max(python_rows, key=lambda p: p["rate"])
            ratios.append(f"results={mode}: celeriac {row['pool']} / python {baseline['pool']}: "
                          f"throughput {row['rate'] / baseline['rate']:.1f}x, "
                          f"peak RSS {row['rss'] / baseline['rss']:.2f}x")
    if ratios:
        print()
        for line in ratios:
            print(f"- {line}")


def parse_worker(text):
    """Parse ``worker[:pool[:concurrency]]``, e.g. ``celeriac:prefork:2``."""
    parts = text.split(":")
    name = parts[0]
    if name not in WORKERS:
        sys.exit(f"unknown worker {name!r}; choose from {', '.join(WORKERS)}")
    pool = parts[1] if len(parts) > 1 else "solo"
    if pool not in ("solo", "prefork", "threads"):
        sys.exit(f"unknown pool {pool!r} in {text!r}; choose from solo, prefork, threads")
    try:
        concurrency = int(parts[2]) if len(parts) > 2 else 1
    except ValueError:
        sys.exit(f"invalid concurrency in {text!r}: expected an integer")
    if concurrency < 1:
        sys.exit(f"invalid concurrency in {text!r}: expected 1 or more")
    return name, pool, concurrency


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--tasks", type=int, default=20000, help="messages per run (default: %(default)s)")
    parser.add_argument("--workers", default="python:solo:1,celeriac:solo:1",
                        help="comma-separated worker:pool:concurrency entries, worker being python or "
                             "celeriac and pool solo, prefork or threads (default: %(default)s)")
    parser.add_argument("--results", default="none,rpc",
                        help="comma-separated result modes: none, rpc (default: %(default)s)")
    parser.add_argument("--loglevel", default="warning",
                        help="worker log level, the same for both workers (default: %(default)s)")
    parser.add_argument("--prefetch-multiplier", type=int, default=None,
                        help="worker_prefetch_multiplier for every worker (default: the workers' own, 4)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one run may take to drain the queue (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not 0 < args.tasks <= 1_000_000:
        sys.exit(f"--tasks must be between 1 and 1000000, not {args.tasks}")
    workers = [parse_worker(entry) for entry in args.workers.split(",") if entry]
    modes = [name for name in args.results.split(",") if name]
    for mode in modes:
        if mode not in ("none", "rpc"):
            sys.exit(f"unknown result mode {mode!r}; choose from none, rpc")
    if any(name == "celeriac" for name, _, _ in workers) and not (CELERIAC.exists() and DEMO_TASKS.exists()):
        print(f"skipping celeriac: {CELERIAC.relative_to(REPO_ROOT)} or "
              f"{DEMO_TASKS.relative_to(REPO_ROOT)} not found; run `make all` first", file=sys.stderr)
        workers = [entry for entry in workers if entry[0] != "celeriac"]

    log_dir = REPO_ROOT / "build" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for mode in modes:
        for name, pool, concurrency in workers:
            print(f"running {name} -P {pool} -c {concurrency} with results={mode}, "
                  f"{args.tasks} tasks ...", file=sys.stderr)
            rows.append(run_one(name, pool, concurrency, mode, args.tasks, args.loglevel,
                                args.timeout, log_dir, args.prefetch_multiplier))
    print_table(rows)


if __name__ == "__main__":
    main()
