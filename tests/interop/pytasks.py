"""Python Celery twin of the C demo task module (examples/demo_tasks.c).

The interop suite runs against this module with ``CELERIAC_WORKER=python`` to
check that every test passes on a real Celery 5 worker. Each task must behave
like its C counterpart, except where Python's unbounded integers make a C
OverflowError impossible.

Broker and result backend come from the worker command line. Settings can
also come from ``CELERY_<NAME>`` environment variables (for example
``CELERY_TASK_ACKS_LATE=true``), as the C worker reads them. Python Celery
does not read those variables itself, so this module applies them.
"""

import ctypes
import os
import time

from celery import Celery
from celery.app.defaults import NAMESPACES, flatten

app = Celery("pytasks")

# Settings that the command line sets, so the environment must not change them.
COMMAND_LINE_SETTINGS = {"broker_url", "result_backend"}
ENV_SETTING_TYPES = {"bool", "int", "float", "string"}


def apply_env_settings(celery_app, environ):
    """Copy ``CELERY_<NAME>`` variables into the app configuration.

    Only scalar settings are read. The value is converted with the type that
    Celery's own option table gives the setting.
    """
    for name, option in flatten(NAMESPACES):
        if name in COMMAND_LINE_SETTINGS or option.type not in ENV_SETTING_TYPES:
            continue
        raw = environ.get("CELERY_" + name.upper())
        if raw is None:
            continue
        celery_app.conf[name] = option.to_python(raw)


apply_env_settings(app, os.environ)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def combine_numbers(x, y, operation, symbol):
    """Apply ``operation`` with the C module's rule: int for two ints, else float."""
    if not (is_number(x) and is_number(y)):
        raise TypeError(
            f"unsupported operand types for {symbol}: "
            f"'{type(x).__name__}' and '{type(y).__name__}'"
        )
    if is_int(x) and is_int(y):
        return operation(x, y)
    return operation(float(x), float(y))


@app.task(name="tasks.add")
def add(x, y):
    return combine_numbers(x, y, lambda a, b: a + b, "+")


@app.task(name="tasks.mul")
def mul(x, y):
    return combine_numbers(x, y, lambda a, b: a * b, "*")


@app.task(name="tasks.xsum")
def xsum(numbers):
    total = 0
    for number in numbers:
        total = combine_numbers(total, number, lambda a, b: a + b, "+")
    return total


@app.task(name="tasks.echo")
def echo(value):
    return value


@app.task(name="tasks.unencodable")
def unencodable():
    # A set is not JSON, so kombu's serializer raises EncodeError.
    return {"ok"}


@app.task(name="tasks.sleep")
def sleep(seconds):
    time.sleep(seconds)
    return None


@app.task(name="tasks.spin")
def spin(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass
    return None


@app.task(name="tasks.fail")
def fail(message):
    raise ValueError(message)


@app.task(name="tasks.flaky", bind=True, max_retries=5)
def flaky(self, n):
    """Retry until ``request.retries`` reaches ``n``, then return the count.

    Celery re-raises the ``exc`` given to ``retry()`` once ``max_retries`` is
    exceeded, so ``flaky(6)`` fails with ``RuntimeError("flaky retry 5")``.
    """
    retries = self.request.retries
    if retries < n:
        raise self.retry(exc=RuntimeError(f"flaky retry {retries}"), countdown=0.2)
    return retries


@app.task(name="tasks.crash")
def crash():
    """Read address 0, as the C task dereferences a null pointer."""
    ctypes.string_at(0)


@app.task(name="tasks.context", bind=True)
def context(self):
    request = self.request
    delivery_info = request.delivery_info or {}
    return {
        "id": request.id,
        "retries": request.retries,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "group": request.group,
        "hostname": request.hostname,
        "eta": request.eta,
        "expires": request.expires,
        "routing_key": delivery_info.get("routing_key"),
        "redelivered": bool(delivery_info.get("redelivered")),
    }
