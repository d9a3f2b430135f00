#!/usr/bin/python3
"""Time how fast a worker drains a preloaded queue of Celery task messages.

For each worker and each result mode, the benchmark:

1. publishes N messages with the real Celery client (``send_task``) to a
   fresh queue ``bench-<pid>-...``: ``tasks.add(i, i)``, or
   ``tasks.echo(<string>)`` with ``--payload-bytes``,
2. starts the worker on that queue,
3. measures from the first message the worker takes to the last one done,
4. records the peak RSS of the worker and its children (the sum of VmHWM
   from /proc/PID/status), stops the worker and deletes the queue.

Workers:
- ``python``: Python Celery on the twin tasks in tests/interop/pytasks.py.
- ``celeriac``: build/celeriac on build/demo_tasks.so.
- ``ceiling``: build/bench/ceiling, which replies to each message without
  decoding it. Its prefetch count is the one a worker with the same -c uses
  (prefetch multiplier times concurrency), so its rate is the broker ceiling.

Result modes:
- ``none``: messages carry ignore_result=True. The clock starts when the
  queue's ready count first drops below N and stops when it reaches 0,
  polled every 20 ms with a passive queue.declare. At that point up to
  prefetch-count messages may still be unacked, so the end time is early by
  the time of those few tasks. The run then waits until rabbitmqctl reports
  no unacked message, stops the worker and checks that the queue is still
  empty, which fails if the worker gave messages back.
- ``rpc``: messages carry reply_to = a queue this script declares, and the
  worker runs with --result-backend rpc://. The clock runs from the first
  result received to the N-th. The results are counted by ``ceiling -n``,
  a rabbitmq-c consumer without acks. A py-amqp consumer in this script
  took 45 us of CPU per small result and over 1 ms per 1 MiB result, and
  on two CPUs the worker and the broker need that CPU.

``--max-seconds`` caps the measured time of a run: the run then reports the
tasks done within the cap, which is how slow workers are kept short.

Everything runs against 127.0.0.1 and every wait has a timeout.
"""

import argparse
import contextlib
import dataclasses
import math
import os
import pathlib
import selectors
import signal
import subprocess
import sys
import time
import uuid

import amqp
import celery.exceptions
import kombu.exceptions
from celery import Celery

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# The port scripts/services.sh starts RabbitMQ on, so that a node of one's
# own on another port can be measured.
BROKER_PORT = int(os.environ.get("RABBITMQ_NODE_PORT", "5672"))
BROKER_URL = f"amqp://guest:guest@127.0.0.1:{BROKER_PORT}//"
BROKER_HOST = f"127.0.0.1:{BROKER_PORT}"
POLL_INTERVAL = 0.02
STOP_TIMEOUT = 10.0
UNACKED_TIMEOUT = 10.0
SETTLE_TIMEOUT = 10.0

PYTHON_TASKS = REPO_ROOT / "tests" / "interop" / "pytasks.py"
# The Makefile's BUILD folder; `make bench` passes it on.
BUILD_DIR = REPO_ROOT / os.environ.get("CELERIAC_BUILD_DIR", "build")
CELERIAC = BUILD_DIR / "celeriac"
DEMO_TASKS = BUILD_DIR / "demo_tasks.so"
CEILING = BUILD_DIR / "bench" / "ceiling"
LOG_DIR = BUILD_DIR / "bench"

# Celery's and celeriac's default worker_prefetch_multiplier.
DEFAULT_PREFETCH_MULTIPLIER = 4


@dataclasses.dataclass
class Drain:
    """One drain run: which worker, on what workload."""

    worker: str
    pool: str
    concurrency: int
    results: str
    tasks: int
    payload_bytes: int = 0
    prefetch_multiplier: int | None = None
    max_seconds: float | None = None
    loglevel: str = "warning"
    # The ceiling only: basic.qos per consumer instead of Celery's global.
    per_consumer_qos: bool = False

    def pool_label(self):
        if self.worker == "ceiling":
            scope = " per consumer" if self.per_consumer_qos else ""
            return f"prefetch {self.prefetch_count()}{scope}"
        return f"{self.pool} -c {self.concurrency}"

    def prefetch_count(self):
        multiplier = self.prefetch_multiplier or DEFAULT_PREFETCH_MULTIPLIER
        return multiplier * self.concurrency

    def slug(self):
        payload = f"-{self.payload_bytes}b" if self.payload_bytes else ""
        scope = "-per-consumer" if self.per_consumer_qos else ""
        return f"{self.worker}{scope}-{self.pool}{self.concurrency}-{self.results}{payload}"


def python_worker_command(drain, queue):
    command = [
        "/usr/bin/python3", "-m", "celery", "-A", PYTHON_TASKS.stem, "-b", BROKER_URL,
    ]
    if drain.results == "rpc":
        command += ["--result-backend", "rpc://"]
    command += [
        "worker", "-P", drain.pool, "-c", str(drain.concurrency), "-Q", queue,
        "-n", f"bench-python-{os.getpid()}@%h", "-l", drain.loglevel,
        "--without-mingle", "--without-gossip",
    ]
    if drain.prefetch_multiplier is not None:
        command += ["--prefetch-multiplier", str(drain.prefetch_multiplier)]
    environment = dict(os.environ, PYTHONPATH=str(PYTHON_TASKS.parent))
    return command, environment


def celeriac_worker_command(drain, queue):
    command = [
        str(CELERIAC), "worker", "-A", str(DEMO_TASKS), "-b", BROKER_URL,
        "-Q", queue, "-c", str(drain.concurrency), "-P", drain.pool,
        "-n", f"bench-celeriac-{os.getpid()}@%h", "-l", drain.loglevel, "--without-mingle",
    ]
    if drain.results == "rpc":
        command += ["--result-backend", "rpc://"]
    if drain.prefetch_multiplier is not None:
        command += ["--prefetch-multiplier", str(drain.prefetch_multiplier)]
    return command, dict(os.environ)


def ceiling_command(drain, queue):
    command = [str(CEILING), "-p", str(BROKER_PORT), "-q", queue, "-P", str(drain.prefetch_count())]
    if drain.per_consumer_qos:
        command.append("-C")
    return command, dict(os.environ)


WORKERS = {
    "python": python_worker_command,
    "celeriac": celeriac_worker_command,
    "ceiling": ceiling_command,
}

# Files each worker needs before it can run.
REQUIRED_FILES = {
    "python": [PYTHON_TASKS],
    "celeriac": [CELERIAC, DEMO_TASKS],
    "ceiling": [CEILING],
}


def exit_if_files_missing(names):
    """Exit with a message when the build folder, or a file that one of the
    workers ``names`` needs, is missing."""
    if not BUILD_DIR.is_dir():
        sys.exit(f"build folder {BUILD_DIR} not found; run `make` first, or set CELERIAC_BUILD_DIR "
                 "to the folder `make BUILD=...` wrote")
    for name in sorted(set(names)):
        missing = missing_files(name)
        if missing:
            sys.exit(f"{', '.join(str(path) for path in missing)} not found; "
                     "run `make all build/bench/ceiling` first")


def missing_files(worker):
    return [path for path in REQUIRED_FILES[worker] if not path.exists()]


# Errors that end a run when its worker, the broker or a timeout fails it.
RUN_ERRORS = (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError,
              amqp.exceptions.AMQPError, kombu.exceptions.OperationalError,
              celery.exceptions.TimeoutError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so that every cleanup path runs."""


def raise_terminated(number, frame):
    raise Terminated()


@contextlib.contextmanager
def signals_deferred():
    """Hold SIGINT and SIGTERM until the block ends, so that a second Ctrl-C
    or SIGTERM does not cut a cleanup short. Each cleanup step has a timeout."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_main(main):
    """Run ``main`` and turn Ctrl-C and SIGTERM into a message and an exit status.

    The runs' finally blocks stop the workers and delete the queues first.
    """
    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        sys.exit(main())
    except Terminated:
        print("terminated", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)


# Log levels that both Celery and celeriac take.
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def log(text):
    print(f"  {text}", file=sys.stderr, flush=True)


def task_call(number, payload):
    """Return the (name, args) of message ``number``."""
    if payload is not None:
        return "tasks.echo", (payload,)
    return "tasks.add", (number, number)


def preload(queue, count, reply_to, payload_bytes):
    """Publish ``count`` task messages to ``queue`` with the Celery client."""
    app = Celery("bench-client", broker=BROKER_URL, set_as_current=False)
    options = {"queue": queue}
    if reply_to:
        options["reply_to"] = reply_to
    else:
        options["ignore_result"] = True
    payload = "x" * payload_bytes if payload_bytes else None
    try:
        with app.producer_or_acquire() as producer:
            for number in range(count):
                name, args = task_call(number, payload)
                app.send_task(name, args=args, producer=producer, **options)
    finally:
        app.close()


def queue_ready_count(channel, queue):
    _, ready, _ = channel.queue_declare(queue=queue, passive=True)
    return ready


def wait_for_ready_count(channel, queue, count):
    """Wait until the broker has routed all ``count`` preloaded messages."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    ready = queue_ready_count(channel, queue)
    while ready < count and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        ready = queue_ready_count(channel, queue)
    if ready != count:
        raise RuntimeError(f"queue {queue} has {ready} messages after preloading {count}")


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


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid):
    """Return the user plus system CPU seconds of one process, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def broker_pid():
    """Return the pid of the process listening on the broker's port, or None."""
    port = int(BROKER_HOST.rsplit(":", 1)[1])
    inodes = set()
    try:
        with open("/proc/net/tcp") as table:
            for line in list(table)[1:]:
                fields = line.split()
                local_port = int(fields[1].split(":")[1], 16)
                if local_port == port and fields[3] == "0A":
                    inodes.add(fields[9])
    except OSError:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(entry)
        except OSError:
            continue
    return None


@dataclasses.dataclass
class CpuSample:
    """CPU seconds used so far by the worker tree, the broker and the client.

    The client is this script and, with rpc results, the result counter.
    """

    worker: float
    broker: float
    client: float

    @classmethod
    def take(cls, worker_pid, broker, counter_pid=None):
        worker = sum(process_cpu_seconds(member) for member in process_tree(worker_pid))
        usage = os.times()
        client = usage.user + usage.system
        if counter_pid is not None:
            client += process_cpu_seconds(counter_pid)
        return cls(worker, process_cpu_seconds(broker) if broker else 0.0, client)


def peak_rss_mib(pid):
    """Return the sum of VmHWM over the process ``pid`` and its descendants.

    Pages that a prefork child shares with its parent count once per process,
    so for prefork pools the sum is an upper bound of the memory in use.
    """
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
    """Start ``command`` in a session of its own, with output to ``log_path``."""
    with open(log_path, "w") as log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=environment,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )


def kill_process_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_worker(process):
    """Stop the worker with SIGTERM, or kill its process group after STOP_TIMEOUT.

    Returns whether the worker had to be killed. The group is killed in the
    end in any case, so no child outlives the run, also when the wait is
    interrupted.
    """
    begin = time.monotonic()
    killed = False
    try:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"worker {process.pid} did not stop within {STOP_TIMEOUT:.0f}s of SIGTERM; killing it")
            killed = True
            kill_process_group(process)
            process.wait(timeout=STOP_TIMEOUT)
    finally:
        kill_process_group(process)
    log(f"worker stopped in {time.monotonic() - begin:.1f}s")
    return killed


def check_worker_alive(process):
    if process.poll() is not None:
        raise RuntimeError(f"worker exited with status {process.returncode} during the run")


def measure_without_results(channel, queue, count, process, timeout, max_seconds, cpu):
    """Return (start, end, tasks done) of the drain, judged by the ready count.

    ``cpu`` gets the CPU samples taken at the start and at the end.
    """
    deadline = time.monotonic() + timeout
    started = None
    broker = broker_pid()
    while time.monotonic() < deadline:
        check_worker_alive(process)
        ready = queue_ready_count(channel, queue)
        now = time.monotonic()
        if started is None and ready < count:
            started = now
            cpu.append(CpuSample.take(process.pid, broker))
        if started is not None and ready == 0:
            cpu.append(CpuSample.take(process.pid, broker))
            return started, now, count
        if started is not None and max_seconds is not None and now - started >= max_seconds:
            cpu.append(CpuSample.take(process.pid, broker))
            return started, now, count - ready
        time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"queue {queue} was not drained within {timeout:g} s")


def start_counter(reply_queue, count):
    """Start ``ceiling -n`` counting ``count`` results of ``reply_queue``."""
    log_file = open(LOG_DIR / f"{reply_queue}-counter.log", "w")
    try:
        return subprocess.Popen([str(CEILING), "-p", str(BROKER_PORT), "-q", reply_queue, "-n", str(count)],
                                stdout=subprocess.PIPE, stderr=log_file, text=True)
    finally:
        log_file.close()


def stop_counter(counter):
    counter.terminate()
    try:
        counter.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        counter.kill()
        counter.wait()


def measure_with_results(counter, count, process, timeout, max_seconds, cpu):
    """Return (start, end, tasks done) from the first result to the last.

    ``counter`` is the running ``ceiling -n`` process. ``cpu`` gets the CPU
    samples taken at the first result and at the end.
    """
    received = 0
    started = None
    last = None
    broker = broker_pid()
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(counter.stdout, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError(f"results did not arrive within {timeout:g} s")
            if started is not None and max_seconds is not None and now - started >= max_seconds:
                # The counter prints what it has counted when it stops.
                counter.send_signal(signal.SIGTERM)
                max_seconds = None
            check_worker_alive(process)
            if not selector.select(timeout=POLL_INTERVAL):
                continue
            line = counter.stdout.readline()
            if not line:
                raise RuntimeError(f"the result counter exited with {counter.wait()}; "
                                   f"see its log in {LOG_DIR}")
            word, *values = line.split()
            if word == "first":
                started = float(values[0])
                cpu.append(CpuSample.take(process.pid, broker, counter.pid))
            elif word == "done":
                received, last = int(values[0]), float(values[1])
                break
    cpu.append(CpuSample.take(process.pid, broker, counter.pid))
    if received == 0:
        started = last = time.monotonic()
    return started, last, received


def queue_unacked_count(queue):
    """Return the unacked messages of ``queue`` as rabbitmqctl reports them.

    AMQP's queue.declare reports only the ready count, so this asks the
    broker's CLI, which takes about half a second per call.
    """
    output = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages_unacknowledged"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    for line in output.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == queue:
            return int(fields[1])
    raise RuntimeError(f"queue {queue} not found in rabbitmqctl list_queues")


def wait_for_acks(queue):
    """Wait until the worker has acked every message it took from ``queue``.

    The ignore_result clock stops at a ready count of 0, while up to a
    prefetch of messages still run. Stopping the worker then would send
    those back, so the run waits for them first.
    """
    deadline = time.monotonic() + UNACKED_TIMEOUT
    while queue_unacked_count(queue) != 0:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"queue {queue} still has unacked messages "
                               f"{UNACKED_TIMEOUT:.0f}s after its ready count reached 0")
        time.sleep(0.1)


def check_queue_empty_after_stop(channel, queue):
    """Raise if the stopped worker left messages in ``queue``.

    A worker that took messages without acking them gives them back when its
    channel closes, so the ready count shows every message not acked.
    """
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        ready = queue_ready_count(channel, queue)
        if ready != 0:
            raise RuntimeError(f"queue {queue} has {ready} messages back after the worker stopped")
        time.sleep(0.1)


def delete_queues_on(channel, queues, exchange):
    for name in queues:
        channel.queue_delete(queue=name)
    channel.exchange_delete(exchange=exchange)


def delete_queues(queues, exchange, connect_timeout):
    """Delete ``queues`` and ``exchange`` over a connection of their own."""
    with amqp.Connection(host=BROKER_HOST, userid="guest", password="guest",
                         connect_timeout=connect_timeout) as connection:
        delete_queues_on(connection.channel(), queues, exchange)


def delete_run_queues(connection, channel, queues, exchange):
    """Delete a run's queues and exchange, and close its connection.

    When the run's connection has failed, as when the broker restarted
    during the run, a new connection deletes them. Queues that cannot be
    deleted are named in the log. Nothing is raised, so that the error that
    ended the run is the one reported.
    """
    try:
        delete_queues_on(channel, queues, exchange)
        connection.close()
        return
    except (OSError, amqp.exceptions.AMQPError):
        pass
    try:
        delete_queues(queues, exchange, connect_timeout=5)
    except (OSError, amqp.exceptions.AMQPError) as error:
        log(f"could not delete queues {', '.join(queues)} and exchange {exchange}: {error!r}; "
            "delete the queues with `rabbitmqctl delete_queue NAME`, with RABBITMQ_NODENAME set "
            "for a node of one's own (the exchange holds no messages)")
    try:
        connection.close()
    except (OSError, amqp.exceptions.AMQPError):
        pass


def run_drain(drain, timeout):
    """Run one drain and return its figures as a dict."""
    # A fresh name per run, because kombu caches which queues it declared.
    queue = f"bench-{os.getpid()}-{drain.slug()}-{uuid.uuid4().hex[:8]}"
    reply_queue = f"{queue}-replies" if drain.results == "rpc" else None
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    connection = amqp.Connection(host=BROKER_HOST, userid="guest", password="guest")
    connection.connect()
    channel = connection.channel()
    process = None
    counter = None
    try:
        if reply_queue:
            channel.queue_declare(queue=reply_queue, durable=False, auto_delete=False)
            counter = start_counter(reply_queue, drain.tasks)
        begin = time.monotonic()
        preload(queue, drain.tasks, reply_queue, drain.payload_bytes)
        log(f"preloaded {drain.tasks} messages in {time.monotonic() - begin:.1f}s")
        wait_for_ready_count(channel, queue, drain.tasks)

        command, environment = WORKERS[drain.worker](drain, queue)
        process = start_worker(command, environment, LOG_DIR / f"{drain.slug()}.log")
        cpu = []
        if drain.results == "rpc":
            started, finished, done = measure_with_results(
                counter, drain.tasks, process, timeout, drain.max_seconds, cpu)
        else:
            started, finished, done = measure_without_results(
                channel, queue, drain.tasks, process, timeout, drain.max_seconds, cpu)
        drained = done == drain.tasks
        if drained and drain.results == "none":
            wait_for_acks(queue)
        rss = peak_rss_mib(process.pid)
        killed = stop_worker(process)
        if drained and drain.results == "none":
            check_queue_empty_after_stop(channel, queue)
    finally:
        with signals_deferred():
            if process is not None and process.returncode is None:
                stop_worker(process)
            if counter is not None:
                stop_counter(counter)
            delete_run_queues(connection, channel, [queue, reply_queue] if reply_queue else [queue], queue)
    seconds = finished - started
    rate = done / seconds if seconds > 0 else float("inf")
    # CPU microseconds per task while the clock ran; the first sample comes
    # after the first task, so the figures are slightly high.
    per_task = {}
    if len(cpu) == 2 and done > 0:
        for part in ("worker", "broker", "client"):
            used = getattr(cpu[1], part) - getattr(cpu[0], part)
            per_task[part] = used * 1e6 / done
    log(f"{done} tasks in {seconds:.2f}s ({format_rate(rate)}/s), peak RSS {rss:.1f} MiB, CPU us/task "
        + ", ".join(f"{part} {value:.0f}" for part, value in per_task.items()))
    return {
        "worker": drain.worker, "pool": drain.pool_label(), "results": drain.results,
        "concurrency": drain.concurrency, "payload_bytes": drain.payload_bytes,
        "tasks": done, "preloaded": drain.tasks, "capped": done < drain.tasks,
        "max_seconds": drain.max_seconds, "killed": killed,
        "seconds": seconds, "rate": rate, "rss": rss,
        "cpu_us_per_task": per_task,
    }


def format_rate(rate):
    """Format tasks/s; a run shorter than the clock's resolution has no rate."""
    return f"{rate:.0f}" if math.isfinite(rate) else "-"


def print_table(rows):
    print("| worker | pool | results | tasks | seconds | tasks/s | peak RSS MiB "
          "| CPU us/task: worker | broker | client |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        tasks = f"{row['tasks']} of {row['preloaded']}" if row["capped"] else str(row["tasks"])
        rate = format_rate(row["rate"])
        cpu = row["cpu_us_per_task"]
        cpu_cells = " | ".join(f"{cpu[part]:.0f}" if part in cpu else "-"
                               for part in ("worker", "broker", "client"))
        print(f"| {row['worker']} | {row['pool']} | {row['results']} | {tasks} "
              f"| {row['seconds']:.2f} | {rate} | {row['rss']:.1f} | {cpu_cells} |")


def parse_workers(text):
    """Parse a comma-separated ``--workers`` value; exit when it is empty or
    names a worker twice."""
    workers = [parse_worker(entry) for entry in text.split(",") if entry]
    if not workers:
        sys.exit("--workers is empty: name at least one worker, e.g. celeriac:prefork:2")
    if len(set(workers)) < len(workers):
        sys.exit(f"--workers names a worker twice: {text}")
    return workers


def parse_worker(text):
    """Parse ``worker[:pool[:concurrency]]`` or ``ceiling[:concurrency]``."""
    parts = text.split(":")
    name = parts[0]
    if len(parts) > (2 if name == "ceiling" else 3):
        sys.exit(f"invalid worker {text!r}: expected worker:pool:concurrency or ceiling:concurrency")
    if name not in WORKERS:
        sys.exit(f"unknown worker {name!r}; choose from {', '.join(WORKERS)}")
    if name == "ceiling":
        pool, concurrency_text = "ceiling", parts[1] if len(parts) > 1 else "1"
    else:
        pool = parts[1] if len(parts) > 1 else "solo"
        concurrency_text = parts[2] if len(parts) > 2 else "1"
        if pool not in ("solo", "prefork", "threads"):
            sys.exit(f"unknown pool {pool!r} in {text!r}; choose from solo, prefork, threads")
    try:
        concurrency = int(concurrency_text)
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
                             "celeriac and pool solo, prefork or threads, or ceiling:concurrency for the "
                             "broker ceiling at that concurrency's prefetch (default: %(default)s)")
    parser.add_argument("--results", default="none,rpc",
                        help="comma-separated result modes: none, rpc (default: %(default)s)")
    parser.add_argument("--payload-bytes", type=int, default=0,
                        help="send tasks.echo with a string of this many bytes instead of tasks.add "
                             "(default: %(default)s, tasks.add)")
    parser.add_argument("--prefetch-multiplier", type=int, default=None,
                        help="worker_prefetch_multiplier for every worker (default: the workers' own, 4)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop measuring a run after this many seconds and report the tasks done "
                             "(default: no cap)")
    parser.add_argument("--loglevel", default="warning",
                        help="log level of the Python and celeriac workers (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds one run may take to drain the queue (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not 0 < args.tasks <= 1_000_000:
        sys.exit(f"--tasks must be between 1 and 1000000, not {args.tasks}")
    if not 0 <= args.payload_bytes <= 64 * 1024 * 1024:
        sys.exit(f"--payload-bytes must be between 0 and {64 * 1024 * 1024}, not {args.payload_bytes}")
    if args.prefetch_multiplier is not None and args.prefetch_multiplier < 0:
        sys.exit(f"--prefetch-multiplier must be 0 (no limit) or more, not {args.prefetch_multiplier}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        sys.exit(f"--max-seconds must be above 0, not {args.max_seconds}")
    if not args.timeout > 0:
        sys.exit(f"--timeout must be above 0, not {args.timeout}")
    if args.loglevel.lower() not in LOG_LEVELS:
        sys.exit(f"unknown --loglevel {args.loglevel!r}; choose from {', '.join(LOG_LEVELS)}")
    workers = parse_workers(args.workers)
    modes = [name for name in args.results.split(",") if name]
    if not modes:
        sys.exit("--results is empty: name none, rpc or both")
    if len(set(modes)) < len(modes):
        sys.exit(f"--results names a mode twice: {args.results}")
    for mode in modes:
        if mode not in ("none", "rpc"):
            sys.exit(f"unknown result mode {mode!r}; choose from none, rpc")
    # Runs with rpc results count them with the ceiling program.
    needed = [name for name, _, _ in workers] + (["ceiling"] if "rpc" in modes else [])
    exit_if_files_missing(needed)

    rows = []
    for mode in modes:
        for name, pool, concurrency in workers:
            drain = Drain(name, pool, concurrency, mode, args.tasks, args.payload_bytes,
                          args.prefetch_multiplier, args.max_seconds, args.loglevel)
            print(f"running {name} {drain.pool_label()} with results={mode}, {args.tasks} tasks ...",
                  file=sys.stderr)
            try:
                rows.append(run_drain(drain, args.timeout))
            except RUN_ERRORS as error:
                if rows:
                    print_table(rows)
                sys.exit(f"{name} {drain.pool_label()} with results={mode} failed: {error}")
    print_table(rows)


if __name__ == "__main__":
    run_main(main)
