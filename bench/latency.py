#!/usr/bin/python3
"""Measure the sequential round-trip latency of tasks.add from a Celery client.

The client sends one ``tasks.add(i, i)`` with ``send_task``, waits for it with
``AsyncResult.get()`` on the rpc:// backend, and only then sends the next.
The first few round trips warm up the connection and the worker and are not
counted. The report gives the median (p50) and the 99th percentile (p99) by
the nearest-rank method.

The ``ceiling`` worker (build/bench/ceiling -i) replies without running the
task, so its latency is that of the client and the broker alone.

The worker consumes a fresh queue ``bench-latency-<pid>-...`` that is deleted
afterwards. Everything runs against 127.0.0.1 and every wait has a timeout.
"""

import argparse
import math
import os
import signal
import sys
import time
import uuid

import amqp
from celery import Celery
from celery.exceptions import TimeoutError as ResultTimeoutError

import drain

WARMUP_ROUND_TRIPS = 10
RESULT_TIMEOUT = 10.0
WORKER_START_TIMEOUT = 60.0


def percentile(sorted_values, fraction):
    """Return the nearest-rank percentile of ``sorted_values`` (0 < fraction <= 1)."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def round_trip(app, queue, number, check_value=True):
    """Send one tasks.add and return the seconds until its result arrived."""
    begin = time.perf_counter()
    result = app.send_task("tasks.add", args=(number, number), queue=queue)
    value = result.get(timeout=RESULT_TIMEOUT)
    elapsed = time.perf_counter() - begin
    if check_value and value != 2 * number:
        raise RuntimeError(f"tasks.add({number}, {number}) returned {value!r}, expected {2 * number}")
    return elapsed


def wait_for_first_result(app, queue, process, check_value):
    """Send round trips until one succeeds, so the worker is up and consuming."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while True:
        drain.check_worker_alive(process)
        try:
            round_trip(app, queue, 0, check_value)
            return
        except ResultTimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no result from the worker on {queue} within "
                                   f"{WORKER_START_TIMEOUT:.0f}s") from None


def measure_latency(worker, pool, concurrency, count, max_seconds):
    """Run ``count`` sequential round trips and return the figures as a dict.

    The run stops early after ``max_seconds`` of measured round trips and
    reports the ones done.
    """
    spec = drain.Drain(worker, pool, concurrency, "rpc", count)
    queue = f"bench-latency-{os.getpid()}-{spec.slug()}-{uuid.uuid4().hex[:8]}"
    drain.LOG_DIR.mkdir(parents=True, exist_ok=True)
    app = Celery("bench-latency", broker=drain.BROKER_URL, backend="rpc://", set_as_current=False)
    declare_queue(app, queue)
    command, environment = drain.WORKERS[worker](spec, queue)
    # The ceiling's fixed reply carries result 0, not the sum.
    check_value = worker != "ceiling"
    if worker == "ceiling":
        command.append("-i")
    process = drain.start_worker(command, environment, drain.LOG_DIR / f"latency-{spec.slug()}.log")
    latencies = []
    killed = False
    try:
        wait_for_first_result(app, queue, process, check_value)
        for number in range(1, WARMUP_ROUND_TRIPS):
            round_trip(app, queue, number, check_value)
        begin = time.monotonic()
        for number in range(count):
            if time.monotonic() - begin >= max_seconds:
                break
            latencies.append(round_trip(app, queue, number, check_value))
        rss = drain.peak_rss_mib(process.pid)
    finally:
        killed = drain.stop_worker(process)
        app.close()
        delete_queue(queue)
    latencies.sort()
    p50 = percentile(latencies, 0.50)
    p99 = percentile(latencies, 0.99)
    drain.log(f"{len(latencies)} round trips: p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")
    return {
        "worker": worker, "pool": spec.pool_label(), "round_trips": len(latencies),
        "requested": count, "capped": len(latencies) < count,
        "p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "rss": rss, "killed": killed,
    }


def declare_queue(app, queue):
    """Declare ``queue`` as send_task would, because the ceiling only consumes."""
    with app.connection_for_write() as connection:
        app.amqp.queues[queue].bind(connection.default_channel).declare()


def delete_queue(queue):
    """Delete the task queue and the exchange kombu declared for it."""
    connection = amqp.Connection(host=drain.BROKER_HOST, userid="guest", password="guest")
    connection.connect()
    try:
        channel = connection.channel()
        channel.queue_delete(queue=queue)
        channel.exchange_delete(exchange=queue)
    finally:
        connection.close()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--round-trips", type=int, default=300,
                        help="round trips to measure per worker (default: %(default)s)")
    parser.add_argument("--workers", default="celeriac:prefork:2,python:solo:1",
                        help="comma-separated worker:pool:concurrency entries, worker being python or "
                             "celeriac, or ceiling:concurrency for the client and broker alone "
                             "(default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="stop a worker's measurement after this many seconds (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.round_trips < 1:
        sys.exit(f"--round-trips must be 1 or more, not {args.round_trips}")
    workers = [drain.parse_worker(entry) for entry in args.workers.split(",") if entry]
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    print("| worker | pool | round trips | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for name, pool, concurrency in workers:
        row = measure_latency(name, pool, concurrency, args.round_trips, args.max_seconds)
        print(f"| {row['worker']} | {row['pool']} | {row['round_trips']} "
              f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # The runs' finally blocks have stopped the workers and deleted the queues.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
