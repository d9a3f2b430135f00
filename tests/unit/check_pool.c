/* The prefork, threads and solo pools, driven the way the worker drives them
 * but without a broker: requests are built by hand, and finished runs are
 * collected by polling the pool's descriptors and calling process(). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "celeriac/celeriac.h"
#include "internal.h"
#include "pool.h"

/* Every wait in this file gives up after this long and fails the test. */
#define WAIT_SECONDS 10.0
/* Check's own timeout per test, above WAIT_SECONDS so that the test's
 * message, not a bare timeout, reports a stuck pool. */
#define TEST_TIMEOUT_SECONDS 40
/* The poll timeout between process() calls, which also check hard limits. */
#define POLL_MS      20
#define POLL_FDS_MAX 16
#define RUNS_MAX     8
#define HOSTNAME     "celery@pool-test"
/* A spinning task stops by itself after this long, in case no limit does. */
#define SPIN_SECONDS 20.0

static const char *const ALL_POOLS[] = {"prefork", "threads", "solo"};
#define ALL_POOL_COUNT (int)(sizeof ALL_POOLS / sizeof ALL_POOLS[0])

/* The pools that run tasks concurrently, beside the caller. */
static const char *const CONCURRENT_POOLS[] = {"prefork", "threads"};
#define CONCURRENT_POOL_COUNT                                                  \
    (int)(sizeof CONCURRENT_POOLS / sizeof CONCURRENT_POOLS[0])

/* ---- recording runs and log lines --------------------------------------- */

/* A run that reached the done callback. The id and the run are owned. */
typedef struct recorded_run {
    char *id;
    cel__run_t run;
    double finished; /* monotonic seconds */
} recorded_run_t;

typedef struct recorder {
    recorded_run_t runs[RUNS_MAX];
    int count; /* done calls, including those past RUNS_MAX */
} recorder_t;

static cel_app_t *app;
static recorder_t recorder;
static char log_text[8192];
static size_t log_len;
static int user_data_marker;

/* The pool's done callback: keeps the run for the test's checks and frees
 * the request, as the worker's callback does. */
static void record_run(void *owner, cel__request_t *request, cel__run_t *run)
{
    recorder_t *runs = owner;
    if (runs->count < RUNS_MAX) {
        recorded_run_t *slot = &runs->runs[runs->count];
        slot->id = strdup(request->msg.id);
        /* A prefork run brings its result as text: parse it for the checks. */
        if (run->kind == CEL__RUN_SUCCESS)
            cel__run_result(run);
        slot->run = *run;
        slot->finished = cel__monotonic();
        memset(run, 0, sizeof *run);
    } else {
        cel__run_clear(run);
    }
    runs->count++;
    cel__request_free(request);
}

static void recorder_clear(recorder_t *runs)
{
    int stored = runs->count < RUNS_MAX ? runs->count : RUNS_MAX;
    for (int i = 0; i < stored; i++) {
        free(runs->runs[i].id);
        cel__run_clear(&runs->runs[i].run);
    }
    memset(runs, 0, sizeof *runs);
}

static void record_log(void *user, int level, const char *message)
{
    (void)user;
    (void)level;
    size_t room = sizeof log_text - log_len;
    int written = snprintf(log_text + log_len, room, "%s\n", message);
    if (written < 0)
        return;
    log_len += (size_t)written < room ? (size_t)written : room - 1;
}

/* ---- tasks -------------------------------------------------------------- */

static void sleep_seconds(double seconds)
{
    struct timespec left = {
        .tv_sec = (time_t)seconds,
        .tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9),
    };
    while (nanosleep(&left, &left) != 0 && errno == EINTR)
        ;
}

static json_t *add_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)kwargs;
    json_int_t a = json_integer_value(json_array_get(args, 0));
    json_int_t b = json_integer_value(json_array_get(args, 1));
    return json_integer(a + b);
}

static json_t *fail_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)kwargs;
    int value = (int)json_integer_value(json_array_get(args, 0));
    return cel_fail(ctx, "ValueError", "builtins", "bad value %d", value);
}

/* Retries after args[0] seconds with an exception, or with the task's
 * default delay and no exception when args is empty. */
static json_t *retry_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)kwargs;
    json_t *countdown = json_array_get(args, 0);
    if (countdown == NULL)
        return cel_retry(ctx, -1, NULL, NULL, "%s", "no exception");
    return cel_retry(ctx, json_number_value(countdown), "ConnectionError",
                     "builtins", "server %s unreachable", "127.0.0.1:5701");
}

/* Kills the calling process by a signal, without a core file. ASan installs
 * its own SIGSEGV handler, which would exit with status 1 instead, so the
 * default action is restored first. */
static void die_by_signal(int signal_number)
{
    prctl(PR_SET_DUMPABLE, 0);
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}

static json_t *segfault_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    die_by_signal(SIGSEGV);
    return NULL;
}

static json_t *abort_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    prctl(PR_SET_DUMPABLE, 0);
    abort();
}

static json_t *exit_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    _exit(5);
}

/* Keeps a CPU busy for args[0] seconds, at most SPIN_SECONDS. */
static json_t *spin_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)kwargs;
    double seconds = json_number_value(json_array_get(args, 0));
    if (seconds <= 0 || seconds > SPIN_SECONDS)
        seconds = SPIN_SECONDS;
    double end = cel__monotonic() + seconds;
    volatile unsigned long turns = 0;
    while (cel__monotonic() < end)
        turns++;
    return json_integer((json_int_t)turns);
}

static json_t *sleep_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)kwargs;
    double seconds = json_number_value(json_array_get(args, 0));
    sleep_seconds(seconds);
    return json_real(seconds);
}

/* Sleeps args[0] seconds, then returns whether the soft limit has passed. */
static json_t *soft_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)kwargs;
    sleep_seconds(json_number_value(json_array_get(args, 0)));
    return json_boolean(cel_context_soft_time_limit_exceeded(ctx));
}

static json_t *echo_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    return json_pack("[OO]", args, kwargs);
}

static json_t *pid_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    return json_integer(getpid());
}

static json_t *text_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

/* Returns every field of the request context the task can read. */
static json_t *context_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)args;
    (void)kwargs;
    json_t *fields = json_object();
    json_object_set_new(fields, "id", text_or_null(cel_context_id(ctx)));
    json_object_set_new(fields, "task",
                        text_or_null(cel_context_task_name(ctx)));
    json_object_set_new(fields, "retries",
                        json_integer(cel_context_retries(ctx)));
    json_object_set_new(fields, "root_id",
                        text_or_null(cel_context_root_id(ctx)));
    json_object_set_new(fields, "parent_id",
                        text_or_null(cel_context_parent_id(ctx)));
    json_object_set_new(fields, "group", text_or_null(cel_context_group(ctx)));
    json_object_set_new(fields, "eta", text_or_null(cel_context_eta(ctx)));
    json_object_set_new(fields, "expires",
                        text_or_null(cel_context_expires(ctx)));
    json_object_set_new(fields, "hostname",
                        text_or_null(cel_context_hostname(ctx)));
    json_object_set_new(fields, "exchange",
                        text_or_null(cel_context_exchange(ctx)));
    json_object_set_new(fields, "routing_key",
                        text_or_null(cel_context_routing_key(ctx)));
    json_object_set_new(fields, "redelivered",
                        json_boolean(cel_context_redelivered(ctx)));
    json_t *headers = cel_context_headers(ctx);
    json_object_set(fields, "headers", headers ? headers : json_null());
    json_object_set_new(
        fields, "user_data",
        json_boolean(cel_context_user_data(ctx) == &user_data_marker));
    return fields;
}

/* Sleeps args[0] seconds, then returns the message headers. */
static json_t *late_headers_task(cel_context_t *ctx, json_t *args,
                                 json_t *kwargs)
{
    (void)kwargs;
    sleep_seconds(json_number_value(json_array_get(args, 0)));
    json_t *headers = cel_context_headers(ctx);
    return headers ? json_incref(headers) : json_null();
}

static void *exit_soon(void *arg)
{
    (void)arg;
    sleep_seconds(0.2);
    _exit(9);
}

/* Returns at once, and ends its process 0.2 s later from another thread, so
 * the process dies after it has sent the result. Prefork only. */
static json_t *exit_after_return_task(cel_context_t *ctx, json_t *args,
                                      json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    pthread_t thread;
    if (pthread_create(&thread, NULL, exit_soon, NULL) != 0)
        return cel_fail(ctx, "RuntimeError", "builtins", "%s",
                        "pthread_create failed");
    pthread_detach(thread);
    return json_string("returned");
}

/* Returns the JSON type names of args and kwargs, as [args, kwargs]. */
static json_t *types_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    const char *names[] = {"object", "array",   "string", "integer",
                           "real",   "boolean", "boolean", "null"};
    const char *args_type = args ? names[json_typeof(args)] : "missing";
    const char *kwargs_type = kwargs ? names[json_typeof(kwargs)] : "missing";
    return json_pack("[ss]", args_type, kwargs_type);
}

static void register_task(const char *name, cel_task_fn fn)
{
    cel_task_t *task = cel_app_add_task(app, name, fn);
    ck_assert_msg(task != NULL, "cannot register %s", name);
    cel_task_set_user_data(task, &user_data_marker);
}

static void create_app(void)
{
    app = cel_app_new();
    ck_assert_ptr_nonnull(app);
    log_len = 0;
    log_text[0] = '\0';
    cel_app_set_log_callback(app, record_log, NULL);
    register_task("tests.add", add_task);
    register_task("tests.fail", fail_task);
    register_task("tests.retry", retry_task);
    register_task("tests.segfault", segfault_task);
    register_task("tests.abort", abort_task);
    register_task("tests.exit", exit_task);
    register_task("tests.spin", spin_task);
    register_task("tests.sleep", sleep_task);
    register_task("tests.soft", soft_task);
    register_task("tests.echo", echo_task);
    register_task("tests.pid", pid_task);
    register_task("tests.context", context_task);
    register_task("tests.exit_after_return", exit_after_return_task);
    register_task("tests.types", types_task);
    register_task("tests.late_headers", late_headers_task);
}

static void free_app(void)
{
    recorder_clear(&recorder);
    cel_app_free(app);
    app = NULL;
}

/* ---- driving a pool ----------------------------------------------------- */

static cel__pool_t *pool_start(const char *name, int size)
{
    char error[CEL__ERROR_LEN] = "";
    cel__pool_t *pool = cel__pool_new(name, size, error);
    ck_assert_msg(pool != NULL, "cel__pool_new(%s): %s", name, error);
    pool->app = app;
    pool->hostname = HOSTNAME;
    pool->owner = &recorder;
    pool->done = record_run;
    ck_assert_int_eq(pool->ops->start(pool), CEL_OK);
    return pool;
}

static void pool_finish(cel__pool_t *pool)
{
    pool->ops->stop(pool);
    pool->ops->free(pool);
}

/* Builds a request for a registered task. `args` is stolen, and NULL means
 * an empty array. Each request gets the id "pool-test-<serial>". */
static cel__request_t *request_new(const char *task_name, json_t *args,
                                   int *serial_out)
{
    static int serial;
    cel__request_t *request = calloc(1, sizeof *request);
    ck_assert_ptr_nonnull(request);
    char id[32];
    snprintf(id, sizeof id, "pool-test-%d", ++serial);
    request->msg.protocol = 2;
    request->msg.priority = -1;
    request->msg.id = strdup(id);
    request->msg.task = strdup(task_name);
    request->msg.args = args ? args : json_array();
    request->msg.kwargs = json_object();
    request->exchange = strdup("");
    request->routing_key = strdup("celery");
    request->task = cel__app_find_task(app, task_name);
    ck_assert_msg(request->task != NULL, "task %s is not registered",
                  task_name);
    if (serial_out != NULL)
        *serial_out = serial;
    return request;
}

static void submit_request(cel__pool_t *pool, cel__request_t *request,
                           double soft, double hard)
{
    ck_assert_msg(cel__pool_has_idle(pool), "%s pool: no idle slot for %s",
                  pool->name, request->msg.id);
    int status = pool->ops->submit(pool, request, soft, hard);
    ck_assert_msg(status == CEL_OK, "%s pool: submit returned %d", pool->name,
                  status);
}

/* Submits `task_name` with `args` (stolen) and returns the request's
 * serial, which find_run takes. */
static int submit_task(cel__pool_t *pool, const char *task_name, json_t *args,
                       double soft, double hard)
{
    int serial = 0;
    cel__request_t *request = request_new(task_name, args, &serial);
    submit_request(pool, request, soft, hard);
    return serial;
}

/* Waits up to POLL_MS for the pool's descriptors, then calls process(). */
static void service_once(cel__pool_t *pool)
{
    struct pollfd fds[POLL_FDS_MAX];
    int count = pool->ops->poll_fds(pool, fds, POLL_FDS_MAX);
    int ready = poll(fds, (nfds_t)count, POLL_MS);
    ck_assert_msg(ready >= 0 || errno == EINTR, "poll failed: %s",
                  strerror(errno));
    pool->ops->process(pool, NULL, 0);
}

/* Services the pool until `expected` runs have arrived in total. */
static void wait_for_runs(cel__pool_t *pool, int expected)
{
    double deadline = cel__monotonic() + WAIT_SECONDS;
    while (recorder.count < expected) {
        ck_assert_msg(cel__monotonic() < deadline,
                      "%s pool: %d of %d runs arrived within %.0f s",
                      pool->name, recorder.count, expected, WAIT_SECONDS);
        service_once(pool);
    }
}

/* Services the pool for `seconds`, giving a run that must not come the
 * time to arrive. */
static void service_for(cel__pool_t *pool, double seconds)
{
    double end = cel__monotonic() + seconds;
    while (cel__monotonic() < end)
        service_once(pool);
}

/* Services the pool until a log line contains `text`. */
static void wait_for_log(cel__pool_t *pool, const char *text)
{
    double deadline = cel__monotonic() + WAIT_SECONDS;
    while (strstr(log_text, text) == NULL) {
        ck_assert_msg(cel__monotonic() < deadline,
                      "no log line contains '%s' within %.0f s; log:\n%s", text,
                      WAIT_SECONDS, log_text);
        service_once(pool);
    }
}

static recorded_run_t *find_recorded(int serial)
{
    char id[32];
    snprintf(id, sizeof id, "pool-test-%d", serial);
    int stored = recorder.count < RUNS_MAX ? recorder.count : RUNS_MAX;
    for (int i = 0; i < stored; i++)
        if (strcmp(recorder.runs[i].id, id) == 0)
            return &recorder.runs[i];
    ck_abort_msg("no run was recorded for %s", id);
    return NULL;
}

static cel__run_t *find_run(int serial)
{
    return &find_recorded(serial)->run;
}

/* Runs tests.pid and returns the process id it reports. */
static pid_t run_pid_task(cel__pool_t *pool)
{
    int expected = recorder.count + 1;
    int serial = submit_task(pool, "tests.pid", NULL, 0, 0);
    wait_for_runs(pool, expected);
    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert(json_is_integer(run->result));
    return (pid_t)json_integer_value(run->result);
}

static void assert_success_integer(const cel__run_t *run, json_int_t expected)
{
    ck_assert_msg(run->kind == CEL__RUN_SUCCESS, "run kind %d, expected %d",
                  (int)run->kind, (int)CEL__RUN_SUCCESS);
    ck_assert_msg(json_is_integer(run->result), "result is not an integer");
    ck_assert_int_eq(json_integer_value(run->result), expected);
}

/* Asserts that `pid` was reaped, so it is no longer a child of this
 * process. */
static void assert_reaped(pid_t pid)
{
    errno = 0;
    ck_assert_int_eq(waitpid(pid, NULL, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}

/* ---- creating pools ----------------------------------------------------- */

START_TEST(test_pool_new_by_name)
{
    static const struct {
        const char *name;
        bool enforces_hard_limit;
        int size;
    } cases[] = {
        {"prefork", true, 3},
        {"threads", false, 3},
        {"solo", false, 1}, /* solo ignores the size it is given */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cel__pool_t *pool = pool_start(cases[i].name, 3);
        ck_assert_str_eq(pool->name, cases[i].name);
        ck_assert_int_eq(pool->enforces_hard_limit,
                         cases[i].enforces_hard_limit);
        ck_assert_int_eq(pool->size, cases[i].size);
        ck_assert_int_eq(pool->busy, 0);
        ck_assert(cel__pool_has_idle(pool));
        pool_finish(pool);
    }
}
END_TEST

START_TEST(test_pool_new_without_name_is_prefork)
{
    char error[CEL__ERROR_LEN] = "";
    cel__pool_t *pool = cel__pool_new(NULL, 1, error);
    ck_assert_ptr_nonnull(pool);
    ck_assert_str_eq(pool->name, "prefork");
    pool->ops->free(pool);
}
END_TEST

START_TEST(test_pool_new_unknown_name_fails)
{
    char error[CEL__ERROR_LEN] = "";
    ck_assert_ptr_null(cel__pool_new("gevent", 2, error));
    ck_assert_str_eq(error,
                     "pool 'gevent' is not available: use prefork, threads "
                     "or solo");
}
END_TEST

/* ---- runs, on every pool ------------------------------------------------ */

START_TEST(test_pool_add_returns_sum)
{
    cel__pool_t *pool = pool_start(ALL_POOLS[_i], 2);
    int serial = submit_task(pool, "tests.add", json_pack("[ii]", 2, 40), 0, 0);
    wait_for_runs(pool, 1);

    recorded_run_t *recorded = find_recorded(serial);
    assert_success_integer(&recorded->run, 42);
    ck_assert_ptr_null(recorded->run.exc_type);
    ck_assert(recorded->run.runtime >= 0);
    ck_assert_int_eq(pool->busy, 0);

    pool_finish(pool);
    ck_assert_int_eq(recorder.count, 1);
}
END_TEST

START_TEST(test_pool_failure_carries_exception)
{
    cel__pool_t *pool = pool_start(ALL_POOLS[_i], 1);
    int serial = submit_task(pool, "tests.fail", json_pack("[i]", 7), 0, 0);
    wait_for_runs(pool, 1);

    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_FAILURE);
    ck_assert_str_eq(run->exc_type, "ValueError");
    ck_assert_str_eq(run->exc_module, "builtins");
    ck_assert_str_eq(run->exc_message, "bad value 7");
    ck_assert_int_eq(pool->busy, 0);

    pool_finish(pool);
}
END_TEST

START_TEST(test_pool_retry_carries_countdown)
{
    cel__pool_t *pool = pool_start(ALL_POOLS[_i], 1);
    int explicit_delay =
        submit_task(pool, "tests.retry", json_pack("[f]", 12.5), 0, 0);
    wait_for_runs(pool, 1);
    int default_delay = submit_task(pool, "tests.retry", NULL, 0, 0);
    wait_for_runs(pool, 2);

    cel__run_t *run = find_run(explicit_delay);
    ck_assert_int_eq(run->kind, CEL__RUN_RETRY);
    ck_assert_double_eq(run->countdown, 12.5);
    ck_assert_str_eq(run->exc_type, "ConnectionError");
    ck_assert_str_eq(run->exc_module, "builtins");
    ck_assert_str_eq(run->exc_message, "server 127.0.0.1:5701 unreachable");

    /* A negative countdown selects the task's default delay. */
    run = find_run(default_delay);
    ck_assert_int_eq(run->kind, CEL__RUN_RETRY);
    ck_assert_double_lt(run->countdown, 0);
    ck_assert_ptr_null(run->exc_type);
    ck_assert_str_eq(run->exc_message, "no exception");

    pool_finish(pool);
}
END_TEST

START_TEST(test_pool_soft_limit_visible_to_task)
{
    cel__pool_t *pool = pool_start(ALL_POOLS[_i], 1);
    int past = submit_task(pool, "tests.soft", json_pack("[f]", 0.5), 0.2, 0);
    wait_for_runs(pool, 1);
    int none = submit_task(pool, "tests.soft", json_pack("[f]", 0.05), 0, 0);
    wait_for_runs(pool, 2);
    int ahead = submit_task(pool, "tests.soft", json_pack("[f]", 0.05), 5, 0);
    wait_for_runs(pool, 3);

    cel__run_t *run = find_run(past);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert_msg(json_is_true(run->result),
                  "soft limit 0.2 s not exceeded after 0.5 s");
    ck_assert_double_ge(run->runtime, 0.5);

    run = find_run(none);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert_msg(json_is_false(run->result), "exceeded without a limit");

    run = find_run(ahead);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert_msg(json_is_false(run->result), "5 s limit exceeded at 0.05 s");

    pool_finish(pool);
}
END_TEST

START_TEST(test_pool_args_with_nul_and_3mb_round_trip)
{
    const size_t big_len = 3 * 1024 * 1024;
    char *big = malloc(big_len);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)('a' + i % 26);

    cel__pool_t *pool = pool_start(ALL_POOLS[_i], 1);
    int serial = 0;
    cel__request_t *request = request_new(
        "tests.echo", json_pack("[s#s#]", "a\0b", (size_t)3, big, big_len),
        &serial);
    json_decref(request->msg.kwargs);
    request->msg.kwargs = json_pack("{ss#}", "key", "x\0y\0", (size_t)4);
    json_t *expected =
        json_pack("[OO]", request->msg.args, request->msg.kwargs);
    submit_request(pool, request, 0, 0);
    wait_for_runs(pool, 1);

    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert_msg(json_equal(run->result, expected),
                  "%s pool: the echoed arguments differ", ALL_POOLS[_i]);
    json_t *with_nul = json_array_get(json_array_get(run->result, 0), 0);
    ck_assert_uint_eq(json_string_length(with_nul), 3);
    ck_assert_mem_eq(json_string_value(with_nul), "a\0b", 3);
    json_t *echoed_big = json_array_get(json_array_get(run->result, 0), 1);
    ck_assert_uint_eq(json_string_length(echoed_big), big_len);

    json_decref(expected);
    free(big);
    pool_finish(pool);
}
END_TEST

START_TEST(test_pool_context_fields_reach_task)
{
    cel__pool_t *pool = pool_start(ALL_POOLS[_i], 1);
    int serial = 0;
    cel__request_t *request = request_new("tests.context", NULL, &serial);
    cel__task_message_t *msg = &request->msg;
    msg->retries = 2;
    msg->root_id = strdup("root-1");
    msg->parent_id = strdup("parent-1");
    msg->group = strdup("group-1");
    msg->eta = strdup("2026-01-02T03:04:05+00:00");
    msg->expires = strdup("2026-01-03T03:04:05+00:00");
    msg->headers = json_pack("{ss,ss}", "lang", "py", "x-custom", "yes");
    free(request->exchange);
    request->exchange = strdup("tasks");
    free(request->routing_key);
    request->routing_key = strdup("tasks.fast");
    request->redelivered = true;
    json_t *expected = json_pack(
        "{ss,ss,si,ss,ss,ss,ss,ss,ss,ss,ss,sb,s{ss,ss},sb}", "id", msg->id,
        "task", "tests.context", "retries", 2, "root_id", "root-1", "parent_id",
        "parent-1", "group", "group-1", "eta", "2026-01-02T03:04:05+00:00",
        "expires", "2026-01-03T03:04:05+00:00", "hostname", HOSTNAME,
        "exchange", "tasks", "routing_key", "tasks.fast", "redelivered", 1,
        "headers", "lang", "py", "x-custom", "yes", "user_data", 1);
    ck_assert_ptr_nonnull(expected);
    submit_request(pool, request, 0, 0);
    wait_for_runs(pool, 1);

    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    char *got = json_dumps(run->result, JSON_SORT_KEYS);
    char *want = json_dumps(expected, JSON_SORT_KEYS);
    ck_assert_msg(json_equal(run->result, expected),
                  "%s pool: context %s, expected %s", ALL_POOLS[_i], got, want);
    free(got);
    free(want);
    json_decref(expected);
    pool_finish(pool);
}
END_TEST

START_TEST(test_pool_runs_task_in_expected_process)
{
    cel__pool_t *pool = pool_start(ALL_POOLS[_i], 1);
    pid_t pid = run_pid_task(pool);
    if (strcmp(ALL_POOLS[_i], "prefork") == 0)
        ck_assert_int_ne(pid, getpid());
    else
        ck_assert_int_eq(pid, getpid());
    pool_finish(pool);
}
END_TEST

/* ---- slots, on the concurrent pools ------------------------------------- */

START_TEST(test_pool_busy_counts_running_tasks)
{
    cel__pool_t *pool = pool_start(CONCURRENT_POOLS[_i], 2);
    ck_assert_int_eq(pool->busy, 0);
    ck_assert(cel__pool_has_idle(pool));

    /* busy drops only in process(), which no step here calls. */
    submit_task(pool, "tests.sleep", json_pack("[f]", 0.3), 0, 0);
    ck_assert_int_eq(pool->busy, 1);
    ck_assert(cel__pool_has_idle(pool));
    submit_task(pool, "tests.sleep", json_pack("[f]", 0.3), 0, 0);
    ck_assert_int_eq(pool->busy, 2);
    ck_assert(!cel__pool_has_idle(pool));

    /* A full pool rejects a request and leaves it with the caller. */
    cel__request_t *extra = request_new("tests.add", NULL, NULL);
    ck_assert_int_eq(pool->ops->submit(pool, extra, 0, 0), CEL_EINVAL);
    ck_assert_int_eq(pool->busy, 2);
    cel__request_free(extra);

    wait_for_runs(pool, 2);
    ck_assert_int_eq(pool->busy, 0);
    ck_assert(cel__pool_has_idle(pool));
    pool_finish(pool);
}
END_TEST

START_TEST(test_pool_runs_two_tasks_in_parallel)
{
    const double seconds = 2.0;
    cel__pool_t *pool = pool_start(CONCURRENT_POOLS[_i], 2);
    double started = cel__monotonic();
    int first =
        submit_task(pool, "tests.sleep", json_pack("[f]", seconds), 0, 0);
    int second =
        submit_task(pool, "tests.sleep", json_pack("[f]", seconds), 0, 0);
    wait_for_runs(pool, 2);
    double elapsed = cel__monotonic() - started;

    ck_assert_int_eq(find_run(first)->kind, CEL__RUN_SUCCESS);
    ck_assert_int_eq(find_run(second)->kind, CEL__RUN_SUCCESS);
    ck_assert_double_ge(find_run(first)->runtime, seconds * 0.95);
    ck_assert_double_ge(find_run(second)->runtime, seconds * 0.95);
    /* One after the other would take 4 s, and together about 2 s. The
     * bound leaves 1.5 s for a slow or loaded machine. */
    ck_assert_msg(elapsed < 2 * seconds - 0.5,
                  "%s pool: two %.1f s tasks took %.2f s", pool->name, seconds,
                  elapsed);
    pool_finish(pool);
}
END_TEST

/* ---- solo --------------------------------------------------------------- */

START_TEST(test_solo_runs_inside_submit)
{
    cel__pool_t *pool = pool_start("solo", 1);
    struct pollfd fds[POLL_FDS_MAX];
    ck_assert_int_eq(pool->ops->poll_fds(pool, fds, POLL_FDS_MAX), 0);

    int serial = submit_task(pool, "tests.add", json_pack("[ii]", 1, 2), 0, 0);
    /* The run reached the callback before submit returned. */
    ck_assert_int_eq(recorder.count, 1);
    assert_success_integer(find_run(serial), 3);
    ck_assert_int_eq(pool->busy, 0);
    ck_assert(cel__pool_has_idle(pool));
    ck_assert_double_eq(pool->ops->next_deadline(pool), 0);
    pool_finish(pool);
}
END_TEST

/* ---- threads ------------------------------------------------------------ */

static int count_threads(void)
{
    DIR *dir = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(dir);
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL)
        if (entry->d_name[0] != '.')
            count++;
    closedir(dir);
    return count;
}

START_TEST(test_threads_stop_joins_threads)
{
    int before = count_threads();
    cel__pool_t *pool = pool_start("threads", 3);
    ck_assert_int_eq(count_threads(), before + 3);
    ck_assert_double_eq(pool->ops->next_deadline(pool), 0);
    int serial = submit_task(pool, "tests.add", json_pack("[ii]", 4, 5), 0, 0);
    wait_for_runs(pool, 1);
    assert_success_integer(find_run(serial), 9);

    pool->ops->stop(pool);
    /* A joined thread can stay listed for a moment after pthread_join. */
    double deadline = cel__monotonic() + WAIT_SECONDS;
    while (count_threads() != before) {
        ck_assert_msg(cel__monotonic() < deadline,
                      "%d threads left after stop, expected %d",
                      count_threads(), before);
        sleep_seconds(0.01);
    }
    pool->ops->stop(pool); /* the worker stops its pool twice */
    pool->ops->free(pool);
}
END_TEST

/* ---- prefork ------------------------------------------------------------ */

typedef struct crash_case {
    const char *task;
    int signal;
    int exit_code;
} crash_case_t;

static const crash_case_t CRASHES[] = {
    {"tests.segfault", SIGSEGV, 0},
    {"tests.abort", SIGABRT, 0},
    {"tests.exit", 0, 5},
};
#define CRASH_COUNT (int)(sizeof CRASHES / sizeof CRASHES[0])

START_TEST(test_prefork_crash_is_lost_and_child_replaced)
{
    const crash_case_t *crash = &CRASHES[_i];
    cel__pool_t *pool = pool_start("prefork", 1);
    pid_t old_pid = run_pid_task(pool);

    int serial = submit_task(pool, crash->task, NULL, 0, 0);
    wait_for_runs(pool, 2);
    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_LOST);
    ck_assert_int_eq(run->signal, crash->signal);
    ck_assert_int_eq(run->exit_code, crash->exit_code);
    ck_assert_int_eq(pool->busy, 0);
    assert_reaped(old_pid);
    service_for(pool, 0.2);
    ck_assert_int_eq(recorder.count, 2); /* one run for the lost task */
    char expected_log[128];
    snprintf(expected_log, sizeof expected_log,
             "Pool process %d exited while running task %s[pool-test-%d]",
             (int)old_pid, crash->task, serial);
    ck_assert_msg(strstr(log_text, expected_log) != NULL,
                  "no log line contains '%s'; log:\n%s", expected_log,
                  log_text);

    /* A new child serves the next task. */
    pid_t new_pid = run_pid_task(pool);
    ck_assert_int_gt(new_pid, 0);
    ck_assert_int_ne(new_pid, old_pid);
    int add = submit_task(pool, "tests.add", json_pack("[ii]", 20, 22), 0, 0);
    wait_for_runs(pool, 4);
    assert_success_integer(find_run(add), 42);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_hard_limit_kills_and_replaces_child)
{
    cel__pool_t *pool = pool_start("prefork", 1);
    pid_t old_pid = run_pid_task(pool);

    double started = cel__monotonic();
    int serial = submit_task(pool, "tests.spin", NULL, 0, 0.3);
    wait_for_runs(pool, 2);
    double elapsed = cel__monotonic() - started;

    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_TIME_LIMIT);
    ck_assert_double_eq(run->limit, 0.3);
    ck_assert_double_ge(elapsed, 0.3);
    ck_assert_msg(elapsed < 5, "killed after %.2f s, limit 0.3 s", elapsed);
    ck_assert_int_eq(pool->busy, 0);
    ck_assert_double_eq(pool->ops->next_deadline(pool), 0);
    assert_reaped(old_pid);

    pid_t new_pid = run_pid_task(pool);
    ck_assert_int_ne(new_pid, old_pid);
    int add = submit_task(pool, "tests.add", json_pack("[ii]", 1, 1), 0, 0.3);
    wait_for_runs(pool, 4);
    assert_success_integer(find_run(add), 2);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_result_before_deadline_is_success)
{
    cel__pool_t *pool = pool_start("prefork", 1);
    int serial =
        submit_task(pool, "tests.sleep", json_pack("[f]", 0.05), 0, 0.5);
    /* The task is done long before its deadline, but the pool hears of it
     * only after the deadline has passed. */
    sleep_seconds(1.0);
    wait_for_runs(pool, 1);
    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert_double_eq(json_real_value(run->result), 0.05);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_next_deadline_tracks_hard_limit)
{
    cel__pool_t *pool = pool_start("prefork", 2);
    ck_assert_double_eq(pool->ops->next_deadline(pool), 0);

    double before = cel__monotonic();
    submit_task(pool, "tests.sleep", json_pack("[f]", 0.2), 0, 8);
    submit_task(pool, "tests.sleep", json_pack("[f]", 0.1), 0, 5);
    double after = cel__monotonic();
    double deadline = pool->ops->next_deadline(pool);
    ck_assert_double_ge(deadline, before + 5);
    ck_assert_double_le(deadline, after + 5);

    wait_for_runs(pool, 2);
    ck_assert_double_eq(pool->ops->next_deadline(pool), 0);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_idle_child_death_is_replaced)
{
    cel__pool_t *pool = pool_start("prefork", 1);
    pid_t old_pid = run_pid_task(pool);

    ck_assert_int_eq(kill(old_pid, SIGKILL), 0);
    char expected_log[96];
    snprintf(expected_log, sizeof expected_log,
             "Idle pool process %d exited; starting another", (int)old_pid);
    wait_for_log(pool, expected_log);
    assert_reaped(old_pid);
    ck_assert_int_eq(recorder.count, 1); /* no run for an idle child */
    ck_assert_int_eq(pool->busy, 0);

    pid_t new_pid = run_pid_task(pool);
    ck_assert_int_ne(new_pid, old_pid);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_stop_leaves_no_child)
{
    cel__pool_t *pool = pool_start("prefork", 2);
    pid_t idle_pid = run_pid_task(pool);
    submit_task(pool, "tests.spin", NULL, 0, 0);
    ck_assert_int_eq(pool->busy, 1);

    /* One child idles and one runs a task that stop() abandons. */
    pool->ops->stop(pool);
    ck_assert_int_eq(pool->busy, 0);
    ck_assert_int_eq(recorder.count, 1);
    pool->ops->stop(pool); /* the worker stops its pool twice */
    pool->ops->free(pool);

    assert_reaped(idle_pid);
    errno = 0;
    ck_assert_int_eq(waitpid(-1, NULL, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}
END_TEST

/* Builds a request whose body the main process kept: args and kwargs are
 * NULL and the child reads them from `body`, as the worker sends a long v2
 * body. */
static cel__request_t *request_with_body(const char *task_name,
                                         const char *body, int *serial)
{
    cel__request_t *request = request_new(task_name, NULL, serial);
    json_decref(request->msg.args);
    json_decref(request->msg.kwargs);
    request->msg.args = NULL;
    request->msg.kwargs = NULL;
    request->body = strdup(body);
    ck_assert_ptr_nonnull(request->body);
    request->body_len = strlen(body);
    return request;
}

START_TEST(test_prefork_kept_body_reaches_task)
{
    cel__pool_t *pool = pool_start("prefork", 1);
    int serial = 0;
    cel__request_t *request = request_with_body(
        "tests.add", "[[2, 40], {}, {\"callbacks\": null}]", &serial);
    submit_request(pool, request, 0, 0);
    wait_for_runs(pool, 1);

    assert_success_integer(find_run(serial), 42);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_kept_body_nulls_become_empty)
{
    /* The decoder reads null args and kwargs as [] and {}; a kept body
     * must give the task the same. */
    cel__pool_t *pool = pool_start("prefork", 1);
    int serial = 0;
    cel__request_t *request =
        request_with_body("tests.types", "[null, null, null]", &serial);
    submit_request(pool, request, 0, 0);
    wait_for_runs(pool, 1);

    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert_str_eq(json_string_value(json_array_get(run->result, 0)),
                     "array");
    ck_assert_str_eq(json_string_value(json_array_get(run->result, 1)),
                     "object");
    pool_finish(pool);
}
END_TEST

/* ---- regressions -------------------------------------------------------- */

START_TEST(test_prefork_reply_before_exit_is_not_lost)
{
    /* The child sends the result, then exits 0.2 s later. The parent reads
     * the socket only after that, and finds the whole reply followed by
     * EOF. The task finished, so the run must carry its result and must not
     * be reported as lost.
     * NOTE: this fails while receive() in lib/pool_prefork.c returns at EOF
     * before it parses the frames it has already read. */
    cel__pool_t *pool = pool_start("prefork", 1);
    int serial = submit_task(pool, "tests.exit_after_return", NULL, 0, 0);
    sleep_seconds(1.0);
    wait_for_runs(pool, 1);

    cel__run_t *run = find_run(serial);
    ck_assert_msg(run->kind == CEL__RUN_SUCCESS,
                  "run kind %d (signal %d, exit code %d), expected success",
                  (int)run->kind, run->signal, run->exit_code);
    ck_assert_str_eq(json_string_value(run->result), "returned");
    pool_finish(pool);
}
END_TEST

/* ---- requests queued behind a running task (prefork) ------------------ */

/* What the pool handed to the owner's promote and give_back callbacks. */
typedef struct queue_events {
    int promoted;
    cel__request_t *given_back; /* owned */
} queue_events_t;

static queue_events_t queue_events;

static void record_promote(void *owner, cel__request_t *request)
{
    (void)owner;
    (void)request;
    queue_events.promoted++;
}

static void record_give_back(void *owner, cel__request_t *request)
{
    (void)owner;
    cel__request_free(queue_events.given_back);
    queue_events.given_back = request;
}

/* Starts a prefork pool of one child that runs a sleep of `seconds` and
 * has room to queue a request behind it. */
static cel__pool_t *pool_with_running_sleep(double seconds, double hard,
                                            int *sleep_serial)
{
    memset(&queue_events, 0, sizeof queue_events);
    cel__pool_t *pool = pool_start("prefork", 1);
    pool->promote = record_promote;
    pool->give_back = record_give_back;
    ck_assert(!cel__pool_has_queue_room(pool));
    *sleep_serial =
        submit_task(pool, "tests.sleep", json_pack("[f]", seconds), 0, hard);
    ck_assert(cel__pool_has_queue_room(pool));
    return pool;
}

static int queue_add(cel__pool_t *pool, cel__request_t **queued)
{
    int serial = 0;
    cel__request_t *request =
        request_new("tests.add", json_pack("[ii]", 2, 3), &serial);
    ck_assert_int_eq(pool->ops->queue(pool, request, 0, 0), CEL_OK);
    ck_assert(!cel__pool_has_queue_room(pool));
    if (queued != NULL)
        *queued = request;
    return serial;
}

START_TEST(test_prefork_queued_request_runs_next)
{
    int sleep_serial;
    cel__pool_t *pool = pool_with_running_sleep(0.2, 0, &sleep_serial);
    const cel__request_t *queued = NULL;
    int add_serial = queue_add(pool, (cel__request_t **)&queued);
    ck_assert_int_eq(pool->busy, 1);
    ck_assert_int_eq(pool->ops->list_queued(pool, &queued, 1), 1);
    ck_assert(!pool->ops->is_running(pool, queued->msg.id));

    wait_for_runs(pool, 2);
    ck_assert_int_eq(queue_events.promoted, 1);
    ck_assert_ptr_null(queue_events.given_back);
    ck_assert_int_eq(find_run(sleep_serial)->kind, CEL__RUN_SUCCESS);
    assert_success_integer(find_run(add_serial), 5);
    ck_assert_int_eq(pool->busy, 0);
    ck_assert_int_eq(pool->ops->list_queued(pool, &queued, 1), 0);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_withdrawn_request_never_runs)
{
    int sleep_serial;
    cel__pool_t *pool = pool_with_running_sleep(0.2, 0, &sleep_serial);
    cel__request_t *queued = NULL;
    queue_add(pool, &queued);
    ck_assert_ptr_eq(pool->ops->withdraw(pool, NULL), queued);
    cel__request_free(queued);
    ck_assert_ptr_null(pool->ops->withdraw(pool, NULL));
    /* The withdrawn frame waits unread in the child's socket until the
     * sleep ends, and nothing more is queued behind it meanwhile. */
    ck_assert(!cel__pool_has_queue_room(pool));

    wait_for_runs(pool, 1);
    service_for(pool, 0.3);
    ck_assert_int_eq(recorder.count, 1);
    ck_assert_int_eq(queue_events.promoted, 0);
    /* The child skips the withdrawn request and runs the next one. */
    int add = submit_task(pool, "tests.add", json_pack("[ii]", 20, 22), 0, 0);
    wait_for_runs(pool, 2);
    assert_success_integer(find_run(add), 42);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_started_request_cannot_be_withdrawn)
{
    int sleep_serial;
    cel__pool_t *pool = pool_with_running_sleep(0.05, 0, &sleep_serial);
    queue_add(pool, NULL);
    /* The child claims the queued request as soon as the sleep ends, before
     * the main process reads the sleep's reply. */
    sleep_seconds(0.5);
    ck_assert_ptr_null(pool->ops->withdraw(pool, NULL));
    wait_for_runs(pool, 2);
    ck_assert_int_eq(queue_events.promoted, 1);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_headers_arrive_after_queued_request)
{
    /* The task requests its headers after the main process has queued a
     * request behind it, so that request reaches the child first. */
    memset(&queue_events, 0, sizeof queue_events);
    cel__pool_t *pool = pool_start("prefork", 1);
    pool->promote = record_promote;
    pool->give_back = record_give_back;
    int headers_serial = 0;
    cel__request_t *reader = request_new(
        "tests.late_headers", json_pack("[f]", 0.3), &headers_serial);
    reader->msg.headers = json_pack("{s:s}", "tenant", "north");
    submit_request(pool, reader, 0, 0);
    int add_serial = queue_add(pool, NULL);

    wait_for_runs(pool, 2);
    cel__run_t *run = find_run(headers_serial);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    ck_assert_str_eq(
        json_string_value(json_object_get(run->result, "tenant")), "north");
    assert_success_integer(find_run(add_serial), 5);
    ck_assert_int_eq(queue_events.promoted, 1);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_long_request_is_not_queued)
{
    int sleep_serial;
    cel__pool_t *pool = pool_with_running_sleep(0.2, 0, &sleep_serial);
    /* Longer than a queued frame may be, so it must wait for the child. */
    size_t len = 256 * 1024;
    char *text = malloc(len + 1);
    ck_assert_ptr_nonnull(text);
    memset(text, 'x', len);
    text[len] = '\0';
    int serial = 0;
    cel__request_t *request =
        request_new("tests.echo", json_pack("[s]", text), &serial);
    ck_assert_int_eq(pool->ops->queue(pool, request, 0, 0), CEL_ETOOBIG);
    ck_assert(cel__pool_has_queue_room(pool));

    wait_for_runs(pool, 1);
    submit_request(pool, request, 0, 0);
    wait_for_runs(pool, 2);
    cel__run_t *run = find_run(serial);
    ck_assert_int_eq(run->kind, CEL__RUN_SUCCESS);
    json_t *echoed = json_array_get(json_array_get(run->result, 0), 0);
    ck_assert_uint_eq(json_string_length(echoed), len);
    free(text);
    pool_finish(pool);
}
END_TEST

START_TEST(test_prefork_queued_request_given_back_at_hard_limit)
{
    int sleep_serial;
    cel__pool_t *pool = pool_with_running_sleep(5, 0.3, &sleep_serial);
    cel__request_t *queued = NULL;
    queue_add(pool, &queued);

    wait_for_runs(pool, 1);
    ck_assert_int_eq(find_run(sleep_serial)->kind, CEL__RUN_TIME_LIMIT);
    ck_assert_ptr_eq(queue_events.given_back, queued);
    ck_assert_int_eq(queue_events.promoted, 0);
    ck_assert_int_eq(pool->busy, 0);
    cel__request_free(queue_events.given_back);
    queue_events.given_back = NULL;
    pool_finish(pool);
}
END_TEST

static Suite *pool_suite(void)
{
    Suite *suite = suite_create("pool");

    TCase *creation = tcase_create("new");
    tcase_add_checked_fixture(creation, create_app, free_app);
    tcase_set_timeout(creation, TEST_TIMEOUT_SECONDS);
    tcase_add_test(creation, test_pool_new_by_name);
    tcase_add_test(creation, test_pool_new_without_name_is_prefork);
    tcase_add_test(creation, test_pool_new_unknown_name_fails);
    suite_add_tcase(suite, creation);

    TCase *runs = tcase_create("runs");
    tcase_add_checked_fixture(runs, create_app, free_app);
    tcase_set_timeout(runs, TEST_TIMEOUT_SECONDS);
    tcase_add_loop_test(runs, test_pool_add_returns_sum, 0, ALL_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_failure_carries_exception, 0,
                        ALL_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_retry_carries_countdown, 0,
                        ALL_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_soft_limit_visible_to_task, 0,
                        ALL_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_args_with_nul_and_3mb_round_trip, 0,
                        ALL_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_context_fields_reach_task, 0,
                        ALL_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_runs_task_in_expected_process, 0,
                        ALL_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_busy_counts_running_tasks, 0,
                        CONCURRENT_POOL_COUNT);
    tcase_add_loop_test(runs, test_pool_runs_two_tasks_in_parallel, 0,
                        CONCURRENT_POOL_COUNT);
    suite_add_tcase(suite, runs);

    TCase *solo = tcase_create("solo");
    tcase_add_checked_fixture(solo, create_app, free_app);
    tcase_set_timeout(solo, TEST_TIMEOUT_SECONDS);
    tcase_add_test(solo, test_solo_runs_inside_submit);
    suite_add_tcase(suite, solo);

    TCase *threads = tcase_create("threads");
    tcase_add_checked_fixture(threads, create_app, free_app);
    tcase_set_timeout(threads, TEST_TIMEOUT_SECONDS);
    tcase_add_test(threads, test_threads_stop_joins_threads);
    suite_add_tcase(suite, threads);

    TCase *prefork = tcase_create("prefork");
    tcase_add_checked_fixture(prefork, create_app, free_app);
    tcase_set_timeout(prefork, TEST_TIMEOUT_SECONDS);
    tcase_add_loop_test(prefork, test_prefork_crash_is_lost_and_child_replaced,
                        0, CRASH_COUNT);
    tcase_add_test(prefork, test_prefork_hard_limit_kills_and_replaces_child);
    tcase_add_test(prefork, test_prefork_result_before_deadline_is_success);
    tcase_add_test(prefork, test_prefork_next_deadline_tracks_hard_limit);
    tcase_add_test(prefork, test_prefork_idle_child_death_is_replaced);
    tcase_add_test(prefork, test_prefork_stop_leaves_no_child);
    tcase_add_test(prefork, test_prefork_kept_body_reaches_task);
    tcase_add_test(prefork, test_prefork_kept_body_nulls_become_empty);
    tcase_add_test(prefork, test_prefork_queued_request_runs_next);
    tcase_add_test(prefork, test_prefork_withdrawn_request_never_runs);
    tcase_add_test(prefork, test_prefork_started_request_cannot_be_withdrawn);
    tcase_add_test(prefork,
                   test_prefork_queued_request_given_back_at_hard_limit);
    tcase_add_test(prefork, test_prefork_headers_arrive_after_queued_request);
    tcase_add_test(prefork, test_prefork_long_request_is_not_queued);
    suite_add_tcase(suite, prefork);

    /* Tests that pin a bug still open in the code under test. */
    TCase *regressions = tcase_create("regressions");
    tcase_add_checked_fixture(regressions, create_app, free_app);
    tcase_set_timeout(regressions, TEST_TIMEOUT_SECONDS);
    tcase_add_test(regressions, test_prefork_reply_before_exit_is_not_lost);
    suite_add_tcase(suite, regressions);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(pool_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
