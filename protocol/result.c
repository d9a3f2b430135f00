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

char *cel__result_encode_rpc(const char *task_id, const char *status,
                             json_t *result, const char *traceback,
                             json_t *children)
{
    json_t *body = json_object();
    char *text = NULL;
    if (body == NULL)
        return NULL;
    json_object_set_new(body, "task_id", json_string(task_id));
    json_object_set_new(body, "status", json_string(status));
    json_object_set(body, "result", result ? result : json_null());
    json_object_set_new(body, "traceback",
                        traceback ? json_string(traceback) : json_null());
    json_object_set_new(body, "children",
                        children ? json_incref(children) : json_array());
    if (json_object_size(body) == 5)
        text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
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
