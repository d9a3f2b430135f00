#!/usr/bin/python3
"""Run the whole benchmark suite and record it in docs/performance.md.

One run measures, on the local RabbitMQ and side by side:

- the broker ceiling (build/bench/ceiling), celeriac's prefork, threads and
  solo pools and Python Celery's prefork and solo pools draining a preloaded
  queue of ``tasks.add`` messages, with rpc results and with ignore_result,
- the same with ``tasks.echo`` and a 1 MiB string argument,
- the sequential round-trip latency from a Python Celery client,
- celeriac's default pool (prefork) at -c 1, 2, 4 and 8, next to the
  ceiling at the same prefetch and Python's prefork pool.

It prints the tables, the ratios and whether each target is met, writes
docs/performance.md from bench/performance.md.in and plots the scaling
figures to docs/bench-scaling.png with gnuplot. Raw figures go to
build/bench/results.json and worker logs to build/bench/.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import time

import amqp
import celery
import kombu

import drain
import latency

REPO_ROOT = drain.REPO_ROOT
TEMPLATE = REPO_ROOT / "bench" / "performance.md.in"
PLOT_SCRIPT = REPO_ROOT / "bench" / "scaling.gp"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "performance.md"
DEFAULT_PLOT = REPO_ROOT / "docs" / "bench-scaling.png"
RESULTS_JSON = drain.LOG_DIR / "results.json"
# --quick writes here, so that it never replaces the recorded run.
QUICK_DIR = drain.LOG_DIR / "quick"
# The parts of the report that a run fills in and saves in its results.
SECTION_KEYS = ("setup", "targets", "repeats", "rpc_table", "none_table", "payload_table",
                "latency_table", "scaling_table", "failures", "killed")
SNAPSHOT_DIR = drain.LOG_DIR / "snapshot"
SCALING_DATA = drain.LOG_DIR / "scaling.dat"

MIB = 1024 * 1024
PAYLOAD_BYTES = 1 * MIB
DRAIN_TIMEOUT = 180.0
SCALING_CONCURRENCIES = (1, 2, 4, 8)

# Targets the project aims at. The suite reports them and never tunes a run
# to meet them.
TARGET_CEILING_RATIO = 0.85
TARGET_PYTHON_RATIO = 4.0
TARGET_LATENCY_RATIO = 0.7
TARGET_RSS_BYTES = 10 * 1000 * 1000
TARGET_PAYLOAD_RATIO = 3.0


class Plan:
    """Task counts and time caps of one suite run."""

    def __init__(self, quick):
        scale = 10 if quick else 1
        # Single runs on a shared machine vary by about 20%, so the target
        # ratios take the median over several rounds.
        self.repeats = 1 if quick else 5
        # Fast workers drain 15000 tasks.add in 1.5 to 4 s on 2 CPUs, and
        # preloading them takes about 3.5 s, the largest fixed cost per run.
        self.fast_tasks = 15000 // scale
        # Python's prefork pool runs about 1000 to 2000 tasks.add/s.
        self.python_prefork_tasks = 6000 // scale
        # Python's solo pool at the default prefetch runs either about as
        # fast as its prefork pool or, when it stalls, at tens of tasks/s
        # (see docs/performance.md), so its runs are capped by time.
        self.python_solo_tasks = 5000 // scale
        self.python_solo_max_seconds = 20.0 / scale
        # celeriac drains 1 MiB tasks at about 400 to 600/s, so 400 of them
        # keep its clock running for most of a second.
        self.payload_tasks = 400 // scale
        self.payload_max_seconds = 30.0 / scale
        self.round_trips = 300 // scale
        self.latency_max_seconds = 60.0 / scale


def throughput_rows(results, payload_bytes, plan):
    """Return the drains of one throughput table, in the order they run."""
    tasks = plan.payload_tasks if payload_bytes else plan.fast_tasks
    python_prefork_tasks = plan.payload_tasks if payload_bytes else plan.python_prefork_tasks
    python_solo_tasks = plan.payload_tasks if payload_bytes else plan.python_solo_tasks
    cap = plan.payload_max_seconds if payload_bytes else None
    solo_cap = plan.payload_max_seconds if payload_bytes else plan.python_solo_max_seconds
    # The ceiling with RabbitMQ's cheaper per-consumer prefetch, for
    # comparison: Celery workers, celeriac too, set it for the channel.
    per_consumer = [] if payload_bytes else [
        drain.Drain("ceiling", "ceiling", 2, results, tasks, payload_bytes, max_seconds=cap,
                    per_consumer_qos=True),
    ]
    return [
        drain.Drain("ceiling", "ceiling", 2, results, tasks, payload_bytes, max_seconds=cap),
        *per_consumer,
        drain.Drain("celeriac", "prefork", 2, results, tasks, payload_bytes, max_seconds=cap),
        drain.Drain("celeriac", "threads", 2, results, tasks, payload_bytes, max_seconds=cap),
        drain.Drain("celeriac", "solo", 1, results, tasks, payload_bytes, max_seconds=cap),
        drain.Drain("python", "prefork", 2, results, python_prefork_tasks, payload_bytes, max_seconds=cap),
        drain.Drain("python", "solo", 1, results, python_solo_tasks, payload_bytes, max_seconds=solo_cap),
    ]


def scaling_rows(plan):
    """Return the drains at -c 1, 4 and 8, because the rpc table has -c 2."""
    rows = []
    for concurrency in SCALING_CONCURRENCIES:
        if concurrency == 2:
            continue
        rows += [
            drain.Drain("ceiling", "ceiling", concurrency, "rpc", plan.fast_tasks),
            drain.Drain("celeriac", "prefork", concurrency, "rpc", plan.fast_tasks),
            drain.Drain("python", "prefork", concurrency, "rpc", plan.python_prefork_tasks),
        ]
    return rows


# The Celery client is the one a user runs. The py-amqp one leaves Celery's
# own client time out, so the worker's share shows (see latency.AmqpClient).
LATENCY_CLIENTS = ("celery", "amqp")

LATENCY_WORKERS = [
    ("ceiling", "ceiling", 2),
    ("celeriac", "prefork", 2),
    ("celeriac", "threads", 2),
    ("celeriac", "solo", 1),
    ("python", "prefork", 2),
    ("python", "solo", 1),
]


def run_drain_or_record_failure(spec, failures):
    print(f"running {spec.worker} {spec.pool_label()}, results={spec.results}, "
          f"{spec.tasks} tasks{' of ' + str(spec.payload_bytes) + ' bytes' if spec.payload_bytes else ''} ...",
          file=sys.stderr, flush=True)
    try:
        return drain.run_drain(spec, DRAIN_TIMEOUT)
    except drain.RUN_ERRORS as error:
        failures.append(f"{spec.worker} {spec.pool_label()} results={spec.results}: {error}")
        drain.log(f"failed: {error}")
        return None


def median_row(runs):
    """Merge repeated runs of one drain into a row with the median rate.

    ``round_rates`` keeps each round's rate, None for a failed run, so that
    two rows can be compared round by round (see paired_ratio).
    """
    round_rates = [run["rate"] if run is not None else None for run in runs]
    runs = [run for run in runs if run is not None]
    if not runs:
        return None
    by_rate = sorted(runs, key=lambda run: run["rate"])
    row = dict(by_rate[(len(by_rate) - 1) // 2])
    row["runs"] = len(runs)
    row["round_rates"] = round_rates
    row["capped_runs"] = sum(1 for run in runs if run["capped"])
    row["rate_min"] = by_rate[0]["rate"]
    row["rate_max"] = by_rate[-1]["rate"]
    # With an even number of runs (one failed), the median is a mean of two.
    row["rate"] = statistics.median(run["rate"] for run in runs)
    row["rss"] = max(run["rss"] for run in runs)
    row["killed"] = any(run["killed"] for run in runs)
    row["cpu"] = {}
    for part in ("worker", "broker", "client"):
        values = [run["cpu_us_per_task"][part] for run in runs
                  if part in run.get("cpu_us_per_task", {})]
        if values:
            row["cpu"][part] = statistics.median(values)
    return row


def run_table(specs, repeats, failures):
    """Run ``specs`` ``repeats`` times, interleaved, and return one row per spec.

    Interleaving spreads slow phases of a shared machine over all workers
    instead of over one.
    """
    runs = [[] for _ in specs]
    for _ in range(repeats):
        for index, spec in enumerate(specs):
            runs[index].append(run_drain_or_record_failure(spec, failures))
    return [median_row(spec_runs) for spec_runs in runs]


def run_latency(plan, failures):
    """Measure LATENCY_WORKERS side by side with each client in turn."""
    labels = ", ".join(f"{worker} {pool} -c {concurrency}" for worker, pool, concurrency in LATENCY_WORKERS)
    rows = []
    for client in LATENCY_CLIENTS:
        print(f"measuring round-trip latency with the {client} client of {labels}, in turn ...",
              file=sys.stderr, flush=True)
        try:
            client_rows, client_failures = latency.measure_latencies(
                LATENCY_WORKERS, plan.round_trips, plan.latency_max_seconds, client)
        except drain.RUN_ERRORS as error:
            client_rows, client_failures = [], [f"latency with the {client} client: {error}"]
        for failure in client_failures:
            drain.log(f"failed: {failure}")
        rows.extend(client_rows)
        failures.extend(client_failures)
    return rows


def killed_workers(tables, latency_rows, scaling_rows):
    """Return a line for each worker that was killed after SIGTERM timed out."""
    lines = []
    for name, rows in list(tables.items()) + [("latency", latency_rows), ("scaling", scaling_rows)]:
        for row in rows:
            if row is not None and row.get("killed"):
                lines.append(f"{row['worker']} {row['pool']} ({name} runs) did not stop within "
                             f"{drain.STOP_TIMEOUT:.0f} s of SIGTERM and was killed")
    return lines


def find_row(rows, worker, pool_label):
    for row in rows:
        if row is not None and row["worker"] == worker and row["pool"] == pool_label:
            return row
    return None


def python_label(row):
    return f"Python {row['pool']}" if row else "Python"


def fastest_python(rows):
    python_rows = [row for row in rows if row is not None and row["worker"] == "python"]
    return max(python_rows, key=lambda row: row["rate"], default=None)


# ----------------------------------------------------------------------------
# Tables


def format_rate(row):
    text = drain.format_rate(row["rate"])
    if row.get("runs", 1) > 1:
        text += f" ({row['rate_min']:.0f}–{row['rate_max']:.0f})"
    return text


def format_ratio(value):
    """Format a ratio with three significant digits, so that 0.847x does not
    round to a target of 0.85x and 0.00430x stays visible."""
    if value >= 100:
        return f"{value:.0f}x"
    return format(value, "#.3g").rstrip(".") + "x"


def format_tasks(row):
    if row["capped"]:
        text = f"{row['tasks']} of {row['preloaded']}, capped at {row['max_seconds']:.0f} s"
    else:
        text = str(row["tasks"])
    capped_runs = row.get("capped_runs", 0)
    if capped_runs and row.get("runs", 1) > 1:
        text += f" ({capped_runs} of {row['runs']} runs capped)"
    return text


def throughput_table(rows, specs):
    ceiling = find_row(rows, "ceiling", "prefetch 8")
    python = fastest_python(rows)
    lines = [
        "| worker | pool | tasks | tasks/s | / ceiling | / fastest Python | peak RSS MiB "
        "| CPU µs/task: worker | broker | client |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row, spec in zip(rows, specs):
        if row is None:
            lines.append(f"| {spec.worker} | {spec.pool_label()} | failed | | | | | | | |")
            continue
        to_ceiling = format_ratio(row["rate"] / ceiling["rate"]) if ceiling else "–"
        to_python = format_ratio(row["rate"] / python["rate"]) if python else "–"
        cpu = " | ".join(f"{row['cpu'][part]:.0f}" if part in row["cpu"] else "–"
                         for part in ("worker", "broker", "client"))
        lines.append(f"| {row['worker']} | {row['pool']} | {format_tasks(row)} | {format_rate(row)} "
                     f"| {to_ceiling} | {to_python} | {row['rss']:.1f} | {cpu} |")
    return "\n".join(lines)


def latency_table(rows):
    lines = [
        "| client | worker | pool | round trips | p50 ms | p99 ms | peak RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        trips = f"{row['round_trips']} of {row['requested']}, capped" if row["capped"] else str(row["round_trips"])
        lines.append(f"| {row['client']} | {row['worker']} | {row['pool']} | {trips} | {row['p50_ms']:.2f} "
                     f"| {row['p99_ms']:.2f} | {row['rss']:.1f} |")
    return "\n".join(lines)


def scaling_points(rpc_rows, extra_rows):
    """Return {worker: {concurrency: row}} for the scaling table and plot."""
    points = {"ceiling": {}, "celeriac": {}, "python": {}}
    for row in list(rpc_rows) + list(extra_rows):
        if row is None or row["payload_bytes"]:
            continue
        if row["worker"] == "ceiling" or row["pool"].startswith("prefork"):
            points[row["worker"]].setdefault(row["concurrency"], row)
    return points


def scaling_table(points):
    lines = [
        "| -c | prefetch | ceiling tasks/s | celeriac prefork tasks/s | / ceiling "
        "| Python prefork tasks/s | celeriac / Python | celeriac peak RSS MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for concurrency in SCALING_CONCURRENCIES:
        ceiling = points["ceiling"].get(concurrency)
        celeriac = points["celeriac"].get(concurrency)
        python = points["python"].get(concurrency)
        cells = [
            str(concurrency),
            str(drain.DEFAULT_PREFETCH_MULTIPLIER * concurrency),
            f"{ceiling['rate']:.0f}" if ceiling else "failed",
            f"{celeriac['rate']:.0f}" if celeriac else "failed",
            format_ratio(celeriac["rate"] / ceiling["rate"]) if ceiling and celeriac else "–",
            f"{python['rate']:.0f}" if python else "failed",
            format_ratio(celeriac["rate"] / python["rate"]) if python and celeriac else "–",
            f"{celeriac['rss']:.1f}" if celeriac else "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Ratios and targets


def ratio_line(name, value, target, at_least):
    """Return (text, met) for one target."""
    if value is None:
        return f"{name}: not measured (a run failed)", False
    met = value >= target if at_least else value <= target
    relation = "≥" if at_least else "≤"
    verdict = "met" if met else "NOT met"
    value_text = format_ratio(value)
    if value_text == format_ratio(target) and value != target:
        # Rounded to the target's digits it would look met or missed wrongly.
        value_text = format(value, "#.5g") + "x"
    return f"{name}: {value_text} (target {relation} {target:g}x: {verdict})", met


def safe_ratio(numerator, denominator, key):
    if numerator is None or denominator is None:
        return None
    return numerator[key] / denominator[key]


def paired_ratio(numerator, denominator):
    """Return the median, lowest and highest of the per-round rate ratios.

    Each round runs every worker once, within about a minute, so a slow
    spell of the machine that lasts longer slows both sides of a ratio.
    Rounds where either run failed are skipped. Returns None when no round
    has both runs.
    """
    if numerator is None or denominator is None:
        return None
    ratios = [top / bottom
              for top, bottom in zip(numerator["round_rates"], denominator["round_rates"])
              if top is not None and bottom]
    if not ratios:
        return None
    return statistics.median(ratios), min(ratios), max(ratios), len(ratios)


def throughput_ratio_line(name, numerator, denominator, target):
    """Return (text, met) for a throughput target, judged on the paired median."""
    paired = paired_ratio(numerator, denominator)
    text, met = ratio_line(name, paired[0] if paired else None, target, True)
    if paired is not None and paired[3] > 1:
        _, lowest, highest, rounds = paired
        text += (f"; per round {format_ratio(lowest)} to {format_ratio(highest)} "
                 f"over {rounds} rounds")
    return text, met


def evaluate_targets(tables, latency_rows):
    """Return the lines of the ratio and target report."""
    rpc = tables["rpc"]
    default_pool = find_row(rpc, "celeriac", "prefork -c 2")
    ceiling = find_row(rpc, "ceiling", "prefetch 8")
    python = fastest_python(rpc)
    lines = []

    lines.append(throughput_ratio_line("throughput celeriac prefork -c 2 / broker ceiling (tasks.add, rpc)",
                                       default_pool, ceiling, TARGET_CEILING_RATIO))
    lines.append(throughput_ratio_line(f"throughput celeriac prefork -c 2 / fastest Python pool, "
                                       f"{python_label(python)} (tasks.add, rpc)",
                                       default_pool, python, TARGET_PYTHON_RATIO))

    none_rows = tables["none"]
    none_default_pool = find_row(none_rows, "celeriac", "prefork -c 2")
    lines.append(throughput_ratio_line("throughput celeriac prefork -c 2 / broker ceiling "
                                       "(tasks.add, ignore_result)",
                                       none_default_pool, find_row(none_rows, "ceiling", "prefetch 8"),
                                       TARGET_CEILING_RATIO))
    none_python = fastest_python(none_rows)
    lines.append(throughput_ratio_line(f"throughput celeriac prefork -c 2 / fastest Python pool, "
                                       f"{python_label(none_python)} (tasks.add, ignore_result)",
                                       none_default_pool, none_python, TARGET_PYTHON_RATIO))

    for client in LATENCY_CLIENTS:
        rows = [row for row in latency_rows if row["client"] == client]
        python_latency = find_row(rows, "python", "solo -c 1")
        lines.append(ratio_line(f"latency p50 celeriac prefork -c 2 / Python solo, {client} client",
                                safe_ratio(find_row(rows, "celeriac", "prefork -c 2"), python_latency,
                                           "p50_ms"),
                                TARGET_LATENCY_RATIO, False))
        floor = safe_ratio(find_row(rows, "ceiling", "prefetch 8"), python_latency, "p50_ms")
        if floor is not None:
            lines.append((f"latency p50 broker ceiling / Python solo, {client} client: {format_ratio(floor)} "
                          "(no target: the client and the broker alone)", True))

    payload = tables["payload"]
    payload_python = fastest_python(payload)
    lines.append(throughput_ratio_line("1 MiB tasks.echo throughput celeriac prefork -c 2 / "
                                       f"fastest Python pool, {python_label(payload_python)}",
                                       find_row(payload, "celeriac", "prefork -c 2"),
                                       payload_python, TARGET_PAYLOAD_RATIO))

    target_mib = TARGET_RSS_BYTES / MIB
    for label, rows in (("tasks.add", rpc + none_rows), ("1 MiB tasks.echo", payload)):
        measured = [row["rss"] for row in rows
                    if row is not None and row["worker"] == "celeriac" and row["pool"] == "prefork -c 2"]
        name = f"peak RSS of all celeriac prefork -c 2 processes, {label}"
        if not measured:
            lines.append((f"{name}: not measured (a run failed)", False))
            continue
        peak = max(measured)
        met = peak < target_mib
        lines.append((f"{name}: {peak:.1f} MiB (target < 10 MB = {target_mib:.1f} MiB: "
                      f"{'met' if met else 'NOT met'})", met))
    return lines


# ----------------------------------------------------------------------------
# Setup and report


def command_output(command):
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model():
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib():
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / MIB
    return 0.0


def compiler_flags():
    """Return the compiler and flags build/celeriac was built with, from its DWARF info."""
    output = command_output(["readelf", "--debug-dump=info", str(drain.CELERIAC)])
    for line in output.splitlines():
        if "DW_AT_producer" in line:
            return line.rsplit("):", 1)[-1].strip()
    return "unknown (no debug information)"


def broker_version():
    try:
        with amqp.Connection(host=drain.BROKER_HOST, userid="guest", password="guest",
                             connect_timeout=5) as connection:
            properties = connection.server_properties
    except (OSError, amqp.exceptions.AMQPError) as error:
        return f"a broker that did not answer at the end of the run ({error})"
    return f"{properties.get('product', 'unknown')} {properties.get('version', 'unknown')}"


def git_revision():
    revision = command_output(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"])
    # The report and plot that an earlier run rewrote do not count as changes.
    changes = command_output(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no",
                              "--", ".", ":!docs/performance.md", ":!docs/bench-scaling.png"])
    return revision + (" with uncommitted changes" if changes and changes != "unknown" else "")


def load_average():
    with open("/proc/loadavg") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def collect_setup(load_before, load_after, started, seconds, revision):
    debian = pathlib.Path("/etc/debian_version")
    return "\n".join([
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the whole suite took {seconds / 60:.1f} minutes.",
        f"- Machine: {os.cpu_count()} CPUs ({cpu_model()}), {memory_gib():.0f} GiB of memory, "
        f"Linux {platform.release()}, Debian {debian.read_text().strip() if debian.exists() else 'unknown'}.",
        f"- Load average (1, 5, 15 min) before the run: {load_before}; after: {load_after}. "
        "Other work on the machine shares its 2 CPUs, so treat single figures as estimates "
        "within about 20%.",
        f"- Broker: {broker_version()} on {drain.BROKER_HOST}, the same node for every row.",
        f"- Python side: Python {platform.python_version()}, celery {celery.__version__}, "
        f"kombu {kombu.__version__}, amqp {amqp.__version__} (Debian packages).",
        f"- celeriac: {command_output([str(drain.CELERIAC), '-V'])} at {revision}, "
        f"built by `make` with {compiler_flags()}; librabbitmq "
        f"{command_output(['dpkg-query', '-W', '-f=${Version}', 'librabbitmq4'])}.",
    ])


def write_plot(points, plot_path):
    """Plot tasks/s against -c with gnuplot; return a note on what happened."""
    SCALING_DATA.parent.mkdir(parents=True, exist_ok=True)
    with open(SCALING_DATA, "w") as data:
        data.write("# concurrency ceiling celeriac_prefork python_prefork (tasks/s, NaN = failed)\n")
        for concurrency in SCALING_CONCURRENCIES:
            values = [points[worker].get(concurrency) for worker in ("ceiling", "celeriac", "python")]
            cells = [f"{row['rate']:.1f}" if row else "NaN" for row in values]
            data.write(f"{concurrency} {' '.join(cells)}\n")
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        return f"gnuplot not found, so {plot_path} was not updated; scripts/deps.sh installs it"
    result = subprocess.run(
        [gnuplot, "-e", f"data='{SCALING_DATA}'; output='{plot_path}'", str(PLOT_SCRIPT)],
        capture_output=True, text=True, timeout=60,
    )
    if result.returncode != 0:
        return f"gnuplot failed with status {result.returncode}: {result.stderr.strip()}"
    return f"plot written to {plot_path}"


def fill_template(values):
    text = TEMPLATE.read_text()
    for key, value in values.items():
        marker = "{{" + key + "}}"
        if marker not in text:
            raise KeyError(f"{TEMPLATE} has no {marker}")
        text = text.replace(marker, value)
    return text


# ----------------------------------------------------------------------------
# Main


def check_prerequisites():
    missing = []
    for worker in drain.REQUIRED_FILES:
        missing += drain.missing_files(worker)
    if missing:
        sys.exit(f"{', '.join(str(path) for path in missing)} not found; "
                 "run `make all build/bench/ceiling` or `make bench`")


def snapshot_binaries():
    """Copy the worker binaries aside and point the runs at the copies.

    Other work in the same tree may rebuild build/ while the suite runs, and
    every row must measure the same build. Returns the git revision that
    the copies were taken at.
    """
    SNAPSHOT_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("CELERIAC", "DEMO_TASKS", "CEILING"):
        source = getattr(drain, name)
        copy = SNAPSHOT_DIR / source.name
        shutil.copy2(source, copy)
        setattr(drain, name, copy)
    return git_revision()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a tenth of the tasks, no repeats and shorter caps, to check the suite "
                             "itself; the figures are too short to trust, so the report, plot and "
                             f"raw figures go to {QUICK_DIR}/ unless "
                             "--output or --plot say otherwise")
    parser.add_argument("--output", type=pathlib.Path, default=None,
                        help="markdown report to write (default: docs/performance.md)")
    parser.add_argument("--plot", type=pathlib.Path, default=None,
                        help="PNG plot of throughput against -c (default: docs/bench-scaling.png)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: write the report again from the figures the last run "
                             f"saved in {RESULTS_JSON}, after an edit of {TEMPLATE.name}")
    args = parser.parse_args(argv)
    if args.quick and args.render_only:
        parser.error("--quick and --render-only do not go together")
    output_dir = QUICK_DIR if args.quick else None
    if args.output is None:
        args.output = output_dir / "performance.md" if output_dir else DEFAULT_OUTPUT
    if args.plot is None:
        args.plot = output_dir / "bench-scaling.png" if output_dir else DEFAULT_PLOT
    args.results = output_dir / "results.json" if output_dir else RESULTS_JSON
    # A run takes minutes, so a path it cannot write fails now, not at the end.
    for path in (args.output, args.plot, args.results):
        if path.parent == output_dir:
            path.parent.mkdir(parents=True, exist_ok=True)
        if not path.parent.is_dir():
            parser.error(f"cannot write {path}: the folder {path.parent} does not exist")
        if path.is_dir():
            parser.error(f"cannot write {path}: it is a folder; name a file")
    return args


def render_saved_report(output):
    """Fill the template with the sections the last full run saved."""
    try:
        sections = json.loads(RESULTS_JSON.read_text())["sections"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"no saved report sections in {RESULTS_JSON} ({error!r}); run `make bench` first")
    missing = [key for key in SECTION_KEYS
               if not isinstance(sections, dict) or not isinstance(sections.get(key), str)]
    if missing:
        sys.exit(f"{RESULTS_JSON} lacks the report sections {', '.join(missing)}; run `make bench` first")
    try:
        text = fill_template({key: sections[key] for key in SECTION_KEYS})
    except KeyError as error:
        sys.exit(f"cannot fill the report template: {error.args[0]}")
    output.write_text(text)
    print(f"report written to {output} from {RESULTS_JSON}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.render_only:
        return render_saved_report(args.output)
    check_prerequisites()
    revision = snapshot_binaries()
    plan = Plan(args.quick)
    started = datetime.datetime.now(datetime.timezone.utc)
    begin = time.monotonic()
    load_before = load_average()
    failures = []

    specs = {
        "rpc": throughput_rows("rpc", 0, plan),
        "none": throughput_rows("none", 0, plan),
        "payload": throughput_rows("rpc", PAYLOAD_BYTES, plan),
    }
    tables = {"rpc": run_table(specs["rpc"], plan.repeats, failures)}
    tables["none"] = run_table(specs["none"], plan.repeats, failures)
    tables["payload"] = run_table(specs["payload"], plan.repeats, failures)
    latency_rows = run_latency(plan, failures)
    scaling_specs = scaling_rows(plan)
    scaling_extra = run_table(scaling_specs, 1, failures)
    seconds = time.monotonic() - begin

    points = scaling_points(tables["rpc"], scaling_extra)
    target_lines = evaluate_targets(tables, latency_rows)
    setup = collect_setup(load_before, load_average(), started, seconds, revision)
    if args.quick:
        setup = ("- A quick run (`--quick`): a tenth of the tasks and one round, to check the "
                 "suite. The figures are too short to trust.\n" + setup)
    sections = {
        "setup": setup,
        "targets": "\n".join(f"- {text}" for text, _ in target_lines),
        "repeats": str(plan.repeats),
        "rpc_table": throughput_table(tables["rpc"], specs["rpc"]),
        "none_table": throughput_table(tables["none"], specs["none"]),
        "payload_table": throughput_table(tables["payload"], specs["payload"]),
        "latency_table": latency_table(latency_rows),
        "scaling_table": scaling_table(points),
        "failures": "\n".join(f"- {failure}" for failure in failures) or "- none",
        "killed": "\n".join(f"- {line}" for line in killed_workers(tables, latency_rows, scaling_extra))
                  or "- none",
    }

    print()
    for key, title in (("rpc_table", "tasks.add, rpc results"), ("none_table", "tasks.add, ignore_result"),
                       ("payload_table", "tasks.echo with 1 MiB, rpc results"),
                       ("latency_table", "sequential round trips"), ("scaling_table", "scaling with -c")):
        print(f"## {title}\n\n{sections[key]}\n")
    print("## Ratios and targets\n")
    print(sections["targets"])

    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(
        {"tables": tables, "latency": latency_rows, "scaling": scaling_extra, "failures": failures,
         "sections": sections},
        indent=2, default=str))
    print(f"\n{write_plot(points, args.plot)}")
    args.output.write_text(fill_template(sections))
    print(f"report written to {args.output}; raw figures in {args.results}")
    if failures:
        print("\nfailed runs:\n" + sections["failures"], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    drain.run_main(main)
