/* Result storing. The rpc:// backend sends each state as a message to the
 * client's reply_to queue through the default exchange. */
#include <stdlib.h>
#include <string.h>

#include "worker_internal.h"

/* Results kept for a later connection; past this many the oldest is
 * dropped, so a long outage cannot exhaust memory. */
#define PENDING_RESULTS_MAX 100000

static int publish_result(cel_worker_t *worker, const char *reply_to,
                          const char *correlation_id, const char *body)
{
    cel__publish_t msg = {
        .exchange = "",
        .routing_key = reply_to,
        .correlation_id = correlation_id,
        .delivery_mode = worker->app->settings.result_persistent ? 2 : 1,
        .priority = 0,
        .body = body,
        .body_len = strlen(body),
    };
    return cel__broker_publish(worker->broker, &msg);
}

static void free_pending(cel__pending_result_t *item)
{
    free(item->reply_to);
    free(item->correlation_id);
    free(item->body);
    free(item);
}

/* Unlinks and returns the oldest kept result; the list must not be empty. */
static cel__pending_result_t *pop_pending(cel_worker_t *worker)
{
    cel__pending_result_t *oldest = worker->pending_head;
    worker->pending_head = oldest->next;
    if (worker->pending_head == NULL)
        worker->pending_tail = NULL;
    worker->pending_count--;
    return oldest;
}

static void drop_oldest_pending(cel_worker_t *worker)
{
    cel__pending_result_t *oldest = pop_pending(worker);
    cel__log(worker->app, CEL_LOG_ERROR,
             "Dropping the result for %s: more than %d results wait for the "
             "broker",
             oldest->correlation_id, PENDING_RESULTS_MAX);
    free_pending(oldest);
}

/* Keeps a result for the next connection. Takes ownership of `body`. */
static void keep_pending(cel_worker_t *worker, const char *reply_to,
                         const char *correlation_id, char *body)
{
    cel__pending_result_t *item = calloc(1, sizeof *item);
    if (item != NULL) {
        item->reply_to = strdup(reply_to);
        item->correlation_id = strdup(correlation_id);
        item->body = body;
    }
    if (item == NULL || item->reply_to == NULL ||
        item->correlation_id == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Dropping the result for %s: out of memory", correlation_id);
        if (item != NULL)
            free_pending(item); /* frees body too */
        else
            free(body);
        return;
    }
    if (worker->pending_count >= PENDING_RESULTS_MAX)
        drop_oldest_pending(worker);
    if (worker->pending_tail != NULL)
        worker->pending_tail->next = item;
    else
        worker->pending_head = item;
    worker->pending_tail = item;
    worker->pending_count++;
}

void cel__flush_pending_results(cel_worker_t *worker)
{
    size_t sent = 0;
    while (worker->pending_head != NULL && worker->broker != NULL) {
        cel__pending_result_t *item = worker->pending_head;
        if (publish_result(worker, item->reply_to, item->correlation_id,
                           item->body) != CEL_OK)
            break;
        free_pending(pop_pending(worker));
        sent++;
    }
    if (sent > 0)
        cel__log(worker->app, CEL_LOG_INFO,
                 "Sent %zu results kept while the broker was away", sent);
}

void cel__free_pending_results(cel_worker_t *worker)
{
    while (worker->pending_head != NULL)
        free_pending(pop_pending(worker));
}

void cel__store_result(cel_worker_t *worker, const cel__task_message_t *msg,
                       const char *status, json_t *result,
                       const char *traceback, json_t *children)
{
    const char *task_id = msg->id;
    const char *reply_to = msg->reply_to;
    const char *correlation_id = msg->correlation_id;
    if (worker->backend == CEL__BACKEND_DISABLED || reply_to == NULL ||
        reply_to[0] == '\0' || task_id == NULL)
        return;

    char *body =
        cel__result_encode_rpc(task_id, status, result, traceback, children);
    if (body == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot encode the %s result of task %s: out of memory",
                 status, task_id);
        return;
    }
    const char *correlation = correlation_id ? correlation_id : task_id;
    if (worker->broker != NULL && worker->pending_head == NULL &&
        publish_result(worker, reply_to, correlation, body) == CEL_OK) {
        free(body);
        return;
    }
    if (worker->broker != NULL && worker->pending_head == NULL)
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot send the %s result of task %s to %s now (%s); it "
                 "is kept for the next connection",
                 status, task_id, reply_to, cel__broker_error(worker->broker));
    keep_pending(worker, reply_to, correlation, body);
}

void cel__store_exception(cel_worker_t *worker, const cel__task_message_t *msg,
                          const char *status, const char *exc_type,
                          const char *exc_module, const char *message,
                          const char *traceback)
{
    json_t *exc = cel__exception_new(exc_type, exc_module, message);
    cel__store_result(worker, msg, status, exc, traceback, NULL);
    json_decref(exc);
}
