/* Task messages: decode protocol v1, v2 and hybrid; encode v2. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define JSON_MIME "application/json"

static int fail(char *why, size_t why_len, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *why, size_t why_len, int status, const char *fmt, ...)
{
    if (why != NULL && why_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, why_len, fmt, ap);
        va_end(ap);
    }
    return status;
}

static char *dup_or_null(const char *text)
{
    return text ? strdup(text) : NULL;
}

void cel__task_message_clear(cel__task_message_t *msg)
{
    char **strings[] = {&msg->id,        &msg->task,      &msg->shadow,
                        &msg->root_id,   &msg->parent_id, &msg->group,
                        &msg->origin,    &msg->reply_to,  &msg->correlation_id,
                        &msg->eta,       &msg->expires,   &msg->argsrepr,
                        &msg->kwargsrepr};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        free(*strings[i]);
        *strings[i] = NULL;
    }
    json_t **values[] = {&msg->args,     &msg->kwargs, &msg->callbacks,
                         &msg->errbacks, &msg->chain,  &msg->chord,
                         &msg->headers};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        json_decref(*values[i]);
        *values[i] = NULL;
    }
}

/* argsrepr as Celery computes it: saferepr of the args tuple. */
static char *args_repr(json_t *args)
{
    return args ? cel__pyrepr(args, 1024, true) : strdup("()");
}

static char *kwargs_repr(json_t *kwargs)
{
    return kwargs ? cel__pyrepr(kwargs, 1024, false) : strdup("{}");
}

#define FIELD_NAME(text) {text, sizeof text - 1}

const cel__field_name_t cel__task_field_names[CEL__FIELD_COUNT] = {
    [CEL__FIELD_ID] = FIELD_NAME("id"),
    [CEL__FIELD_TASK] = FIELD_NAME("task"),
    [CEL__FIELD_SHADOW] = FIELD_NAME("shadow"),
    [CEL__FIELD_ROOT_ID] = FIELD_NAME("root_id"),
    [CEL__FIELD_PARENT_ID] = FIELD_NAME("parent_id"),
    [CEL__FIELD_GROUP] = FIELD_NAME("group"),
    [CEL__FIELD_ORIGIN] = FIELD_NAME("origin"),
    [CEL__FIELD_ARGSREPR] = FIELD_NAME("argsrepr"),
    [CEL__FIELD_KWARGSREPR] = FIELD_NAME("kwargsrepr"),
    [CEL__FIELD_ETA] = FIELD_NAME("eta"),
    [CEL__FIELD_EXPIRES] = FIELD_NAME("expires"),
    [CEL__FIELD_RETRIES] = FIELD_NAME("retries"),
    [CEL__FIELD_GROUP_INDEX] = FIELD_NAME("group_index"),
    [CEL__FIELD_IGNORE_RESULT] = FIELD_NAME("ignore_result"),
    [CEL__FIELD_TIMELIMIT] = FIELD_NAME("timelimit"),
};

static cel__value_t value_from_json(json_t *value)
{
    cel__value_t out = {.kind = CEL__VALUE_OTHER};
    if (value == NULL) {
        out.kind = CEL__VALUE_ABSENT;
    } else if (json_is_null(value)) {
        out.kind = CEL__VALUE_NULL;
    } else if (json_is_string(value)) {
        out.kind = CEL__VALUE_TEXT;
        out.text = json_string_value(value);
        out.len = json_string_length(value);
    } else if (json_is_integer(value)) {
        out.kind = CEL__VALUE_INTEGER;
        out.integer = json_integer_value(value);
    } else if (json_is_real(value)) {
        out.kind = CEL__VALUE_REAL;
        out.real = json_real_value(value);
    } else if (json_is_true(value)) {
        out.kind = CEL__VALUE_TRUE;
    } else if (json_is_array(value) && json_array_size(value) == 2) {
        out.kind = CEL__VALUE_PAIR;
    }
    return out;
}

static void fields_from_json(json_t *object, cel__task_fields_t *out)
{
    for (int i = 0; i < CEL__FIELD_COUNT; i++)
        out->value[i] =
            value_from_json(json_object_get(object, cel__task_field_names[i].text));
    json_t *timelimit = json_object_get(object, "timelimit");
    for (size_t i = 0; i < 2; i++)
        out->timelimit[i] = value_from_json(json_array_get(timelimit, i));
}

/* Returns a copy of a text value up to its first NUL, NULL when the value
 * is absent or not text. */
static char *copy_text(const cel__value_t *value)
{
    if (value->kind != CEL__VALUE_TEXT)
        return NULL;
    return value->len ? strndup(value->text, value->len) : strdup("");
}

/* Reads an optional ISO-8601 field into its text and timestamp. */
static int read_time_field(const cel__task_fields_t *fields,
                           cel__task_field_t field, char **text, double *ts,
                           char *why, size_t why_len)
{
    const cel__value_t *value = &fields->value[field];
    const char *key = cel__task_field_names[field].text;
    if (value->kind == CEL__VALUE_ABSENT || value->kind == CEL__VALUE_NULL)
        return CEL_OK;
    if (value->kind != CEL__VALUE_TEXT)
        return fail(why, why_len, CEL_EINVALTASK, "%s is not a string", key);
    char *copy = copy_text(value);
    if (copy == NULL)
        return CEL_ENOMEM;
    if (cel__iso8601_parse(copy, ts) != 0) {
        int status = fail(why, why_len, CEL_EINVALTASK,
                          "%s '%.64s' is not an ISO-8601 date-time", key, copy);
        free(copy);
        return status;
    }
    *text = copy;
    return CEL_OK;
}

static int read_number_or_null(const cel__value_t *value, double *out)
{
    switch (value->kind) {
    case CEL__VALUE_NULL:
        *out = 0;
        return 0;
    case CEL__VALUE_INTEGER:
        if (value->integer < 0)
            return -1;
        *out = (double)value->integer;
        return 0;
    case CEL__VALUE_REAL:
        if (value->real < 0)
            return -1;
        *out = value->real;
        return 0;
    default:
        return -1;
    }
}

static int read_timelimit(const cel__task_fields_t *fields,
                          cel__task_message_t *out, char *why, size_t why_len)
{
    cel__value_kind_t kind = fields->value[CEL__FIELD_TIMELIMIT].kind;
    if (kind == CEL__VALUE_ABSENT || kind == CEL__VALUE_NULL)
        return CEL_OK;
    if (kind != CEL__VALUE_PAIR ||
        read_number_or_null(&fields->timelimit[0], &out->time_limit) ||
        read_number_or_null(&fields->timelimit[1], &out->soft_time_limit))
        return fail(why, why_len, CEL_EINVALTASK,
                    "timelimit is not [hard, soft] with numbers or nulls");
    return CEL_OK;
}

/* Fills the metadata fields shared by every protocol form. */
static int read_fields(const cel__task_fields_t *fields,
                       cel__task_message_t *out, char *why, size_t why_len)
{
    const cel__value_t *value = fields->value;
    free(out->id);
    free(out->task);
    out->id = copy_text(&value[CEL__FIELD_ID]);
    out->task = copy_text(&value[CEL__FIELD_TASK]);
    if (out->id == NULL)
        return fail(why, why_len, CEL_EINVALTASK, "the task id is missing");
    if (out->task == NULL)
        return fail(why, why_len, CEL_EINVALTASK, "the task name is missing");
    /* The copies end at a NUL byte, which would name another task. */
    if (strlen(out->id) != value[CEL__FIELD_ID].len)
        return fail(why, why_len, CEL_EINVALTASK,
                    "the task id contains a NUL byte");
    if (strlen(out->task) != value[CEL__FIELD_TASK].len)
        return fail(why, why_len, CEL_EINVALTASK,
                    "the task name contains a NUL byte");

    out->shadow = copy_text(&value[CEL__FIELD_SHADOW]);
    out->root_id = copy_text(&value[CEL__FIELD_ROOT_ID]);
    out->parent_id = copy_text(&value[CEL__FIELD_PARENT_ID]);
    out->group = copy_text(&value[CEL__FIELD_GROUP]);
    out->origin = copy_text(&value[CEL__FIELD_ORIGIN]);
    out->argsrepr = copy_text(&value[CEL__FIELD_ARGSREPR]);
    out->kwargsrepr = copy_text(&value[CEL__FIELD_KWARGSREPR]);

    const cel__value_t *retries = &value[CEL__FIELD_RETRIES];
    if (retries->kind != CEL__VALUE_ABSENT && retries->kind != CEL__VALUE_NULL) {
        if (retries->kind != CEL__VALUE_INTEGER || retries->integer < 0 ||
            retries->integer > 1000000000)
            return fail(why, why_len, CEL_EINVALTASK,
                        "retries is not a non-negative integer");
        out->retries = (int)retries->integer;
    }

    const cel__value_t *group_index = &value[CEL__FIELD_GROUP_INDEX];
    if (group_index->kind == CEL__VALUE_INTEGER) {
        out->group_index = (int)group_index->integer;
        out->has_group_index = true;
    }

    out->ignore_result = value[CEL__FIELD_IGNORE_RESULT].kind == CEL__VALUE_TRUE;

    int status = read_timelimit(fields, out, why, why_len);
    if (status == CEL_OK)
        status = read_time_field(fields, CEL__FIELD_ETA, &out->eta,
                                 &out->eta_ts, why, why_len);
    if (status == CEL_OK)
        status = read_time_field(fields, CEL__FIELD_EXPIRES, &out->expires,
                                 &out->expires_ts, why, why_len);
    return status;
}

/* Reads the fields of a JSON object: the headers, or a v1 body. */
static int read_json_fields(json_t *object, cel__task_message_t *out,
                            char *why, size_t why_len)
{
    cel__task_fields_t fields;
    fields_from_json(object, &fields);
    return read_fields(&fields, out, why, why_len);
}

/* Returns new references to args and kwargs as a task gets them: a
 * missing or null member becomes [] or {}. */
static void arguments_or_empty(json_t *args, json_t *kwargs, json_t **args_out,
                               json_t **kwargs_out)
{
    *args_out =
        args == NULL || json_is_null(args) ? json_array() : json_incref(args);
    *kwargs_out = kwargs == NULL || json_is_null(kwargs) ? json_object()
                                                         : json_incref(kwargs);
}

void cel__task_body_arguments(json_t *body, json_t **args, json_t **kwargs)
{
    arguments_or_empty(json_array_get(body, 0), json_array_get(body, 1), args,
                       kwargs);
}

/* Takes args and kwargs from a body, checking their types. */
static int read_arguments(json_t *args, json_t *kwargs,
                          cel__task_message_t *out, char *why, size_t why_len)
{
    arguments_or_empty(args, kwargs, &args, &kwargs);
    out->args = args;
    out->kwargs = kwargs;
    if (!json_is_array(args))
        return fail(why, why_len, CEL_EINVALTASK, "task args are not a list");
    if (!json_is_object(kwargs))
        return fail(why, why_len, CEL_EINVALTASK,
                    "task keyword arguments are not a mapping");
    return CEL_OK;
}

static int read_embed_member(json_t *embed, const char *key, bool is_list,
                             json_t **out, char *why, size_t why_len)
{
    json_t *value = json_object_get(embed, key);
    if (value == NULL || json_is_null(value))
        return CEL_OK;
    if (is_list ? !json_is_array(value) : !json_is_object(value))
        return fail(why, why_len, CEL_EINVALTASK, "embed %s is not %s", key,
                    is_list ? "a list" : "a signature");
    *out = json_incref(value);
    return CEL_OK;
}

static int read_embed(json_t *embed, cel__task_message_t *out, char *why,
                      size_t why_len)
{
    if (embed == NULL || json_is_null(embed))
        return CEL_OK;
    if (!json_is_object(embed))
        return fail(why, why_len, CEL_EINVALTASK,
                    "the body's third element (embed) is not a mapping");
    int status = read_embed_member(embed, "callbacks", true, &out->callbacks,
                                   why, why_len);
    if (status == CEL_OK)
        status = read_embed_member(embed, "errbacks", true, &out->errbacks, why,
                                   why_len);
    if (status == CEL_OK)
        status =
            read_embed_member(embed, "chain", true, &out->chain, why, why_len);
    if (status == CEL_OK)
        status =
            read_embed_member(embed, "chord", false, &out->chord, why, why_len);
    return status;
}

static const char *const HYBRID_KEYS[] = {
    "lang",    "task",      "id",       "root_id",    "parent_id",
    "group",   "meth",      "shadow",   "eta",        "expires",
    "retries", "timelimit", "argsrepr", "kwargsrepr", "origin"};

/* Headers for a hybrid message: body fields overlaid by the real headers. */
static json_t *hybrid_fields(json_t *body, json_t *headers)
{
    json_t *fields = json_object();
    for (size_t i = 0; i < sizeof HYBRID_KEYS / sizeof HYBRID_KEYS[0]; i++) {
        json_t *value = json_object_get(body, HYBRID_KEYS[i]);
        if (value != NULL)
            json_object_set(fields, HYBRID_KEYS[i], value);
    }
    if (headers != NULL)
        json_object_update(fields, headers);
    return fields;
}

/* `fields` are the headers' fields, for a body that is not hybrid. */
static int decode_v2(json_t *body, const cel__wire_message_t *in,
                     const cel__task_fields_t *fields,
                     cel__task_message_t *out, char *why, size_t why_len)
{
    out->protocol = 2;
    /* Shared with the caller; neither side changes the object. */
    out->headers = json_incref(in->headers);
    if (json_is_object(body) && json_object_get(body, "args") != NULL) {
        out->hybrid = true;
        json_t *merged = hybrid_fields(body, in->headers);
        int status = read_json_fields(merged, out, why, why_len);
        json_decref(merged);
        if (status != CEL_OK)
            return status;
        status =
            read_arguments(json_object_get(body, "args"),
                           json_object_get(body, "kwargs"), out, why, why_len);
        if (status == CEL_OK)
            status = read_embed(body, out, why, why_len);
        json_decref(out->chain);
        out->chain = NULL;
        return status;
    }
    if (!json_is_array(body) || json_array_size(body) != 3)
        return fail(why, why_len, CEL_EINVALTASK,
                    "the body is not a list of [args, kwargs, embed]");
    int status = read_fields(fields, out, why, why_len);
    if (status == CEL_OK)
        status = read_arguments(json_array_get(body, 0),
                                json_array_get(body, 1), out, why, why_len);
    if (status == CEL_OK)
        status = read_embed(json_array_get(body, 2), out, why, why_len);
    return status;
}

static int decode_v1(json_t *body, const cel__wire_message_t *in,
                     cel__task_message_t *out, char *why, size_t why_len)
{
    out->protocol = 1;
    out->headers = in->headers ? json_incref(in->headers) : json_object();
    json_t *fields = json_copy(body);
    json_t *taskset = json_object_get(body, "taskset");
    if (taskset != NULL && json_object_get(body, "group") == NULL)
        json_object_set(fields, "group", taskset);
    json_object_del(fields, "argsrepr");
    json_object_del(fields, "kwargsrepr");
    json_object_del(fields, "root_id");
    json_object_del(fields, "parent_id");
    int status = read_json_fields(fields, out, why, why_len);
    json_decref(fields);
    if (status != CEL_OK)
        return status;
    status = read_arguments(json_object_get(body, "args"),
                            json_object_get(body, "kwargs"), out, why, why_len);
    if (status == CEL_OK)
        status = read_embed(body, out, why, why_len);
    json_decref(out->chain);
    out->chain = NULL;
    if (status == CEL_OK) {
        /* Protocol v1 has no reprs; Celery computes them on receipt. */
        out->argsrepr = args_repr(out->args);
        out->kwargsrepr = kwargs_repr(out->kwargs);
    }
    return status;
}

/* Celery's embed for a task without callbacks, errbacks, chain or chord,
 * as kombu 5.2's json writes it at the end of a v2 body. */
#define EMPTY_EMBED_END                                                        \
    ", {\"callbacks\": null, \"errbacks\": null, \"chain\": null, "         \
    "\"chord\": null}]"

/* Maximum length of a body that parse_without_empty_embed copies to the
 * stack. */
#define EMPTY_EMBED_BODY_MAX 4096

/* Parses a body that ends with the empty embed as [args, kwargs, null],
 * which the decoder reads as it reads the embed, without building and
 * freeing the embed's object. Returns false, to have the whole text
 * parsed, unless the text before the embed is a list of two members:
 * then the whole text is that list with the embed as a third member.
 * The embed nests one level, so max_depth must allow two. */
static bool parse_without_empty_embed(const char *bytes, size_t len,
                                      int max_depth, json_t **body)
{
    size_t end_len = strlen(EMPTY_EMBED_END);
    if (max_depth < 2 || len <= end_len || len > EMPTY_EMBED_BODY_MAX ||
        memcmp(bytes + len - end_len, EMPTY_EMBED_END, end_len) != 0)
        return false;
    char text[EMPTY_EMBED_BODY_MAX];
    size_t head_len = len - end_len;
    memcpy(text, bytes, head_len);
    text[head_len] = ']';
    json_t *list = NULL;
    char reason[160];
    if (cel__json_parse(text, head_len + 1, max_depth, &list, reason,
                        sizeof reason) != CEL_OK)
        return false;
    if (!json_is_array(list) || json_array_size(list) != 2 ||
        json_array_append_new(list, json_null()) != 0) {
        json_decref(list);
        return false;
    }
    *body = list;
    return true;
}

/* Decompresses and parses the body. On success *body is a new reference. */
static int parse_body(const cel__wire_message_t *in,
                      const cel__limits_t *limits, json_t **body, char *why,
                      size_t why_len)
{
    const char *bytes = in->body;
    size_t len = in->body_len;
    void *inflated = NULL;
    int status = CEL_OK;

    if (len > limits->max_body)
        return fail(why, why_len, CEL_ETOOBIG,
                    "the body is %zu bytes, over the cap of %zu", len,
                    limits->max_body);

    json_t *compression = json_object_get(in->headers, "compression");
    if (json_is_string(compression)) {
        const char *mime = json_string_value(compression);
        status = cel__decompress(mime, bytes, len, limits->max_body, &inflated,
                                 &len);
        if (status == CEL_ECOMPRESS)
            return fail(why, why_len, status,
                        "compression '%.64s' is not supported", mime);
        if (status == CEL_ETOOBIG)
            return fail(why, why_len, status,
                        "the body inflates past the cap of %zu bytes",
                        limits->max_body);
        if (status != CEL_OK)
            return fail(why, why_len, status,
                        "the body is not a valid zlib stream");
        bytes = inflated;
    }

    if (parse_without_empty_embed(bytes, len, limits->max_depth, body)) {
        free(inflated);
        return CEL_OK;
    }
    char reason[160];
    int parsed = cel__json_parse(bytes, len, limits->max_depth, body, reason,
                                 sizeof reason);
    if (parsed == CEL_ETOODEEP)
        status =
            fail(why, why_len, CEL_ETOODEEP,
                 "the body nests deeper than %d levels", limits->max_depth);
    else if (parsed == CEL_ENOMEM)
        status = fail(why, why_len, CEL_ENOMEM, "out of memory");
    else if (parsed != CEL_OK)
        status = fail(why, why_len, CEL_EDECODE,
                      "the body is not valid JSON: %s", reason);
    free(inflated);
    return status;
}

static bool content_type_is_json(const char *content_type)
{
    return content_type == NULL || strcmp(content_type, JSON_MIME) == 0;
}

int cel__task_decode(const cel__wire_message_t *in, const cel__limits_t *limits,
                     cel__task_message_t *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof *out);
    out->priority = in->priority;
    out->reply_to = dup_or_null(in->reply_to);
    out->correlation_id = dup_or_null(in->correlation_id);
    if (why_len > 0)
        why[0] = '\0';

    if (in->headers != NULL && !json_is_object(in->headers))
        return fail(why, why_len, CEL_EINVALTASK,
                    "the headers are not a table");
    /* The headers' fields, read once for the id and task here and for
     * the rest of a v2 message later. */
    cel__task_fields_t header_fields;
    const cel__task_fields_t *fields = in->fields;
    if (fields == NULL) {
        fields_from_json(in->headers, &header_fields);
        fields = &header_fields;
    }
    out->id = copy_text(&fields->value[CEL__FIELD_ID]);
    out->task = copy_text(&fields->value[CEL__FIELD_TASK]);
    if (out->id == NULL && out->task != NULL)
        out->id = dup_or_null(in->correlation_id);

    if (json_object_size(in->headers) > limits->max_headers)
        return fail(why, why_len, CEL_ETOOMANY,
                    "the message has %zu headers, over the cap of %zu",
                    json_object_size(in->headers), limits->max_headers);
    if (!content_type_is_json(in->content_type))
        return fail(why, why_len, CEL_ECONTENT,
                    "content type '%.64s' is not accepted (accept_content "
                    "is json)",
                    in->content_type);

    json_t *body = NULL;
    int status = parse_body(in, limits, &body, why, why_len);
    if (status != CEL_OK)
        return status;

    if (out->task != NULL)
        status = decode_v2(body, in, fields, out, why, why_len);
    else if (json_is_object(body) &&
             json_is_string(json_object_get(body, "task")))
        status = decode_v1(body, in, out, why, why_len);
    else
        status = fail(why, why_len, CEL_EINVALTASK,
                      "not a task message: no task header and the body "
                      "names no task");
    json_decref(body);
    return status;
}

/* ---- encoding ----------------------------------------------------------- */

static json_t *string_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

/* A time limit as the client wrote it: whole seconds as an integer. */
static json_t *limit_or_null(double seconds)
{
    if (seconds <= 0)
        return json_null();
    if (seconds < 1e15 && seconds == (double)(json_int_t)seconds)
        return json_integer((json_int_t)seconds);
    return json_real(seconds);
}

static json_t *encode_headers(const cel__task_message_t *msg)
{
    json_t *headers =
        msg->headers ? json_deep_copy(msg->headers) : json_object();
    if (headers == NULL)
        return NULL;
    json_object_del(headers, "compression");

    json_t *timelimit = json_pack("[oo]", limit_or_null(msg->time_limit),
                                  limit_or_null(msg->soft_time_limit));
    char *argsrepr = msg->argsrepr ? NULL : args_repr(msg->args);
    char *kwargsrepr = msg->kwargsrepr ? NULL : kwargs_repr(msg->kwargs);

    json_object_set_new(headers, "lang", json_string("py"));
    json_object_set_new(headers, "task", json_string(msg->task));
    json_object_set_new(headers, "id", json_string(msg->id));
    json_object_set_new(headers, "shadow", string_or_null(msg->shadow));
    json_object_set_new(headers, "eta", string_or_null(msg->eta));
    json_object_set_new(headers, "expires", string_or_null(msg->expires));
    json_object_set_new(headers, "group", string_or_null(msg->group));
    json_object_set_new(headers, "group_index",
                        msg->has_group_index ? json_integer(msg->group_index)
                                             : json_null());
    json_object_set_new(headers, "retries", json_integer(msg->retries));
    json_object_set_new(headers, "timelimit", timelimit);
    json_object_set_new(headers, "root_id", string_or_null(msg->root_id));
    json_object_set_new(headers, "parent_id", string_or_null(msg->parent_id));
    json_object_set_new(
        headers, "argsrepr",
        string_or_null(msg->argsrepr ? msg->argsrepr : argsrepr));
    json_object_set_new(
        headers, "kwargsrepr",
        string_or_null(msg->kwargsrepr ? msg->kwargsrepr : kwargsrepr));
    json_object_set_new(headers, "origin", string_or_null(msg->origin));
    json_object_set_new(headers, "ignore_result",
                        json_boolean(msg->ignore_result));
    free(argsrepr);
    free(kwargsrepr);
    return headers;
}

static json_t *member_or_null(json_t *value)
{
    return value ? json_incref(value) : json_null();
}

int cel__task_encode_v2(const cel__task_message_t *msg, json_t **headers,
                        char **body, size_t *body_len)
{
    *headers = NULL;
    *body = NULL;
    if (msg->id == NULL || msg->task == NULL)
        return CEL_EINVAL;

    json_t *embed = json_pack(
        "{s:o, s:o, s:o, s:o}", "callbacks", member_or_null(msg->callbacks),
        "errbacks", member_or_null(msg->errbacks), "chain",
        member_or_null(msg->chain), "chord", member_or_null(msg->chord));
    json_t *args = msg->args ? json_incref(msg->args) : json_array();
    json_t *kwargs = msg->kwargs ? json_incref(msg->kwargs) : json_object();
    json_t *array = json_pack("[ooo]", args, kwargs, embed);
    if (array == NULL)
        return CEL_ENOMEM;
    *body = cel__json_dump(array, body_len);
    json_decref(array);
    *headers = encode_headers(msg);
    if (*body == NULL || *headers == NULL) {
        free(*body);
        json_decref(*headers);
        *body = NULL;
        *headers = NULL;
        return CEL_ENOMEM;
    }
    return CEL_OK;
}
