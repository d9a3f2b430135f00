/* Celery events: worker-online, worker-heartbeat and worker-offline always,
 * task events with -E or after the enable_events command. Each is one JSON
 * object published to the celeryev topic exchange. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "worker_internal.h"

/* Seconds between worker-heartbeat events, as Celery's Heart sends them. */
#define HEARTBEAT_FREQ 2.0

/* Hours west of UTC, floor-divided, as Celery's utcoffset() reports. */
static int utc_offset_hours(void)
{
    time_t now = time(NULL);
    struct tm local;
    localtime_r(&now, &local);
    return (int)floor(-(double)local.tm_gmtoff / 3600.0);
}

unsigned long cel__clock_forward(cel_worker_t *worker)
{
    return ++worker->clock;
}

void cel__clock_adjust(cel_worker_t *worker, unsigned long other)
{
    if (other > worker->clock)
        worker->clock = other;
    worker->clock++;
}

void cel__event_send(cel_worker_t *worker, const char *type, json_t *fields)
{
    if (fields == NULL)
        fields = json_object();
    if (worker->broker == NULL || fields == NULL) {
        json_decref(fields);
        return;
    }
    json_object_set_new(fields, "type", json_string(type));
    json_object_set_new(fields, "hostname", json_string(worker->nodename));
    json_object_set_new(fields, "timestamp", json_real(cel__now()));
    json_object_set_new(fields, "utcoffset", json_integer(utc_offset_hours()));
    json_object_set_new(fields, "pid", json_integer((json_int_t)getpid()));
    json_object_set_new(fields, "clock",
                        json_integer((json_int_t)cel__clock_forward(worker)));
    char *body = cel__json_dump(fields, NULL);
    json_decref(fields);
    if (body == NULL)
        return;

    char routing_key[64];
    snprintf(routing_key, sizeof routing_key, "%s", type);
    for (char *c = routing_key; *c; c++)
        if (*c == '-')
            *c = '.';
    json_t *headers = json_pack("{s:s}", "hostname", worker->nodename);
    cel__publish_t msg = {
        .exchange = "celeryev",
        .routing_key = routing_key,
        .delivery_mode = 1,
        .priority = -1,
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
    };
    if (cel__broker_publish(worker->broker, &msg) != CEL_OK)
        cel__log(worker->app, CEL_LOG_WARNING, "Cannot send the %s event: %s",
                 type, cel__broker_error(worker->broker));
    json_decref(headers);
    free(body);
}

void cel__event_task(cel_worker_t *worker, const char *type,
                     const cel__request_t *request, json_t *fields)
{
    if (!worker->task_events || worker->broker == NULL) {
        json_decref(fields);
        return;
    }
    if (fields == NULL)
        fields = json_object();
    if (fields == NULL)
        return;
    json_object_set_new(fields, "uuid", json_string(request->msg.id));
    cel__event_send(worker, type, fields);
}

void cel__event_task_failed(cel_worker_t *worker, const cel__request_t *request,
                            const char *exception, const char *traceback)
{
    if (!worker->task_events)
        return;
    cel__event_task(worker, "task-failed", request,
                    json_pack("{s:s, s:s}", "exception",
                              exception ? exception : "", "traceback",
                              traceback ? traceback : ""));
}

void cel__event_task_received(cel_worker_t *worker,
                              const cel__request_t *request)
{
    if (!worker->task_events)
        return;
    const cel__task_message_t *msg = &request->msg;
    char *args, *kwargs;
    cel__request_argument_reprs(request, &args, &kwargs);
    json_t *fields = json_pack(
        "{s:s, s:s, s:s, s:o, s:o, s:i, s:o, s:o}", "name", msg->task, "args",
        args ? args : "()", "kwargs", kwargs ? kwargs : "{}", "root_id",
        msg->root_id ? json_string(msg->root_id) : json_null(), "parent_id",
        msg->parent_id ? json_string(msg->parent_id) : json_null(), "retries",
        msg->retries, "eta", msg->eta ? json_string(msg->eta) : json_null(),
        "expires", msg->expires ? json_string(msg->expires) : json_null());
    free(args);
    free(kwargs);
    cel__event_task(worker, "task-received", request, fields);
}

/* Load averages rounded up to two decimals, as Celery's heartbeat sends. */
static json_t *load_average(void)
{
    double loads[3] = {0, 0, 0};
    if (getloadavg(loads, 3) != 3)
        loads[0] = loads[1] = loads[2] = 0;
    return json_pack("[f, f, f]", ceil(loads[0] * 100) / 100,
                     ceil(loads[1] * 100) / 100, ceil(loads[2] * 100) / 100);
}

static json_t *software_fields(double freq)
{
    struct utsname system;
    const char *name = uname(&system) == 0 ? system.sysname : "Linux";
    return json_pack("{s:f, s:s, s:s, s:s}", "freq", freq, "sw_ident",
                     "celeriac", "sw_ver", CEL_VERSION, "sw_sys", name);
}

void cel__event_worker(cel_worker_t *worker, const char *type)
{
    json_t *fields = software_fields(HEARTBEAT_FREQ);
    if (fields == NULL)
        return;
    json_object_set_new(fields, "active", json_integer(worker->pool->busy));
    json_object_set_new(fields, "processed",
                        json_integer((json_int_t)worker->processed));
    json_object_set_new(fields, "loadavg", load_average());
    cel__event_send(worker, type, fields);
    worker->next_heartbeat = cel__monotonic() + HEARTBEAT_FREQ;
}

void cel__event_heartbeat_if_due(cel_worker_t *worker)
{
    if (worker->broker != NULL && cel__monotonic() >= worker->next_heartbeat)
        cel__event_worker(worker, "worker-heartbeat");
}

void cel__event_wakeup_heartbeat(cel_worker_t *worker)
{
    /* The heartbeat command's extra event: freq 5 and the sw_* fields. */
    cel__event_send(worker, "worker-heartbeat", software_fields(5.0));
}
