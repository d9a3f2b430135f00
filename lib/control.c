/*
 * Remote control over Celery's pidbox: `celery inspect`, `celery control`
 * and Flower send a JSON request to the celery.pidbox fanout exchange, and
 * the worker replies {nodename: payload} to the reply_to exchange and
 * routing key, with the request's ticket in the headers.
 */
#include <fnmatch.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "revoked.h"
#include "worker_internal.h"

#define RUNNING_MAX 1024

typedef json_t *(*command_fn)(cel_worker_t *worker, json_t *arguments);

static json_t *ok(const char *text)
{
    return json_pack("{s:s}", "ok", text);
}

static json_t *nok(const char *text)
{
    return json_pack("{s:s}", "error", text);
}

/* ---- task info ---------------------------------------------------------- */

/* A request as Celery's Request.info describes it. */
static json_t *task_info(const cel_worker_t *worker,
                         const cel__request_t *request, bool safe)
{
    const cel__task_message_t *msg = &request->msg;
    json_t *args, *kwargs;
    if (safe) {
        char *a, *k;
        cel__request_argument_reprs(request, &a, &k);
        args = json_string(a ? a : "()");
        kwargs = json_string(k ? k : "{}");
        free(a);
        free(k);
    } else {
        cel__request_arguments(request, &args, &kwargs);
        if (args == NULL)
            args = json_array();
        if (kwargs == NULL)
            kwargs = json_object();
    }
    return json_pack(
        "{s:s, s:s, s:o, s:o, s:s, s:s, s:o, s:b, s:{s:s, s:s, s:i, s:b}, "
        "s:o}",
        "id", msg->id, "name", msg->shadow ? msg->shadow : msg->task, "args",
        args, "kwargs", kwargs, "type", msg->task, "hostname", worker->nodename,
        "time_start",
        request->time_start > 0 ? json_real(request->time_start) : json_null(),
        "acknowledged", request->time_start > 0, "delivery_info", "exchange",
        request->exchange ? request->exchange : "", "routing_key",
        request->routing_key ? request->routing_key : "", "priority",
        msg->priority >= 0 ? msg->priority : 0, "redelivered",
        request->redelivered, "worker_pid",
        request->worker_pid ? json_integer(request->worker_pid) : json_null());
}

static bool safe_argument(json_t *arguments)
{
    return json_is_true(json_object_get(arguments, "safe"));
}

/* ---- inspect commands --------------------------------------------------- */

static json_t *cmd_ping(cel_worker_t *worker, json_t *arguments)
{
    (void)worker;
    (void)arguments;
    return ok("pong");
}

static json_t *cmd_clock(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    return json_pack("{s:I}", "clock", (json_int_t)worker->clock);
}

static json_t *rusage_object(void)
{
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0)
        return json_string("N/A");
    return json_pack(
        "{s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
        "s:I, s:I, s:I}",
        "utime", usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6, "stime",
        usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6, "maxrss",
        (json_int_t)usage.ru_maxrss, "ixrss", (json_int_t)usage.ru_ixrss,
        "idrss", (json_int_t)usage.ru_idrss, "isrss",
        (json_int_t)usage.ru_isrss, "minflt", (json_int_t)usage.ru_minflt,
        "majflt", (json_int_t)usage.ru_majflt, "nswap",
        (json_int_t)usage.ru_nswap, "inblock", (json_int_t)usage.ru_inblock,
        "oublock", (json_int_t)usage.ru_oublock, "msgsnd",
        (json_int_t)usage.ru_msgsnd, "msgrcv", (json_int_t)usage.ru_msgrcv,
        "nsignals", (json_int_t)usage.ru_nsignals, "nvcsw",
        (json_int_t)usage.ru_nvcsw, "nivcsw", (json_int_t)usage.ru_nivcsw);
}

static json_t *pool_object(const cel_worker_t *worker)
{
    const cel__pool_t *pool = worker->pool;
    json_t *out = json_pack("{s:i}", "max-concurrency", pool->size);
    int pids[RUNNING_MAX];
    int count = pool->ops->list_pids(pool, pids, RUNNING_MAX);
    if (strcmp(pool->name, "prefork") == 0) {
        json_t *processes = json_array();
        for (int i = 0; i < count; i++)
            json_array_append_new(processes, json_integer(pids[i]));
        json_object_set_new(out, "processes", processes);
        json_object_set_new(out, "max-tasks-per-child", json_string("N/A"));
        json_object_set_new(out, "put-guarded-by-semaphore", json_false());
        json_object_set_new(out, "timeouts", json_pack("[i, i]", 0, 0));
        json_object_set_new(out, "writes", json_string("N/A"));
    } else if (strcmp(pool->name, "threads") == 0) {
        json_object_set_new(out, "threads", json_integer(pool->size));
    }
    return out;
}

static json_t *cmd_stats(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    const cel__settings_t *settings = &worker->app->settings;
    json_t *total = json_object();
    for (size_t i = 0; i < worker->app->task_count; i++) {
        const cel_task_t *task = worker->app->tasks[i];
        if (task->accepted > 0)
            json_object_set_new(total, task->name,
                                json_integer((json_int_t)task->accepted));
    }
    char clock[32];
    snprintf(clock, sizeof clock, "%lu", worker->clock);
    json_t *broker =
        cel__broker_describe(settings->broker_url, settings->broker_heartbeat,
                             settings->broker_connection_timeout);
    return json_pack("{s:o, s:i, s:s, s:I, s:o, s:o, s:i, s:o}", "total", total,
                     "pid", (int)getpid(), "clock", clock, "uptime",
                     (json_int_t)(cel__monotonic() - worker->started_at),
                     "pool", pool_object(worker), "broker",
                     broker ? broker : json_object(), "prefetch_count",
                     worker->applied_prefetch, "rusage", rusage_object());
}

static json_t *cmd_registered(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    json_t *names = json_array();
    for (size_t i = 0; i < worker->app->task_count; i++) {
        const char *name = worker->app->tasks[i]->name;
        if (strncmp(name, "celery.", 7) != 0)
            json_array_append_new(names, json_string(name));
    }
    /* Celery sorts the names. */
    size_t count = json_array_size(names);
    for (size_t i = 1; i < count; i++)
        for (size_t j = i; j > 0; j--) {
            json_t *a = json_array_get(names, j - 1);
            json_t *b = json_array_get(names, j);
            if (strcmp(json_string_value(a), json_string_value(b)) <= 0)
                break;
            json_incref(a);
            json_array_set(names, j - 1, b);
            json_array_set_new(names, j, a);
        }
    return names;
}

static json_t *cmd_active(cel_worker_t *worker, json_t *arguments)
{
    const cel__request_t *running[RUNNING_MAX];
    int count =
        worker->pool->ops->list_running(worker->pool, running, RUNNING_MAX);
    json_t *out = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(
            out, task_info(worker, running[i], safe_argument(arguments)));
    return out;
}

/* Returns a malloc'd list of the reserved requests (borrowed): those
 * queued in the pool behind a running task, then the ready queue's, oldest
 * first. NULL with *count 0 when there are none or memory ran out. */
static const cel__request_t **list_reserved(const cel_worker_t *worker,
                                            size_t *count)
{
    const cel__pool_t *pool = worker->pool;
    const cel__request_queue_t *ready = &worker->ready;
    *count = 0;
    const cel__request_t **out =
        malloc((ready->count + (size_t)pool->size) * sizeof *out);
    if (out == NULL)
        return NULL;
    if (pool->ops->list_queued != NULL)
        *count = (size_t)pool->ops->list_queued(pool, out, pool->size);
    for (size_t i = 0; i < ready->count; i++)
        out[(*count)++] = ready->items[(ready->head + i) % ready->cap];
    return out;
}

static json_t *cmd_reserved(cel_worker_t *worker, json_t *arguments)
{
    json_t *out = json_array();
    size_t count;
    const cel__request_t **reserved = list_reserved(worker, &count);
    for (size_t i = 0; i < count; i++)
        json_array_append_new(
            out, task_info(worker, reserved[i], safe_argument(arguments)));
    free(reserved);
    return out;
}

static json_t *cmd_scheduled(cel_worker_t *worker, json_t *arguments)
{
    json_t *out = json_array();
    for (size_t i = 0; i < worker->eta.count; i++) {
        const cel__request_t *request = worker->eta.items[i];
        json_array_append_new(
            out,
            json_pack("{s:s, s:i, s:o}", "eta",
                      request->msg.eta ? request->msg.eta : "", "priority", 6,
                      "request",
                      task_info(worker, request, safe_argument(arguments))));
    }
    return out;
}

static json_t *cmd_revoked(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    return cel__revoked_ids(worker->revoked, cel__monotonic());
}

/* Reports each requested id found among the worker's requests as active
 * (running) or reserved (prefetched and due), with its task info. Scheduled
 * tasks are left out, as Celery leaves them out. */
static json_t *cmd_query_task(cel_worker_t *worker, json_t *arguments)
{
    json_t *ids = json_object_get(arguments, "ids");
    json_t *out = json_object();
    const cel__request_t *running[RUNNING_MAX];
    int running_count =
        worker->pool->ops->list_running(worker->pool, running, RUNNING_MAX);
    size_t index;
    json_t *id;
    json_t *wanted = json_is_array(ids) ? ids : NULL;
    json_t *single = json_is_string(ids) ? ids : NULL;
    size_t wanted_count = wanted ? json_array_size(wanted) : (single ? 1 : 0);
    size_t reserved_count;
    const cel__request_t **reserved = list_reserved(worker, &reserved_count);
    for (index = 0; index < wanted_count; index++) {
        id = wanted ? json_array_get(wanted, index) : single;
        const char *text = json_string_value(id);
        if (text == NULL)
            continue;
        for (int i = 0; i < running_count; i++)
            if (strcmp(running[i]->msg.id, text) == 0)
                json_object_set_new(
                    out, text,
                    json_pack("[s, o]", "active",
                              task_info(worker, running[i], false)));
        for (size_t i = 0; i < reserved_count; i++)
            if (strcmp(reserved[i]->msg.id, text) == 0)
                json_object_set_new(
                    out, text,
                    json_pack("[s, o]", "reserved",
                              task_info(worker, reserved[i], false)));
    }
    free(reserved);
    return out;
}

static json_t *cmd_active_queues(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    json_t *out = json_array();
    for (size_t i = 0; i < worker->queue_count; i++) {
        const char *name = worker->queues[i];
        json_array_append_new(
            out,
            json_pack("{s:s, s:{s:s, s:s, s:n, s:b, s:b, s:b, s:n, s:b}, "
                      "s:s, s:n, s:n, s:n, s:b, s:b, s:b, s:b, s:n, s:[], "
                      "s:n, s:n, s:n, s:n, s:n, s:n}",
                      "name", name, "exchange", "name", name, "type", "direct",
                      "arguments", "durable", 1, "passive", 0, "auto_delete", 0,
                      "delivery_mode", "no_declare", 0, "routing_key", name,
                      "queue_arguments", "binding_arguments",
                      "consumer_arguments", "durable", 1, "exclusive", 0,
                      "auto_delete", 0, "no_ack", 0, "alias", "bindings",
                      "no_declare", "expires", "message_ttl", "max_length",
                      "max_length_bytes", "max_priority"));
    }
    return out;
}

/* ---- control commands --------------------------------------------------- */

/* Reads a signal as Celery's signum() does: a number, or an upper-case
 * name with or without "SIG"; SIGTERM when absent. Returns -1 when it is
 * not a signal. */
static int signal_number(json_t *value)
{
    if (value == NULL || json_is_null(value))
        return SIGTERM;
    if (json_is_integer(value)) {
        json_int_t number = json_integer_value(value);
        return number > 0 && number < NSIG ? (int)number : -1;
    }
    const char *name = json_string_value(value);
    if (name == NULL || name[0] < 'A' || name[0] > 'Z')
        return -1;
    for (const char *c = name; *c; c++)
        if ((*c < 'A' || *c > 'Z') && (*c < '0' || *c > '9'))
            return -1;
    if (strncmp(name, "SIG", 3) == 0)
        name += 3;
    for (int signum = 1; signum < NSIG; signum++) {
        const char *abbrev = sigabbrev_np(signum);
        if (abbrev != NULL && strcmp(abbrev, name) == 0)
            return signum;
    }
    return -1;
}

/* Takes a revoked task out of the pool's queue while it has not started,
 * as if it were still reserved in the main process. */
static void withdraw_queued(cel_worker_t *worker, const char *task_id)
{
    cel__pool_t *pool = worker->pool;
    if (pool->ops->list_queued == NULL)
        return;
    const cel__request_t *queued[RUNNING_MAX];
    int count = pool->ops->list_queued(pool, queued, RUNNING_MAX);
    for (int i = 0; i < count; i++) {
        if (strcmp(queued[i]->msg.id, task_id) != 0)
            continue;
        cel__request_t *request = pool->ops->withdraw(pool, queued[i]);
        if (request == NULL)
            continue; /* it has started */
        cel__revoke_request(worker, request, "revoked", 0);
        cel__request_free(request);
    }
}

static json_t *revoke_ids(cel_worker_t *worker, json_t *arguments,
                          bool terminate)
{
    json_t *ids = json_object_get(arguments, "task_id");
    json_t *list = json_is_string(ids)  ? json_pack("[O]", ids)
                   : json_is_array(ids) ? json_incref(ids)
                                        : json_array();
    terminate =
        terminate || json_is_true(json_object_get(arguments, "terminate"));
    int signum = signal_number(json_object_get(arguments, "signal"));
    size_t valid = 0;
    size_t position;
    json_t *item;
    json_array_foreach(list, position, item) {
        if (json_is_string(item))
            valid++;
    }
    const char *refusal = NULL;
    if (valid == 0)
        refusal = "task_id must be a task id or a list of task ids";
    else if (terminate && signum < 0)
        refusal = "invalid signal: expected a number or an upper-case "
                  "signal name such as SIGKILL";
    else if (terminate && strcmp(worker->pool->name, "prefork") != 0)
        refusal = "terminate needs the prefork pool: the threads and solo "
                  "pools cannot stop a running task";
    if (refusal != NULL) {
        json_decref(list);
        return nok(refusal);
    }
    char text[1024] = "";
    char terminated[1024] = "";
    size_t index;
    json_t *id;
    json_array_foreach(list, index, id) {
        const char *task_id = json_string_value(id);
        if (task_id == NULL)
            continue;
        if (cel__revoked_add(worker->revoked, task_id, cel__monotonic()) !=
            CEL_OK)
            cel__log(worker->app, CEL_LOG_ERROR,
                     "Cannot record the revoke of task %s: out of memory",
                     task_id);
        withdraw_queued(worker, task_id);
        size_t used = strlen(text);
        snprintf(text + used, sizeof text - used, "%s%s", index ? ", " : "",
                 task_id);
        if (terminate &&
            worker->pool->ops->terminate(worker->pool, task_id, signum)) {
            used = strlen(terminated);
            snprintf(terminated + used, sizeof terminated - used, "%s%s",
                     terminated[0] ? ", " : "", task_id);
        }
    }
    json_decref(list);
    cel__log(worker->app, CEL_LOG_INFO, "Tasks flagged as revoked: %s", text);
    char reply[1100];
    if (terminate)
        snprintf(reply, sizeof reply, "terminate: %s",
                 terminated[0] ? terminated : "tasks unknown");
    else
        snprintf(reply, sizeof reply, "tasks %s flagged as revoked", text);
    return ok(reply);
}

static json_t *cmd_revoke(cel_worker_t *worker, json_t *arguments)
{
    return revoke_ids(worker, arguments, false);
}

static json_t *cmd_terminate(cel_worker_t *worker, json_t *arguments)
{
    return revoke_ids(worker, arguments, true);
}

static json_t *cmd_shutdown(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    cel__log(worker->app, CEL_LOG_WARNING,
             "Got shutdown from remote control: stopping warmly");
    cel_worker_stop(worker);
    return NULL;
}

static cel_task_t *named_task(cel_worker_t *worker, json_t *arguments)
{
    const char *name =
        json_string_value(json_object_get(arguments, "task_name"));
    return name ? cel__app_find_task(worker->app, name) : NULL;
}

static json_t *cmd_rate_limit(cel_worker_t *worker, json_t *arguments)
{
    cel_task_t *task = named_task(worker, arguments);
    if (task == NULL)
        return nok("unknown task");
    json_t *value = json_object_get(arguments, "rate_limit");
    const char *text = json_string_value(value);
    double rate = 0;
    if (json_is_number(value))
        rate = json_number_value(value);
    else if (text != NULL && text[0] != '\0' &&
             cel__rate_parse(text, &rate) != CEL_OK) {
        char message[300];
        snprintf(message, sizeof message, "Invalid rate limit string: %.200s",
                 text);
        return nok(message);
    }
    task->rate_per_second = rate;
    task->rate_tokens = rate > 0 ? 1 : 0;
    task->rate_updated = cel__monotonic();
    cel__log(worker->app, CEL_LOG_INFO,
             "New rate limit for tasks of type %s: %g per second", task->name,
             rate);
    return ok(rate > 0 ? "new rate limit set successfully"
                       : "rate limit disabled successfully");
}

static json_t *cmd_time_limit(cel_worker_t *worker, json_t *arguments)
{
    cel_task_t *task = named_task(worker, arguments);
    if (task == NULL)
        return nok("unknown task");
    json_t *hard = json_object_get(arguments, "hard");
    json_t *soft = json_object_get(arguments, "soft");
    task->time_limit = json_is_number(hard) ? json_number_value(hard) : 0;
    task->soft_time_limit = json_is_number(soft) ? json_number_value(soft) : 0;
    return ok("time limits set successfully");
}

static json_t *cmd_add_consumer(cel_worker_t *worker, json_t *arguments)
{
    const char *queue = json_string_value(json_object_get(arguments, "queue"));
    if (queue == NULL || queue[0] == '\0' || strlen(queue) > 255)
        return nok("invalid queue name");
    char reply[512];
    for (size_t i = 0; i < worker->queue_count; i++)
        if (strcmp(worker->queues[i], queue) == 0) {
            snprintf(reply, sizeof reply, "already consuming from %s", queue);
            return ok(reply);
        }
    if (worker->broker == NULL)
        return nok("not connected to the broker");
    int priority = worker->app->settings.task_queue_max_priority;
    if (cel__broker_try_declare(worker->broker, queue, priority) != CEL_OK) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "add_consumer %.255s rejected: %s", queue,
                 cel__broker_error(worker->broker));
        snprintf(reply, sizeof reply, "cannot consume from %.200s: %.90s",
                 queue, cel__broker_error(worker->broker));
        return nok(reply);
    }
    bool existing = false;
    int status = cel__broker_declare_task_queue(worker->broker, queue, priority,
                                                &existing);
    if (status == CEL_OK)
        status = cel__broker_consume(worker->broker, queue);
    if (status != CEL_OK) {
        cel__log(worker->app, CEL_LOG_ERROR, "Cannot consume from %s: %s",
                 queue, cel__broker_error(worker->broker));
        return nok("cannot consume from the queue");
    }
    if (cel_worker_add_queue(worker, queue) != CEL_OK)
        return nok("out of memory");
    cel__log(worker->app, CEL_LOG_INFO, "Started consuming from %s", queue);
    snprintf(reply, sizeof reply, "add consumer %s", queue);
    return ok(reply);
}

static json_t *cmd_cancel_consumer(cel_worker_t *worker, json_t *arguments)
{
    const char *queue = json_string_value(json_object_get(arguments, "queue"));
    if (queue == NULL)
        return nok("missing queue");
    for (size_t i = 0; i < worker->queue_count; i++) {
        if (strcmp(worker->queues[i], queue) != 0)
            continue;
        if (worker->broker != NULL &&
            cel__broker_cancel_queue(worker->broker, queue) != CEL_OK)
            cel__log(worker->app, CEL_LOG_ERROR,
                     "Cannot cancel the consumer of %s: %s", queue,
                     cel__broker_error(worker->broker));
        free(worker->queues[i]);
        memmove(&worker->queues[i], &worker->queues[i + 1],
                (worker->queue_count - i - 1) * sizeof worker->queues[0]);
        worker->queue_count--;
        break;
    }
    cel__log(worker->app, CEL_LOG_INFO, "No longer consuming from %s", queue);
    char reply[512];
    snprintf(reply, sizeof reply, "no longer consuming from %.255s", queue);
    return ok(reply);
}

static json_t *cmd_conf(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    return cel__settings_dump(worker->app);
}

static json_t *cmd_report(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    char text[512];
    snprintf(text, sizeof text,
             "software -> celeriac:%s\nplatform -> C worker\nsettings -> "
             "pool:%s concurrency:%d",
             CEL_VERSION, worker->pool->name, worker->pool->size);
    return ok(text);
}

static json_t *cmd_enable_events(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    if (worker->task_events)
        return ok("task events already enabled");
    worker->task_events = true;
    cel__log(worker->app, CEL_LOG_INFO,
             "Events of group {task} enabled by "
             "remote.");
    return ok("task events enabled");
}

static json_t *cmd_disable_events(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    if (!worker->task_events)
        return ok("task events already disabled");
    worker->task_events = false;
    cel__log(worker->app, CEL_LOG_INFO,
             "Events of group {task} disabled by "
             "remote.");
    return ok("task events disabled");
}

static json_t *cmd_heartbeat(cel_worker_t *worker, json_t *arguments)
{
    (void)arguments;
    cel__event_wakeup_heartbeat(worker);
    return json_null();
}

static json_t *cmd_hello(cel_worker_t *worker, json_t *arguments)
{
    const char *from =
        json_string_value(json_object_get(arguments, "from_node"));
    if (from != NULL && strcmp(from, worker->nodename) == 0)
        return json_null();
    json_t *revoked = json_object_get(arguments, "revoked");
    if (json_is_object(revoked))
        cel__revoked_merge(worker->revoked, revoked, cel__monotonic());
    return json_pack("{s:o, s:I}", "revoked",
                     cel__revoked_dump(worker->revoked, cel__monotonic()),
                     "clock", (json_int_t)cel__clock_forward(worker));
}

static json_t *cmd_pool_resize(cel_worker_t *worker, json_t *arguments)
{
    (void)worker;
    (void)arguments;
    return nok("pool resizing is not supported by celeriac");
}

static json_t *cmd_autoscale(cel_worker_t *worker, json_t *arguments)
{
    (void)worker;
    (void)arguments;
    return nok("ValueError('Autoscale not enabled')");
}

static const struct {
    const char *name;
    command_fn fn;
} COMMANDS[] = {
    {"ping", cmd_ping},
    {"clock", cmd_clock},
    {"stats", cmd_stats},
    {"registered", cmd_registered},
    {"dump_tasks", cmd_registered},
    {"active", cmd_active},
    {"dump_active", cmd_active},
    {"reserved", cmd_reserved},
    {"dump_reserved", cmd_reserved},
    {"scheduled", cmd_scheduled},
    {"dump_schedule", cmd_scheduled},
    {"revoked", cmd_revoked},
    {"dump_revoked", cmd_revoked},
    {"query_task", cmd_query_task},
    {"active_queues", cmd_active_queues},
    {"revoke", cmd_revoke},
    {"terminate", cmd_terminate},
    {"shutdown", cmd_shutdown},
    {"rate_limit", cmd_rate_limit},
    {"time_limit", cmd_time_limit},
    {"add_consumer", cmd_add_consumer},
    {"cancel_consumer", cmd_cancel_consumer},
    {"conf", cmd_conf},
    {"dump_conf", cmd_conf},
    {"report", cmd_report},
    {"enable_events", cmd_enable_events},
    {"disable_events", cmd_disable_events},
    {"heartbeat", cmd_heartbeat},
    {"hello", cmd_hello},
    {"pool_grow", cmd_pool_resize},
    {"pool_shrink", cmd_pool_resize},
    {"autoscale", cmd_autoscale},
};

/* ---- dispatch ----------------------------------------------------------- */

/* Whether a request addresses this node: no destination and no pattern
 * means everybody; a glob pattern is matched with fnmatch. */
static bool addressed_to_me(const cel_worker_t *worker, json_t *request)
{
    json_t *destination = json_object_get(request, "destination");
    const char *pattern =
        json_string_value(json_object_get(request, "pattern"));
    /* A destination that is neither null nor a list matches no node, so a
     * malformed request is never taken as a broadcast. */
    if (destination != NULL && !json_is_null(destination) &&
        !json_is_array(destination))
        return false;
    if (json_array_size(destination) > 0) {
        size_t index;
        json_t *name;
        json_array_foreach(destination, index, name) {
            const char *text = json_string_value(name);
            if (text != NULL && strcmp(text, worker->nodename) == 0)
                return true;
        }
        return false;
    }
    if (pattern != NULL) {
        const char *matcher =
            json_string_value(json_object_get(request, "matcher"));
        if (matcher != NULL && strcmp(matcher, "glob") != 0)
            return false; /* pcre patterns are not supported */
        return fnmatch(pattern, worker->nodename, 0) == 0;
    }
    return true;
}

static void send_reply(cel_worker_t *worker, json_t *request, json_t *payload)
{
    json_t *reply_to = json_object_get(request, "reply_to");
    const char *exchange =
        json_string_value(json_object_get(reply_to, "exchange"));
    const char *routing_key =
        json_string_value(json_object_get(reply_to, "routing_key"));
    const char *ticket = json_string_value(json_object_get(request, "ticket"));
    if (exchange == NULL || routing_key == NULL || worker->broker == NULL)
        return;
    /* Publishing to a missing exchange would close the channel, so replies
     * only go to the one the worker declared. */
    if (strcmp(exchange, "reply.celery.pidbox") != 0) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Not replying to a control request: reply exchange "
                 "'%.100s' is not reply.celery.pidbox",
                 exchange);
        return;
    }
    json_t *body_object = json_object();
    json_object_set(body_object, worker->nodename,
                    payload ? payload : json_null());
    char *body = json_dumps(body_object, JSON_COMPACT);
    json_decref(body_object);
    json_t *headers =
        json_pack("{s:s, s:I}", "ticket", ticket ? ticket : "", "clock",
                  (json_int_t)cel__clock_forward(worker));
    cel__publish_t msg = {
        .exchange = exchange,
        .routing_key = routing_key,
        .delivery_mode = 1,
        .priority = -1,
        .headers = headers,
        .body = body,
        .body_len = body ? strlen(body) : 0,
    };
    if (body != NULL && cel__broker_publish(worker->broker, &msg) != CEL_OK)
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot send the control reply to %s: %s", routing_key,
                 cel__broker_error(worker->broker));
    json_decref(headers);
    free(body);
}

/* Merges the replies to this node's hello: other workers' revoked ids and
 * clocks. */
static void handle_mingle_reply(cel_worker_t *worker, json_t *reply)
{
    const char *node;
    json_t *payload;
    json_object_foreach(reply, node, payload) {
        if (strcmp(node, worker->nodename) == 0 || !json_is_object(payload))
            continue;
        json_t *clock = json_object_get(payload, "clock");
        if (json_is_integer(clock))
            cel__clock_adjust(worker, (unsigned long)json_integer_value(clock));
        json_t *revoked = json_object_get(payload, "revoked");
        if (json_is_object(revoked))
            cel__revoked_merge(worker->revoked, revoked, cel__monotonic());
        worker->mingle_replies++;
    }
}

int cel__control_mingle(cel_worker_t *worker, const char *reply_key)
{
    char ticket[37];
    uuid_t raw;
    uuid_generate(raw);
    uuid_unparse_lower(raw, ticket);
    json_t *request = json_pack(
        "{s:s, s:{s:s, s:o}, s:n, s:n, s:n, s:s, s:{s:s, s:s}}", "method",
        "hello", "arguments", "from_node", worker->nodename, "revoked",
        cel__revoked_dump(worker->revoked, cel__monotonic()), "destination",
        "pattern", "matcher", "ticket", ticket, "reply_to", "exchange",
        "reply.celery.pidbox", "routing_key", reply_key);
    char *body = request ? json_dumps(request, JSON_COMPACT) : NULL;
    json_decref(request);
    if (body == NULL)
        return CEL_ENOMEM;
    json_t *headers =
        json_pack("{s:I, s:f}", "clock", (json_int_t)cel__clock_forward(worker),
                  "expires", cel__now() + 1.0);
    cel__publish_t msg = {
        .exchange = "celery.pidbox",
        .routing_key = "",
        .delivery_mode = 1,
        .priority = -1,
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
    };
    int status = cel__broker_publish(worker->broker, &msg);
    json_decref(headers);
    free(body);
    return status;
}

void cel__control_handle(cel_worker_t *worker, amqp_envelope_t *envelope)
{
    const amqp_bytes_t *body = &envelope->message.body;
    if (envelope->exchange.len == 19 &&
        memcmp(envelope->exchange.bytes, "reply.celery.pidbox", 19) == 0) {
        json_t *reply = json_loadb(body->bytes, body->len, 0, NULL);
        if (json_is_object(reply))
            handle_mingle_reply(worker, reply);
        json_decref(reply);
        return;
    }
    json_error_t error;
    json_t *request = json_loadb(body->bytes, body->len, 0, &error);
    const char *method = json_string_value(json_object_get(request, "method"));
    if (!json_is_object(request) || method == NULL) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Dropping a remote-control message that is not a command: "
                 "%s",
                 request ? "method missing or not a string" : error.text);
        if (json_is_object(request) && addressed_to_me(worker, request)) {
            json_t *payload = nok("TypeError('method must be a string')");
            send_reply(worker, request, payload);
            json_decref(payload);
        }
        json_decref(request);
        return;
    }
    if (!addressed_to_me(worker, request)) {
        json_decref(request);
        return;
    }
    const amqp_basic_properties_t *props = &envelope->message.properties;
    if (props->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < props->headers.num_entries; i++) {
            const amqp_table_entry_t *entry = &props->headers.entries[i];
            if (entry->key.len == 5 &&
                memcmp(entry->key.bytes, "clock", 5) == 0) {
                const amqp_field_value_t *v = &entry->value;
                if (v->kind == AMQP_FIELD_KIND_I64 ||
                    v->kind == AMQP_FIELD_KIND_U64)
                    cel__clock_adjust(worker, (unsigned long)v->value.i64);
                else if (v->kind == AMQP_FIELD_KIND_I32)
                    cel__clock_adjust(worker, (unsigned long)v->value.i32);
            }
        }
    }
    json_t *arguments = json_object_get(request, "arguments");
    if (!json_is_object(arguments))
        arguments = NULL;
    json_t *empty = json_object();

    command_fn fn = NULL;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (strcmp(COMMANDS[i].name, method) == 0)
            fn = COMMANDS[i].fn;
    cel__log(worker->app, CEL_LOG_DEBUG, "pidbox received method %s", method);
    json_t *payload;
    if (fn == NULL) {
        char text[300];
        snprintf(text, sizeof text, "KeyError('%.200s')", method);
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Unknown remote-control command %.200s", method);
        payload = nok(text);
    } else {
        payload = fn(worker, arguments ? arguments : empty);
    }
    /* shutdown never replies, as in Celery. */
    if (fn != cmd_shutdown)
        send_reply(worker, request, payload);
    json_decref(payload);
    json_decref(empty);
    json_decref(request);
}
