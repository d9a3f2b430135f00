/* Result bodies and exception dicts, as Celery's backends store them. */
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "strbuf.h"

json_t *cel__exception_new(const char *exc_type, const char *exc_module,
                           const char *message)
{
    json_t *exc = json_object();
    json_t *args = json_array();
    if (exc == NULL || args == NULL)
        goto fail;
    if (message != NULL &&
        json_array_append_new(args, json_string(message)) != 0)
        goto fail;
    if (json_object_set_new(exc, "exc_type", json_string(exc_type)) != 0 ||
        json_object_set_new(exc, "exc_message", args) != 0 ||
        json_object_set_new(exc, "exc_module", json_string(exc_module)) != 0) {
        args = NULL; /* owned by exc once set, even on a later failure */
        goto fail;
    }
    return exc;

fail:
    json_decref(args);
    json_decref(exc);
    return NULL;
}

static char *encode_rpc(const char *task_id, const char *status, json_t *result,
                        const char *result_text, const char *traceback,
                        json_t *children)
{
    /* The members in the order Celery's rpc backend writes them. */
    const cel__json_member_t members[] = {
        {.key = "task_id", .text = task_id},
        {.key = "status", .text = status},
        {.key = "result", .value = result, .raw = result_text},
        {.key = "traceback", .text = traceback},
        {.key = "children", .value = children, .raw = "[]"},
    };
    if (task_id == NULL || status == NULL)
        return NULL;
    return cel__json_dump_members(members, sizeof members / sizeof members[0],
                                  NULL);
}

char *cel__result_encode_rpc(const char *task_id, const char *status,
                             json_t *result, const char *traceback,
                             json_t *children)
{
    return encode_rpc(task_id, status, result ? result : json_null(), NULL,
                      traceback, children);
}

char *cel__result_encode_rpc_text(const char *task_id, const char *status,
                                  const char *result_text)
{
    return encode_rpc(task_id, status, NULL, result_text, NULL, NULL);
}

char *cel__result_rpc_text_head(const char *task_id, const char *status,
                                size_t *len)
{
    /* The body with a one-character result, "...,"result":0,...}", cut
     * right after "result":. */
    char *whole = encode_rpc(task_id, status, NULL, "0", NULL, NULL);
    if (whole == NULL)
        return NULL;
    size_t head_len = strlen(whole) - (1 + strlen(CEL__RPC_TEXT_BODY_END));
    whole[head_len] = '\0';
    *len = head_len;
    return whole;
}

bool cel__result_state_is_ready(const char *status)
{
    return status != NULL &&
           (strcmp(status, "SUCCESS") == 0 || strcmp(status, "FAILURE") == 0 ||
            strcmp(status, "REVOKED") == 0);
}

/* Python's datetime.utcnow().isoformat(): no offset, and the microseconds
 * left out when they are 0. */
static int format_naive_utc(double epoch, char *buf, size_t buf_len)
{
    char aware[40];
    if (cel__iso8601_format(epoch, aware, sizeof aware) != 0)
        return CEL_EINVAL;
    size_t len = strlen(aware) - strlen("+00:00");
    if (len >= buf_len)
        return CEL_EINVAL;
    memcpy(buf, aware, len);
    buf[len] = '\0';
    return 0;
}

static json_t *string_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

/* Builds the meta object with Celery's key order. Returns a new reference
 * or NULL. */
static json_t *build_meta(const cel__result_meta_t *meta)
{
    char date_done[40];
    bool ready = cel__result_state_is_ready(meta->status);
    if (ready &&
        format_naive_utc(meta->date_done, date_done, sizeof date_done) != 0)
        return NULL;

    json_t *object = json_object();
    if (object == NULL)
        return NULL;
    int failed = 0;
    failed |= json_object_set_new(object, "status", json_string(meta->status));
    failed |= json_object_set(object, "result",
                              meta->result ? meta->result : json_null());
    failed |= json_object_set_new(object, "traceback",
                                  string_or_null(meta->traceback));
    failed |= json_object_set_new(object, "children",
                                  meta->children ? json_incref(meta->children)
                                                 : json_array());
    failed |= json_object_set_new(object, "date_done",
                                  ready ? json_string(date_done) : json_null());
    if (meta->group_id != NULL)
        failed |= json_object_set_new(object, "group_id",
                                      json_string(meta->group_id));
    if (meta->parent_id != NULL)
        failed |= json_object_set_new(object, "parent_id",
                                      json_string(meta->parent_id));
    failed |=
        json_object_set_new(object, "task_id", json_string(meta->task_id));
    if (failed) {
        json_decref(object);
        return NULL;
    }
    return object;
}

char *cel__result_encode_meta(const cel__result_meta_t *meta)
{
    if (meta->task_id == NULL || meta->status == NULL)
        return NULL;
    json_t *object = build_meta(meta);
    if (object == NULL)
        return NULL;
    char *text = cel__json_dumps_python(object);
    json_decref(object);
    return text;
}

char *cel__chord_entry_encode(const char *task_id, const char *state,
                              json_t *result)
{
    if (task_id == NULL || state == NULL)
        return NULL;
    json_t *entry = json_pack("[i, s, s, O]", 1, task_id, state,
                              result ? result : json_null());
    if (entry == NULL)
        return NULL;
    char *text = cel__json_dumps_python(entry);
    json_decref(entry);
    return text;
}

char *cel__traceback_format(const char *task_name, const char *exc_type,
                            const char *exc_module, const char *message)
{
    cel__strbuf_t sb = {0};
    cel__strbuf_puts(&sb, "Traceback (most recent call last):\n");
    cel__strbuf_printf(&sb, "  File \"<celeriac>\", in %s\n",
                       task_name ? task_name : "<task>");
    if (exc_module != NULL && strcmp(exc_module, "builtins") != 0)
        cel__strbuf_printf(&sb, "%s.", exc_module);
    cel__strbuf_printf(&sb, "%s: %s\n", exc_type, message ? message : "");
    return cel__strbuf_take(&sb);
}

void cel__limits_default(cel__limits_t *limits)
{
    limits->max_body = CEL__DEFAULT_MAX_BODY;
    limits->max_headers = CEL__DEFAULT_MAX_HEADERS;
    limits->max_depth = CEL__DEFAULT_MAX_DEPTH;
}

int cel__json_check_depth(const char *text, size_t len, int max_depth)
{
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return CEL_ETOODEEP;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return CEL_OK;
}
