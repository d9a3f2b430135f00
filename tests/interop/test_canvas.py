"""Canvas: chains, link and link_error callbacks, groups and chords.

The worker runs each follow-up itself. It sends the link callbacks and the
next chain task as new task messages, stores a failure under the ids of the
chain tasks that will not run, and on Redis counts the chord members and
sends the chord body. Each test runs once per result backend, except the
chord tests, which need Redis because the Celery client rejects chords on
rpc://.

A follow-up goes to the queue named in its signature, and chain options
reach only the first task, so every signature here names the test worker's
queue. test_follow_up_without_queue checks the default queue instead.

A Celery 5.2 client registers the members of a GroupResult found in a
result's ``children`` as pending results (ResultSet.__init__ in
celery/result.py builds a vine barrier, which calls AsyncResult.then). A new
AsyncResult for one of those ids then never receives its value, so the
tests fetch callback and errback results before the result that lists them.
"""

import uuid
from datetime import datetime, timezone

import pytest
from celery import Celery, chain, chord, group
from celery.exceptions import ChordError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult, GroupResult

import support
from conftest import make_worker, stop_worker
from support import RESULT_TIMEOUT

BACKENDS = {"rpc": support.RESULT_BACKEND, "redis": support.REDIS_BACKEND}
MIXED_GROUP_SIZE = 10
# Seconds after which a result that should not come is taken as absent.
QUIET_SECONDS = 1.0


class Canvas:
    """A client app and the worker that its signatures are routed to."""

    def __init__(self, backend, app, worker):
        self.backend = backend
        self.app = app
        self.worker = worker

    def signature(self, name, *args, **options):
        """Return a signature of task ``name`` routed to the worker's queue."""
        return self.app.signature(name, args=args, queue=self.worker.queue, **options)

    def immutable(self, name, *args, **options):
        """Return an immutable signature (``.si()``), which gets no parent value."""
        return self.signature(name, *args, immutable=True, **options)

    def frozen(self, name, *args, **options):
        """Return ``(signature, task_id)`` with the task id fixed before sending.

        freeze() also sets ``reply_to`` to the client's reply queue, so the
        follow-up's result reaches this client on rpc://.
        """
        signature = self.signature(name, *args, **options)
        return signature, signature.freeze().id

    def frozen_immutable(self, name, *args, **options):
        return self.frozen(name, *args, immutable=True, **options)

    def result(self, task_id):
        return self.app.AsyncResult(task_id)

    def get(self, task_id):
        """Return the result of ``task_id``, waiting at most RESULT_TIMEOUT seconds."""
        return self.result(task_id).get(timeout=RESULT_TIMEOUT)


def client_app(backend):
    app = Celery(f"interop-canvas-{backend}", broker=support.BROKER_URL,
                 backend=BACKENDS[backend])
    app.conf.broker_connection_retry = False
    return app


def launch_worker(kind, tag, backend, app, queue=None, env=None):
    """Start a ``kind`` worker that stores results on ``backend`` and return it.

    conftest.start_worker reads its warm-up results from an rpc reply queue,
    which a worker on Redis never writes to. The warm-up tasks here go
    through ``app`` on the worker's own backend instead. If the worker fails
    to start, its queue is deleted only when this call named it, because a
    ``queue`` passed in belongs to the caller.
    """
    process = make_worker(kind, tag, env=env, result_backend=BACKENDS[backend])
    if queue is not None:
        process.queue = queue
    process.start()
    try:
        process.wait_ready()
        for _ in range(2):
            app.send_task("tasks.add", args=(1, 1), queue=process.queue).get(
                timeout=support.READY_TIMEOUT)
    except RuntimeError as error:
        # wait_ready's message already contains the log tail.
        stop_failed_worker(process, delete_queue=queue is None)
        pytest.fail(f"{kind} worker on {backend}: {error}", pytrace=False)
    except CeleryTimeoutError:
        stop_failed_worker(process, delete_queue=queue is None)
        pytest.fail(
            f"{kind} worker on {backend} did not run its warm-up task within "
            f"{support.READY_TIMEOUT} s; log {process.log_path}:\n{process.log_tail()}",
            pytrace=False,
        )
    except BaseException:
        # A broker or Redis error while warming up must not leave it running.
        process.stop()
        raise
    return process


def stop_failed_worker(process, delete_queue):
    process.stop()
    if delete_queue:
        support.delete_queue(process.queue)


def stop_workers(processes):
    """Stop ``processes``, delete their queues and fail if a C worker exited badly."""
    failures = []
    for process in processes:
        try:
            stop_worker(process, delete_queue=False)
        except AssertionError as error:
            failures.append(str(error))
    for queue in {process.queue for process in processes}:
        support.delete_queue(queue)
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def canvas_apps(broker):
    """Return ``get(backend)``: one client app per backend, closed with the module."""
    apps = {}

    def get(backend):
        if backend not in apps:
            apps[backend] = client_app(backend)
        return apps[backend]

    yield get
    for app in apps.values():
        app.close()


@pytest.fixture(scope="module")
def canvas_workers(worker_kind, canvas_apps):
    """Return ``get(backend)``: one worker per backend, started on first use."""
    workers = {}

    def get(backend):
        if backend not in workers:
            workers[backend] = launch_worker(worker_kind, f"test_canvas.{backend}",
                                             backend, canvas_apps(backend))
        return workers[backend]

    yield get
    stop_workers(list(workers.values()))


@pytest.fixture(params=sorted(BACKENDS))
def canvas(request, canvas_apps, canvas_workers):
    """A Canvas on each result backend in turn."""
    backend = request.param
    return Canvas(backend, canvas_apps(backend), canvas_workers(backend))


@pytest.fixture
def redis_canvas(canvas_apps, canvas_workers):
    """A Canvas on the Redis backend only."""
    return Canvas("redis", canvas_apps("redis"), canvas_workers("redis"))


@pytest.fixture
def launch(request, canvas_apps):
    """Return ``launch(kind, backend, queue=None, env=None)`` for workers of one test.

    At teardown it stops the workers and deletes their queues, including a
    ``queue`` passed in for a worker that failed to start.
    """
    started = []
    named_queues = set()

    def start(kind, backend, queue=None, env=None):
        if queue is not None:
            named_queues.add(queue)
        process = launch_worker(kind, request.node.name, backend, canvas_apps(backend),
                                queue=queue, env=env)
        started.append(process)
        return process

    yield start
    try:
        stop_workers(started)
    finally:
        for queue in named_queues:
            support.delete_queue(queue)


def result_ids(results):
    return [result.id for result in results]


def assert_never_ran(canvas, task_id):
    """Fail if the worker stored a result for ``task_id``.

    The solo worker runs its queue in order, so once a task sent now has
    finished, every follow-up sent earlier has finished too. On rpc:// a
    result that the client has already read sits in its buffer, where only
    get() looks, so the check waits QUIET_SECONDS for one.
    """
    assert canvas.signature("tasks.add", 0, 0).apply_async().get(timeout=RESULT_TIMEOUT) == 0
    with pytest.raises(CeleryTimeoutError):
        canvas.result(task_id).get(timeout=QUIET_SECONDS)


# ---------------------------------------------------------------------------
# Chains
# ---------------------------------------------------------------------------


def test_chain_of_three(canvas):
    workflow = chain(
        canvas.signature("tasks.add", 2, 2),
        canvas.signature("tasks.add", 4),
        canvas.signature("tasks.mul", 8),
    )
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == 64
    assert result.parent.get(timeout=RESULT_TIMEOUT) == 8
    assert result.parent.parent.get(timeout=RESULT_TIMEOUT) == 4
    assert result.parent.parent.parent is None


def test_chain_immutable_member(canvas):
    workflow = chain(
        canvas.signature("tasks.add", 1, 1),
        canvas.immutable("tasks.add", 10, 10),
        canvas.signature("tasks.mul", 3),
    )
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == 60
    assert result.parent.get(timeout=RESULT_TIMEOUT) == 20
    assert result.parent.parent.get(timeout=RESULT_TIMEOUT) == 2


def test_chain_first_task_fails(canvas):
    workflow = chain(
        canvas.signature("tasks.fail", "chain broke"),
        canvas.signature("tasks.add", 1),
        canvas.signature("tasks.mul", 2),
    )
    result = workflow.apply_async()
    middle = result.parent
    first = middle.parent

    # follow_parents=False makes get() wait for the failure stored under
    # each id. Without it, get() raises the first task's error as soon as
    # the client has that result.
    with pytest.raises(ValueError) as final_error:
        result.get(timeout=RESULT_TIMEOUT, follow_parents=False)
    assert type(final_error.value) is ValueError
    assert final_error.value.args == ("chain broke",)

    with pytest.raises(ValueError) as middle_error:
        middle.get(timeout=RESULT_TIMEOUT, follow_parents=False)
    assert type(middle_error.value) is ValueError
    assert middle_error.value.args == ("chain broke",)

    with pytest.raises(ValueError) as first_error:
        first.get(timeout=RESULT_TIMEOUT)
    assert first_error.value.args == ("chain broke",)

    # The tasks that never ran carry the first task's traceback.
    assert result.traceback == first.traceback
    assert middle.traceback == first.traceback


def test_chain_failed_task_has_no_children(canvas):
    workflow = chain(
        canvas.signature("tasks.fail", "no next task"),
        canvas.signature("tasks.add", 1),
    )
    result = workflow.apply_async()
    with pytest.raises(ValueError):
        result.get(timeout=RESULT_TIMEOUT, follow_parents=False)
    first = result.parent
    with pytest.raises(ValueError):
        first.get(timeout=RESULT_TIMEOUT)
    assert first.children == []


def test_chain_children_are_next_task(canvas):
    workflow = chain(canvas.signature("tasks.add", 1, 2), canvas.signature("tasks.add", 3))
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == 6
    first = result.parent
    assert first.get(timeout=RESULT_TIMEOUT) == 3
    assert result_ids(first.children) == [result.id]
    assert isinstance(first.children[0], AsyncResult)
    assert result.children == []


def test_chain_context_ids(canvas):
    workflow = chain(
        canvas.immutable("tasks.context"),
        canvas.immutable("tasks.context"),
        canvas.immutable("tasks.context"),
    )
    result = workflow.apply_async()
    third = result.get(timeout=RESULT_TIMEOUT)
    second = result.parent.get(timeout=RESULT_TIMEOUT)
    first = result.parent.parent.get(timeout=RESULT_TIMEOUT)

    assert first["id"] == result.parent.parent.id
    assert first["parent_id"] is None
    assert first["root_id"] == first["id"]

    assert second["id"] == result.parent.id
    assert second["parent_id"] == first["id"]
    assert second["root_id"] == first["id"]

    assert third["id"] == result.id
    assert third["parent_id"] == second["id"]
    assert third["root_id"] == first["id"]


# ---------------------------------------------------------------------------
# link and link_error
# ---------------------------------------------------------------------------


def test_link_gets_parent_value(canvas):
    callback, callback_id = canvas.frozen("tasks.add", 10)
    parent = canvas.signature("tasks.add", 2, 3).apply_async(link=callback)
    assert parent.get(timeout=RESULT_TIMEOUT) == 5
    assert canvas.get(callback_id) == 15


def test_link_task_id_option(redis_canvas):
    # Only Redis: without freeze() the callback carries no reply_to, so on
    # rpc:// the worker has no reply queue of this client to send it to.
    callback_id = str(uuid.uuid4())
    callback = redis_canvas.signature("tasks.mul", 7, task_id=callback_id)
    parent = redis_canvas.signature("tasks.add", 2, 4).apply_async(link=callback)
    assert parent.get(timeout=RESULT_TIMEOUT) == 6
    assert redis_canvas.get(callback_id) == 42


def test_link_immutable_callback(canvas):
    callback, callback_id = canvas.frozen_immutable("tasks.mul", 6, 7)
    parent = canvas.signature("tasks.add", 1, 1).apply_async(link=callback)
    assert parent.get(timeout=RESULT_TIMEOUT) == 2
    assert canvas.get(callback_id) == 42


def test_two_links_both_run(canvas):
    first, first_id = canvas.frozen("tasks.add", 100)
    second, second_id = canvas.frozen("tasks.mul", 100)
    parent = canvas.signature("tasks.add", 1, 2).apply_async(link=[first, second])
    assert canvas.get(first_id) == 103
    assert canvas.get(second_id) == 300
    assert parent.get(timeout=RESULT_TIMEOUT) == 3


def test_link_children_is_callback(canvas):
    callback, callback_id = canvas.frozen("tasks.add", 1)
    parent = canvas.signature("tasks.add", 1, 1).apply_async(link=callback)
    assert parent.get(timeout=RESULT_TIMEOUT) == 2
    assert result_ids(parent.children) == [callback_id]
    assert isinstance(parent.children[0], AsyncResult)
    assert canvas.get(callback_id) == 3


def test_two_links_form_one_group(canvas):
    # Several callbacks go out as one new group, which the parent's
    # children list as a single GroupResult.
    first, first_id = canvas.frozen_immutable("tasks.context")
    second, second_id = canvas.frozen_immutable("tasks.context")
    parent = canvas.signature("tasks.add", 1, 1).apply_async(link=[first, second])
    first_context = canvas.get(first_id)
    second_context = canvas.get(second_id)
    assert parent.get(timeout=RESULT_TIMEOUT) == 2

    assert len(parent.children) == 1
    callbacks = parent.children[0]
    assert isinstance(callbacks, GroupResult)
    assert result_ids(callbacks.results) == [first_id, second_id]
    assert first_context["group"] == callbacks.id
    assert second_context["group"] == callbacks.id
    for context in (first_context, second_context):
        assert context["parent_id"] == parent.id
        assert context["root_id"] == parent.id


def test_link_context_ids(canvas):
    callback, callback_id = canvas.frozen_immutable("tasks.context")
    parent = canvas.signature("tasks.add", 1, 1).apply_async(link=callback)
    assert parent.get(timeout=RESULT_TIMEOUT) == 2
    context = canvas.get(callback_id)
    assert context["id"] == callback_id
    assert context["parent_id"] == parent.id
    assert context["root_id"] == parent.id
    assert context["group"] is None


def test_link_in_chain_keeps_root_id(canvas):
    callback, callback_id = canvas.frozen_immutable("tasks.context")
    workflow = chain(
        canvas.signature("tasks.add", 1, 1),
        canvas.signature("tasks.add", 1, link=callback),
    )
    result = workflow.apply_async()
    context = canvas.get(callback_id)
    assert result.get(timeout=RESULT_TIMEOUT) == 3
    assert context["parent_id"] == result.id
    assert context["root_id"] == result.parent.id


def test_link_error_gets_failed_id(canvas):
    errback, errback_id = canvas.frozen("tasks.echo")
    parent = canvas.signature("tasks.fail", "errback please").apply_async(link_error=errback)
    assert canvas.get(errback_id) == parent.id
    with pytest.raises(ValueError) as error:
        parent.get(timeout=RESULT_TIMEOUT)
    assert error.value.args == ("errback please",)
    # Errbacks are sent after the failure is stored, so the stored failure
    # lists no children.
    assert parent.children == []


def test_link_error_context_ids(canvas):
    errback, errback_id = canvas.frozen_immutable("tasks.context")
    parent = canvas.signature("tasks.fail", "context please").apply_async(link_error=errback)
    context = canvas.get(errback_id)
    with pytest.raises(ValueError):
        parent.get(timeout=RESULT_TIMEOUT)
    assert context["id"] == errback_id
    assert context["parent_id"] == parent.id
    assert context["root_id"] == parent.id
    # Errbacks go out as a new group, even a single one.
    assert context["group"] is not None


def test_link_error_skipped_on_success(canvas):
    errback, errback_id = canvas.frozen("tasks.echo")
    callback, callback_id = canvas.frozen("tasks.echo")
    parent = canvas.signature("tasks.add", 2, 2).apply_async(link=callback, link_error=errback)
    assert parent.get(timeout=RESULT_TIMEOUT) == 4
    assert canvas.get(callback_id) == 4
    assert_never_ran(canvas, errback_id)


def test_link_skipped_on_failure(canvas):
    callback, callback_id = canvas.frozen("tasks.echo")
    errback, errback_id = canvas.frozen("tasks.echo")
    parent = canvas.signature("tasks.fail", "no callback").apply_async(
        link=callback, link_error=errback)
    assert canvas.get(errback_id) == parent.id
    with pytest.raises(ValueError):
        parent.get(timeout=RESULT_TIMEOUT)
    assert_never_ran(canvas, callback_id)


def test_follow_up_without_queue(canvas, launch, worker_kind):
    # A signature without a queue goes to task_default_queue of the worker
    # that sends it, so the worker consumes its own default queue here.
    queue = support.unique_name("interop.test_canvas.default")
    worker = launch(worker_kind, canvas.backend, queue=queue,
                    env={"CELERY_TASK_DEFAULT_QUEUE": queue})
    app = canvas.app

    callback = app.signature("tasks.context", immutable=True)
    callback_id = callback.freeze().id
    parent = app.signature("tasks.add", args=(1, 1), queue=worker.queue).apply_async(
        link=callback)
    context = canvas.get(callback_id)
    assert parent.get(timeout=RESULT_TIMEOUT) == 2
    assert context["routing_key"] == queue

    workflow = chain(
        app.signature("tasks.add", args=(2, 2), queue=worker.queue),
        app.signature("tasks.mul", args=(10,)),
        app.signature("tasks.context", immutable=True),
    )
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT)["routing_key"] == queue
    assert result.parent.get(timeout=RESULT_TIMEOUT) == 40


# ---------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------


def test_group_of_ten_in_order(canvas):
    workflow = group(canvas.signature("tasks.add", number, number) for number in range(10))
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == [2 * number for number in range(10)]


def test_group_context_ids(canvas):
    workflow = group(canvas.immutable("tasks.context") for _ in range(3))
    result = workflow.apply_async()
    contexts = result.get(timeout=RESULT_TIMEOUT)
    assert [context["id"] for context in contexts] == result_ids(result.results)
    for context in contexts:
        assert context["group"] == result.id
        assert context["root_id"] == context["id"]
        assert context["parent_id"] is None


def test_group_of_chains(canvas):
    workflow = group(
        chain(canvas.signature("tasks.add", 1, 1), canvas.signature("tasks.mul", 10)),
        chain(canvas.signature("tasks.add", 2, 2), canvas.signature("tasks.mul", 100)),
    )
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == [20, 400]


def test_chain_ending_in_group(canvas):
    workflow = chain(
        canvas.signature("tasks.add", 1, 1),
        group(canvas.signature("tasks.mul", 10), canvas.signature("tasks.mul", 100)),
    )
    result = workflow.apply_async()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=RESULT_TIMEOUT) == [20, 200]


# ---------------------------------------------------------------------------
# Chords (Redis only)
# ---------------------------------------------------------------------------


def test_chord_of_five(redis_canvas):
    header = [redis_canvas.signature("tasks.add", number, number) for number in range(5)]
    result = chord(header)(redis_canvas.signature("tasks.xsum"))
    assert result.get(timeout=RESULT_TIMEOUT) == 20
    assert result.parent.get(timeout=RESULT_TIMEOUT) == [0, 2, 4, 6, 8]


def test_chord_member_fails(redis_canvas):
    errback, errback_id = redis_canvas.frozen("tasks.echo")
    body = redis_canvas.signature("tasks.xsum")
    body.link_error(errback)
    failing, failing_id = redis_canvas.frozen("tasks.fail", "member broke")
    header = [
        redis_canvas.signature("tasks.add", 1, 1),
        failing,
        redis_canvas.signature("tasks.add", 2, 2),
    ]
    body_result = chord(header)(body)

    # The body's errback gets the body's id, not the failed member's.
    assert redis_canvas.get(errback_id) == body_result.id

    # The body's parent is the header, so without follow_parents=False
    # get() raises the failed member's ValueError instead of the ChordError
    # stored for the body.
    with pytest.raises(ChordError) as error:
        body_result.get(timeout=RESULT_TIMEOUT, follow_parents=False)
    assert str(error.value) == f"Dependency {failing_id} raised ValueError('member broke')"


def test_chain_group_then_task(redis_canvas):
    # A group followed by a task in a chain becomes a chord.
    workflow = chain(
        redis_canvas.signature("tasks.add", 1, 1),
        group(redis_canvas.signature("tasks.mul", 10), redis_canvas.signature("tasks.mul", 100)),
        redis_canvas.signature("tasks.xsum"),
    )
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == 220


# ---------------------------------------------------------------------------
# C and Python workers on one queue
# ---------------------------------------------------------------------------


def start_mixed_workers(launch, canvas_apps, backend):
    """Start a Python twin and a C worker on one queue; return ``(canvas, workers)``.

    Both kinds start regardless of CELERIAC_WORKER, so each of them sends
    follow-ups that the other one may run.
    """
    python_worker = launch("python", backend)
    c_worker = launch("c", backend, queue=python_worker.queue)
    canvas = Canvas(backend, canvas_apps(backend), python_worker)
    return canvas, (python_worker, c_worker)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_mixed_workers_chain(launch, canvas_apps, backend):
    canvas, workers = start_mixed_workers(launch, canvas_apps, backend)

    workflow = chain(
        canvas.signature("tasks.add", 1, 1),
        canvas.signature("tasks.mul", 3),
        canvas.signature("tasks.add", 4),
        canvas.signature("tasks.mul", 5),
        canvas.signature("tasks.add", 6),
    )
    result = workflow.apply_async()
    assert result.get(timeout=RESULT_TIMEOUT) == 56
    assert result.parent.get(timeout=RESULT_TIMEOUT) == 50

    # RabbitMQ hands the group's messages to both consumers in turn, which
    # shows that both workers took part.
    contexts = group(
        canvas.immutable("tasks.context") for _ in range(MIXED_GROUP_SIZE)
    ).apply_async().get(timeout=RESULT_TIMEOUT)
    hostnames = {context["hostname"] for context in contexts}
    assert hostnames == {worker.hostname for worker in workers}


def test_mixed_workers_chord(launch, canvas_apps):
    canvas, _ = start_mixed_workers(launch, canvas_apps, "redis")
    header = [canvas.signature("tasks.add", number, 1) for number in range(MIXED_GROUP_SIZE)]
    result = chord(header)(canvas.signature("tasks.xsum"))
    assert result.get(timeout=RESULT_TIMEOUT) == sum(range(1, MIXED_GROUP_SIZE + 1))


# ---------------------------------------------------------------------------
# Follow-ups the broker would refuse
# ---------------------------------------------------------------------------


@pytest.mark.c_only("Python Celery 5.2 keeps publishing on the channel the broker closed")
def test_link_to_missing_exchange_fails_parent(canvas):
    callback = canvas.immutable("tasks.echo", "never").set(
        exchange=support.unique_name("interop.missing"), routing_key="nowhere")
    parent = canvas.signature("tasks.add", 1, 2).apply_async(link=callback)
    with pytest.raises(ValueError, match="not found"):
        parent.get(timeout=RESULT_TIMEOUT)
    after = canvas.signature("tasks.add", 2, 2).apply_async()
    assert after.get(timeout=RESULT_TIMEOUT) == 4, "worker stopped consuming"


@pytest.mark.python_xfail(
    reason="kombu sends the far expiry as an AMQP expiration that RabbitMQ "
    "refuses, so the callback is lost")
def test_link_with_far_expires_runs(canvas):
    far = datetime(2100, 1, 1, tzinfo=timezone.utc)
    callback, callback_id = canvas.frozen_immutable("tasks.echo", "late", expires=far)
    parent = canvas.signature("tasks.add", 1, 2).apply_async(link=callback)
    assert parent.get(timeout=RESULT_TIMEOUT) == 3
    assert canvas.get(callback_id) == "late"


@pytest.mark.c_only("checks the C worker's error for an eta past year 9999")
def test_link_with_huge_countdown_fails_parent(canvas):
    callback = canvas.immutable("tasks.echo", "never", countdown=1e300)
    parent = canvas.signature("tasks.add", 1, 2).apply_async(link=callback)
    with pytest.raises(ValueError, match="countdown or eta"):
        parent.get(timeout=RESULT_TIMEOUT)
