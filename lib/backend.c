/* Result storing. The rpc:// backend sends each state as a message to the
 * client's reply_to queue through the default exchange; redis:// is in
 * backend_redis.c. Writes that cannot be done yet wait in one ordered
 * pending list. */
#include <stdlib.h>
#include <string.h>

#include "worker_internal.h"

/* Results kept for a later connection; past this many the oldest is
 * dropped, so a long outage cannot exhaust memory. */
#define PENDING_RESULTS_MAX 100000

/* Publishes an rpc result body given in `count` parts. */
static int publish_result_parts(cel_worker_t *worker, const char *reply_to,
                                const char *correlation_id,
                                const struct iovec *parts, int count)
{
    cel__publish_t msg = {
        .exchange = "",
        .routing_key = reply_to,
        .correlation_id = correlation_id,
        .delivery_mode = worker->app->settings.result_persistent ? 2 : 1,
        .priority = 0,
        .body_parts = parts,
        .body_part_count = count,
    };
    return cel__broker_publish(worker->broker, &msg);
}

static int publish_result(cel_worker_t *worker, const char *reply_to,
                          const char *correlation_id, char *body)
{
    const struct iovec whole = {body, strlen(body)};
    return publish_result_parts(worker, reply_to, correlation_id, &whole, 1);
}

void cel__pending_free(cel__pending_result_t *item)
{
    free(item->task_id);
    free(item->reply_to);
    free(item->correlation_id);
    free(item->body);
    free(item->group_id);
    json_decref(item->chord);
    free(item);
}

cel__pending_result_t *cel__pending_pop(cel_worker_t *worker)
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
    cel__pending_result_t *oldest = cel__pending_pop(worker);
    cel__log(worker->app, CEL_LOG_ERROR,
             "Dropping the %s for task %s: more than %d results wait for "
             "the %s",
             oldest->kind == CEL__PENDING_CHORD_PART ? "chord part" : "result",
             oldest->task_id, PENDING_RESULTS_MAX,
             oldest->kind == CEL__PENDING_RPC ? "broker" : "Redis backend");
    cel__pending_free(oldest);
}

void cel__pending_keep(cel_worker_t *worker, cel__pending_result_t *item)
{
    if (worker->pending_count >= PENDING_RESULTS_MAX)
        drop_oldest_pending(worker);
    if (worker->pending_tail != NULL)
        worker->pending_tail->next = item;
    else
        worker->pending_head = item;
    worker->pending_tail = item;
    worker->pending_count++;
}

/* Keeps an rpc result for the next connection. Takes ownership of `body`. */
static void keep_rpc_result(cel_worker_t *worker, const char *task_id,
                            const char *reply_to, const char *correlation_id,
                            char *body)
{
    cel__pending_result_t *item = calloc(1, sizeof *item);
    if (item != NULL) {
        item->kind = CEL__PENDING_RPC;
        item->task_id = strdup(task_id);
        item->reply_to = strdup(reply_to);
        item->correlation_id = strdup(correlation_id);
        item->body = body;
    }
    if (item == NULL || item->task_id == NULL || item->reply_to == NULL ||
        item->correlation_id == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Dropping the result for %s: out of memory", task_id);
        if (item != NULL)
            cel__pending_free(item); /* frees body too */
        else
            free(body);
        return;
    }
    cel__pending_keep(worker, item);
}

void cel__flush_pending_results(cel_worker_t *worker)
{
    /* The redis backend flushes from the main loop, broker or not. */
    if (worker->backend != CEL__BACKEND_RPC)
        return;
    size_t sent = 0;
    while (worker->pending_head != NULL && worker->broker != NULL) {
        cel__pending_result_t *item = worker->pending_head;
        if (publish_result(worker, item->reply_to, item->correlation_id,
                           item->body) != CEL_OK)
            break;
        cel__pending_free(cel__pending_pop(worker));
        sent++;
    }
    if (sent > 0)
        cel__log(worker->app, CEL_LOG_INFO,
                 "Sent %zu results kept while the broker was away", sent);
}

void cel__free_pending_results(cel_worker_t *worker)
{
    while (worker->pending_head != NULL)
        cel__pending_free(cel__pending_pop(worker));
}

static int store_rpc_body(cel_worker_t *worker, const cel__task_message_t *msg,
                          const char *status, char *body);

int cel__store_result(cel_worker_t *worker, const cel__task_message_t *msg,
                      const char *status, json_t *result, const char *traceback,
                      json_t *children)
{
    const char *task_id = msg->id;
    const char *reply_to = msg->reply_to;
    if (worker->backend == CEL__BACKEND_DISABLED || task_id == NULL)
        return CEL_OK;
    if (worker->backend == CEL__BACKEND_REDIS) {
        /* Clients read Redis by task id, so reply_to does not matter. */
        return cel__redis_store(worker, msg, status, result, traceback,
                                children);
    }
    if (reply_to == NULL || reply_to[0] == '\0')
        return CEL_OK;
    return store_rpc_body(
        worker, msg, status,
        cel__result_encode_rpc(task_id, status, result, traceback, children));
}

void cel__store_result_text(cel_worker_t *worker,
                            const cel__task_message_t *msg, const char *status,
                            const char *result_text, size_t result_len)
{
    if (worker->backend != CEL__BACKEND_RPC || msg->id == NULL ||
        msg->reply_to == NULL || msg->reply_to[0] == '\0')
        return;
    /* While the broker is connected and no older result waits, the body
     * goes out in pieces around the result text, so the text is not
     * copied. */
    size_t head_len = 0;
    char *head = worker->broker != NULL && worker->pending_head == NULL
                     ? cel__result_rpc_text_head(msg->id, status, &head_len)
                     : NULL;
    if (head != NULL) {
        const struct iovec parts[] = {
            {head, head_len},
            {(void *)result_text, result_len},
            {CEL__RPC_TEXT_BODY_END, strlen(CEL__RPC_TEXT_BODY_END)},
        };
        const char *correlation =
            msg->correlation_id ? msg->correlation_id : msg->id;
        int sent =
            publish_result_parts(worker, msg->reply_to, correlation, parts, 3);
        free(head);
        if (sent == CEL_OK)
            return;
    }
    (void)store_rpc_body(
        worker, msg, status,
        cel__result_encode_rpc_text(msg->id, status, result_text));
}

/* Publishes an rpc result body (taking it), or keeps it for the next
 * connection when the broker is away. A NULL body is a result that could
 * not be encoded: CEL_EINVAL. */
static int store_rpc_body(cel_worker_t *worker, const cel__task_message_t *msg,
                          const char *status, char *body)
{
    const char *task_id = msg->id;
    const char *reply_to = msg->reply_to;
    const char *correlation_id = msg->correlation_id;
    if (body == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot encode the %s result of task %s as JSON: it has a "
                 "string that is not UTF-8, nests deeper than %d levels, or "
                 "memory ran out",
                 status, task_id, CEL__JSON_MAX_DEPTH);
        return CEL_EINVAL;
    }
    const char *correlation = correlation_id ? correlation_id : task_id;
    if (worker->broker != NULL && worker->pending_head == NULL &&
        publish_result(worker, reply_to, correlation, body) == CEL_OK) {
        free(body);
        return CEL_OK;
    }
    if (worker->broker != NULL && worker->pending_head == NULL)
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot send the %s result of task %s to %s now (%s); it "
                 "is kept for the next connection",
                 status, task_id, reply_to, cel__broker_error(worker->broker));
    keep_rpc_result(worker, task_id, reply_to, correlation, body);
    return CEL_OK;
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
