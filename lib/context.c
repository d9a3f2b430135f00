/* The request context a task body receives, and its ways to end. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const char *cel_context_id(const cel_context_t *ctx)
{
    return ctx->request->msg.id;
}

const char *cel_context_task_name(const cel_context_t *ctx)
{
    return ctx->request->msg.task;
}

int cel_context_retries(const cel_context_t *ctx)
{
    return ctx->request->msg.retries;
}

const char *cel_context_root_id(const cel_context_t *ctx)
{
    return ctx->request->msg.root_id;
}

const char *cel_context_parent_id(const cel_context_t *ctx)
{
    return ctx->request->msg.parent_id;
}

const char *cel_context_group(const cel_context_t *ctx)
{
    return ctx->request->msg.group;
}

const char *cel_context_eta(const cel_context_t *ctx)
{
    return ctx->request->msg.eta;
}

const char *cel_context_expires(const cel_context_t *ctx)
{
    return ctx->request->msg.expires;
}

const char *cel_context_hostname(const cel_context_t *ctx)
{
    return ctx->hostname;
}

const char *cel_context_exchange(const cel_context_t *ctx)
{
    return ctx->request->exchange;
}

const char *cel_context_routing_key(const cel_context_t *ctx)
{
    return ctx->request->routing_key;
}

bool cel_context_redelivered(const cel_context_t *ctx)
{
    return ctx->request->redelivered;
}

json_t *cel_context_headers(const cel_context_t *ctx)
{
    /* The request belongs to the run, so filling it in here is safe. */
    cel__request_t *request = (cel__request_t *)ctx->request;
    if (request->msg.headers == NULL && request->fetch_headers != NULL) {
        request->msg.headers = request->fetch_headers(request);
        request->fetch_headers = NULL;
    }
    if (request->msg.headers == NULL)
        request->msg.headers = cel__request_headers(request);
    return request->msg.headers;
}

void *cel_context_user_data(const cel_context_t *ctx)
{
    return ctx->request->task ? ctx->request->task->user_data : NULL;
}

bool cel_context_soft_time_limit_exceeded(const cel_context_t *ctx)
{
    return ctx->soft_deadline > 0 && cel__monotonic() >= ctx->soft_deadline;
}

static char *format_message(const char *fmt, va_list ap)
{
    char *text = NULL;
    if (fmt == NULL || vasprintf(&text, fmt, ap) < 0)
        return NULL;
    return text;
}

/* Records an outcome; the first one a task sets wins. */
static void set_outcome(cel_context_t *ctx, cel__outcome_t outcome,
                        const char *exc_type, const char *exc_module,
                        char *message)
{
    if (ctx->outcome_set) {
        free(message);
        return;
    }
    ctx->outcome_set = true;
    ctx->outcome = outcome;
    ctx->exc_type = exc_type ? strdup(exc_type) : NULL;
    ctx->exc_module = strdup(exc_module ? exc_module : "builtins");
    ctx->exc_message = message;
}

json_t *cel_fail(cel_context_t *ctx, const char *exc_type,
                 const char *exc_module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *message = format_message(fmt, ap);
    va_end(ap);
    set_outcome(ctx, CEL__OUTCOME_FAILURE, exc_type ? exc_type : "Exception",
                exc_module, message);
    return NULL;
}

json_t *cel_retry(cel_context_t *ctx, double countdown, const char *exc_type,
                  const char *exc_module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *message = format_message(fmt, ap);
    va_end(ap);
    if (!ctx->outcome_set)
        ctx->countdown = countdown;
    set_outcome(ctx, CEL__OUTCOME_RETRY, exc_type, exc_module, message);
    return NULL;
}

void cel__context_clear(cel_context_t *ctx)
{
    free(ctx->exc_type);
    free(ctx->exc_module);
    free(ctx->exc_message);
    ctx->exc_type = ctx->exc_module = ctx->exc_message = NULL;
}

void cel__request_arguments(const cel__request_t *request, json_t **args,
                            json_t **kwargs)
{
    *args = NULL;
    *kwargs = NULL;
    if (request->body == NULL) {
        *args = json_incref(request->msg.args);
        *kwargs = json_incref(request->msg.kwargs);
        return;
    }
    json_t *body = NULL;
    if (cel__json_parse(request->body, request->body_len, CEL__JSON_MAX_DEPTH,
                        &body, NULL, 0) == CEL_OK &&
        json_is_array(body))
        cel__task_body_arguments(body, args, kwargs);
    json_decref(body);
}

void cel__request_argument_reprs(const cel__request_t *request, char **args,
                                 char **kwargs)
{
    const cel__task_message_t *msg = &request->msg;
    json_t *args_value = NULL;
    json_t *kwargs_value = NULL;
    if (msg->argsrepr == NULL || msg->kwargsrepr == NULL)
        cel__request_arguments(request, &args_value, &kwargs_value);
    *args = msg->argsrepr ? strdup(msg->argsrepr)
                          : cel__pyrepr(args_value, 1024, true);
    *kwargs = msg->kwargsrepr ? strdup(msg->kwargsrepr)
                              : cel__pyrepr(kwargs_value, 1024, false);
    json_decref(args_value);
    json_decref(kwargs_value);
}

void cel__request_free(cel__request_t *request)
{
    if (request == NULL)
        return;
    cel__task_message_clear(&request->msg);
    free(request->properties);
    free(request->exchange);
    free(request->routing_key);
    free(request->body);
    free(request);
}
