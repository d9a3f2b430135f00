/* Running one task and settling its outcome: result, failure or retry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "revoked.h"
#include "worker_internal.h"

static bool acks_late(const cel_worker_t *worker, const cel_task_t *task)
{
    return task->acks_late >= 0 ? task->acks_late
                                : worker->app->settings.task_acks_late;
}

/* The ignore_result header of a request suppresses its success only, as in
 * Celery 5.2; errors follow the task's own option. */
static bool ignores_result(const cel_worker_t *worker,
                           const cel__request_t *request)
{
    return request->msg.ignore_result ||
           !cel__stores_errors(worker, request->task);
}

bool cel__stores_errors(const cel_worker_t *worker, const cel_task_t *task)
{
    const cel__settings_t *settings = &worker->app->settings;
    bool ignored = settings->task_ignore_result;
    if (task != NULL && task->ignore_result >= 0)
        ignored = task->ignore_result;
    return !ignored || settings->task_store_errors_even_if_ignored;
}

static double soft_limit(const cel_worker_t *worker,
                         const cel__request_t *request)
{
    if (request->msg.soft_time_limit > 0)
        return request->msg.soft_time_limit;
    if (request->task->soft_time_limit > 0)
        return request->task->soft_time_limit;
    return worker->app->settings.task_soft_time_limit;
}

double cel__hard_limit(const cel_worker_t *worker,
                       const cel__request_t *request)
{
    if (request->msg.time_limit > 0)
        return request->msg.time_limit;
    if (request->task->time_limit > 0)
        return request->task->time_limit;
    return worker->app->settings.task_time_limit;
}

char *cel__exception_repr(const char *exc_type, const char *message)
{
    json_t *text = json_string(message ? message : "");
    char *quoted = text ? cel__pyrepr(text, 1024, false) : NULL;
    char *repr = NULL;
    if (asprintf(&repr, "%s(%s)", exc_type, quoted ? quoted : "") < 0)
        repr = NULL;
    free(quoted);
    json_decref(text);
    return repr;
}

static void on_failure(cel_worker_t *worker, const cel__request_t *request,
                       const char *exc_type, const char *exc_module,
                       const char *message);

/* Sends the callbacks and the next chain step before the result is
 * stored, so the stored children list them, as Celery's tracer does. A
 * signature that cannot be applied fails the task. Returns false then. */
static bool send_follow_ups(cel_worker_t *worker, const cel__request_t *request,
                            json_t *result, json_t *children)
{
    /* An acks_late task that ends while the broker is away is delivered
     * again after the reconnect, and that run sends the follow-ups, so
     * they are not kept as well. (A copy redelivered while the first run
     * still went on is acked unrun, so then they are sent.) */
    bool redelivered_later =
        acks_late(worker, request->task) && worker->broker == NULL;
    cel__canvas_drop_unsent(worker, redelivered_later);
    int status = cel__canvas_on_success(worker, request, result, children);
    cel__canvas_drop_unsent(worker, false);
    if (status == CEL_OK)
        return true;
    cel__log(worker->app, CEL_LOG_ERROR,
             "Task %s[%s] succeeded but its follow-up tasks cannot be sent: "
             "%s",
             request->msg.task, request->msg.id, worker->last_error);
    /* Celery raises NotImplementedError for a chord on a backend without
     * chord support, and a signature error for the rest. */
    on_failure(worker, request,
               status == CEL_EBACKEND ? "NotImplementedError" : "ValueError",
               "builtins", worker->last_error);
    return false;
}

static void on_failure(cel_worker_t *worker, const cel__request_t *request,
                       const char *exc_type, const char *exc_module,
                       const char *message);

json_t *cel__run_result(cel__run_t *run)
{
    if (run->result == NULL && run->result_text != NULL)
        cel__json_parse(run->result_text, run->result_text_len,
                        CEL__JSON_MAX_DEPTH, &run->result, NULL, 0);
    if (run->result == NULL)
        run->result = json_null();
    return run->result;
}

static void on_success(cel_worker_t *worker, const cel__request_t *request,
                       cel__run_t *run)
{
    const cel__task_message_t *msg = &request->msg;
    double runtime = run->runtime;
    bool canvas =
        json_array_size(msg->callbacks) > 0 || json_array_size(msg->chain) > 0;
    bool log_info = cel__log_enabled(worker->app, CEL_LOG_INFO);
    /* An rpc result that nothing else reads goes out as the child's text. */
    if (run->result == NULL && run->result_text != NULL && !canvas &&
        !log_info && !worker->task_events &&
        worker->backend == CEL__BACKEND_RPC) {
        if (!ignores_result(worker, request))
            cel__store_result_text(worker, msg, "SUCCESS", run->result_text,
                                   run->result_text_len);
        return;
    }
    json_t *result = cel__run_result(run);
    json_t *children = canvas ? json_array() : NULL;
    if (canvas && !send_follow_ups(worker, request, result, children)) {
        json_decref(children);
        return;
    }
    if (log_info || worker->task_events) {
        char *repr = cel__pyrepr(result, 1024, false);
        cel__log(worker->app, CEL_LOG_INFO,
                 "Task %s[%s] succeeded in %.6fs: %s", msg->task, msg->id,
                 runtime, repr ? repr : "");
        cel__event_task(worker, "task-succeeded", request,
                        json_pack("{s:s, s:f}", "result", repr ? repr : "",
                                  "runtime", runtime));
        free(repr);
    }
    if (!ignores_result(worker, request) &&
        cel__store_result(worker, msg, "SUCCESS", result, NULL, children) ==
            CEL_EINVAL) {
        /* As Celery does when the result backend cannot serialize it. */
        json_decref(children);
        on_failure(worker, request, "EncodeError", "kombu.exceptions",
                   CEL__UNENCODABLE_RESULT);
        return;
    }
    cel__canvas_chord_part(worker, msg, "SUCCESS", result);
    json_decref(children);
}

/* Stores a FAILURE (when errors are stored) and then does what Celery's
 * mark_as_failure does for a canvas: chord, rest of the chain, errbacks. */
static void mark_failure(cel_worker_t *worker, const cel__request_t *request,
                         json_t *exc, const char *traceback)
{
    if (cel__stores_errors(worker, request->task))
        cel__store_result(worker, &request->msg, "FAILURE", exc, traceback,
                          NULL);
    cel__canvas_on_failure(worker, request, exc, traceback);
}

static void on_failure(cel_worker_t *worker, const cel__request_t *request,
                       const char *exc_type, const char *exc_module,
                       const char *message)
{
    const cel__task_message_t *msg = &request->msg;
    char *repr = cel__exception_repr(exc_type, message);
    char *traceback =
        cel__traceback_format(msg->task, exc_type, exc_module, message);
    cel__log(worker->app, CEL_LOG_ERROR, "Task %s[%s] raised unexpected: %s",
             msg->task, msg->id, repr ? repr : exc_type);
    cel__event_task_failed(worker, request, repr ? repr : exc_type, traceback);
    json_t *exc = cel__exception_new(exc_type, exc_module, message);
    mark_failure(worker, request, exc, traceback);
    json_decref(exc);
    free(traceback);
    free(repr);
}

/* Where a retry goes: the queue it came from, or its exchange and key. */
static void retry_route(const cel__request_t *request, cel__publish_t *out)
{
    out->exchange = request->exchange ? request->exchange : "";
    out->routing_key = request->routing_key ? request->routing_key : "";
}

/* Publishes the task again with retries + 1 and eta = now + countdown. */
static int send_retry(cel_worker_t *worker, const cel__request_t *request,
                      double countdown)
{
    cel__task_message_t next = request->msg; /* borrows every member */
    char eta[40];
    if (cel__iso8601_format(cel__now() + countdown, eta, sizeof eta) != 0)
        return CEL_EINVAL;
    next.retries = request->msg.retries + 1;
    next.eta = eta;
    /* Celery 5.2 gives a retried task without a parent its own id. */
    if (next.parent_id == NULL)
        next.parent_id = next.id;
    next.origin = worker->nodename;
    next.argsrepr = NULL;
    next.kwargsrepr = NULL;
    cel__request_arguments(request, &next.args, &next.kwargs);
    next.headers = cel__request_headers(request);

    json_t *headers = NULL;
    char *body = NULL;
    size_t body_len = 0;
    int status = cel__task_encode_v2(&next, &headers, &body, &body_len);
    if (status == CEL_OK &&
        json_object_size(headers) > worker->limits.max_headers) {
        /* The standard headers that the retry adds would make a message
         * this worker rejects, so the custom ones are left out, as
         * Celery 5.2 leaves them out of every retry. */
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Task %s[%s] is retried without its custom headers: with "
                 "them the message would have %zu headers, over the cap "
                 "of %zu",
                 request->msg.task, request->msg.id, json_object_size(headers),
                 worker->limits.max_headers);
        json_decref(headers);
        free(body);
        json_decref(next.headers);
        next.headers = NULL;
        status = cel__task_encode_v2(&next, &headers, &body, &body_len);
    }
    json_decref(next.args);
    json_decref(next.kwargs);
    json_decref(next.headers);
    if (status != CEL_OK)
        return status;
    cel__publish_t publish = {
        .correlation_id = request->msg.correlation_id
                              ? request->msg.correlation_id
                              : request->msg.id,
        .reply_to = request->msg.reply_to,
        .delivery_mode = 2,
        .priority = request->msg.priority >= 0 ? request->msg.priority : 0,
        .headers = headers,
        .body = body,
        .body_len = body_len,
    };
    retry_route(request, &publish);
    status = cel__broker_publish(worker->broker, &publish);
    json_decref(headers);
    free(body);
    return status;
}

/* Returns true when the task was sent again, false when it must fail. */
static bool on_retry(cel_worker_t *worker, const cel__request_t *request,
                     const cel__run_t *run)
{
    const cel__task_message_t *msg = &request->msg;
    const cel_task_t *task = request->task;
    double countdown =
        run->countdown >= 0 ? run->countdown : task->default_retry_delay;
    if (send_retry(worker, request, countdown) != CEL_OK) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot send the retry of task %s[%s]: %s", msg->task, msg->id,
                 cel__broker_error(worker->broker));
        return false;
    }
    char *repr = run->exc_type
                     ? cel__exception_repr(run->exc_type, run->exc_message)
                     : NULL;
    cel__log(worker->app, CEL_LOG_INFO, "Task %s[%s] retry: Retry in %gs%s%s",
             msg->task, msg->id, countdown, repr ? ": " : "", repr ? repr : "");
    if (worker->task_events) {
        char *traceback =
            run->exc_type
                ? cel__traceback_format(msg->task, run->exc_type,
                                        run->exc_module, run->exc_message)
                : NULL;
        cel__event_task(worker, "task-retried", request,
                        json_pack("{s:s, s:s}", "exception",
                                  repr ? repr : "None", "traceback",
                                  traceback ? traceback : ""));
        free(traceback);
    }
    free(repr);
    if (!cel__stores_errors(worker, task))
        return true;
    if (run->exc_type != NULL) {
        char *traceback = cel__traceback_format(
            msg->task, run->exc_type, run->exc_module, run->exc_message);
        cel__store_exception(worker, msg, "RETRY", run->exc_type,
                             run->exc_module, run->exc_message, traceback);
        free(traceback);
    } else {
        cel__store_result(worker, msg, "RETRY", NULL, NULL, NULL);
    }
    return true;
}

static bool retries_exhausted(const cel__request_t *request)
{
    int max_retries = request->task->max_retries;
    return max_retries >= 0 && request->msg.retries >= max_retries;
}

/* Fails a retry request past max_retries, as Celery does: with the retry's
 * exception, or MaxRetriesExceededError when it gave none. */
static void fail_exhausted(cel_worker_t *worker, const cel__request_t *request,
                           const cel__run_t *run)
{
    if (run->exc_type != NULL) {
        on_failure(worker, request, run->exc_type, run->exc_module,
                   run->exc_message);
        return;
    }
    const cel__task_message_t *msg = &request->msg;
    json_t *args_value, *kwargs_value;
    cel__request_arguments(request, &args_value, &kwargs_value);
    char *args = cel__pyrepr(args_value, 1024, true);
    char *kwargs = cel__pyrepr(kwargs_value, 1024, false);
    json_decref(args_value);
    json_decref(kwargs_value);
    char *text = NULL;
    if (asprintf(&text, "Can't retry %s[%s] args:%s kwargs:%s", msg->task,
                 msg->id, args ? args : "()", kwargs ? kwargs : "{}") < 0)
        text = NULL;
    on_failure(worker, request, "MaxRetriesExceededError", "celery.exceptions",
               text ? text : "max retries exceeded");
    free(text);
    free(args);
    free(kwargs);
}

static void settle_late(cel_worker_t *worker, cel__request_t *request,
                        bool failed)
{
    if (!acks_late(worker, request->task))
        return;
    if (failed && !worker->app->settings.task_acks_on_failure_or_timeout) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Rejecting failed task %s[%s] (not requeued): "
                 "task_acks_on_failure_or_timeout is off",
                 request->msg.task, request->msg.id);
        cel__reject(worker, request, false);
        return;
    }
    cel__ack(worker, request);
}

/* Stores TimeLimitExceeded(<limit>) as Celery does: the limit is a number
 * in exc_message, not text. */
static void on_time_limit(cel_worker_t *worker, const cel__request_t *request,
                          const cel__run_t *run)
{
    const cel__task_message_t *msg = &request->msg;
    cel__log(worker->app, CEL_LOG_ERROR,
             "Hard time limit (%gs) exceeded for %s[%s]; its process was "
             "killed",
             run->limit, msg->task, msg->id);
    if (worker->task_events) {
        char exception[64];
        snprintf(exception, sizeof exception, "TimeLimitExceeded(%g)",
                 run->limit);
        cel__event_task_failed(worker, request, exception, "");
    }
    json_t *exc = json_pack("{s:s, s:[f], s:s}", "exc_type",
                            "TimeLimitExceeded", "exc_message", run->limit,
                            "exc_module", "billiard.exceptions");
    char *traceback = cel__traceback_format(msg->task, "TimeLimitExceeded",
                                            "billiard.exceptions", "");
    mark_failure(worker, request, exc, traceback);
    free(traceback);
    json_decref(exc);
}

static void describe_loss(const cel_worker_t *worker, const cel__run_t *run,
                          char *out, size_t len)
{
    if (run->signal > 0) {
        const char *abbrev = sigabbrev_np(run->signal);
        snprintf(out, len,
                 "Worker exited prematurely: signal %d (SIG%s) Job: %lu.",
                 run->signal, abbrev ? abbrev : "?", worker->processed);
    } else {
        snprintf(out, len, "Worker exited prematurely: exitcode %d Job: %lu.",
                 run->exit_code, worker->processed);
    }
}

/* Returns true when the message was requeued, which settles it. */
static bool on_lost(cel_worker_t *worker, cel__request_t *request,
                    const cel__run_t *run)
{
    const cel__task_message_t *msg = &request->msg;
    if (request->terminate_signal != 0) {
        /* revoke(terminate=True) killed it on purpose. */
        cel__revoke_request(worker, request, "terminated",
                            request->terminate_signal);
        return true;
    }
    char text[160];
    describe_loss(worker, run, text, sizeof text);
    if (acks_late(worker, request->task) &&
        worker->app->settings.task_reject_on_worker_lost) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Task %s[%s] requeued: %s (task_reject_on_worker_lost)",
                 msg->task, msg->id, text);
        cel__event_task(worker, "task-rejected", request,
                        json_pack("{s:b}", "requeue", 1));
        cel__reject(worker, request, true);
        return true;
    }
    cel__log(worker->app, CEL_LOG_ERROR, "Task %s[%s] raised unexpected: %s",
             msg->task, msg->id, text);
    if (worker->task_events) {
        char *repr = cel__exception_repr("WorkerLostError", text);
        cel__event_task_failed(worker, request, repr, "");
        free(repr);
    }
    char *traceback = cel__traceback_format(msg->task, "WorkerLostError",
                                            "billiard.exceptions", text);
    json_t *exc =
        cel__exception_new("WorkerLostError", "billiard.exceptions", text);
    mark_failure(worker, request, exc, traceback);
    json_decref(exc);
    free(traceback);
    return false;
}

void cel__settle(cel_worker_t *worker, cel__request_t *request, cel__run_t *run)
{
    bool failed = false;
    switch (run->kind) {
    case CEL__RUN_SUCCESS:
        on_success(worker, request, run);
        break;
    case CEL__RUN_FAILURE:
        on_failure(worker, request, run->exc_type, run->exc_module,
                   run->exc_message);
        failed = true;
        break;
    case CEL__RUN_RETRY:
        if (retries_exhausted(request) || !on_retry(worker, request, run)) {
            fail_exhausted(worker, request, run);
            failed = true;
        }
        break;
    case CEL__RUN_TIME_LIMIT:
        on_time_limit(worker, request, run);
        failed = true;
        break;
    case CEL__RUN_LOST:
        if (on_lost(worker, request, run)) {
            cel__settle_duplicate(worker, request->msg.id, true);
            goto done;
        }
        failed = true;
        break;
    }
    settle_late(worker, request, failed);
    cel__settle_duplicate(worker, request->msg.id, false);
done:
    cel__run_clear(run);
    cel__request_free(request);
}

void cel__run_clear(cel__run_t *run)
{
    json_decref(run->result);
    free(run->result_block != NULL ? run->result_block : run->result_text);
    free(run->exc_type);
    free(run->exc_module);
    free(run->exc_message);
    memset(run, 0, sizeof *run);
}

void cel__run_task(const cel__request_t *request, const char *hostname,
                   double soft, cel__run_t *run)
{
    const cel__task_message_t *msg = &request->msg;
    cel_context_t ctx = {
        .request = request,
        .hostname = hostname,
        .countdown = -1,
    };
    double started = cel__monotonic();
    if (soft > 0)
        ctx.soft_deadline = started + soft;

    json_t *result = request->task->fn(&ctx, msg->args, msg->kwargs);
    memset(run, 0, sizeof *run);
    run->runtime = cel__monotonic() - started;
    run->countdown = ctx.countdown;
    if (!ctx.outcome_set) {
        run->kind = CEL__RUN_SUCCESS;
        run->result = result ? result : json_null();
        return;
    }
    json_decref(result);
    run->kind =
        ctx.outcome == CEL__OUTCOME_FAILURE ? CEL__RUN_FAILURE : CEL__RUN_RETRY;
    run->exc_type = ctx.exc_type;
    run->exc_module = ctx.exc_module;
    run->exc_message = ctx.exc_message;
}

/* Why a request must not start: "revoked", "expired" or NULL. */
static const char *stop_reason(const cel_worker_t *worker,
                               const cel__request_t *request)
{
    if (cel__revoked_contains(worker->revoked, request->msg.id,
                              cel__monotonic()))
        return "revoked";
    if (request->msg.expires != NULL && cel__now() > request->msg.expires_ts)
        return "expired";
    return NULL;
}

/* Settles and frees a request that must not start; returns false, doing
 * nothing, for one that may. */
static bool drop_if_stopped(cel_worker_t *worker, cel__request_t *request)
{
    const char *reason = stop_reason(worker, request);
    if (reason == NULL)
        return false;
    cel__revoke_request(worker, request, reason, 0);
    cel__request_free(request);
    return true;
}

/* Counts the request as started, and sends the task-started event and
 * the STARTED state where they are enabled. */
static void record_start(cel_worker_t *worker, cel__request_t *request)
{
    worker->processed++;
    request->task->accepted++;
    request->time_start = cel__now();
    cel__event_task(worker, "task-started", request, NULL);
    cel__store_started(worker, request);
}

void cel__start(cel_worker_t *worker, cel__request_t *request)
{
    if (drop_if_stopped(worker, request))
        return;
    if (!acks_late(worker, request->task) && !cel__ack(worker, request)) {
        /* The connection is gone, so the broker delivers the message again;
         * running it here too would run it twice. */
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Not starting task %s[%s]: its ack could not be sent, so "
                 "the broker will deliver it again",
                 request->msg.task, request->msg.id);
        cel__request_free(request);
        return;
    }
    /* Before submit, because the pool may free the request. */
    record_start(worker, request);
    double soft = soft_limit(worker, request);
    double hard = cel__hard_limit(worker, request);
    cel__pool_t *pool = worker->pool;
    /* A task run right here could take long: its ack goes out first. */
    if (pool->runs_inline && worker->broker != NULL)
        cel__broker_flush(worker->broker);
    if (pool->ops->submit(pool, request, soft, hard) != CEL_OK) {
        cel__run_t run = {
            .kind = CEL__RUN_FAILURE,
            .exc_type = strdup("WorkerLostError"),
            .exc_module = strdup("billiard.exceptions"),
            .exc_message = strdup("could not hand the task to the pool"),
        };
        cel__settle(worker, request, &run);
    }
}

bool cel__queue(cel_worker_t *worker, cel__request_t *request)
{
    if (drop_if_stopped(worker, request))
        return true;
    double soft = soft_limit(worker, request);
    double hard = cel__hard_limit(worker, request);
    int status = worker->pool->ops->queue(worker->pool, request, soft, hard);
    if (status == CEL_OK)
        return true;
    if (status == CEL_ETOOBIG)
        request->not_queueable = true;
    return false;
}

void cel__promote(cel_worker_t *worker, cel__request_t *request)
{
    const char *reason = stop_reason(worker, request);
    bool connection_lost =
        request->connection_epoch != worker->connection_epoch ||
        worker->broker == NULL;
    if ((reason != NULL || connection_lost) &&
        worker->pool->ops->withdraw(worker->pool, request) != NULL) {
        /* A message of a closed connection is the broker's again. */
        if (!connection_lost)
            cel__revoke_request(worker, request, reason, 0);
        cel__request_free(request);
        return;
    }
    if (!acks_late(worker, request->task) && !cel__ack(worker, request))
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Task %s[%s] started although its ack could not be sent; "
                 "the broker will deliver it again",
                 request->msg.task, request->msg.id);
    record_start(worker, request);
}
