"""Positional and keyword arguments, and JSON values that survive the round trip."""

import pytest
from celery.exceptions import TimeoutError as ResultTimeoutError

from conftest import run_task
from support import RESULT_TIMEOUT


def test_add_positional_args(run):
    assert run("tasks.add", 2, 3) == 5


def test_add_keyword_args(run):
    assert run("tasks.add", x=2, y=3) == 5


def test_add_mixed_args_and_kwargs(run):
    assert run("tasks.add", 2, y=40) == 42


def test_mul_negative_ints(run):
    assert run("tasks.mul", -7, 6) == -42


def test_xsum_list_argument(run):
    assert run("tasks.xsum", [1, 2, 3, 4]) == 10


def test_xsum_empty_list(run):
    assert run("tasks.xsum", []) == 0


def test_add_missing_argument_fails(client, worker):
    result = client.send_task("tasks.add", args=[1], queue=worker.queue)
    with pytest.raises(Exception) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert not isinstance(error.value, ResultTimeoutError), "worker sent no result"


def test_add_two_ints_returns_int(run):
    value = run("tasks.add", 2, 3)
    assert type(value) is int


def test_add_two_floats_returns_float(run):
    value = run("tasks.add", 2.5, 0.5)
    assert value == 3.0
    assert type(value) is float


def test_add_int_and_float_returns_float(run):
    value = run("tasks.add", 1, 2.0)
    assert value == 3.0
    assert type(value) is float


def test_mul_float_result(run):
    assert run("tasks.mul", 1.5, 4) == 6.0


def test_xsum_with_one_float_returns_float(run):
    value = run("tasks.xsum", [1, 2, 0.5])
    assert value == 3.5
    assert type(value) is float


def test_xsum_of_ints_returns_int(run):
    value = run("tasks.xsum", [10, 20, 30])
    assert value == 60
    assert type(value) is int


@pytest.mark.parametrize(
    "value",
    [0.1, -0.0, 1e-300, 1.7976931348623157e308, 123456789.12345679, 5e-324, 3.0],
    ids=["tenth", "negative-zero", "tiny", "max-double", "many-digits", "denormal", "integral"],
)
def test_echo_float_round_trip(run, value):
    returned = run("tasks.echo", value)
    assert type(returned) is float
    assert returned == value
    assert repr(returned) == repr(value)


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**31 - 1, -(2**31), 2**31, 2**63 - 1, -(2**63)],
    ids=["zero", "minus-one", "int32-max", "int32-min", "above-int32", "int64-max", "int64-min"],
)
def test_echo_int_round_trip(run, value):
    returned = run("tasks.echo", value)
    assert type(returned) is int
    assert returned == value


def test_add_int64_extremes(run):
    assert run("tasks.add", 2**63 - 2, 1) == 2**63 - 1
    assert run("tasks.add", -(2**63) + 1, -1) == -(2**63)


@pytest.mark.parametrize(
    "name, args",
    [("tasks.add", [2**62, 2**62]), ("tasks.mul", [2**32, 2**32]), ("tasks.add", [-(2**63), -1])],
    ids=["add", "mul", "add-negative"],
)
def test_int64_overflow(client, worker, worker_kind, name, args):
    result = client.send_task(name, args=args, queue=worker.queue)
    if worker_kind == "python":
        x, y = args
        expected = x + y if name == "tasks.add" else x * y
        assert result.get(timeout=RESULT_TIMEOUT) == expected
        return
    with pytest.raises(OverflowError):
        result.get(timeout=RESULT_TIMEOUT)


@pytest.mark.parametrize(
    "args",
    [[2**64, 1], [2**70, 1], [-(2**70), 1], [1, 10**30]],
    ids=["uint64-plus-one", "2-pow-70", "minus-2-pow-70", "10-pow-30"],
)
def test_add_integer_beyond_64_bits(client, worker, worker_kind, args):
    result = client.send_task("tasks.add", args=args, queue=worker.queue)
    if worker_kind == "python":
        assert result.get(timeout=RESULT_TIMEOUT) == args[0] + args[1]
        return
    with pytest.raises(Exception) as error:
        result.get(timeout=RESULT_TIMEOUT)
    assert not isinstance(error.value, ResultTimeoutError), "worker sent no result"


def test_worker_runs_tasks_after_big_integer(client, worker, run):
    failed = client.send_task("tasks.echo", args=[2**80], queue=worker.queue)
    try:
        failed.get(timeout=RESULT_TIMEOUT)
    except Exception:
        pass
    assert run("tasks.add", 1, 1) == 2


NESTED_VALUE = {
    "null": None,
    "true": True,
    "false": False,
    "int": 7,
    "float": 2.5,
    "string": "text",
    "empty_list": [],
    "empty_dict": {},
    "list": [1, "two", 3.0, None, [True, False], {"k": "v"}],
    "dict": {"a": {"b": {"c": [1, 2, {"d": None}]}}},
    "escapes": "quote \" backslash \\ slash / tab \t newline \n",
}


def test_echo_nested_json(run):
    assert run("tasks.echo", NESTED_VALUE) == NESTED_VALUE


def test_echo_nested_json_as_kwarg(run):
    assert run("tasks.echo", value=NESTED_VALUE) == NESTED_VALUE


def test_echo_deep_nesting(run):
    value = "leaf"
    for depth in range(32):
        value = [value] if depth % 2 else {"level": value}
    assert run("tasks.echo", value) == value


def test_echo_two_megabyte_string(client, worker):
    value = ("0123456789abcdef" * 131072)[: 2 * 1024 * 1024]
    assert len(value) == 2 * 1024 * 1024
    returned = run_task(client, worker, "tasks.echo", args=[value], timeout=30)
    assert len(returned) == len(value)
    assert returned == value


# RabbitMQ's default frame_max; a body frame carries 8 bytes less.
FRAME_BODY_MAX = 131072 - 8
# celeriac's compact rpc body around a result: {"task_id":"<36>",...,"result":
# then the result, then ,"traceback":null,"children":[]}.
RPC_BODY_AROUND = len('{"task_id":"","status":"SUCCESS","result":') + 36 + len(
    ',"traceback":null,"children":[]}'
)
# Result bodies of these lengths end right at, just before or just after a
# body frame's end, and at the size up to which results wait in the write
# buffer (16 KiB).
BOUNDARY_BODY_LENGTHS = [16384, 16385, FRAME_BODY_MAX - 1, FRAME_BODY_MAX, FRAME_BODY_MAX + 1,
                         2 * FRAME_BODY_MAX, 3 * FRAME_BODY_MAX + 1]


@pytest.mark.parametrize("pool", ["prefork", "threads", "solo"])
def test_echo_results_at_frame_boundaries(client, worker_factory, pool):
    worker = worker_factory(pool_args=["-c", "2", "-P", pool])
    for body_length in BOUNDARY_BODY_LENGTHS:
        # The result is a JSON string: the characters and two quotes.
        value = "x" * (body_length - RPC_BODY_AROUND - 2)
        returned = run_task(client, worker, "tasks.echo", args=[value], timeout=30)
        assert len(returned) == len(value), f"body of {body_length} bytes"
        assert returned == value, f"body of {body_length} bytes"


def test_echo_result_over_many_frame_batches(client, worker):
    # 40 body frames: the worker writes a body in sendmsg calls of 32.
    value = "y" * (40 * FRAME_BODY_MAX)
    returned = run_task(client, worker, "tasks.echo", args=[value], timeout=60)
    assert len(returned) == len(value)
    assert returned == value


def test_echo_two_megabyte_list(client, worker):
    value = list(range(300000))
    returned = run_task(client, worker, "tasks.echo", args=[value], timeout=30)
    assert returned == value


def test_echo_null_and_booleans(run):
    assert run("tasks.echo", None) is None
    assert run("tasks.echo", True) is True
    assert run("tasks.echo", False) is False
