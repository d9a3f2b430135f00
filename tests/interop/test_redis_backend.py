"""The redis:// and rediss:// result backends, read by the Celery client and raw.

Most tests use database 9 of the shared Redis on 6379 with unique task ids
and never flush it. The password, TLS and restart tests start redis-server
processes of their own on ports 6391 to 6394.
"""

import gc
import json
import re
import signal
import time
import uuid

import pytest
from celery import Celery

import support
from conftest import make_worker, start_worker, stop_worker
from support import (REDIS_BACKEND, RESULT_TIMEOUT, PrivateRedis, publish_task_v2,
                     redis_client, redis_meta, wait_for_redis_meta)

PASSWORD_PORT = 6391
TLS_PORT = 6392
RESTART_PORT = 6393
BAD_PASSWORD_PORT = 6394

META_KEYS = {"status", "result", "traceback", "children", "date_done", "task_id"}
# datetime.utcnow().isoformat(): no offset, microseconds only when not 0.
NAIVE_ISO_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
DEFAULT_EXPIRES = 86400
# Tasks sent around the Redis restart, and seconds Redis stays down.
RESTART_TASKS = 12
OUTAGE_SECONDS = 3.0


def worker_output(worker):
    """Return the worker's log without the command line written at its top."""
    return worker.log_text().split("\n", 1)[-1]


def client_app(url):
    app = Celery("interop-redis-client", broker=support.BROKER_URL, backend=url)
    app.conf.broker_connection_retry = False
    return app


@pytest.fixture(scope="module")
def redis_worker(worker_kind, broker):
    process = make_worker(worker_kind, "test_redis_backend", result_backend=REDIS_BACKEND)
    start_worker(process)
    yield process
    stop_worker(process)


@pytest.fixture(scope="module")
def redis_app():
    app = client_app(REDIS_BACKEND)
    yield app
    app.close()


@pytest.fixture(scope="module")
def redis_db():
    client = redis_client(REDIS_BACKEND)
    yield client
    client.close()


@pytest.fixture
def private_redis():
    """Start ``PrivateRedis(port, ...)`` servers; stop them after the test."""
    servers = []

    def start(port, **options):
        try:
            server = PrivateRedis(port, **options)
        except RuntimeError as error:
            pytest.skip(str(error))
        servers.append(server)
        server.start()
        return server

    yield start
    # Celery's AsyncResult unsubscribes from Redis in __del__, retrying for
    # about 20 s when the server is gone. Results caught in reference cycles
    # are collected here, while their server still runs, and not in a later
    # test, where the stall made a broker handshake time out.
    gc.collect()
    for server in servers:
        server.stop()


def test_result_reaches_client(redis_app, redis_worker):
    result = redis_app.send_task("tasks.add", args=[2, 3], queue=redis_worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 5


def test_failure_raises_in_client(redis_app, redis_worker):
    result = redis_app.send_task("tasks.fail", args=["boom"], queue=redis_worker.queue)
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=RESULT_TIMEOUT)


def test_meta_as_celery_writes_it(redis_app, redis_worker, redis_db):
    result = redis_app.send_task("tasks.add", args=[4, 4], queue=redis_worker.queue)
    assert result.get(timeout=RESULT_TIMEOUT) == 8
    key = f"celery-task-meta-{result.id}"
    meta = json.loads(redis_db.get(key))
    assert set(meta) == META_KEYS
    assert meta["status"] == "SUCCESS"
    assert meta["result"] == 8
    assert meta["traceback"] is None
    assert meta["children"] == []
    assert meta["task_id"] == result.id
    assert NAIVE_ISO_DATE.match(meta["date_done"]), meta["date_done"]
    ttl = redis_db.ttl(key)
    assert DEFAULT_EXPIRES - 60 <= ttl <= DEFAULT_EXPIRES


def test_failure_meta_has_exception(redis_worker, redis_db):
    task_id = publish_task_v2(redis_worker.queue, "tasks.fail", args=["bad input"])
    meta = wait_for_redis_meta(redis_db, task_id)
    assert meta["status"] == "FAILURE"
    assert meta["result"] == {"exc_type": "ValueError", "exc_message": ["bad input"],
                              "exc_module": "builtins"}
    assert "ValueError" in meta["traceback"]
    assert NAIVE_ISO_DATE.match(meta["date_done"]), meta["date_done"]


def test_meta_keeps_group_and_parent_ids(redis_worker, redis_db):
    group_id = str(uuid.uuid4())
    parent_id = str(uuid.uuid4())
    # No reply_to: the redis backend stores the result all the same.
    task_id = publish_task_v2(redis_worker.queue, "tasks.add", args=[1, 2],
                              group=group_id, parent_id=parent_id)
    meta = wait_for_redis_meta(redis_db, task_id)
    assert meta["group_id"] == group_id
    assert meta["parent_id"] == parent_id
    assert set(meta) == META_KEYS | {"group_id", "parent_id"}


def test_meta_leaves_out_absent_ids(redis_worker, redis_db):
    task_id = publish_task_v2(redis_worker.queue, "tasks.add", args=[1, 3])
    meta = wait_for_redis_meta(redis_db, task_id)
    assert "group_id" not in meta
    assert "parent_id" not in meta


def test_publishes_meta_on_task_channel(redis_worker, redis_db):
    task_id = str(uuid.uuid4())
    pubsub = redis_db.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"celery-task-meta-{task_id}")
    try:
        publish_task_v2(redis_worker.queue, "tasks.echo", args=["ping"], task_id=task_id)
        deadline = time.monotonic() + RESULT_TIMEOUT
        message = None
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.2)
        assert message is not None, "nothing was published on the task's channel"
        published = json.loads(message["data"])
        assert published["status"] == "SUCCESS"
        assert published["result"] == "ping"
        assert published == redis_meta(redis_db, task_id)
    finally:
        pubsub.close()


def test_stored_success_is_not_overwritten(redis_worker, redis_db):
    task_id = str(uuid.uuid4())
    original = {"status": "SUCCESS", "result": "original", "traceback": None,
                "children": [], "date_done": "2026-01-01T00:00:00", "task_id": task_id}
    redis_db.setex(f"celery-task-meta-{task_id}", 600, json.dumps(original))
    publish_task_v2(redis_worker.queue, "tasks.fail", args=["late"], task_id=task_id)
    # The solo worker runs tasks in order, so the marker's result means the
    # first task has ended.
    marker_id = publish_task_v2(redis_worker.queue, "tasks.add", args=[0, 0])
    wait_for_redis_meta(redis_db, marker_id)
    assert redis_meta(redis_db, task_id) == original


def test_stored_failure_is_overwritten(redis_worker, redis_db):
    task_id = str(uuid.uuid4())
    earlier = {"status": "FAILURE", "result": None, "traceback": None,
               "children": [], "date_done": "2026-01-01T00:00:00", "task_id": task_id}
    redis_db.setex(f"celery-task-meta-{task_id}", 600, json.dumps(earlier))
    publish_task_v2(redis_worker.queue, "tasks.add", args=[20, 22], task_id=task_id)
    meta = wait_for_redis_meta(redis_db, task_id, states=("SUCCESS",))
    assert meta["result"] == 42


def test_ignore_result_stores_nothing(redis_app, redis_worker, redis_db):
    ignored = redis_app.send_task("tasks.add", args=[1, 1], queue=redis_worker.queue,
                                  ignore_result=True)
    marker = redis_app.send_task("tasks.add", args=[2, 2], queue=redis_worker.queue)
    assert marker.get(timeout=RESULT_TIMEOUT) == 4
    assert redis_db.get(f"celery-task-meta-{ignored.id}") is None


def test_result_expires_sets_ttl(worker_factory, redis_db):
    worker = worker_factory(env={"CELERY_RESULT_EXPIRES": "120"},
                            result_backend=REDIS_BACKEND)
    task_id = publish_task_v2(worker.queue, "tasks.add", args=[5, 5])
    wait_for_redis_meta(redis_db, task_id)
    assert 60 <= redis_db.ttl(f"celery-task-meta-{task_id}") <= 120


def test_result_expires_zero_keeps_key(worker_factory, redis_db):
    worker = worker_factory(env={"CELERY_RESULT_EXPIRES": "0"},
                            result_backend=REDIS_BACKEND)
    task_id = publish_task_v2(worker.queue, "tasks.add", args=[6, 6])
    wait_for_redis_meta(redis_db, task_id)
    key = f"celery-task-meta-{task_id}"
    try:
        assert redis_db.ttl(key) == -1
    finally:
        redis_db.delete(key)


def test_track_started_stores_started(worker_factory, redis_db):
    worker = worker_factory(env={"CELERY_TASK_TRACK_STARTED": "true"},
                            result_backend=REDIS_BACKEND)
    task_id = publish_task_v2(worker.queue, "tasks.sleep", args=[1.5])
    meta = wait_for_redis_meta(redis_db, task_id, states=("STARTED", "SUCCESS"))
    assert meta["status"] == "STARTED"
    assert set(meta["result"]) == {"pid", "hostname"}
    assert meta["result"]["hostname"] == worker.hostname
    assert meta["result"]["pid"] in worker.process_ids()
    assert meta["date_done"] is None
    assert wait_for_redis_meta(redis_db, task_id)["status"] == "SUCCESS"


def test_password_protected_server(worker_factory, private_redis):
    server = private_redis(PASSWORD_PORT, password="s3cret:with@odd/chars%")
    url = server.url().replace("s3cret:with@odd/chars%", "s3cret%3Awith%40odd%2Fchars%25")
    worker = worker_factory(result_backend=url)
    app = client_app(url)
    try:
        result = app.send_task("tasks.add", args=[3, 4], queue=worker.queue)
        assert result.get(timeout=RESULT_TIMEOUT) == 7
    finally:
        app.close()
    assert "s3cret" not in worker_output(worker)


@pytest.mark.c_only("checks the C worker's log lines")
def test_wrong_password_is_logged(worker_kind, broker, private_redis):
    server = private_redis(BAD_PASSWORD_PORT, password="right-pw-51")
    worker = make_worker(worker_kind, "redis-wrong-password",
                         result_backend=server.url(password="wrong-pw-73"))
    worker.start()
    try:
        worker.wait_ready()
        warnings = worker.warnings_since(0)
        assert any("authentication failed" in line for line in warnings), warnings
        assert "wrong-pw-73" not in worker_output(worker)
    finally:
        worker.stop()
        support.delete_queue(worker.queue)


def test_rediss_with_verified_certificate(worker_factory, private_redis):
    server = private_redis(TLS_PORT, tls=True)
    url = server.tls_url()
    worker = worker_factory(result_backend=url)
    app = client_app(url)
    try:
        result = app.send_task("tasks.echo", args=["over tls"], queue=worker.queue)
        assert result.get(timeout=RESULT_TIMEOUT) == "over tls"
    finally:
        app.close()


def test_rediss_without_verification(worker_factory, private_redis):
    server = private_redis(TLS_PORT, tls=True)
    url = server.url(query="?ssl_cert_reqs=none")
    worker = worker_factory(result_backend=url)
    app = client_app(url)
    try:
        result = app.send_task("tasks.add", args=[9, 1], queue=worker.queue)
        assert result.get(timeout=RESULT_TIMEOUT) == 10
    finally:
        app.close()


@pytest.mark.c_only("checks the C worker's log lines")
def test_rediss_untrusted_certificate_is_logged(worker_kind, broker, private_redis):
    server = private_redis(TLS_PORT, tls=True)
    worker = make_worker(worker_kind, "redis-untrusted",
                         result_backend=server.url(query="?ssl_cert_reqs=required"))
    worker.start()
    try:
        worker.wait_ready()
        warnings = worker.warnings_since(0)
        assert any("certificate" in line for line in warnings), worker.log_tail()
    finally:
        worker.stop()
        support.delete_queue(worker.queue)


@pytest.mark.c_only("checks the C worker's exit status and message")
@pytest.mark.parametrize("url, words", [
    ("redis://127.0.0.1:notaport/0", "port"),
    ("redis://127.0.0.1:6379/db", "database"),
    ("rediss://127.0.0.1:6380/0", "ssl_cert_reqs"),
    ("redis://127.0.0.1/0?ssl_cert_reqs=none", "rediss://"),
    ("mongodb://:hunter2@127.0.0.1/0", "not supported"),
])
def test_bad_url_fails_at_startup(worker_kind, broker, url, words):
    worker = make_worker(worker_kind, "redis-bad-url", result_backend=url)
    worker.start()
    try:
        status = worker.wait_exit(timeout=support.READY_TIMEOUT)
        assert status not in (None, 0), worker.log_tail()
        output = worker_output(worker)
        assert words in output, output
        assert "hunter2" not in output
    finally:
        worker.stop()
        support.delete_queue(worker.queue)


@pytest.mark.python_xfail(
    "Celery 5.2 GETs the stored meta before each write without retrying, so a "
    "task that ends while Redis is down fails to store with ConnectionError")
def test_results_survive_redis_restart(worker_kind, broker, private_redis):
    server = private_redis(RESTART_PORT)
    worker = make_worker(worker_kind, "redis-restart", result_backend=server.url(),
                         pool_args=["-c", "2", "-P", "prefork"])
    start_worker(worker)
    try:
        check_restart(worker, server)
    finally:
        stop_worker(worker)


def check_restart(worker, server):
    before = [publish_task_v2(worker.queue, "tasks.add", args=[i, 100])
              for i in range(RESTART_TASKS // 3)]
    direct = redis_client(server.url())
    for task_id in before:
        wait_for_redis_meta(direct, task_id)
    direct.close()
    offset = worker.log_offset()

    server.kill()
    during = [publish_task_v2(worker.queue, "tasks.sleep", args=[0.1])
              for _ in range(RESTART_TASKS // 3)]
    if worker.kind == "c":
        # The worker goes on running tasks while Redis is down.
        wait_for_log_count(worker, offset, "succeeded", len(during))
    time.sleep(OUTAGE_SECONDS)
    server.start()
    after = [publish_task_v2(worker.queue, "tasks.add", args=[i, 200])
             for i in range(RESTART_TASKS - len(before) - len(during))]

    app = client_app(server.url())
    try:
        results = app.ResultSet([app.AsyncResult(task_id)
                                 for task_id in before + during + after])
        values = results.get(timeout=RESULT_TIMEOUT * 2)
    finally:
        app.close()
    assert values[:len(before)] == [i + 100 for i in range(len(before))]
    assert values[len(before):len(before) + len(during)] == [None] * len(during)
    assert values[len(before) + len(during):] == [i + 200 for i in range(len(after))]
    if worker.kind == "c":
        logged = worker.log_since(offset)
        assert len(re.findall(r"WARNING.*Cannot store results in the Redis", logged)) == 1, logged
        assert len(re.findall(r"INFO.*Redis result backend.*answers again", logged)) == 1, logged


def wait_for_log_count(worker, offset, word, count, timeout=RESULT_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.log_since(offset).count(word) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} '{word}' lines within {timeout} s; "
                         f"log {worker.log_path}:\n{worker.log_tail()}")


@pytest.mark.c_only("checks the C worker's shutdown with results still kept")
def test_shutdown_with_redis_down_exits(worker_kind, broker, private_redis):
    server = private_redis(RESTART_PORT)
    worker = make_worker(worker_kind, "redis-down-exit", result_backend=server.url())
    start_worker(worker)
    try:
        server.kill()
        offset = worker.log_offset()
        publish_task_v2(worker.queue, "tasks.add", args=[1, 1])
        wait_for_log_count(worker, offset, "succeeded", 1)
        worker.send_signal(signal.SIGTERM)
        status = worker.wait_exit(timeout=support.STOP_TIMEOUT)
    finally:
        worker.stop()
        support.delete_queue(worker.queue)
    assert status == 0, worker.log_tail()
    assert "Exiting with 1 results that could not be sent" in worker.log_text()
