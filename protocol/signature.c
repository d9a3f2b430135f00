/* Signatures (Celery's canvas dicts) turned into task messages, the way
 * Signature.apply_async and send_task build them. No I/O. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* The largest AMQP expiration written, in milliseconds (2^31 - 1, about
 * 24.8 days). */
#define EXPIRATION_MAX_MS 2147483647.0

static const char *text_member(json_t *object, const char *key)
{
    return json_string_value(json_object_get(object, key));
}

cel__sig_kind_t cel__signature_kind(json_t *sig)
{
    const char *type = text_member(sig, "subtask_type");
    const char *task = text_member(sig, "task");
    if ((type && strcmp(type, "group") == 0) ||
        (!type && task && strcmp(task, "celery.group") == 0))
        return CEL__SIG_GROUP;
    if ((type && strcmp(type, "chain") == 0) ||
        (!type && task && strcmp(task, "celery.chain") == 0))
        return CEL__SIG_CHAIN;
    if ((type && strcmp(type, "chord") == 0) ||
        (!type && task && strcmp(task, "celery.chord") == 0))
        return CEL__SIG_CHORD;
    return CEL__SIG_TASK;
}

json_t *cel__signature_options(json_t *sig, json_t *overrides)
{
    json_t *own = json_object_get(sig, "options");
    json_t *merged = json_is_object(own) ? json_copy(own) : json_object();
    if (merged == NULL || !json_is_object(overrides))
        return merged;
    const char *key;
    json_t *value;
    json_object_foreach(overrides, key, value) {
        if (json_is_null(value))
            continue;
        if (strcmp(key, "group_id") == 0 &&
            json_object_get(merged, "group_id") != NULL)
            continue;
        if (json_object_set(merged, key, value) != 0) {
            json_decref(merged);
            return NULL;
        }
    }
    return merged;
}

json_t *cel__signature_args(json_t *sig, json_t *partial)
{
    json_t *own = json_object_get(sig, "args");
    json_t *args = json_array();
    if (args == NULL)
        return NULL;
    if (partial != NULL && !json_is_true(json_object_get(sig, "immutable")))
        json_array_extend(args, partial);
    if (json_is_array(own))
        json_array_extend(args, own);
    return args;
}

static char *dup_text(const char *text)
{
    return text ? strdup(text) : NULL;
}

/* A queue or exchange option: a name, or a kombu entity dict with one. */
static char *entity_name(json_t *value)
{
    if (json_is_object(value))
        value = json_object_get(value, "name");
    return dup_text(json_string_value(value));
}

/* A link option is one signature or a list of them. */
static json_t *signature_list(json_t *value)
{
    if (value == NULL || json_is_null(value))
        return NULL;
    if (json_is_array(value))
        return json_array_size(value) ? json_incref(value) : NULL;
    return json_pack("[O]", value);
}

static double number_or(json_t *value, double fallback)
{
    return json_is_number(value) ? json_number_value(value) : fallback;
}

/* An absolute time option: ISO text as given, or seconds from now. */
static int time_option(json_t *value, double now, char **text, double *epoch)
{
    if (json_is_string(value)) {
        if (cel__iso8601_parse(json_string_value(value), epoch) != 0)
            return CEL_EINVAL;
        *text = strdup(json_string_value(value));
        return *text ? CEL_OK : CEL_ENOMEM;
    }
    if (!json_is_number(value) || !isfinite(json_number_value(value)))
        return CEL_EINVAL;
    *epoch = now + json_number_value(value);
    /* ISO-8601 text has four-digit years: 1970 to 9999 here. */
    if (*epoch < 0 || *epoch > 253402300799.0)
        return CEL_EINVAL;
    char buf[40];
    if (cel__iso8601_format(*epoch, buf, sizeof buf) != 0)
        return CEL_EINVAL;
    *text = strdup(buf);
    return *text ? CEL_OK : CEL_ENOMEM;
}

static int fill_times(cel__sig_message_t *out, json_t *options, double now,
                      char *why, size_t why_len)
{
    cel__task_message_t *msg = &out->msg;
    json_t *countdown = json_object_get(options, "countdown");
    json_t *eta = json_object_get(options, "eta");
    if (json_is_number(countdown) && json_number_value(countdown) != 0)
        eta = countdown;
    if (eta != NULL && !json_is_null(eta) &&
        time_option(eta, now, &msg->eta, &msg->eta_ts) != CEL_OK) {
        snprintf(why, why_len, "invalid countdown or eta option");
        return CEL_EINVAL;
    }
    json_t *expires = json_object_get(options, "expires");
    if (expires == NULL || json_is_null(expires))
        return CEL_OK;
    if (time_option(expires, now, &msg->expires, &msg->expires_ts) != CEL_OK) {
        snprintf(why, why_len, "invalid expires option");
        return CEL_EINVAL;
    }
    double left = msg->expires_ts - now;
    /* RabbitMQ closes the channel for an expiration it cannot take, so a
     * far one is left to the expires header, which the worker enforces. */
    if (left * 1000 > EXPIRATION_MAX_MS)
        return CEL_OK;
    char ms[32];
    snprintf(ms, sizeof ms, "%lld", left > 0 ? (long long)(left * 1000) : 0LL);
    out->expiration = strdup(ms);
    return out->expiration ? CEL_OK : CEL_ENOMEM;
}

static void fill_limits(cel__task_message_t *msg, json_t *options)
{
    msg->time_limit = number_or(json_object_get(options, "time_limit"), 0);
    msg->soft_time_limit =
        number_or(json_object_get(options, "soft_time_limit"), 0);
    if (msg->time_limit < 0 || !isfinite(msg->time_limit))
        msg->time_limit = 0;
    if (msg->soft_time_limit < 0 || !isfinite(msg->soft_time_limit))
        msg->soft_time_limit = 0;
}

static void fill_integers(cel__task_message_t *msg, json_t *options)
{
    json_t *priority = json_object_get(options, "priority");
    msg->priority = json_is_integer(priority) &&
                            json_integer_value(priority) >= 0 &&
                            json_integer_value(priority) <= 255
                        ? (int)json_integer_value(priority)
                        : -1;
    json_t *retries = json_object_get(options, "retries");
    msg->retries = json_is_integer(retries) &&
                           json_integer_value(retries) >= 0 &&
                           json_integer_value(retries) < 1000000000
                       ? (int)json_integer_value(retries)
                       : 0;
    json_t *index = json_object_get(options, "group_index");
    if (json_is_integer(index) && json_integer_value(index) >= 0 &&
        json_integer_value(index) < 1000000000) {
        msg->group_index = (int)json_integer_value(index);
        msg->has_group_index = true;
    }
    msg->ignore_result =
        json_is_true(json_object_get(options, "ignore_result"));
}

static int fill_strings(cel__task_message_t *msg, json_t *options,
                        const cel__sig_defaults_t *defaults)
{
    const char *task_id = text_member(options, "task_id");
    const char *reply_to = text_member(options, "reply_to");
    msg->id = dup_text(task_id ? task_id : defaults->task_id);
    msg->correlation_id = dup_text(msg->id);
    msg->reply_to = dup_text(reply_to ? reply_to : defaults->reply_to);
    msg->origin = dup_text(defaults->origin);
    msg->shadow = dup_text(text_member(options, "shadow"));
    msg->root_id = dup_text(text_member(options, "root_id"));
    msg->parent_id = dup_text(text_member(options, "parent_id"));
    msg->group = dup_text(text_member(options, "group_id"));
    return msg->id && msg->correlation_id ? CEL_OK : CEL_ENOMEM;
}

static void fill_embed(cel__task_message_t *msg, json_t *options)
{
    msg->callbacks = signature_list(json_object_get(options, "link"));
    msg->errbacks = signature_list(json_object_get(options, "link_error"));
    json_t *chain = json_object_get(options, "chain");
    msg->chain = json_is_array(chain) ? json_incref(chain) : NULL;
    json_t *chord = json_object_get(options, "chord");
    msg->chord = json_is_object(chord) ? json_incref(chord) : NULL;
    json_t *headers = json_object_get(options, "headers");
    msg->headers = json_is_object(headers) ? json_deep_copy(headers) : NULL;
}

int cel__signature_message(json_t *sig, json_t *args, json_t *options,
                           const cel__sig_defaults_t *defaults,
                           cel__sig_message_t *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    out->msg.protocol = 2;
    out->msg.priority = -1;
    const char *task = text_member(sig, "task");
    json_t *kwargs = json_object_get(sig, "kwargs");
    if (!json_is_object(sig) || task == NULL || task[0] == '\0') {
        snprintf(why, why_len, "a signature needs a task name");
        return CEL_EINVAL;
    }
    if (kwargs != NULL && !json_is_null(kwargs) && !json_is_object(kwargs)) {
        snprintf(why, why_len, "the kwargs of signature %.200s are not a dict",
                 task);
        return CEL_EINVAL;
    }
    out->msg.task = strdup(task);
    out->msg.args = json_incref(args);
    out->msg.kwargs =
        json_is_object(kwargs) ? json_copy(kwargs) : json_object();
    if (out->msg.task == NULL || out->msg.kwargs == NULL ||
        fill_strings(&out->msg, options, defaults) != CEL_OK) {
        snprintf(why, why_len, "out of memory");
        return CEL_ENOMEM;
    }
    fill_integers(&out->msg, options);
    fill_limits(&out->msg, options);
    fill_embed(&out->msg, options);
    out->queue = entity_name(json_object_get(options, "queue"));
    out->exchange = entity_name(json_object_get(options, "exchange"));
    out->routing_key = dup_text(text_member(options, "routing_key"));
    return fill_times(out, options, defaults->now, why, why_len);
}

void cel__sig_message_clear(cel__sig_message_t *out)
{
    cel__task_message_clear(&out->msg);
    free(out->queue);
    free(out->exchange);
    free(out->routing_key);
    free(out->expiration);
    memset(out, 0, sizeof *out);
}
