/*
 * The demo task module: the same tasks as tests/interop/pytasks.py, so a C
 * worker and a Python worker can be compared on equal terms.
 *
 * Build: cc -shared -fPIC -Iinclude -o demo_tasks.so demo_tasks.c
 * Run:   celeriac worker -A ./demo_tasks.so --result-backend rpc://
 */
#include <celeriac/celeriac.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>

int celeriac_module_init(cel_app_t *app);

/* Returns argument `index` or keyword `name` (borrowed), or NULL. */
static json_t *argument(json_t *args, json_t *kwargs, size_t index,
                        const char *name)
{
    json_t *value = json_array_get(args, index);
    return value ? value : json_object_get(kwargs, name);
}

static json_t *missing(cel_context_t *ctx, const char *name)
{
    return cel_fail(ctx, "TypeError", "builtins",
                    "%s() missing required argument '%s'",
                    cel_context_task_name(ctx), name);
}

/* Fails the task with Python's TypeError when more than `max` positional
 * arguments came, as calling the Python twin would. */
static bool too_many(cel_context_t *ctx, json_t *args, size_t max)
{
    size_t given = json_array_size(args);
    if (given <= max)
        return false;
    cel_fail(ctx, "TypeError", "builtins",
             "%s() takes %zu positional argument%s but %zu %s given",
             cel_context_task_name(ctx), max, max == 1 ? "" : "s", given,
             given == 1 ? "was" : "were");
    return true;
}

/* JSON has no inf or nan, so a float result out of range fails instead of
 * reaching the client as null. */
static json_t *real_result(cel_context_t *ctx, double value)
{
    if (!isfinite(value))
        return cel_fail(ctx, "OverflowError", "builtins",
                        "%s() result is not a finite number, which JSON "
                        "cannot carry",
                        cel_context_task_name(ctx));
    return json_real(value);
}

static json_t *not_numbers(cel_context_t *ctx, const char *op)
{
    return cel_fail(ctx, "TypeError", "builtins",
                    "unsupported operand types for %s: expected numbers", op);
}

static json_t *add(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    if (too_many(ctx, args, 2))
        return NULL;
    json_t *x = argument(args, kwargs, 0, "x");
    json_t *y = argument(args, kwargs, 1, "y");
    if (x == NULL || y == NULL)
        return missing(ctx, x == NULL ? "x" : "y");
    if (json_is_integer(x) && json_is_integer(y)) {
        int64_t sum;
        if (__builtin_add_overflow((int64_t)json_integer_value(x),
                                   (int64_t)json_integer_value(y), &sum))
            return cel_fail(ctx, "OverflowError", "builtins",
                            "integer addition overflows 64 bits");
        return json_integer(sum);
    }
    if (!json_is_number(x) || !json_is_number(y))
        return not_numbers(ctx, "+");
    return real_result(ctx, json_number_value(x) + json_number_value(y));
}

static json_t *mul(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    if (too_many(ctx, args, 2))
        return NULL;
    json_t *x = argument(args, kwargs, 0, "x");
    json_t *y = argument(args, kwargs, 1, "y");
    if (x == NULL || y == NULL)
        return missing(ctx, x == NULL ? "x" : "y");
    if (json_is_integer(x) && json_is_integer(y)) {
        int64_t product;
        if (__builtin_mul_overflow((int64_t)json_integer_value(x),
                                   (int64_t)json_integer_value(y), &product))
            return cel_fail(ctx, "OverflowError", "builtins",
                            "integer multiplication overflows 64 bits");
        return json_integer(product);
    }
    if (!json_is_number(x) || !json_is_number(y))
        return not_numbers(ctx, "*");
    return real_result(ctx, json_number_value(x) * json_number_value(y));
}

static json_t *xsum(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    if (too_many(ctx, args, 1))
        return NULL;
    json_t *numbers = argument(args, kwargs, 0, "numbers");
    if (numbers == NULL)
        return missing(ctx, "numbers");
    if (!json_is_array(numbers))
        return cel_fail(ctx, "TypeError", "builtins",
                        "xsum() expects a list of numbers");
    int64_t int_total = 0;
    double real_total = 0;
    bool any_real = false;
    size_t index;
    json_t *item;
    json_array_foreach(numbers, index, item) {
        if (json_is_integer(item) && !any_real) {
            if (__builtin_add_overflow(
                    int_total, (int64_t)json_integer_value(item), &int_total))
                return cel_fail(ctx, "OverflowError", "builtins",
                                "integer sum overflows 64 bits");
        } else if (json_is_number(item)) {
            if (!any_real)
                real_total = (double)int_total;
            any_real = true;
            real_total += json_number_value(item);
        } else {
            return cel_fail(ctx, "TypeError", "builtins",
                            "xsum() item %zu is not a number", index);
        }
    }
    return any_real ? real_result(ctx, real_total) : json_integer(int_total);
}

static json_t *echo(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    if (too_many(ctx, args, 1))
        return NULL;
    json_t *value = argument(args, kwargs, 0, "value");
    if (value == NULL)
        return missing(ctx, "value");
    return json_incref(value);
}

static double seconds_argument(json_t *args, json_t *kwargs)
{
    json_t *value = argument(args, kwargs, 0, "seconds");
    return json_is_number(value) ? json_number_value(value) : -1;
}

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static json_t *sleep_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    double seconds = seconds_argument(args, kwargs);
    if (seconds < 0 || !isfinite(seconds))
        return cel_fail(ctx, "ValueError", "builtins",
                        "sleep() expects a non-negative number of seconds");
    /* Sleeps in slices so a soft time limit ends the task, as Celery's
     * SoftTimeLimitExceeded interrupts time.sleep in a Python task. */
    double end = monotonic_seconds() + seconds;
    for (;;) {
        if (cel_context_soft_time_limit_exceeded(ctx))
            /* A NULL message gives exc_message [], so the client raises
             * SoftTimeLimitExceeded() as Celery's worker sends it. */
            return cel_fail(ctx, "SoftTimeLimitExceeded", "billiard.exceptions",
                            NULL);
        double left = end - monotonic_seconds();
        if (left <= 0)
            break;
        double slice = left < 0.05 ? left : 0.05;
        struct timespec nap = {0, (long)(slice * 1e9)};
        nanosleep(&nap, NULL);
    }
    return json_null();
}

static json_t *spin(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    double seconds = seconds_argument(args, kwargs);
    if (seconds < 0 || !isfinite(seconds))
        return cel_fail(ctx, "ValueError", "builtins",
                        "spin() expects a non-negative number of seconds");
    double end = monotonic_seconds() + seconds;
    volatile uint64_t counter = 0;
    while (monotonic_seconds() < end)
        for (int i = 0; i < 10000; i++)
            counter++;
    return json_null();
}

static json_t *fail_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    if (too_many(ctx, args, 1))
        return NULL;
    json_t *message = argument(args, kwargs, 0, "message");
    if (message == NULL)
        return missing(ctx, "message");
    if (json_is_string(message))
        return cel_fail(ctx, "ValueError", "builtins", "%s",
                        json_string_value(message));
    /* Python's ValueError(3) carries the value; its text is the repr. */
    char *text = json_dumps(message, JSON_ENCODE_ANY | JSON_COMPACT);
    cel_fail(ctx, "ValueError", "builtins", "%s", text ? text : "");
    free(text);
    return NULL;
}

static json_t *flaky(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    if (too_many(ctx, args, 1))
        return NULL;
    json_t *n = argument(args, kwargs, 0, "n");
    if (!json_is_integer(n))
        return cel_fail(ctx, "TypeError", "builtins",
                        "flaky() expects an integer n");
    int retries = cel_context_retries(ctx);
    if (retries < json_integer_value(n))
        return cel_retry(ctx, 0.2, "RuntimeError", "builtins", "flaky retry %d",
                         retries);
    return json_integer(retries);
}

static json_t *crash(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    volatile int *nowhere = NULL;
    return json_integer(*nowhere);
}

static json_t *text_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

static json_t *context(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)args;
    (void)kwargs;
    return json_pack("{s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:b}", "id",
                     text_or_null(cel_context_id(ctx)), "retries",
                     cel_context_retries(ctx), "root_id",
                     text_or_null(cel_context_root_id(ctx)), "parent_id",
                     text_or_null(cel_context_parent_id(ctx)), "group",
                     text_or_null(cel_context_group(ctx)), "hostname",
                     text_or_null(cel_context_hostname(ctx)), "eta",
                     text_or_null(cel_context_eta(ctx)), "expires",
                     text_or_null(cel_context_expires(ctx)), "routing_key",
                     text_or_null(cel_context_routing_key(ctx)), "redelivered",
                     cel_context_redelivered(ctx));
}

/* Returns text that is not valid UTF-8, which JSON cannot carry, so the
 * worker fails the task with EncodeError, as Celery does for a result its
 * serializer rejects. */
static json_t *unencodable(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    return json_stringn_nocheck("ok\xff\xfe", 4);
}

int celeriac_module_init(cel_app_t *app)
{
    static const struct {
        const char *name;
        cel_task_fn fn;
    } TASKS[] = {
        {"tasks.add", add},          {"tasks.mul", mul},
        {"tasks.xsum", xsum},        {"tasks.echo", echo},
        {"tasks.sleep", sleep_task}, {"tasks.spin", spin},
        {"tasks.fail", fail_task},   {"tasks.crash", crash},
        {"tasks.context", context},  {"tasks.unencodable", unencodable},
    };
    for (size_t i = 0; i < sizeof TASKS / sizeof TASKS[0]; i++)
        if (cel_app_add_task(app, TASKS[i].name, TASKS[i].fn) == NULL)
            return CEL_EEXIST;
    cel_task_t *task = cel_app_add_task(app, "tasks.flaky", flaky);
    if (task == NULL)
        return CEL_EEXIST;
    cel_task_set_max_retries(task, 5);
    return CEL_OK;
}
