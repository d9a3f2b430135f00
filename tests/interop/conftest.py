"""Fixtures that run a worker (C or the Python twin) against the local RabbitMQ.

``--worker=python`` or ``CELERIAC_WORKER=python`` runs the Python Celery twin
in pytasks.py instead of build/celeriac, to check the tests themselves.
"""

import os

import pytest
from celery import Celery

import support


def pytest_addoption(parser):
    parser.addoption(
        "--worker",
        choices=support.WORKER_KINDS,
        default=None,
        help="worker to test: 'c' (build/celeriac, the default) or 'python' "
        "(the Celery twin in tests/interop/pytasks.py); overrides CELERIAC_WORKER",
    )


def pytest_configure(config):
    option = config.getoption("--worker")
    if option:
        os.environ["CELERIAC_WORKER"] = option
    support.worker_kind()  # Fail early on an invalid CELERIAC_WORKER value.
    config.addinivalue_line(
        "markers",
        "python_xfail(reason): expected to fail on the Python Celery worker, "
        "because Python Celery itself does not meet the contract there",
    )
    config.addinivalue_line(
        "markers", "c_only(reason): checks only the C worker (for example its log lines)"
    )


def pytest_report_header(config):
    return f"interop worker: {support.worker_kind()}"


def pytest_collection_modifyitems(config, items):
    kind = support.worker_kind()
    for item in items:
        xfail_marker = item.get_closest_marker("python_xfail")
        if xfail_marker is not None and kind == "python":
            reason = xfail_marker.kwargs.get("reason") or xfail_marker.args[0]
            item.add_marker(pytest.mark.xfail(reason=f"Python Celery: {reason}"))
        c_only_marker = item.get_closest_marker("c_only")
        if c_only_marker is not None and kind != "c":
            reason = c_only_marker.kwargs.get("reason") or c_only_marker.args[0]
            item.add_marker(pytest.mark.skip(reason=f"C worker only: {reason}"))


@pytest.fixture(scope="session")
def worker_kind():
    return support.worker_kind()


@pytest.fixture(scope="session", autouse=True)
def broker():
    if not support.broker_is_reachable():
        # make test sets this, so a missing broker fails CI instead of
        # skipping every test.
        if os.environ.get("CELERIAC_REQUIRE_BROKER") == "1":
            pytest.fail(
                f"no AMQP broker on {support.BROKER_HOST}:{support.BROKER_PORT}",
                pytrace=False,
            )
        pytest.skip(
            f"no AMQP broker on {support.BROKER_HOST}:{support.BROKER_PORT}; "
            "start RabbitMQ (make test starts it) and run again"
        )
    return support.BROKER_URL


@pytest.fixture(scope="session")
def client(broker):
    """The Celery client app (protocol v2, rpc results) that sends test tasks."""
    app = Celery("interop-client", broker=broker, backend=support.RESULT_BACKEND)
    app.conf.broker_connection_retry = False
    yield app
    app.close()


def make_worker(kind, tag, env=None, extra_args=(), **worker_options):
    if kind == "c" and not (support.C_WORKER.exists() and support.C_TASK_MODULE.exists()):
        pytest.skip(
            f"{support.C_WORKER} or {support.C_TASK_MODULE} not found; run make first, "
            "or use --worker=python to run the Python twin"
        )
    queue = support.unique_name(f"interop.{tag}")
    log_path = support.LOG_DIR / f"{queue}.{kind}.log"
    return support.WorkerProcess(
        kind, queue, node_base=queue.replace(".", "-"), log_path=log_path,
        env=env, extra_args=extra_args, **worker_options,
    )


def start_worker(worker):
    """Start ``worker`` and run two tasks on it before the test uses it.

    Python Celery 5.2 with the solo pool leaves acks to its event loop, which
    sends the first message's ack only after the next message has run. The
    warm-up tasks keep that delay out of the tests.
    """
    worker.start()
    try:
        worker.wait_ready()
        warm_up(worker)
    except RuntimeError as error:
        worker.stop()
        support.delete_queue(worker.queue)
        pytest.fail(str(error), pytrace=False)
    except BaseException:
        # Any other failure (a broker connection reset while publishing the
        # warm-up tasks, say) must not leave the worker running. The queue
        # is deleted when the broker is still reachable; the first error is the
        # one reported.
        worker.stop()
        try:
            support.delete_queue(worker.queue)
        except Exception:
            pass
        raise


def warm_up(worker):
    if support.is_redis_backend(worker.result_backend):
        warm_up_redis(worker)
        return
    replies = support.ReplyQueue()
    try:
        for _ in range(2):
            task_id = support.publish_task_v2(worker.queue, "tasks.add", args=[1, 1],
                                              reply_to=replies.name)
            replies.wait_for(task_id, timeout=support.READY_TIMEOUT)
    except TimeoutError as error:
        raise RuntimeError(
            f"{worker.kind} worker did not run its warm-up task: {error}; "
            f"log {worker.log_path}:\n{worker.log_tail()}"
        ) from error
    finally:
        replies.close()


def warm_up_redis(worker):
    """Run the warm-up tasks on a worker that stores its results in Redis."""
    client = support.redis_client(worker.result_backend)
    try:
        for _ in range(2):
            task_id = support.publish_task_v2(worker.queue, "tasks.add", args=[1, 1])
            support.wait_for_redis_meta(client, task_id, timeout=support.READY_TIMEOUT)
    except TimeoutError as error:
        raise RuntimeError(
            f"{worker.kind} worker did not run its warm-up task: {error}; "
            f"log {worker.log_path}:\n{worker.log_tail()}"
        ) from error
    finally:
        client.close()


def stop_worker(worker, delete_queue=True):
    """Stop ``worker`` and delete its queue; fail if the C worker exits badly.

    A worker that the test stopped itself only has its exit status checked,
    and one that the test signalled itself has nothing checked.
    """
    running = worker.is_running() or worker.stopped
    exit_code = worker.stop()
    if delete_queue:
        support.delete_queue(worker.queue)
    if worker.kind != "c" or worker.signalled_by_test:
        return
    assert running, (
        f"C worker died during the tests (status {worker.process.returncode}); "
        f"log {worker.log_path}:\n{worker.log_tail()}"
    )
    assert exit_code == 0, (
        f"C worker did not exit 0 within {support.STOP_TIMEOUT} s of SIGTERM "
        f"(status {exit_code}, None = killed); log {worker.log_path}:\n{worker.log_tail()}"
    )


@pytest.fixture(scope="module")
def worker(request, worker_kind, broker):
    """One worker for the whole test module, on a queue of its own."""
    tag = request.module.__name__.rsplit(".", 1)[-1]
    process = make_worker(worker_kind, tag)
    start_worker(process)
    yield process
    stop_worker(process)


@pytest.fixture
def worker_factory(request, worker_kind, broker):
    """Start workers with special settings for one test; stop them afterwards.

    Call it as ``worker_factory(env={...}, extra_args=[...], queue=None)``.
    Passing ``queue`` starts a worker on the queue of an earlier worker.
    Other keywords (``pool_args``, ``new_session``) go to support.WorkerProcess.
    """
    started = []

    def start(env=None, extra_args=(), queue=None, **worker_options):
        process = make_worker(worker_kind, request.node.name, env=env,
                              extra_args=extra_args, **worker_options)
        if queue is not None:
            process.queue = queue
        start_worker(process)
        started.append(process)
        return process

    yield start
    failures = []
    for process in started:
        try:
            stop_worker(process, delete_queue=False)
        except AssertionError as error:
            failures.append(str(error))
    for queue in {process.queue for process in started}:
        support.delete_queue(queue)
    assert not failures, "\n".join(failures)


@pytest.fixture
def reply_queue(broker):
    queue = support.ReplyQueue()
    yield queue
    queue.close()


def run_task(client, worker, name, args=(), kwargs=None, timeout=support.RESULT_TIMEOUT,
             **options):
    """Send ``name`` to ``worker``'s queue and return its result (raises its error)."""
    result = client.send_task(name, args=args, kwargs=kwargs, queue=worker.queue, **options)
    return result.get(timeout=timeout)


@pytest.fixture
def run(client, worker):
    """Return ``run(name, *args, **kwargs)``: the result of one task on ``worker``."""

    def call(name, *args, **kwargs):
        return run_task(client, worker, name, args=args, kwargs=kwargs)

    return call
