#!/usr/bin/python3
"""Measure the sequential round-trip latency of tasks.add from a Python client.

The client sends one ``tasks.add(i, i)``, waits for its result on the rpc://
backend, and only then sends the next. The ``celery`` client uses
``send_task`` and ``AsyncResult.get()``; the ``amqp`` client publishes the
same message with py-amqp and reads the reply itself (see AmqpClient).
The first few round trips warm up the connection and the worker and are not
counted. The report gives the median (p50) and the 99th percentile (p99) by
the nearest-rank method.

The ``ceiling`` worker (build/bench/ceiling -i) replies without running the
task, so its latency is that of the client and the broker alone.

All the workers named run at the same time, each consuming a fresh queue
``bench-latency-<pid>-...`` that is deleted afterwards, and the client takes
them in turn, one round trip each, so that they share the machine's slow and
fast spells and their ratios hold from run to run. Everything runs against
127.0.0.1 and every wait has a timeout.
"""

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import sys
import time
import uuid

import amqp
from celery import Celery
from celery.exceptions import TimeoutError as ResultTimeoutError

import drain

WARMUP_ROUND_TRIPS = 10
RESULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
WORKER_START_TIMEOUT = 60.0


def percentile(sorted_values, fraction):
    """Return the nearest-rank percentile of ``sorted_values`` (0 < fraction <= 1)."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class RoundTripTimeout(RuntimeError):
    """A round trip that outlived its alarm. Not an OSError, which kombu would retry."""


@contextlib.contextmanager
def alarm_after(seconds, description):
    """Raise RoundTripTimeout in the block once ``seconds`` have passed."""
    def expire(number, frame):
        raise RoundTripTimeout(f"{description} took more than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_sum(number, value):
    if value != 2 * number:
        raise RuntimeError(f"tasks.add({number}, {number}) returned {value!r}, expected {2 * number}")


class CeleryClient:
    """The client code a Celery user writes: ``send_task`` and ``AsyncResult.get()``."""

    name = "celery"

    def __init__(self):
        self.app = Celery("bench-latency", broker=drain.BROKER_URL, backend="rpc://",
                          set_as_current=False)
        self.app.conf.broker_connection_timeout = CONNECT_TIMEOUT

    def round_trip(self, queue, number, check_value):
        """Send one tasks.add and return the seconds until its result arrived."""
        # kombu retries a lost connection without end, inside send_task
        # too, so a stopped broker would hang the run without this alarm.
        with alarm_after(RESULT_TIMEOUT + CONNECT_TIMEOUT, f"round trip {number} on {queue}"):
            begin = time.perf_counter()
            result = self.app.send_task("tasks.add", args=(number, number), queue=queue)
            value = result.get(timeout=RESULT_TIMEOUT)
            elapsed = time.perf_counter() - begin
        if check_value:
            check_sum(number, value)
        return elapsed

    def close(self):
        self.app.close()


class AmqpClient:
    """A client that publishes the same messages and reads their replies on one py-amqp channel.

    Celery builds each message (``app.amqp.as_task_v2``) before the clock
    starts. The round trip is one basic.publish and the wait for the reply
    on an exclusive reply queue. What Celery's client spends in Python is
    left out, so the figures show the worker and the broker.
    """

    name = "amqp"

    def __init__(self):
        self.app = Celery("bench-latency", broker=drain.BROKER_URL, set_as_current=False)
        self.connection = amqp.Connection(host=drain.BROKER_HOST, userid="guest", password="guest",
                                          connect_timeout=CONNECT_TIMEOUT)
        self.connection.connect()
        self.channel = self.connection.channel()
        self.reply_queue = f"bench-latency-replies-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.channel.queue_declare(queue=self.reply_queue, exclusive=True, auto_delete=True)
        self.replies = []
        self.channel.basic_consume(queue=self.reply_queue, no_ack=True, callback=self.replies.append)

    def message(self, number):
        task_id = str(uuid.uuid4())
        built = self.app.amqp.as_task_v2(task_id, "tasks.add", args=(number, number), kwargs={},
                                         reply_to=self.reply_queue)
        message = amqp.Message(
            body=json.dumps(built.body), content_type="application/json",
            content_encoding="utf-8", application_headers=built.headers,
            delivery_mode=2, priority=0, correlation_id=task_id, reply_to=self.reply_queue)
        return task_id, message

    def wait_reply(self, task_id, deadline):
        """Return the decoded reply to ``task_id``, dropping late replies to other tasks."""
        while True:
            while self.replies:
                reply = self.replies.pop(0)
                if reply.properties.get("correlation_id") == task_id:
                    return json.loads(reply.body)
            left = deadline - time.monotonic()
            if left <= 0:
                raise ResultTimeoutError(f"timed out after {RESULT_TIMEOUT:.0f}s waiting for the reply to {task_id}")
            try:
                self.connection.drain_events(timeout=left)
            except socket.timeout:
                pass

    def round_trip(self, queue, number, check_value):
        task_id, message = self.message(number)
        begin = time.perf_counter()
        self.channel.basic_publish(message, exchange="", routing_key=queue)
        reply = self.wait_reply(task_id, time.monotonic() + RESULT_TIMEOUT)
        elapsed = time.perf_counter() - begin
        if reply.get("status") != "SUCCESS":
            raise RuntimeError(f"tasks.add({number}, {number}) returned status {reply.get('status')!r}, "
                               "expected 'SUCCESS'")
        if check_value:
            check_sum(number, reply.get("result"))
        return elapsed

    def close(self):
        try:
            self.connection.close()
        finally:
            self.app.close()


CLIENTS = {client.name: client for client in (CeleryClient, AmqpClient)}


def wait_for_first_result(client, queue, process, check_value):
    """Send round trips until one succeeds, so the worker is up and consuming."""
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while True:
        drain.check_worker_alive(process)
        try:
            client.round_trip(queue, 0, check_value)
            return
        except ResultTimeoutError:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no result from the worker on {queue} within "
                                   f"{WORKER_START_TIMEOUT:.0f}s") from None


class Subject:
    """One worker under measurement: its queue, its process and its round trips."""

    def __init__(self, worker, pool, concurrency, count):
        self.spec = drain.Drain(worker, pool, concurrency, "rpc", count)
        self.queue = f"bench-latency-{os.getpid()}-{self.spec.slug()}-{uuid.uuid4().hex[:8]}"
        # The ceiling's fixed reply carries result 0, not the sum.
        self.check_value = worker != "ceiling"
        self.process = None
        self.latencies = []
        self.rss = 0.0
        self.killed = False
        self.error = None
        self.client_name = None
        self.declared = False

    def label(self):
        return f"{self.spec.worker} {self.spec.pool_label()}"

    def start(self, app):
        declare_queue(app, self.queue)
        self.declared = True
        command, environment = drain.WORKERS[self.spec.worker](self.spec, self.queue)
        if self.spec.worker == "ceiling":
            command.append("-i")
        self.process = drain.start_worker(command, environment,
                                          drain.LOG_DIR / f"latency-{self.spec.slug()}.log")

    def warm_up(self, client):
        wait_for_first_result(client, self.queue, self.process, self.check_value)
        for number in range(1, WARMUP_ROUND_TRIPS):
            client.round_trip(self.queue, number, self.check_value)

    def stop(self):
        """Stop the worker, if it started, and delete the queue, if it was declared."""
        if self.process is not None:
            if self.error is None:
                self.rss = drain.peak_rss_mib(self.process.pid)
            self.killed = drain.stop_worker(self.process)
        if self.declared:
            delete_queue(self.queue)

    def row(self):
        values = sorted(self.latencies)
        p50 = percentile(values, 0.50)
        p99 = percentile(values, 0.99)
        drain.log(f"{self.label()}: {len(values)} round trips, p50 {p50 * 1000:.2f} ms, "
                  f"p99 {p99 * 1000:.2f} ms")
        return {
            "client": self.client_name, "worker": self.spec.worker, "pool": self.spec.pool_label(),
            "round_trips": len(values), "requested": self.spec.tasks,
            "capped": len(values) < self.spec.tasks,
            "p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "rss": self.rss, "killed": self.killed,
        }


def measure_latencies(entries, count, max_seconds, client_name="celery"):
    """Measure the workers in ``entries`` side by side and return (rows, failures).

    ``client_name`` picks the client from CLIENTS. Every worker runs at
    once, each on a queue of its own. Round ``i`` sends one round trip to
    each worker in turn, starting at a different worker each round, so a
    slow spell of the machine falls on all of them alike.
    A worker that fails is left out of the later rounds and named in
    ``failures``. The run stops early after ``max_seconds`` per worker of
    measured round trips and reports the ones done.
    """
    drain.LOG_DIR.mkdir(parents=True, exist_ok=True)
    client = CLIENTS[client_name]()
    subjects = [Subject(worker, pool, concurrency, count) for worker, pool, concurrency in entries]
    try:
        for subject in subjects:
            subject.client_name = client_name
            subject.start(client.app)
        for subject in subjects:
            try:
                subject.warm_up(client)
            except drain.RUN_ERRORS as error:
                subject.error = error
        begin = time.monotonic()
        budget = max_seconds * len(subjects)
        for number in range(count):
            live = [subject for subject in subjects if subject.error is None]
            if not live or time.monotonic() - begin >= budget:
                break
            first = number % len(live)
            for subject in live[first:] + live[:first]:
                try:
                    drain.check_worker_alive(subject.process)
                    subject.latencies.append(
                        client.round_trip(subject.queue, number, subject.check_value))
                except drain.RUN_ERRORS as error:
                    subject.error = error
    finally:
        with drain.signals_deferred():
            for subject in subjects:
                # Every worker gets its stop, also after another's failed.
                try:
                    subject.stop()
                except drain.RUN_ERRORS as error:
                    drain.log(f"cleaning up after {subject.label()} failed: {error!r}; if queue "
                              f"{subject.queue} is left, delete it with `rabbitmqctl delete_queue`")
            try:
                client.close()
            except drain.RUN_ERRORS as error:
                drain.log(f"closing the {client_name} client failed: {error!r}")
    for subject in subjects:
        if subject.error is None and not subject.latencies:
            subject.error = "no round trip was measured"
    rows = [subject.row() for subject in subjects if subject.error is None]
    failures = [f"latency of {subject.label()}: {subject.error}"
                for subject in subjects if subject.error is not None]
    return rows, failures


def declare_queue(app, queue):
    """Declare ``queue`` as send_task would, because the ceiling only consumes."""
    with app.connection_for_write() as connection:
        app.amqp.queues[queue].bind(connection.default_channel).declare()


def delete_queue(queue):
    """Delete the task queue and the exchange kombu declared for it."""
    drain.delete_queues([queue], queue, CONNECT_TIMEOUT)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--round-trips", type=int, default=300,
                        help="round trips to measure per worker (default: %(default)s)")
    parser.add_argument("--workers", default="celeriac:prefork:2,python:solo:1",
                        help="comma-separated worker:pool:concurrency entries, worker being python or "
                             "celeriac, or ceiling:concurrency for the client and broker alone "
                             "(default: %(default)s)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="stop after this many seconds per worker of measured round trips (default: %(default)s)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="celery",
                        help="celery: send_task and AsyncResult.get(); amqp: the same messages "
                             "published, and their replies read, on one py-amqp channel (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.round_trips < 1:
        sys.exit(f"--round-trips must be 1 or more, not {args.round_trips}")
    if not args.max_seconds > 0:
        sys.exit(f"--max-seconds must be above 0, not {args.max_seconds}")
    workers = drain.parse_workers(args.workers)
    drain.exit_if_files_missing(name for name, _, _ in workers)
    try:
        rows, failures = measure_latencies(workers, args.round_trips, args.max_seconds, args.client)
    except drain.RUN_ERRORS as error:
        sys.exit(f"latency run failed: {error}")
    print("| worker | pool | round trips | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['worker']} | {row['pool']} | {row['round_trips']} "
              f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |")
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    drain.run_main(main)
