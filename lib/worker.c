/* The worker loop: connect, declare, consume, hold ETA tasks, reconnect. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "revoked.h"
#include "worker_internal.h"

/* Maximum time the loop sleeps, so heartbeats and stop requests are seen. */
#define POLL_SECONDS 0.25
/* Frames read from the broker before the pool is serviced again. */
#define FRAMES_PER_PASS     256
#define POLL_FDS_MAX        1025
#define PREFETCH_COUNT_MAX  65535
#define RECONNECT_MAX_DELAY 10.0

cel_worker_t *cel_worker_new(cel_app_t *app)
{
    cel_worker_t *worker = calloc(1, sizeof *worker);
    if (worker == NULL)
        return NULL;
    worker->app = app;
    /* Celery keeps up to 50000 revoked ids for 3 hours. */
    worker->revoked = cel__revoked_new(50000, 10800);
    if (worker->revoked == NULL) {
        free(worker);
        return NULL;
    }
    worker->mingle = true;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    if (asprintf(&worker->nodename, "celery@%s", host) < 0) {
        cel__revoked_free(worker->revoked);
        free(worker);
        return NULL;
    }
    return worker;
}

void cel_worker_free(cel_worker_t *worker)
{
    if (worker == NULL)
        return;
    cel__eta_clear(&worker->eta);
    cel__ready_clear(&worker->ready);
    cel__ready_clear(&worker->duplicates);
    cel__ready_clear(&worker->rate_held);
    cel__broker_free(worker->broker);
    cel__revoked_free(worker->revoked);
    if (worker->pool != NULL) {
        worker->pool->ops->stop(worker->pool);
        worker->pool->ops->free(worker->pool);
    }
    cel__free_pending_results(worker);
    free(worker->unsent);
    cel__canvas_free(worker);
    cel__redis_backend_free(worker);
    for (size_t i = 0; i < worker->queue_count; i++)
        free(worker->queues[i]);
    free(worker->queues);
    free(worker->nodename);
    free(worker);
}

int cel_worker_set_nodename(cel_worker_t *worker, const char *nodename)
{
    char *copy = strdup(nodename);
    if (copy == NULL)
        return CEL_ENOMEM;
    free(worker->nodename);
    worker->nodename = copy;
    return CEL_OK;
}

void cel_worker_set_mingle(cel_worker_t *worker, bool enabled)
{
    worker->mingle = enabled;
}

int cel_worker_add_queue(cel_worker_t *worker, const char *queue)
{
    if (queue == NULL || queue[0] == '\0')
        return CEL_EINVAL;
    char **grown =
        realloc(worker->queues, (worker->queue_count + 1) * sizeof *grown);
    if (grown == NULL)
        return CEL_ENOMEM;
    worker->queues = grown;
    if ((grown[worker->queue_count] = strdup(queue)) == NULL)
        return CEL_ENOMEM;
    worker->queue_count++;
    return CEL_OK;
}

void cel_worker_stop(cel_worker_t *worker)
{
    worker->stop_requested = 1;
}

const char *cel_worker_last_error(const cel_worker_t *worker)
{
    return worker->last_error;
}

bool cel__ack(cel_worker_t *worker, cel__request_t *request)
{
    /* A second ack of one tag would make the broker close the channel. */
    if (request->settled)
        return true;
    request->settled = true;
    if (request->connection_epoch != worker->connection_epoch ||
        worker->broker == NULL)
        return false;
    if (cel__broker_ack(worker->broker, request->delivery_tag) != CEL_OK) {
        cel__log(worker->app, CEL_LOG_ERROR, "Cannot ack task %s: %s",
                 request->msg.id, cel__broker_error(worker->broker));
        return false;
    }
    return true;
}

void cel__reject(cel_worker_t *worker, cel__request_t *request, bool requeue)
{
    if (request->settled)
        return;
    request->settled = true;
    if (request->connection_epoch != worker->connection_epoch ||
        worker->broker == NULL)
        return;
    if (cel__broker_reject(worker->broker, request->delivery_tag, requeue) !=
        CEL_OK)
        cel__log(worker->app, CEL_LOG_ERROR, "Cannot reject task %s: %s",
                 request->msg.id, cel__broker_error(worker->broker));
}

/* Appends a request to one of the worker's queues, or gives it back to the
 * broker when memory runs out. Takes ownership of the request. */
static void queue_or_requeue(cel_worker_t *worker, cel__request_queue_t *queue,
                             cel__request_t *request)
{
    if (cel__ready_push(queue, request) == CEL_OK)
        return;
    cel__reject(worker, request, true);
    cel__request_free(request);
}

/* ---- prefetch ----------------------------------------------------------- */

/* Tells the broker the prefetch count when it changed: the base count plus
 * one for every ETA task held, so due tasks never wait behind them. */
static int update_prefetch(cel_worker_t *worker)
{
    int wanted = 0;
    if (worker->base_prefetch > 0) {
        long total = (long)worker->base_prefetch + (long)worker->eta.count +
                     (long)worker->rate_held.count;
        wanted = total > PREFETCH_COUNT_MAX ? PREFETCH_COUNT_MAX : (int)total;
    }
    if (wanted == worker->applied_prefetch)
        return CEL_OK;
    int status = cel__broker_qos(worker->broker, (uint16_t)wanted);
    if (status == CEL_OK)
        worker->applied_prefetch = wanted;
    return status;
}

static int effective_concurrency(const cel_worker_t *worker)
{
    const cel__settings_t *settings = &worker->app->settings;
    if (settings->worker_pool && strcmp(settings->worker_pool, "solo") == 0)
        return 1;
    if (settings->worker_concurrency > 0)
        return settings->worker_concurrency;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus > 0 ? (int)cpus : 1;
}

/* ---- receiving ---------------------------------------------------------- */

static char *bytes_dup(amqp_bytes_t bytes)
{
    char *text = malloc(bytes.len + 1);
    if (text != NULL) {
        /* rabbitmq-c leaves bytes NULL for an empty string, such as an
         * empty reply_to, and memcpy from NULL is undefined even for 0. */
        if (bytes.len > 0)
            memcpy(text, bytes.bytes, bytes.len);
        text[bytes.len] = '\0';
    }
    return text;
}

/* Copies a short-string property, or NULL when the flag is not set. */
static char *property(const amqp_basic_properties_t *props, int flag,
                      amqp_bytes_t value)
{
    return props->_flags & flag ? bytes_dup(value) : NULL;
}

static void drop_undecodable(cel_worker_t *worker, cel__request_t *request,
                             const char *why)
{
    const cel__task_message_t *msg = &request->msg;
    cel__log(worker->app, CEL_LOG_WARNING,
             "Dropping undecodable message for task %s[%s] (acked): %s",
             msg->task ? msg->task : "?", msg->id ? msg->id : "?", why);
    if (msg->id != NULL)
        cel__store_exception(worker, msg, "FAILURE", "DecodeError",
                             "kombu.exceptions", why, NULL);
    cel__ack(worker, request);
}

static void reject_invalid(cel_worker_t *worker, cel__request_t *request,
                           const char *why)
{
    const cel__task_message_t *msg = &request->msg;
    cel__log(worker->app, CEL_LOG_WARNING,
             "Rejecting invalid task message %s[%s] (not requeued): %s",
             msg->task ? msg->task : "?", msg->id ? msg->id : "?", why);
    /* The client waiting on the id gets the reason instead of nothing. */
    if (msg->id != NULL)
        cel__store_exception(worker, msg, "FAILURE", "InvalidTaskError",
                             "celery.exceptions", why, NULL);
    cel__reject(worker, request, false);
}

static void reject_unregistered(cel_worker_t *worker, cel__request_t *request)
{
    const cel__task_message_t *msg = &request->msg;
    cel__log(worker->app, CEL_LOG_WARNING,
             "Rejecting task %s (not requeued): task '%s' is not "
             "registered in this worker",
             msg->id, msg->task);
    cel__store_exception(worker, msg, "FAILURE", "NotRegistered",
                         "celery.exceptions", msg->task, NULL);
    if (worker->task_events && msg->id != NULL) {
        char *repr = cel__exception_repr("NotRegistered", msg->task);
        cel__event_task_failed(worker, request, repr, "");
        free(repr);
    }
    cel__reject(worker, request, false);
}

void cel__revoke_request(cel_worker_t *worker, cel__request_t *request,
                         const char *reason, int signum)
{
    const cel__task_message_t *msg = &request->msg;
    if (strcmp(reason, "expired") == 0)
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Discarding expired task %s[%s] (acked): it expired at %s",
                 msg->task, msg->id, msg->expires);
    else
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Discarding revoked task %s[%s] (acked): %s", msg->task,
                 msg->id, reason);
    json_t *exc =
        cel__exception_new("TaskRevokedError", "celery.exceptions", reason);
    if (cel__stores_errors(worker, request->task))
        cel__store_result(worker, msg, "REVOKED", exc, NULL, NULL);
    /* A revoked chord member still counts, so the chord fails at once. */
    cel__canvas_chord_part(worker, msg, "REVOKED", exc);
    json_decref(exc);
    cel__event_task(worker, "task-revoked", request,
                    json_pack("{s:b, s:o, s:b}", "terminated",
                              strcmp(reason, "terminated") == 0, "signum",
                              signum ? json_integer(signum) : json_null(),
                              "expired", strcmp(reason, "expired") == 0));
    cel__ack(worker, request);
}

void cel__revoke_expired(cel_worker_t *worker, cel__request_t *request)
{
    cel__revoke_request(worker, request, "expired", 0);
}

/* Returns a copy of the header `key` when it is printable ASCII text, for
 * naming a message whose headers cannot all be read; else NULL. */
static char *table_text(const amqp_basic_properties_t *props, const char *key)
{
    if (!(props->_flags & AMQP_BASIC_HEADERS_FLAG))
        return NULL;
    size_t key_len = strlen(key);
    for (int i = 0; i < props->headers.num_entries; i++) {
        const amqp_table_entry_t *entry = &props->headers.entries[i];
        const amqp_field_value_t *value = &entry->value;
        if (entry->key.len != key_len ||
            memcmp(entry->key.bytes, key, key_len) != 0 ||
            (value->kind != AMQP_FIELD_KIND_UTF8 &&
             value->kind != AMQP_FIELD_KIND_BYTES))
            continue;
        const unsigned char *text = value->value.bytes.bytes;
        size_t len = value->value.bytes.len;
        if (len == 0 || len > 255)
            return NULL;
        for (size_t j = 0; j < len; j++)
            if (text[j] < 0x20 || text[j] > 0x7e)
                return NULL;
        return strndup((const char *)text, len);
    }
    return NULL;
}

/* True when the decoder can take the fields straight from the headers
 * (cel__table_read_fields), which is the case for Celery's own v2
 * messages. Their headers object is built only when a task or a retry
 * needs it, from a copy of the encoded properties. */
static bool read_fields_directly(cel_worker_t *worker,
                                 const amqp_envelope_t *envelope,
                                 cel__task_fields_t *fields)
{
    const amqp_basic_properties_t *props = &envelope->message.properties;
    const amqp_bytes_t *body = &envelope->message.body;
    return (props->_flags & AMQP_BASIC_HEADERS_FLAG) && body->len > 0 &&
           ((const char *)body->bytes)[0] == '[' &&
           cel__table_read_fields(&props->headers, worker->limits.max_headers,
                                  fields);
}

static int decode_delivery(cel_worker_t *worker, amqp_envelope_t *envelope,
                           amqp_bytes_t raw_properties, cel__request_t *request,
                           char *why, size_t why_len)
{
    const amqp_basic_properties_t *props = &envelope->message.properties;
    json_t *headers = NULL;
    int status = CEL_OK;
    cel__task_fields_t fields;
    bool direct = read_fields_directly(worker, envelope, &fields);
    if (direct) {
        request->properties = malloc(raw_properties.len);
        if (request->properties != NULL) {
            memcpy(request->properties, raw_properties.bytes,
                   raw_properties.len);
            request->properties_len = raw_properties.len;
        } else {
            /* Reported as the JSON path reports it. */
            direct = false;
            status = CEL_ENOMEM;
            snprintf(why, why_len, "out of memory while reading the headers");
        }
    } else if (props->_flags & AMQP_BASIC_HEADERS_FLAG) {
        status = cel__table_to_json(&props->headers, worker->limits.max_headers,
                                    &headers, why, why_len);
    }

    char *content_type =
        property(props, AMQP_BASIC_CONTENT_TYPE_FLAG, props->content_type);
    char *correlation_id =
        property(props, AMQP_BASIC_CORRELATION_ID_FLAG, props->correlation_id);
    char *reply_to = property(props, AMQP_BASIC_REPLY_TO_FLAG, props->reply_to);
    cel__wire_message_t wire = {
        .content_type = content_type,
        .correlation_id = correlation_id,
        .reply_to = reply_to,
        .priority =
            props->_flags & AMQP_BASIC_PRIORITY_FLAG ? props->priority : -1,
        .headers = headers,
        .fields = direct ? &fields : NULL,
        .body = envelope->message.body.bytes,
        .body_len = envelope->message.body.len,
    };
    if (status == CEL_OK) {
        status = cel__task_decode(&wire, &worker->limits, &request->msg, why,
                                  why_len);
    } else {
        /* Enough of the message for the client to get the reason. */
        memset(&request->msg, 0, sizeof request->msg);
        request->msg.id = table_text(props, "id");
        if (request->msg.id == NULL && correlation_id != NULL)
            request->msg.id = strdup(correlation_id);
        request->msg.task = table_text(props, "task");
        request->msg.reply_to = reply_to;
        request->msg.correlation_id = correlation_id;
        reply_to = NULL;
        correlation_id = NULL;
    }
    free(content_type);
    free(correlation_id);
    free(reply_to);
    json_decref(headers);
    return status;
}

static void log_received(cel_worker_t *worker, const cel__request_t *request)
{
    const cel__task_message_t *msg = &request->msg;
    if (msg->eta != NULL)
        cel__log(worker->app, CEL_LOG_INFO, "Task %s[%s] received, ETA %s",
                 msg->task, msg->id, msg->eta);
    else
        cel__log(worker->app, CEL_LOG_INFO, "Task %s[%s] received", msg->task,
                 msg->id);
}

/* A body at least this long, joined from several frames, is kept for a
 * pool that takes bodies. */
#define KEEP_BODY_MIN 65536

/* Moves a long body that read_delivery joined into the request, when the
 * pool takes bodies and the child can parse the same bytes the decoder
 * parsed: a v2 [args, kwargs, embed] list without compression. */
static void keep_body(cel_worker_t *worker, cel__request_t *request,
                      char **joined, size_t len)
{
    const cel__task_message_t *msg = &request->msg;
    if (*joined == NULL || len < KEEP_BODY_MIN || !worker->pool->takes_body ||
        msg->protocol != 2 || msg->hybrid ||
        json_object_get(msg->headers, "compression") != NULL)
        return;
    request->body = *joined;
    request->body_len = len;
    *joined = NULL;
    /* One copy of the arguments is enough while the message waits. */
    json_decref(request->msg.args);
    json_decref(request->msg.kwargs);
    request->msg.args = NULL;
    request->msg.kwargs = NULL;
}

/* Decides what to do with one delivery and does it. Takes the envelope's
 * contents; the caller destroys the envelope. `joined` is read_delivery's
 * joined body, which the request may take (keep_body). */
static void handle_delivery(cel_worker_t *worker, amqp_envelope_t *envelope,
                            amqp_bytes_t raw_properties, char **joined)
{
    if (!worker->consuming) {
        /* A delivery in flight when a warm shutdown cancelled the
         * consumers goes back to its queue. */
        cel__broker_reject(worker->broker, envelope->delivery_tag, true);
        return;
    }
    cel__request_t *request = calloc(1, sizeof *request);
    if (request == NULL) {
        /* Nothing can be done without memory; the broker keeps it. */
        cel__broker_reject(worker->broker, envelope->delivery_tag, true);
        return;
    }
    request->delivery_tag = envelope->delivery_tag;
    request->connection_epoch = worker->connection_epoch;
    request->redelivered = envelope->redelivered;
    request->exchange = bytes_dup(envelope->exchange);
    request->routing_key = bytes_dup(envelope->routing_key);

    char why[512];
    int status = decode_delivery(worker, envelope, raw_properties, request,
                                 why, sizeof why);
    if (status == CEL_EDECODE || status == CEL_ETOODEEP) {
        drop_undecodable(worker, request, why);
        goto done;
    }
    if (status != CEL_OK) {
        reject_invalid(worker, request, why);
        goto done;
    }
    request->task = cel__app_find_task(worker->app, request->msg.task);
    if (request->task == NULL) {
        reject_unregistered(worker, request);
        goto done;
    }
    keep_body(worker, request, joined, envelope->message.body.len);
    if (request->msg.expires != NULL && cel__now() > request->msg.expires_ts) {
        cel__revoke_expired(worker, request);
        goto done;
    }
    if (request->redelivered &&
        worker->pool->ops->is_running(worker->pool, request->msg.id)) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Task %s[%s] was redelivered while its first run goes on; "
                 "the copy is held until that run ends, then acked",
                 request->msg.task, request->msg.id);
        queue_or_requeue(worker, &worker->duplicates, request);
        return;
    }
    log_received(worker, request);
    cel__event_task_received(worker, request);
    if (cel__revoked_contains(worker->revoked, request->msg.id,
                              cel__monotonic())) {
        cel__revoke_request(worker, request, "revoked", 0);
        goto done;
    }
    if (request->msg.eta != NULL && request->msg.eta_ts > cel__now()) {
        if (cel__eta_push(&worker->eta, request) == CEL_OK) {
            update_prefetch(worker);
            return;
        }
    }
    queue_or_requeue(worker, &worker->ready, request);
    return;

done:
    cel__request_free(request);
}

/* Moves every held ETA task that is due to the ready queue. */
static void release_due(cel_worker_t *worker)
{
    bool moved = false;
    cel__request_t *next;
    while ((next = cel__eta_peek(&worker->eta)) != NULL &&
           next->msg.eta_ts <= cel__now()) {
        queue_or_requeue(worker, &worker->ready, cel__eta_pop(&worker->eta));
        moved = true;
    }
    if (moved && worker->broker != NULL)
        update_prefetch(worker);
}

/* Takes a token from the task's rate-limit bucket (capacity 1), or
 * returns false when none is there yet. */
static bool take_token(cel_task_t *task, double now)
{
    if (task->rate_per_second <= 0)
        return true;
    task->rate_tokens += (now - task->rate_updated) * task->rate_per_second;
    if (task->rate_tokens > 1)
        task->rate_tokens = 1;
    task->rate_updated = now;
    if (task->rate_tokens < 1)
        return false;
    task->rate_tokens -= 1;
    return true;
}

/* Seconds until the earliest rate-limited request gets a token. */
static double rate_wait(const cel_worker_t *worker)
{
    double wait = -1;
    const cel__request_queue_t *held = &worker->rate_held;
    for (size_t i = 0; i < held->count; i++) {
        const cel_task_t *task =
            held->items[(held->head + i) % held->cap]->task;
        if (task->rate_per_second <= 0)
            return 0;
        double until = (1 - task->rate_tokens) / task->rate_per_second -
                       (cel__monotonic() - task->rate_updated);
        if (until < 0)
            until = 0;
        if (wait < 0 || until < wait)
            wait = until;
    }
    return wait;
}

/* Starts held rate-limited requests whose task has a token, in order. */
static void dispatch_rate_held(cel_worker_t *worker)
{
    size_t count = worker->rate_held.count;
    bool started = false;
    for (size_t i = 0; i < count; i++) {
        cel__request_t *request = cel__ready_pop(&worker->rate_held);
        if (cel__pool_has_idle(worker->pool) && !worker->stop_requested &&
            take_token(request->task, cel__monotonic())) {
            cel__start(worker, request);
            started = true;
        } else {
            queue_or_requeue(worker, &worker->rate_held, request);
        }
    }
    if (started && worker->broker != NULL)
        update_prefetch(worker);
}

/* Hands ready requests to idle pool slots, oldest first, then queues
 * more behind running tasks where the pool can. A rate-limited task waits
 * in its own queue, so it never delays other tasks. When nothing else is
 * ready, an idle slot takes back a request queued behind a busy one, so a
 * short task does not wait for a long one while a slot is free. */
static void dispatch_ready(cel_worker_t *worker)
{
    dispatch_rate_held(worker);
    bool held = false;
    cel__pool_t *pool = worker->pool;
    while (worker->ready.count > 0 && !worker->stop_requested) {
        /* A task with an expiry time is not queued, so that it is checked
         * just before it starts, and neither is one the pool refused. */
        const cel__request_t *next = worker->ready.items[worker->ready.head];
        if (!cel__pool_has_idle(pool) &&
            (next->msg.expires != NULL || next->not_queueable ||
             !cel__pool_has_queue_room(pool)))
            break;
        cel__request_t *request = cel__ready_pop(&worker->ready);
        if (request->task->rate_per_second > 0) {
            queue_or_requeue(worker, &worker->rate_held, request);
            held = true;
            continue;
        }
        if (cel__pool_has_idle(pool)) {
            cel__start(worker, request);
        } else if (!cel__queue(worker, request)) {
            if (cel__ready_push_front(&worker->ready, request) != CEL_OK) {
                cel__reject(worker, request, true);
                cel__request_free(request);
            }
            break;
        }
    }
    cel__request_t *queued;
    while (!worker->stop_requested && cel__pool_has_idle(pool) &&
           (queued = cel__pool_withdraw_any(pool)) != NULL)
        cel__start(worker, queued);
    if (held) {
        dispatch_rate_held(worker);
        if (worker->broker != NULL)
            update_prefetch(worker);
    }
}

/* Gives every message that has not started back to the broker. */
static void requeue_waiting(cel_worker_t *worker)
{
    size_t count =
        worker->ready.count + worker->eta.count + worker->rate_held.count;
    cel__request_t *request;
    /* Queued requests the pool has not started are waiting too. */
    while ((request = cel__pool_withdraw_any(worker->pool)) != NULL) {
        cel__reject(worker, request, true);
        cel__request_free(request);
        count++;
    }
    while ((request = cel__ready_pop(&worker->ready)) != NULL) {
        cel__reject(worker, request, true);
        cel__request_free(request);
    }
    while ((request = cel__ready_pop(&worker->rate_held)) != NULL) {
        cel__reject(worker, request, true);
        cel__request_free(request);
    }
    while ((request = cel__eta_pop(&worker->eta)) != NULL) {
        cel__reject(worker, request, true);
        cel__request_free(request);
    }
    /* Held copies of running tasks stay until those runs end. */
    if (count > 0)
        cel__log(worker->app, CEL_LOG_INFO,
                 "Returned %zu prefetched or scheduled tasks to the broker",
                 count);
}

static void on_pool_done(void *owner, cel__request_t *request, cel__run_t *run)
{
    cel__settle(owner, request, run);
}

static void on_pool_promote(void *owner, cel__request_t *request)
{
    cel__promote(owner, request);
}

/* A queued request whose process ended waits for the next free slot. */
static void on_pool_give_back(void *owner, cel__request_t *request)
{
    cel_worker_t *worker = owner;
    queue_or_requeue(worker, &worker->ready, request);
}

static int inherited_broker_fd(void *owner)
{
    cel_worker_t *worker = owner;
    return worker->broker ? cel__broker_fd(worker->broker) : -1;
}

/* ---- the connection ----------------------------------------------------- */

/* Moves the publishes the connection could not send to the worker, for
 * the next connection. */
static void keep_unsent_publishes(cel_worker_t *worker)
{
    if (worker->broker == NULL)
        return;
    unsigned char *bytes = NULL;
    size_t len = 0;
    size_t count = cel__broker_take_unsent(worker->broker, &bytes, &len);
    if (count == 0) {
        free(bytes);
        return;
    }
    if (worker->unsent == NULL) {
        worker->unsent = bytes;
    } else {
        unsigned char *grown =
            realloc(worker->unsent, worker->unsent_len + len);
        if (grown == NULL) {
            cel__log(worker->app, CEL_LOG_ERROR,
                     "Dropping %zu results the broker did not get: out of "
                     "memory",
                     count);
            free(bytes);
            return;
        }
        memcpy(grown + worker->unsent_len, bytes, len);
        free(bytes);
        worker->unsent = grown;
    }
    worker->unsent_len += len;
    worker->unsent_count += count;
    cel__log(worker->app, CEL_LOG_WARNING,
             "%zu messages the broker did not get are kept for the next "
             "connection",
             count);
}

/* Sends what keep_unsent_publishes kept, on a new connection. */
static void send_unsent_publishes(cel_worker_t *worker)
{
    if (worker->unsent_count == 0)
        return;
    size_t count = worker->unsent_count;
    int status = cel__broker_send_unsent(worker->broker, worker->unsent,
                                         worker->unsent_len, count);
    /* On failure the connection keeps its own copy. */
    free(worker->unsent);
    worker->unsent = NULL;
    worker->unsent_len = 0;
    worker->unsent_count = 0;
    if (status == CEL_OK)
        cel__log(worker->app, CEL_LOG_INFO,
                 "Sent %zu messages kept while the broker was away", count);
}

/* Sends, on a new connection, what earlier ones could not: unsent
 * publishes first, then the kept results and follow-ups, in that order. */
static void send_kept(cel_worker_t *worker)
{
    send_unsent_publishes(worker);
    cel__flush_pending_results(worker);
    cel__canvas_flush(worker);
}

static void close_session(cel_worker_t *worker)
{
    /* Prefetched and held messages go back to the queue when the
     * connection closes; their tags mean nothing on the next one. */
    cel__eta_clear(&worker->eta);
    cel__ready_clear(&worker->ready);
    cel__ready_clear(&worker->duplicates);
    cel__ready_clear(&worker->rate_held);
    cel__request_t *queued;
    while ((queued = cel__pool_withdraw_any(worker->pool)) != NULL)
        cel__request_free(queued);
    keep_unsent_publishes(worker);
    cel__broker_free(worker->broker);
    worker->broker = NULL;
}

void cel__settle_duplicate(cel_worker_t *worker, const char *task_id,
                           bool requeue)
{
    if (worker->duplicates.count == 0 || task_id == NULL)
        return;
    /* Rotate through the queue once, keeping the copies of other tasks. */
    size_t count = worker->duplicates.count;
    for (size_t i = 0; i < count; i++) {
        cel__request_t *copy = cel__ready_pop(&worker->duplicates);
        if (strcmp(copy->msg.id, task_id) != 0) {
            queue_or_requeue(worker, &worker->duplicates, copy);
            continue;
        }
        if (requeue)
            cel__reject(worker, copy, true);
        else
            cel__ack(worker, copy);
        cel__request_free(copy);
    }
}

/* Handles a frame that is not a delivery. Returns CEL_EBROKER when the
 * broker closed the channel or the connection. */
static int handle_other_frame(cel_worker_t *worker,
                              amqp_connection_state_t conn,
                              const amqp_frame_t *frame)
{
    if (frame->frame_type != AMQP_FRAME_METHOD)
        return CEL_OK;
    switch (frame->payload.method.id) {
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_message_t message;
        amqp_rpc_reply_t reply =
            amqp_read_message(conn, frame->channel, &message, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL)
            return CEL_EBROKER;
        amqp_destroy_message(&message);
        return CEL_OK;
    }
    case AMQP_BASIC_CANCEL_METHOD:
        /* The broker cancels a consumer when its queue is deleted; a new
         * session declares the queue again. */
        cel__set_error(
            worker->last_error,
            "the broker cancelled the consumer, as it does when the queue "
            "is deleted");
        return CEL_EBROKER;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *close = frame->payload.method.decoded;
        cel__set_error(worker->last_error, "broker closed the channel: %u %.*s",
                       close->reply_code, (int)close->reply_text.len,
                       (const char *)close->reply_text.bytes);
        if (close->reply_code == AMQP_PRECONDITION_FAILED &&
            strstr(worker->last_error, "acknowledgement") != NULL)
            cel__log(worker->app, CEL_LOG_ERROR,
                     "The broker's consumer_timeout expired for a task that "
                     "was still unacknowledged; its message goes back to the "
                     "queue and the worker reconnects");
        cel__broker_closed_by_peer(worker->broker, AMQP_CHANNEL_CLOSE_METHOD);
        return CEL_EBROKER;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_t *close = frame->payload.method.decoded;
        cel__set_error(worker->last_error,
                       "broker closed the connection: %u %.*s",
                       close->reply_code, (int)close->reply_text.len,
                       (const char *)close->reply_text.bytes);
        cel__broker_closed_by_peer(worker->broker,
                                   AMQP_CONNECTION_CLOSE_METHOD);
        return CEL_EBROKER;
    }
    default:
        return CEL_OK;
    }
}

static double next_wait(const cel_worker_t *worker)
{
    double wait = POLL_SECONDS;
    const cel__request_t *next = cel__eta_peek(&worker->eta);
    if (next != NULL) {
        double until = next->msg.eta_ts - cel__now();
        if (until < wait)
            wait = until > 0 ? until : 0;
    }
    double rate = rate_wait(worker);
    if (rate >= 0 && rate < wait)
        wait = rate;
    double heartbeat = worker->next_heartbeat - cel__monotonic();
    if (worker->broker != NULL && heartbeat < wait)
        wait = heartbeat > 0 ? heartbeat : 0;
    double deadline = worker->pool->ops->next_deadline(worker->pool);
    if (deadline > 0) {
        double until = deadline - cel__monotonic();
        if (until < wait)
            wait = until > 0 ? until : 0;
    }
    double backend = cel__redis_backend_next_wait(worker);
    if (backend >= 0 && backend < wait)
        wait = backend;
    return wait;
}

/* Sleeps until the broker socket or a pool descriptor has input, or for
 * `seconds`, then collects finished runs. Returns true when the broker has
 * input to read or is due its periodic call for heartbeats. */
static bool wait_for_input(cel_worker_t *worker, double seconds)
{
    struct pollfd fds[POLL_FDS_MAX];
    int count = 0;
    if (worker->broker != NULL) {
        /* What this pass wrote goes out in one write before the sleep. A
         * failed write is found by read_broker, so do not sleep. */
        if (cel__broker_flush(worker->broker) != CEL_OK ||
            cel__broker_has_buffered(worker->broker))
            seconds = 0;
        fds[count].fd = cel__broker_fd(worker->broker);
        fds[count].events = POLLIN;
        fds[count].revents = 0;
        count++;
    }
    int broker_fds = count;
    count += worker->pool->ops->poll_fds(worker->pool, fds + count,
                                         POLL_FDS_MAX - count);
    int timeout_ms = (int)ceil(seconds * 1000.0);
    int ready = poll(fds, (nfds_t)count, timeout_ms);
    if (ready < 0 && errno != EINTR)
        cel__log(worker->app, CEL_LOG_ERROR, "poll failed: %s",
                 strerror(errno));
    worker->pool->ops->process(worker->pool, fds + broker_fds,
                               count - broker_fds);
    cel__redis_backend_service(worker);
    if (worker->broker == NULL)
        return false;
    double now = cel__monotonic();
    bool due = now >= worker->next_broker_call;
    if ((broker_fds > 0 && fds[0].revents != 0) || due || seconds == 0) {
        /* rabbitmq-c sends and checks heartbeats only when called. */
        worker->next_broker_call = now + POLL_SECONDS;
        return true;
    }
    return false;
}

/* Services the pool for `seconds` without a broker, as while waiting to
 * reconnect. */
static void service_pool_for(cel_worker_t *worker, double seconds)
{
    double end = cel__monotonic() + seconds;
    while (!worker->stop_requested) {
        double left = end - cel__monotonic();
        if (left <= 0)
            break;
        wait_for_input(worker, fmin(left, POLL_SECONDS));
    }
}

/* How long the rest of a delivery may take once its first frame came. */
#define DELIVERY_REST_TIMEOUT 10

/* Completes a delivery whose basic.deliver frame is `method` from the
 * frames that follow it. Unlike amqp_consume_message, which copies every
 * delivery into memory of its own, the envelope points into rabbitmq-c's
 * frame buffers, valid until amqp_maybe_release_buffers. Only a body that
 * came in several frames is joined, into `*joined`, which the caller
 * frees. Returns an AMQP status. */
static int read_delivery(amqp_connection_state_t conn,
                         const amqp_frame_t *method, amqp_envelope_t *out,
                         amqp_bytes_t *raw_properties, char **joined)
{
    const amqp_basic_deliver_t *deliver = method->payload.method.decoded;
    memset(out, 0, sizeof *out);
    out->channel = method->channel;
    out->consumer_tag = deliver->consumer_tag;
    out->delivery_tag = deliver->delivery_tag;
    out->redelivered = deliver->redelivered;
    out->exchange = deliver->exchange;
    out->routing_key = deliver->routing_key;
    struct timeval timeout = {DELIVERY_REST_TIMEOUT, 0};
    amqp_frame_t frame;
    int rc = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
    if (rc != AMQP_STATUS_OK)
        return rc;
    if (frame.frame_type != AMQP_FRAME_HEADER ||
        frame.channel != method->channel)
        return AMQP_STATUS_UNEXPECTED_STATE;
    out->message.properties =
        *(const amqp_basic_properties_t *)frame.payload.properties.decoded;
    *raw_properties = frame.payload.properties.raw;
    size_t size = (size_t)frame.payload.properties.body_size;
    size_t got = 0;
    while (got < size) {
        rc = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
        if (rc != AMQP_STATUS_OK)
            return rc;
        if (frame.frame_type != AMQP_FRAME_BODY ||
            frame.channel != method->channel)
            return AMQP_STATUS_UNEXPECTED_STATE;
        amqp_bytes_t part = frame.payload.body_fragment;
        if (part.len > size - got)
            return AMQP_STATUS_BAD_AMQP_DATA;
        if (got == 0 && part.len == size) {
            out->message.body = part;
            return AMQP_STATUS_OK;
        }
        if (*joined == NULL && (*joined = malloc(size)) == NULL)
            return AMQP_STATUS_NO_MEMORY;
        memcpy(*joined + got, part.bytes, part.len);
        got += part.len;
    }
    out->message.body = (amqp_bytes_t){size, *joined};
    return AMQP_STATUS_OK;
}

static int broker_lost(cel_worker_t *worker, const char *reason)
{
    cel__set_error(worker->last_error, "connection to broker lost: %s", reason);
    cel__broker_closed_by_peer(worker->broker, 0);
    return CEL_EBROKER;
}

/* Reads the frames that arrived, without blocking. Also lets rabbitmq-c
 * send and check heartbeats. Returns CEL_EBROKER when the connection or
 * channel is gone. */
static int read_broker(cel_worker_t *worker)
{
    if (cel__broker_flush(worker->broker) != CEL_OK)
        return broker_lost(worker, cel__broker_error(worker->broker));
    amqp_connection_state_t conn = cel__broker_connection(worker->broker);
    for (int i = 0; i < FRAMES_PER_PASS; i++) {
        /* Once what one read brought is used up, the next poll reports
         * more input. A read here would only fail and then poll itself. */
        if (i > 0 && !cel__broker_has_buffered(worker->broker))
            return CEL_OK;
        struct timeval zero = {0, 0};
        amqp_frame_t frame;
        amqp_maybe_release_buffers(conn);
        int rc = amqp_simple_wait_frame_noblock(conn, &frame, &zero);
        if (rc == AMQP_STATUS_TIMEOUT)
            return CEL_OK;
        if (rc != AMQP_STATUS_OK)
            return broker_lost(worker, amqp_error_string2(rc));
        if (frame.frame_type != AMQP_FRAME_METHOD ||
            frame.payload.method.id != AMQP_BASIC_DELIVER_METHOD) {
            if (handle_other_frame(worker, conn, &frame) != CEL_OK)
                return CEL_EBROKER;
            continue;
        }
        amqp_envelope_t envelope;
        amqp_bytes_t raw_properties;
        char *joined = NULL;
        rc = read_delivery(conn, &frame, &envelope, &raw_properties, &joined);
        if (rc != AMQP_STATUS_OK) {
            free(joined);
            return broker_lost(worker, amqp_error_string2(rc));
        }
        if (envelope.channel == CEL__CONTROL_CHANNEL)
            cel__control_handle(worker, &envelope);
        else
            handle_delivery(worker, &envelope, raw_properties, &joined);
        free(joined);
    }
    return CEL_OK;
}

/* Consumes until a stop request (returns 0) or a broker failure. */
static int consume_loop(cel_worker_t *worker)
{
    while (!worker->stop_requested) {
        cel__event_heartbeat_if_due(worker);
        release_due(worker);
        dispatch_ready(worker);
        if (worker->stop_requested)
            break;
        bool broker_input = wait_for_input(worker, next_wait(worker));
        /* Slots freed by finished runs get work before new frames are
         * read, so children do not sit idle while the parent decodes. */
        dispatch_ready(worker);
        if (broker_input && read_broker(worker) != CEL_OK)
            return CEL_EBROKER;
    }
    return CEL_OK;
}

/* Seconds a warm shutdown keeps trying to reach the broker to send the
 * results and follow-ups it still has. */
#define SHUTDOWN_SEND_SECONDS 10.0

/* Connects without consuming when a warm shutdown still has rpc results
 * or follow-ups that a lost connection kept, as Celery retries those
 * publishes. Gives up after SHUTDOWN_SEND_SECONDS. */
static void connect_to_send_kept(cel_worker_t *worker)
{
    bool rpc_kept =
        worker->backend == CEL__BACKEND_RPC && worker->pending_count > 0;
    if (!rpc_kept && worker->unsent_count == 0 &&
        cel__canvas_pending(worker) == 0)
        return;
    const cel__settings_t *settings = &worker->app->settings;
    double deadline = cel__monotonic() + SHUTDOWN_SEND_SECONDS;
    double delay = 0.5;
    for (;;) {
        if (cel__broker_connect(
                settings->broker_url, settings->broker_heartbeat,
                settings->broker_connection_timeout, &worker->broker,
                worker->last_error) == CEL_OK) {
            cel__log(worker->app, CEL_LOG_INFO,
                     "Connected to the broker again to send the results the "
                     "warm shutdown still has");
            return;
        }
        double left = deadline - cel__monotonic();
        if (left <= 0)
            break;
        double wait = fmin(delay, left);
        struct timespec pause = {(time_t)wait,
                                 (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&pause, NULL);
        delay *= 2;
    }
    cel__log(worker->app, CEL_LOG_ERROR,
             "Cannot reach the broker to send the results the warm "
             "shutdown still has: %s",
             worker->last_error);
}

/* Stops consuming, returns what has not started, and waits for the running
 * tasks to finish and their results to go out. */
static void warm_shutdown(cel_worker_t *worker)
{
    worker->consuming = false;
    if (worker->broker != NULL &&
        cel__broker_cancel_consumers(worker->broker) != CEL_OK) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot cancel the consumers: %s",
                 cel__broker_error(worker->broker));
        close_session(worker);
    }
    requeue_waiting(worker);
    if (worker->pool->busy > 0)
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Warm shutdown: waiting for %d running task%s to finish",
                 worker->pool->busy, worker->pool->busy == 1 ? "" : "s");
    while (worker->pool->busy > 0) {
        bool broker_input = wait_for_input(worker, POLL_SECONDS);
        if (broker_input && read_broker(worker) != CEL_OK) {
            cel__log(worker->app, CEL_LOG_ERROR,
                     "%s; results of the running tasks will be lost",
                     worker->last_error);
            close_session(worker);
        }
    }
    if (worker->broker == NULL)
        connect_to_send_kept(worker);
    if (worker->broker != NULL) {
        send_kept(worker);
        cel__event_worker(worker, "worker-offline");
    }
    cel__redis_backend_drain(worker);
    keep_unsent_publishes(worker);
    if (worker->pending_count + worker->unsent_count > 0)
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Exiting with %zu results that could not be sent",
                 worker->pending_count + worker->unsent_count);
}

/* Asks the other workers for their revoked ids, as Celery's mingle does,
 * and waits a second for replies before tasks are consumed. */
static void mingle(cel_worker_t *worker)
{
    worker->mingled = true;
    char key[37];
    uuid_t raw;
    uuid_generate(raw);
    uuid_unparse_lower(raw, key);
    cel__log(worker->app, CEL_LOG_INFO, "mingle: searching for neighbors");
    if (cel__broker_open_reply_queue(worker->broker, key) != CEL_OK ||
        cel__control_mingle(worker, key) != CEL_OK) {
        cel__log(worker->app, CEL_LOG_WARNING, "mingle: cannot ask: %s",
                 cel__broker_error(worker->broker));
        return;
    }
    double end = cel__monotonic() + 1.0;
    while (worker->broker != NULL && cel__monotonic() < end) {
        wait_for_input(worker, fmin(0.1, end - cel__monotonic()));
        if (read_broker(worker) != CEL_OK)
            return;
    }
    if (worker->mingle_replies == 0)
        cel__log(worker->app, CEL_LOG_INFO, "mingle: all alone");
    else
        cel__log(worker->app, CEL_LOG_INFO,
                 "mingle: sync with %lu nodes, %zu revoked ids",
                 worker->mingle_replies,
                 cel__revoked_count(worker->revoked, cel__monotonic()));
}

/* Connects, declares every queue, sets QoS and starts the consumers. */
static int open_session(cel_worker_t *worker)
{
    const cel__settings_t *settings = &worker->app->settings;
    int status =
        cel__broker_connect(settings->broker_url, settings->broker_heartbeat,
                            settings->broker_connection_timeout,
                            &worker->broker, worker->last_error);
    if (status != CEL_OK)
        return status;
    worker->connection_epoch++;
    worker->applied_prefetch = -1;
    for (size_t i = 0; i < worker->queue_count && status == CEL_OK; i++) {
        bool existing = false;
        status = cel__broker_declare_task_queue(
            worker->broker, worker->queues[i],
            settings->task_queue_max_priority, &existing);
        if (status == CEL_OK && existing)
            cel__log(worker->app, CEL_LOG_WARNING,
                     "Queue %s already exists with other arguments (%s); "
                     "consuming it as it is, with a per-consumer prefetch "
                     "that stays fixed, so tasks waiting for their ETA or "
                     "rate limit take up places in it",
                     worker->queues[i], cel__broker_error(worker->broker));
    }
    if (status == CEL_OK)
        status = update_prefetch(worker);
    if (status == CEL_OK)
        status = cel__broker_open_control(worker->broker, worker->nodename);
    if (status == CEL_OK && worker->mingle && !worker->mingled)
        mingle(worker);
    for (size_t i = 0; i < worker->queue_count && status == CEL_OK; i++)
        status = cel__broker_consume(worker->broker, worker->queues[i]);
    if (status != CEL_OK) {
        cel__set_error(worker->last_error, "%s",
                       cel__broker_error(worker->broker));
        cel__broker_free(worker->broker);
        worker->broker = NULL;
    }
    return status;
}

static int configure(cel_worker_t *worker)
{
    cel__settings_t *settings = &worker->app->settings;
    const char *backend = settings->result_backend;
    if (backend == NULL || strcmp(backend, "disabled") == 0) {
        worker->backend = CEL__BACKEND_DISABLED;
    } else if (strncmp(backend, "rpc://", 6) == 0 ||
               strcmp(backend, "rpc") == 0) {
        worker->backend = CEL__BACKEND_RPC;
    } else if (strncmp(backend, "redis://", 8) == 0 ||
               strncmp(backend, "rediss://", 9) == 0) {
        worker->backend = CEL__BACKEND_REDIS;
        int status = cel__redis_backend_open(worker);
        if (status != CEL_OK)
            return status == CEL_ENOMEM ? CEL_ENOMEM : CEL_EINVAL;
    } else {
        /* Only the scheme is shown: the rest may hold a password. */
        const char *scheme_end = strchr(backend, ':');
        cel__set_error(worker->last_error,
                       "result backend '%.*s' is not supported: use rpc://, "
                       "redis:// or rediss://",
                       scheme_end ? (int)(scheme_end - backend + 1)
                                  : (int)strlen(backend),
                       backend);
        return CEL_EINVAL;
    }
    if (worker->queue_count == 0 &&
        cel_worker_add_queue(worker, settings->task_default_queue) != CEL_OK)
        return CEL_ENOMEM;
    cel__limits_default(&worker->limits);
    if (settings->max_body_size > 0)
        worker->limits.max_body = (size_t)settings->max_body_size;
    if (settings->max_headers > 0)
        worker->limits.max_headers = (size_t)settings->max_headers;
    if (settings->max_json_depth > 0)
        worker->limits.max_depth = settings->max_json_depth;
    int multiplier = settings->worker_prefetch_multiplier;
    worker->base_prefetch =
        multiplier > 0 ? effective_concurrency(worker) * multiplier : 0;
    return CEL_OK;
}

static void log_ready(cel_worker_t *worker)
{
    char queues[512] = "";
    for (size_t i = 0; i < worker->queue_count; i++) {
        size_t used = strlen(queues);
        snprintf(queues + used, sizeof queues - used, "%s%s", i ? "," : "",
                 worker->queues[i]);
    }
    cel__log(worker->app, CEL_LOG_INFO,
             "Connected to the broker; consuming from %s with prefetch %d",
             queues, worker->applied_prefetch);
    cel__log(worker->app, CEL_LOG_INFO, "%s ready.", worker->nodename);
}

/* Any hard limit configured for a task or by default. */
static bool hard_limits_configured(const cel_worker_t *worker)
{
    const cel_app_t *app = worker->app;
    if (app->settings.task_time_limit > 0)
        return true;
    for (size_t i = 0; i < app->task_count; i++)
        if (app->tasks[i]->time_limit > 0)
            return true;
    return false;
}

static int start_pool(cel_worker_t *worker)
{
    const cel__settings_t *settings = &worker->app->settings;
    cel__pool_t *pool =
        cel__pool_new(settings->worker_pool, effective_concurrency(worker),
                      worker->last_error);
    if (pool == NULL)
        return CEL_EINVAL;
    pool->app = worker->app;
    pool->hostname = worker->nodename;
    pool->owner = worker;
    pool->done = on_pool_done;
    pool->promote = on_pool_promote;
    pool->give_back = on_pool_give_back;
    pool->inherited_fd = inherited_broker_fd;
    worker->pool = pool;
    if (pool->ops->start(pool) != CEL_OK) {
        cel__set_error(worker->last_error, "cannot start the %s pool: %s",
                       pool->name, strerror(errno));
        return CEL_ENOMEM;
    }
    if (!pool->enforces_hard_limit)
        cel__log(worker->app,
                 hard_limits_configured(worker) ? CEL_LOG_WARNING
                                                : CEL_LOG_DEBUG,
                 "The %s pool cannot enforce hard time limits; tasks that "
                 "exceed them keep running (use -P prefork)",
                 pool->name);
    return CEL_OK;
}

/* Waits out the reconnect delay; returns false to give up. */
static bool back_off(cel_worker_t *worker, int *attempts)
{
    const cel__settings_t *settings = &worker->app->settings;
    if (!settings->broker_connection_retry ||
        (settings->broker_connection_max_retries > 0 &&
         *attempts >= settings->broker_connection_max_retries)) {
        if (*attempts == 0)
            cel__log(worker->app, CEL_LOG_CRITICAL,
                     "Giving up on the broker (broker_connection_retry is "
                     "off): %s",
                     worker->last_error);
        else
            cel__log(worker->app, CEL_LOG_CRITICAL,
                     "Giving up on the broker after %d attempts: %s", *attempts,
                     worker->last_error);
        return false;
    }
    (*attempts)++;
    double delay = fmin(RECONNECT_MAX_DELAY, 0.5 * *attempts);
    cel__log(worker->app, CEL_LOG_ERROR,
             "%s. Trying again in %.1f seconds... (%d/%d)", worker->last_error,
             delay, *attempts, settings->broker_connection_max_retries);
    service_pool_for(worker, delay);
    return true;
}

int cel_worker_run(cel_worker_t *worker)
{
    int status = configure(worker);
    if (status == CEL_OK)
        status = start_pool(worker);
    worker->started_at = cel__monotonic();
    worker->task_events = worker->app->settings.worker_send_task_events;
    if (status != CEL_OK)
        return status;
    int attempts = 0;
    bool announced = false;
    while (!worker->stop_requested) {
        status = open_session(worker);
        if (status == CEL_EINVAL)
            return status;
        if (status == CEL_OK) {
            attempts = 0;
            worker->consuming = true;
            if (!announced)
                log_ready(worker);
            else
                cel__log(worker->app, CEL_LOG_INFO,
                         "Reconnected to the broker");
            announced = true;
            send_kept(worker);
            cel__event_worker(worker, "worker-online");
            status = consume_loop(worker);
            if (status == CEL_OK)
                break;
            close_session(worker);
        }
        if (!back_off(worker, &attempts))
            return CEL_EBROKER;
    }
    cel__log(worker->app, CEL_LOG_INFO, "Warm shutdown (%s)", worker->nodename);
    warm_shutdown(worker);
    close_session(worker);
    worker->pool->ops->stop(worker->pool);
    cel__log(worker->app, CEL_LOG_INFO, "%s stopped; tasks started: %lu",
             worker->nodename, worker->processed);
    return CEL_OK;
}
