/* Settings by their Celery names, with Celery's defaults. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

typedef enum { KIND_STRING, KIND_BOOL, KIND_INT, KIND_FLOAT } setting_kind_t;

typedef struct setting {
    const char *name;
    setting_kind_t kind;
    size_t offset;
    const char *default_value; /* NULL: unset (None) */
    bool ranged;               /* numbers only: min and max apply */
    double min;
    double max;
} setting_t;

#define RANGE(lo, hi) true, (lo), (hi)
#define NO_RANGE      false, 0, 0

/* apply()'s status for a number outside the setting's range. */
#define OUT_OF_RANGE (-100)

#define FIELD(name) offsetof(cel__settings_t, name)

static const setting_t SETTINGS[] = {
    {"broker_url", KIND_STRING, FIELD(broker_url),
     "amqp://guest:guest@localhost:5672//", NO_RANGE},
    {"result_backend", KIND_STRING, FIELD(result_backend), NULL, NO_RANGE},
    {"task_default_queue", KIND_STRING, FIELD(task_default_queue), "celery",
     NO_RANGE},
    {"worker_pool", KIND_STRING, FIELD(worker_pool), "prefork", NO_RANGE},
    {"task_acks_late", KIND_BOOL, FIELD(task_acks_late), "false", NO_RANGE},
    {"task_acks_on_failure_or_timeout", KIND_BOOL,
     FIELD(task_acks_on_failure_or_timeout), "true", NO_RANGE},
    {"task_ignore_result", KIND_BOOL, FIELD(task_ignore_result), "false",
     NO_RANGE},
    {"task_reject_on_worker_lost", KIND_BOOL, FIELD(task_reject_on_worker_lost),
     "false", NO_RANGE},
    /* 0 declares queues without x-max-priority, as Celery's None does. */
    {"task_queue_max_priority", KIND_INT, FIELD(task_queue_max_priority), "0",
     RANGE(0, 255)},
    {"task_store_errors_even_if_ignored", KIND_BOOL,
     FIELD(task_store_errors_even_if_ignored), "false", NO_RANGE},
    {"task_track_started", KIND_BOOL, FIELD(task_track_started), "false",
     NO_RANGE},
    {"worker_send_task_events", KIND_BOOL, FIELD(worker_send_task_events),
     "false", NO_RANGE},
    {"broker_connection_retry", KIND_BOOL, FIELD(broker_connection_retry),
     "true", NO_RANGE},
    {"result_persistent", KIND_BOOL, FIELD(result_persistent), "false",
     NO_RANGE},
    /* AMQP's prefetch count is 16 bits wide. */
    {"worker_prefetch_multiplier", KIND_INT, FIELD(worker_prefetch_multiplier),
     "4", RANGE(0, 65535)},
    /* 0 means the number of CPUs, as Celery's default does. */
    {"worker_concurrency", KIND_INT, FIELD(worker_concurrency), "0",
     RANGE(0, 1024)},
    /* AMQP's heartbeat is 16 bits wide; 0 turns heartbeats off. */
    {"broker_heartbeat", KIND_INT, FIELD(broker_heartbeat), "120",
     RANGE(0, 65535)},
    {"broker_connection_max_retries", KIND_INT,
     FIELD(broker_connection_max_retries), "100", RANGE(0, INT_MAX)},
    {"broker_connection_timeout", KIND_FLOAT, FIELD(broker_connection_timeout),
     "4.0", RANGE(0.001, 3600)},
    {"task_time_limit", KIND_FLOAT, FIELD(task_time_limit), "0", RANGE(0, 1e9)},
    {"task_soft_time_limit", KIND_FLOAT, FIELD(task_soft_time_limit), "0",
     RANGE(0, 1e9)},
    {"result_expires", KIND_INT, FIELD(result_expires), "86400",
     RANGE(0, INT_MAX)},
    /* Celery waits up to 120 s on a Redis reply and has no connect timeout.
     * celeriac's main loop waits on these too, so its defaults are short. */
    {"redis_socket_timeout", KIND_FLOAT, FIELD(redis_socket_timeout), "5.0",
     RANGE(0.001, 3600)},
    {"redis_socket_connect_timeout", KIND_FLOAT,
     FIELD(redis_socket_connect_timeout), "1.0", RANGE(0.001, 3600)},
    /* For the three caps, 0 means the built-in default. */
    {"celeriac_max_body_size", KIND_INT, FIELD(max_body_size), "134217728",
     RANGE(0, INT_MAX)},
    {"celeriac_max_headers", KIND_INT, FIELD(max_headers), "256",
     RANGE(0, INT_MAX)},
    {"celeriac_max_json_depth", KIND_INT, FIELD(max_json_depth), "128",
     RANGE(0, 100000)},
};

#define SETTING_COUNT (sizeof SETTINGS / sizeof SETTINGS[0])

static const setting_t *find_setting(const char *name)
{
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (strcasecmp(SETTINGS[i].name, name) == 0)
            return &SETTINGS[i];
    return NULL;
}

static int parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int parse_int(const char *text, int *out)
{
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < INT_MIN ||
        value > INT_MAX)
        return -1;
    *out = (int)value;
    return 0;
}

static int parse_float(const char *text, double *out)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !isfinite(value))
        return -1;
    *out = value;
    return 0;
}

static bool is_none(const char *text)
{
    return text == NULL || strcasecmp(text, "none") == 0 ||
           strcasecmp(text, "null") == 0;
}

static int apply(cel__settings_t *settings, const setting_t *setting,
                 const char *text)
{
    void *field = (char *)settings + setting->offset;
    switch (setting->kind) {
    case KIND_STRING: {
        char *copy = NULL;
        if (!is_none(text) && text[0] != '\0' && (copy = strdup(text)) == NULL)
            return CEL_ENOMEM;
        free(*(char **)field);
        *(char **)field = copy;
        return CEL_OK;
    }
    case KIND_BOOL:
        if (text == NULL)
            return CEL_EINVAL;
        return parse_bool(text, field) == 0 ? CEL_OK : CEL_EINVAL;
    case KIND_INT: {
        int value = 0;
        if (!is_none(text) && parse_int(text, &value) != 0)
            return CEL_EINVAL;
        if (setting->ranged && (value < setting->min || value > setting->max))
            return OUT_OF_RANGE;
        *(int *)field = value;
        return CEL_OK;
    }
    case KIND_FLOAT: {
        double value = 0;
        if (!is_none(text) && parse_float(text, &value) != 0)
            return CEL_EINVAL;
        if (setting->ranged && (value < setting->min || value > setting->max))
            return OUT_OF_RANGE;
        *(double *)field = value;
        return CEL_OK;
    }
    }
    return CEL_EINVAL;
}

void cel__settings_init(cel__settings_t *settings)
{
    memset(settings, 0, sizeof *settings);
    for (size_t i = 0; i < SETTING_COUNT; i++)
        apply(settings, &SETTINGS[i], SETTINGS[i].default_value);
}

void cel__settings_free(cel__settings_t *settings)
{
    for (size_t i = 0; i < SETTING_COUNT; i++)
        if (SETTINGS[i].kind == KIND_STRING) {
            char **field = (char **)((char *)settings + SETTINGS[i].offset);
            free(*field);
            *field = NULL;
        }
}

static const char *kind_name(setting_kind_t kind)
{
    switch (kind) {
    case KIND_BOOL:
        return "true or false";
    case KIND_INT:
        return "an integer";
    case KIND_FLOAT:
        return "a number";
    default:
        return "text";
    }
}

int cel_app_set(cel_app_t *app, const char *name, const char *value)
{
    const setting_t *setting = find_setting(name);
    if (setting == NULL) {
        cel__set_error(app->last_error, "unknown setting %s", name);
        return CEL_ENOTFOUND;
    }
    int status = apply(&app->settings, setting, value);
    if (status == OUT_OF_RANGE) {
        cel__set_error(app->last_error,
                       "invalid value '%s' for setting %s: expected %s from "
                       "%g to %g",
                       value ? value : "", setting->name,
                       kind_name(setting->kind), setting->min, setting->max);
        return CEL_EINVAL;
    }
    if (status == CEL_EINVAL)
        cel__set_error(
            app->last_error, "invalid value '%s' for setting %s: expected %s",
            value ? value : "", setting->name, kind_name(setting->kind));
    return status;
}

int cel_app_get(const cel_app_t *app, const char *name, char *buf,
                size_t buf_len)
{
    const setting_t *setting = find_setting(name);
    if (setting == NULL)
        return CEL_ENOTFOUND;
    const void *field = (const char *)&app->settings + setting->offset;
    switch (setting->kind) {
    case KIND_STRING: {
        const char *text = *(char *const *)field;
        snprintf(buf, buf_len, "%s", text ? text : "None");
        break;
    }
    case KIND_BOOL:
        snprintf(buf, buf_len, "%s", *(const bool *)field ? "true" : "false");
        break;
    case KIND_INT:
        snprintf(buf, buf_len, "%d", *(const int *)field);
        break;
    case KIND_FLOAT: {
        /* Print as Python prints a float: 4.0, not 4. */
        double value = *(const double *)field;
        if (value == (double)(long long)value)
            snprintf(buf, buf_len, "%.1f", value);
        else
            snprintf(buf, buf_len, "%.17g", value);
        break;
    }
    }
    return CEL_OK;
}

/* Replaces the password of user:password@host with "********", as
 * Celery's conf command shows broker URLs. Returns malloc'd text. */
static char *mask_url_password(const char *url)
{
    /* The user part follows the scheme's ':' and any slashes. */
    const char *scheme = strchr(url, ':');
    while (scheme != NULL && scheme[1] == '/')
        scheme++;
    const char *at = strchr(url, '@');
    const char *colon = scheme ? strchr(scheme + 1, ':') : NULL;
    if (scheme == NULL || at == NULL || colon == NULL || colon > at)
        return strdup(url);
    char *out = NULL;
    if (asprintf(&out, "%.*s********%s", (int)(colon + 1 - url), url, at) < 0)
        return NULL;
    return out;
}

json_t *cel__settings_dump(const cel_app_t *app)
{
    json_t *out = json_object();
    for (size_t i = 0; i < SETTING_COUNT && out != NULL; i++) {
        const setting_t *setting = &SETTINGS[i];
        const void *field = (const char *)&app->settings + setting->offset;
        json_t *value = NULL;
        switch (setting->kind) {
        case KIND_STRING: {
            const char *text = *(char *const *)field;
            if (text == NULL) {
                value = json_null();
            } else if (strstr(setting->name, "url") != NULL ||
                       strcmp(setting->name, "result_backend") == 0) {
                char *masked = mask_url_password(text);
                value = masked ? json_string(masked) : json_null();
                free(masked);
            } else {
                value = json_string(text);
            }
            break;
        }
        case KIND_BOOL:
            value = json_boolean(*(const bool *)field);
            break;
        case KIND_INT:
            value = json_integer(*(const int *)field);
            break;
        case KIND_FLOAT:
            value = json_real(*(const double *)field);
            break;
        }
        json_object_set_new(out, setting->name, value);
    }
    return out;
}
