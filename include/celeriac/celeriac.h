/*
 * celeriac: a Celery 5 worker and client library in C.
 *
 * This is the whole public API. A program creates an app, registers tasks on
 * it (directly or by loading a task module), and runs a worker that consumes
 * Celery task messages from RabbitMQ and sends the results back in the form
 * Python's AsyncResult.get() expects.
 *
 * Ownership: strings passed in are copied unless a comment says otherwise.
 * JSON values follow jansson's terms: "borrowed" means the caller must not
 * decref it, "new" means the caller owns one reference.
 *
 * Thread safety: an app and a worker belong to one thread. The only function
 * that may be called from another thread or a signal handler is
 * cel_worker_stop().
 */
#ifndef CELERIAC_CELERIAC_H
#define CELERIAC_CELERIAC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CEL_VERSION "0.1.0"

/* Status codes. Every function that returns int returns 0 or one of these. */
enum cel_status {
    CEL_OK = 0,
    CEL_ENOMEM = -1,     /* out of memory */
    CEL_EINVAL = -2,     /* invalid argument or setting value */
    CEL_EBROKER = -3,    /* broker connection or channel failure */
    CEL_EDECODE = -4,    /* body is not valid JSON or not valid zlib data */
    CEL_EINVALTASK = -5, /* body decoded, but it is not a valid task */
    CEL_ETOOBIG = -6,    /* body exceeds the size cap */
    CEL_ETOODEEP = -7,   /* JSON nesting exceeds the depth cap */
    CEL_ETOOMANY = -8,   /* more headers than the header cap */
    CEL_ECONTENT = -9,   /* content type is not accepted */
    CEL_ECOMPRESS = -10, /* compression method is not supported */
    CEL_ENOTFOUND = -11, /* no such task, setting or symbol */
    CEL_EMODULE = -12,   /* task module could not be loaded */
    CEL_EEXIST = -13,    /* a task with that name is already registered */
    CEL_EBACKEND = -14,  /* result backend failure */
    CEL_ETIMEOUT = -15,  /* operation timed out */
};

/* Returns a static description of a status code. Thread-safe. */
const char *cel_strerror(int status);

/* Log levels, numbered as Python's logging module numbers them. */
enum cel_log_level {
    CEL_LOG_DEBUG = 10,
    CEL_LOG_INFO = 20,
    CEL_LOG_WARNING = 30,
    CEL_LOG_ERROR = 40,
    CEL_LOG_CRITICAL = 50,
};

/*
 * Receives every log line of the library. `message` is borrowed and valid
 * only during the call. The library never prints; without a callback its
 * messages are discarded.
 */
typedef void (*cel_log_fn)(void *user, int level, const char *message);

typedef struct cel_app cel_app_t;
typedef struct cel_task cel_task_t;
typedef struct cel_context cel_context_t;
typedef struct cel_worker cel_worker_t;

/*
 * A task body. `args` (an array) and `kwargs` (an object) are borrowed for
 * the duration of the call. The task ends in one of three ways:
 *   - it returns a new JSON reference: the result (SUCCESS);
 *   - it returns cel_fail(...): a FAILURE the client raises as an exception;
 *   - it returns cel_retry(...): the task is sent again later.
 * Returning NULL without calling cel_fail() or cel_retry() stores None.
 */
typedef json_t *(*cel_task_fn)(cel_context_t *ctx, json_t *args,
                               json_t *kwargs);

/*
 * The entry point every task module exports under this name. It registers
 * the module's tasks and returns 0, or a negative status to abort loading.
 */
#define CEL_MODULE_INIT_SYMBOL "celeriac_module_init"
typedef int (*cel_module_init_fn)(cel_app_t *app);

/* ---- app ---------------------------------------------------------------- */

/* Creates an app with Celery's default settings. Returns NULL on ENOMEM. */
cel_app_t *cel_app_new(void);

/* Frees the app and its tasks. cel_app_free(NULL) does nothing. */
void cel_app_free(cel_app_t *app);

/* Sets the callback that receives the library's log lines. */
void cel_app_set_log_callback(cel_app_t *app, cel_log_fn fn, void *user);

/* Drops log lines below `level` (a CEL_LOG_* value) before they are
 * formatted. The default, CEL_LOG_DEBUG, passes every line. */
void cel_app_set_log_level(cel_app_t *app, int level);

/*
 * Sets a setting by its Celery name ("broker_url", "result_backend",
 * "task_acks_late", "worker_prefetch_multiplier", ...), parsing `value` from
 * text the way a config file or CELERY_<NAME> variable gives it. Returns
 * CEL_ENOTFOUND for an unknown name and CEL_EINVAL for a value of the wrong
 * form; the reason is then in cel_app_last_error().
 */
int cel_app_set(cel_app_t *app, const char *name, const char *value);

/* Writes the text form of a setting into buf. Returns CEL_ENOTFOUND for an
 * unknown name. */
int cel_app_get(const cel_app_t *app, const char *name, char *buf,
                size_t buf_len);

/* Text of the last error on this app, with context. Borrowed. */
const char *cel_app_last_error(const cel_app_t *app);

/*
 * Loads a task module (a shared object) and calls its
 * celeriac_module_init(). The module stays loaded until cel_app_free().
 */
int cel_app_load_module(cel_app_t *app, const char *path);

/*
 * Registers a task under `name` (copied). Returns the task handle, owned by
 * the app, or NULL when the name is taken (CEL_EEXIST) or memory runs out.
 * Options start at Celery's defaults: acks_late and ignore_result follow the
 * app settings, max_retries 3, default_retry_delay 180 s, no time limits.
 */
cel_task_t *cel_app_add_task(cel_app_t *app, const char *name, cel_task_fn fn);

void cel_task_set_acks_late(cel_task_t *task, bool acks_late);
void cel_task_set_ignore_result(cel_task_t *task, bool ignore_result);
/* A negative max_retries means no limit (Python's max_retries=None). */
void cel_task_set_max_retries(cel_task_t *task, int max_retries);
void cel_task_set_default_retry_delay(cel_task_t *task, double seconds);
/* Hard and soft limits in seconds; 0 means none. */
void cel_task_set_time_limits(cel_task_t *task, double hard, double soft);

/* Limits how often the task starts, as Celery's rate_limit: "10/s",
 * "100/m", "1000/h", or a number per second; NULL or "" removes the limit.
 * Other tasks are never delayed by it. Returns CEL_OK or CEL_EINVAL. */
int cel_task_set_rate_limit(cel_task_t *task, const char *rate);
/* An opaque pointer the task body reads back with cel_context_user_data(). */
void cel_task_set_user_data(cel_task_t *task, void *user_data);

/* ---- request context (valid only during the task call) ------------------ */

/* Every string is borrowed; NULL means the message did not carry it. */
const char *cel_context_id(const cel_context_t *ctx);
const char *cel_context_task_name(const cel_context_t *ctx);
int cel_context_retries(const cel_context_t *ctx);
const char *cel_context_root_id(const cel_context_t *ctx);
const char *cel_context_parent_id(const cel_context_t *ctx);
const char *cel_context_group(const cel_context_t *ctx);
/* eta and expires as the ISO-8601 strings the message carried. */
const char *cel_context_eta(const cel_context_t *ctx);
const char *cel_context_expires(const cel_context_t *ctx);
/* The worker's node name, e.g. "celery@host". */
const char *cel_context_hostname(const cel_context_t *ctx);
const char *cel_context_exchange(const cel_context_t *ctx);
const char *cel_context_routing_key(const cel_context_t *ctx);
bool cel_context_redelivered(const cel_context_t *ctx);
/* All message headers as an object (borrowed), custom ones included. */
json_t *cel_context_headers(const cel_context_t *ctx);
void *cel_context_user_data(const cel_context_t *ctx);
/* True once the soft time limit of this run has passed. */
bool cel_context_soft_time_limit_exceeded(const cel_context_t *ctx);

/*
 * Ends the task with an exception. `exc_type` is the class name and
 * `exc_module` its module: "builtins" or "celery.exceptions" come out as the
 * real class on a Python client, other modules as a class of that name.
 * Always returns NULL, so a task can `return cel_fail(...)`.
 */
json_t *cel_fail(cel_context_t *ctx, const char *exc_type,
                 const char *exc_module, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Asks for the task to run again after `countdown` seconds (negative: the
 * task's default_retry_delay). `exc_type` may be NULL for a retry without an
 * exception. Past max_retries the task fails with that exception, or with
 * MaxRetriesExceededError when there is none. Always returns NULL.
 */
json_t *cel_retry(cel_context_t *ctx, double countdown, const char *exc_type,
                  const char *exc_module, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* ---- worker ------------------------------------------------------------- */

/* Creates a worker for the app (borrowed; it must outlive the worker). */
cel_worker_t *cel_worker_new(cel_app_t *app);
void cel_worker_free(cel_worker_t *worker);

/* Node name such as "celery@host" (copied). The default is celery@<host>. */
int cel_worker_set_nodename(cel_worker_t *worker, const char *nodename);

/* Adds a queue to consume from; without any, task_default_queue is used. */
int cel_worker_add_queue(cel_worker_t *worker, const char *queue);

/* Whether the worker asks other workers for their revoked task ids when
 * it starts, as Celery's mingle does (on by default). */
void cel_worker_set_mingle(cel_worker_t *worker, bool enabled);

/*
 * Connects, declares the queues and runs tasks until cel_worker_stop() is
 * called. A lost broker connection is retried as broker_connection_retry
 * and broker_connection_max_retries say. Returns 0 after a stop request, or
 * a negative status; cel_worker_last_error() then tells why.
 */
int cel_worker_run(cel_worker_t *worker);

/* Asks a running worker to stop after the current task. Async-signal-safe. */
void cel_worker_stop(cel_worker_t *worker);

const char *cel_worker_last_error(const cel_worker_t *worker);

#ifdef __cplusplus
}
#endif

#endif
