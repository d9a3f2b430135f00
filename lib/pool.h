/* Execution pools: where task code runs. Internal. */
#ifndef CELERIAC_LIB_POOL_H
#define CELERIAC_LIB_POOL_H

#include <poll.h>
#include <stdbool.h>

#include "internal.h"

/* How a run ended, as the worker settles it. */
typedef enum cel__run_kind {
    CEL__RUN_SUCCESS,
    CEL__RUN_FAILURE,
    CEL__RUN_RETRY,
    CEL__RUN_TIME_LIMIT, /* the pool killed the run at its hard limit */
    CEL__RUN_LOST,       /* the process running it died */
} cel__run_kind_t;

/* The outcome of one run. Strings and `result` are owned. */
typedef struct cel__run {
    cel__run_kind_t kind;
    json_t *result;
    /* A prefork child's result as JSON text, parsed only when a value is
     * needed. Until then result is NULL. */
    char *result_text;
    size_t result_text_len;
    /* When set, the block that result_text lies in, freed in its place. */
    void *result_block;
    char *exc_type;
    char *exc_module;
    char *exc_message;
    double countdown; /* retry delay; negative means the task's default */
    double runtime;   /* seconds */
    double limit;     /* the hard limit that was exceeded, seconds */
    int signal;       /* CEL__RUN_LOST: the signal, or 0 */
    int exit_code;    /* CEL__RUN_LOST without a signal */
} cel__run_t;

void cel__run_clear(cel__run_t *run);

#define CEL__TEXT_OF(value)    #value
#define CEL__NUMBER_TEXT(name) CEL__TEXT_OF(name)

/* The EncodeError message of a task whose result JSON cannot carry. */
#define CEL__UNENCODABLE_RESULT                                                \
    "the task's result cannot be encoded as JSON: it has a string that is "    \
    "not valid UTF-8 or nests deeper than " CEL__NUMBER_TEXT(                  \
        CEL__JSON_MAX_DEPTH) " levels"

/* Returns the run's result as a value (borrowed; null when there is none),
 * parsing result_text the first time. */
json_t *cel__run_result(cel__run_t *run);

/* Runs a request's task function in the calling thread and fills `run`.
 * `soft` and `hard` are the limits in seconds (0 for none). */
void cel__run_task(const cel__request_t *request, const char *hostname,
                   double soft, cel__run_t *run);

typedef struct cel__pool cel__pool_t;

/* Receives each finished run, in the thread that calls cel__pool_process.
 * Takes ownership of the request and of the run's members. */
typedef void (*cel__pool_done_fn)(void *owner, cel__request_t *request,
                                  cel__run_t *run);

typedef struct cel__pool_ops {
    int (*start)(cel__pool_t *pool);
    /* Hands a request to an idle slot; the caller checks that one is idle. */
    int (*submit)(cel__pool_t *pool, cel__request_t *request, double soft,
                  double hard);
    /* Writes the descriptors to wait on for POLLIN; returns their count. */
    int (*poll_fds)(cel__pool_t *pool, struct pollfd *fds, int max);
    /* Collects finished runs and enforces hard limits. `fds` are the
     * descriptors from poll_fds with their revents, so only those with
     * input are read; NULL reads every descriptor. */
    void (*process)(cel__pool_t *pool, const struct pollfd *fds, int count);
    /* Earliest hard-limit deadline (monotonic seconds), or 0 for none. */
    double (*next_deadline)(const cel__pool_t *pool);
    /* True while a request with this task id runs in the pool. */
    bool (*is_running)(const cel__pool_t *pool, const char *task_id);
    /* Writes up to `max` running requests (borrowed); returns the count. */
    int (*list_running)(const cel__pool_t *pool, const cel__request_t **out,
                        int max);
    /* Sends `signum` to the process running `task_id`, when the pool can;
     * returns false when no such task runs or the pool cannot. */
    bool (*terminate)(cel__pool_t *pool, const char *task_id, int signum);
    /* Queues a request behind the task a busy process runs, so that the
     * process starts it without waiting for the main process. NULL when
     * the pool cannot; the caller checks has_queue_room first. The pool
     * calls `promote` just before the request starts. */
    int (*queue)(cel__pool_t *pool, cel__request_t *request, double soft,
                 double hard);
    /* True when queue would find a busy process with an empty queue. */
    bool (*has_queue_room)(const cel__pool_t *pool);
    /* Takes back a queued request that has not started: `request`, or the
     * first one when NULL. Returns it, or NULL when it has started or none
     * waits. */
    cel__request_t *(*withdraw)(cel__pool_t *pool,
                                const cel__request_t *request);
    /* Writes up to `max` queued requests (borrowed); returns the count. */
    int (*list_queued)(const cel__pool_t *pool, const cel__request_t **out,
                       int max);
    /* Writes up to `max` process ids of the pool; returns the count. */
    int (*list_pids)(const cel__pool_t *pool, int *out, int max);
    /* Stops every process or thread; running tasks are abandoned. */
    void (*stop)(cel__pool_t *pool);
    void (*free)(cel__pool_t *pool);
} cel__pool_ops_t;

struct cel__pool {
    const cel__pool_ops_t *ops;
    const char *name;
    bool enforces_hard_limit;
    /* True when the pool sends a request's kept body (request->body)
     * instead of its arguments. */
    bool takes_body;
    bool runs_inline; /* submit runs the task before it returns (solo) */
    int size;
    int busy;
    const char *hostname;
    cel__pool_done_fn done;
    /* A queued request is about to start. The owner acks it, or takes it
     * back with ops->withdraw when it must not run. */
    void (*promote)(void *owner, cel__request_t *request);
    /* A queued request the pool took back because its process ended. The
     * owner takes ownership. */
    void (*give_back)(void *owner, cel__request_t *request);
    void *owner;
    cel_app_t *app;
    /* Descriptors a forked child closes, such as the broker socket. */
    int (*inherited_fd)(void *owner);
};

/* Creates a pool by its Celery name: prefork, threads or solo. Returns NULL
 * with the reason in `error` for another name or when out of memory. */
cel__pool_t *cel__pool_new(const char *name, int size, char *error);

/* Per-kind constructors behind cel__pool_new. */
cel__pool_t *cel__pool_solo_new(void);
cel__pool_t *cel__pool_threads_new(int size);
cel__pool_t *cel__pool_prefork_new(int size);

static inline bool cel__pool_has_idle(const cel__pool_t *pool)
{
    return pool->busy < pool->size;
}

static inline bool cel__pool_has_queue_room(const cel__pool_t *pool)
{
    return pool->ops->queue != NULL && pool->ops->has_queue_room(pool);
}

/* Takes back the first queued request that has not started, or NULL. */
static inline cel__request_t *cel__pool_withdraw_any(cel__pool_t *pool)
{
    return pool->ops->withdraw ? pool->ops->withdraw(pool, NULL) : NULL;
}

#endif
