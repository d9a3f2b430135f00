/* The app: settings, the task registry, task modules and logging. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

static const char *const STATUS_TEXT[] = {
    [0] = "success",
    [1] = "out of memory",
    [2] = "invalid argument",
    [3] = "broker connection failed",
    [4] = "message body could not be decoded",
    [5] = "not a valid task message",
    [6] = "message body is too large",
    [7] = "JSON nests too deeply",
    [8] = "too many message headers",
    [9] = "content type not accepted",
    [10] = "compression method not supported",
    [11] = "not found",
    [12] = "task module could not be loaded",
    [13] = "already registered",
    [14] = "result backend failed",
    [15] = "timed out",
};

const char *cel_strerror(int status)
{
    int index = -status;
    if (index < 0 || (size_t)index >= sizeof STATUS_TEXT / sizeof *STATUS_TEXT)
        return "unknown status";
    return STATUS_TEXT[index];
}

void cel__set_error(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, CEL__ERROR_LEN, fmt, ap);
    va_end(ap);
}

/* Copies `line` into `out` (4 times its size) with line breaks, other
 * control characters and bytes that are not UTF-8 escaped, so a task's
 * result or a message's field cannot split a log line or garble it. */
static void escape_line(const char *line, char *out)
{
    static const char HEX[] = "0123456789abcdef";
    size_t len = strlen(line);
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)line[i];
        size_t n = c >= 0x80 ? cel__utf8_sequence_length(line + i, len - i) : 1;
        if (c == '\n' || c == '\r') {
            out[o++] = '\\';
            out[o++] = c == '\n' ? 'n' : 'r';
        } else if ((c < 0x20 && c != '\t') || c == 0x7f || n == 0) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = HEX[c >> 4];
            out[o++] = HEX[c & 0xF];
            n = 1;
        } else {
            memcpy(out + o, line + i, n);
            o += n;
        }
        i += n;
    }
    out[o] = '\0';
}

void cel__log(const cel_app_t *app, int level, const char *fmt, ...)
{
    if (!cel__log_enabled(app, level))
        return;
    char line[2048];
    char escaped[4 * sizeof line];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    escape_line(line, escaped);
    app->log_fn(app->log_user, level, escaped);
}

double cel__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double cel__monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

cel_app_t *cel_app_new(void)
{
    cel_app_t *app = calloc(1, sizeof *app);
    if (app == NULL)
        return NULL;
    cel__settings_init(&app->settings);
    if (app->settings.broker_url == NULL) {
        cel_app_free(app);
        return NULL;
    }
    return app;
}

void cel_app_free(cel_app_t *app)
{
    if (app == NULL)
        return;
    for (size_t i = 0; i < app->task_count; i++) {
        free(app->tasks[i]->name);
        free(app->tasks[i]);
    }
    free(app->tasks);
    for (size_t i = 0; i < app->module_count; i++)
        dlclose(app->modules[i]);
    free(app->modules);
    cel__settings_free(&app->settings);
    free(app);
}

bool cel__log_enabled(const cel_app_t *app, int level)
{
    return app != NULL && app->log_fn != NULL && level >= app->log_level;
}

void cel_app_set_log_level(cel_app_t *app, int level)
{
    app->log_level = level;
}

void cel_app_set_log_callback(cel_app_t *app, cel_log_fn fn, void *user)
{
    app->log_fn = fn;
    app->log_user = user;
}

const char *cel_app_last_error(const cel_app_t *app)
{
    return app->last_error;
}

cel_task_t *cel__app_find_task(const cel_app_t *app, const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < app->task_count; i++)
        if (strcmp(app->tasks[i]->name, name) == 0)
            return app->tasks[i];
    return NULL;
}

cel_task_t *cel_app_add_task(cel_app_t *app, const char *name, cel_task_fn fn)
{
    if (name == NULL || fn == NULL) {
        cel__set_error(app->last_error, "a task needs a name and a function");
        return NULL;
    }
    if (cel__app_find_task(app, name) != NULL) {
        cel__set_error(app->last_error, "task %s is already registered", name);
        return NULL;
    }
    if (app->task_count == app->task_cap) {
        size_t cap = app->task_cap ? app->task_cap * 2 : 16;
        cel_task_t **grown = realloc(app->tasks, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        app->tasks = grown;
        app->task_cap = cap;
    }
    cel_task_t *task = calloc(1, sizeof *task);
    if (task == NULL || (task->name = strdup(name)) == NULL) {
        free(task);
        return NULL;
    }
    task->fn = fn;
    task->acks_late = -1;
    task->ignore_result = -1;
    task->max_retries = 3;
    task->default_retry_delay = 180.0;
    app->tasks[app->task_count++] = task;
    return task;
}

void cel_task_set_acks_late(cel_task_t *task, bool acks_late)
{
    task->acks_late = acks_late;
}

void cel_task_set_ignore_result(cel_task_t *task, bool ignore_result)
{
    task->ignore_result = ignore_result;
}

void cel_task_set_max_retries(cel_task_t *task, int max_retries)
{
    task->max_retries = max_retries < 0 ? -1 : max_retries;
}

void cel_task_set_default_retry_delay(cel_task_t *task, double seconds)
{
    task->default_retry_delay = seconds < 0 ? 0 : seconds;
}

void cel_task_set_time_limits(cel_task_t *task, double hard, double soft)
{
    task->time_limit = hard > 0 ? hard : 0;
    task->soft_time_limit = soft > 0 ? soft : 0;
}

int cel__rate_parse(const char *text, double *per_second)
{
    char *end;
    double count = strtod(text, &end);
    if (end == text || !(count >= 0) || count > 1e9)
        return CEL_EINVAL;
    double seconds = 1;
    if (*end == '/') {
        switch (end[1]) {
        case 's':
            seconds = 1;
            break;
        case 'm':
            seconds = 60;
            break;
        case 'h':
            seconds = 3600;
            break;
        default:
            return CEL_EINVAL;
        }
        if (end[2] != '\0')
            return CEL_EINVAL;
    } else if (*end != '\0') {
        return CEL_EINVAL;
    }
    *per_second = count / seconds;
    return CEL_OK;
}

int cel_task_set_rate_limit(cel_task_t *task, const char *rate)
{
    double per_second = 0;
    if (rate != NULL && rate[0] != '\0' &&
        cel__rate_parse(rate, &per_second) != CEL_OK)
        return CEL_EINVAL;
    task->rate_per_second = per_second;
    task->rate_tokens = per_second > 0 ? 1 : 0;
    task->rate_updated = cel__monotonic();
    return CEL_OK;
}

void cel_task_set_user_data(cel_task_t *task, void *user_data)
{
    task->user_data = user_data;
}

int cel_app_load_module(cel_app_t *app, const char *path)
{
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (handle == NULL) {
        cel__set_error(app->last_error, "cannot load task module %s: %s", path,
                       dlerror());
        return CEL_EMODULE;
    }
    cel_module_init_fn init;
    *(void **)&init = dlsym(handle, CEL_MODULE_INIT_SYMBOL);
    if (init == NULL) {
        cel__set_error(app->last_error, "task module %s does not export %s()",
                       path, CEL_MODULE_INIT_SYMBOL);
        dlclose(handle);
        return CEL_EMODULE;
    }
    void **grown =
        realloc(app->modules, (app->module_count + 1) * sizeof *grown);
    if (grown == NULL) {
        dlclose(handle);
        return CEL_ENOMEM;
    }
    app->modules = grown;
    app->modules[app->module_count++] = handle;
    int status = init(app);
    if (status != 0) {
        cel__set_error(app->last_error, "%s() of task module %s failed: %s",
                       CEL_MODULE_INIT_SYMBOL, path, cel_strerror(status));
        return CEL_EMODULE;
    }
    return CEL_OK;
}
