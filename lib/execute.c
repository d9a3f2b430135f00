/* Running one task and settling its outcome: result, failure or retry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Python's repr of an exception: ValueError('boom'). */
static char *exception_repr(const char *exc_type, const char *message)
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

static void on_success(cel_worker_t *worker, const cel__request_t *request,
                       json_t *result, double runtime)
{
    const cel__task_message_t *msg = &request->msg;
    char *repr = cel__pyrepr(result, 1024, false);
    cel__log(worker->app, CEL_LOG_INFO, "Task %s[%s] succeeded in %.6fs: %s",
             msg->task, msg->id, runtime, repr ? repr : "");
    free(repr);
    if (!ignores_result(worker, request))
        cel__store_result(worker, msg->id, msg->reply_to, msg->correlation_id,
                          "SUCCESS", result, NULL);
}

static void on_failure(cel_worker_t *worker, const cel__request_t *request,
                       const char *exc_type, const char *exc_module,
                       const char *message)
{
    const cel__task_message_t *msg = &request->msg;
    char *repr = exception_repr(exc_type, message);
    char *traceback =
        cel__traceback_format(msg->task, exc_type, exc_module, message);
    cel__log(worker->app, CEL_LOG_ERROR, "Task %s[%s] raised unexpected: %s",
             msg->task, msg->id, repr ? repr : exc_type);
    if (cel__stores_errors(worker, request->task))
        cel__store_exception(worker, msg, "FAILURE", exc_type, exc_module,
                             message, traceback);
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

    json_t *headers = NULL;
    char *body = NULL;
    size_t body_len = 0;
    int status = cel__task_encode_v2(&next, &headers, &body, &body_len);
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
                     const cel_context_t *ctx)
{
    const cel__task_message_t *msg = &request->msg;
    const cel_task_t *task = request->task;
    double countdown =
        ctx->countdown >= 0 ? ctx->countdown : task->default_retry_delay;
    if (send_retry(worker, request, countdown) != CEL_OK) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot send the retry of task %s[%s]: %s", msg->task, msg->id,
                 cel__broker_error(worker->broker));
        return false;
    }
    char *repr =
        ctx->exc_type ? exception_repr(ctx->exc_type, ctx->exc_message) : NULL;
    cel__log(worker->app, CEL_LOG_INFO, "Task %s[%s] retry: Retry in %gs%s%s",
             msg->task, msg->id, countdown, repr ? ": " : "", repr ? repr : "");
    free(repr);
    if (!cel__stores_errors(worker, task))
        return true;
    if (ctx->exc_type != NULL) {
        char *traceback = cel__traceback_format(
            msg->task, ctx->exc_type, ctx->exc_module, ctx->exc_message);
        cel__store_exception(worker, msg, "RETRY", ctx->exc_type,
                             ctx->exc_module, ctx->exc_message, traceback);
        free(traceback);
    } else {
        cel__store_result(worker, msg->id, msg->reply_to, msg->correlation_id,
                          "RETRY", NULL, NULL);
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
                           const cel_context_t *ctx)
{
    if (ctx->exc_type != NULL) {
        on_failure(worker, request, ctx->exc_type, ctx->exc_module,
                   ctx->exc_message);
        return;
    }
    const cel__task_message_t *msg = &request->msg;
    char *args = cel__pyrepr(msg->args, 1024, true);
    char *kwargs = cel__pyrepr(msg->kwargs, 1024, false);
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

static void settle_late(cel_worker_t *worker, const cel__request_t *request,
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

void cel__execute(cel_worker_t *worker, cel__request_t *request)
{
    const cel__task_message_t *msg = &request->msg;
    if (msg->expires != NULL && cel__now() > msg->expires_ts) {
        cel__revoke_expired(worker, request);
        cel__request_free(request);
        return;
    }
    if (!acks_late(worker, request->task))
        cel__ack(worker, request);
    worker->processed++;

    cel_context_t ctx = {
        .request = request,
        .hostname = worker->nodename,
        .countdown = -1,
    };
    double started = cel__monotonic();
    double soft = soft_limit(worker, request);
    if (soft > 0)
        ctx.soft_deadline = started + soft;

    json_t *result = request->task->fn(&ctx, msg->args, msg->kwargs);
    double runtime = cel__monotonic() - started;

    bool failed = false;
    if (!ctx.outcome_set) {
        on_success(worker, request, result ? result : json_null(), runtime);
    } else if (ctx.outcome == CEL__OUTCOME_FAILURE) {
        on_failure(worker, request, ctx.exc_type, ctx.exc_module,
                   ctx.exc_message);
        failed = true;
    } else if (retries_exhausted(request) || !on_retry(worker, request, &ctx)) {
        fail_exhausted(worker, request, &ctx);
        failed = true;
    }
    json_decref(result);
    settle_late(worker, request, failed);
    cel__context_clear(&ctx);
    cel__request_free(request);
}
