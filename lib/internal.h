/* Shared internals of the runtime library. Names carry the cel__ prefix. */
#ifndef CELERIAC_LIB_INTERNAL_H
#define CELERIAC_LIB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "celeriac/celeriac.h"
#include "protocol.h"

#define CEL__ERROR_LEN 512

/* Settings by their Celery names; the table in settings.c lists them all. */
typedef struct cel__settings {
    char *broker_url;
    char *result_backend;
    char *task_default_queue;
    char *worker_pool;
    bool task_acks_late;
    bool task_acks_on_failure_or_timeout;
    bool task_ignore_result;
    bool task_store_errors_even_if_ignored;
    bool task_reject_on_worker_lost;
    int task_queue_max_priority;
    bool task_track_started;
    bool worker_send_task_events;
    bool broker_connection_retry;
    bool result_persistent;
    int worker_prefetch_multiplier;
    int worker_concurrency;
    int broker_heartbeat;
    int broker_connection_max_retries;
    double broker_connection_timeout;
    double task_time_limit;
    double task_soft_time_limit;
    double redis_socket_timeout;         /* seconds per read or write */
    double redis_socket_connect_timeout; /* seconds */
    int result_expires;
    int max_body_size;  /* celeriac_max_body_size, bytes */
    int max_headers;    /* celeriac_max_headers */
    int max_json_depth; /* celeriac_max_json_depth */
} cel__settings_t;

struct cel_task {
    char *name;
    cel_task_fn fn;
    int acks_late; /* -1 follows task_acks_late, else 0 or 1 */
    int ignore_result;
    int max_retries; /* negative: no limit */
    double default_retry_delay;
    double time_limit;
    double soft_time_limit;
    void *user_data;
    unsigned long accepted; /* requests started, for the stats command */
    double rate_per_second; /* rate limit; 0 for none */
    double rate_tokens;     /* token bucket of capacity 1 */
    double rate_updated;    /* monotonic time the bucket was last filled */
};

struct cel_app {
    cel__settings_t settings;
    cel_task_t **tasks;
    size_t task_count;
    size_t task_cap;
    void **modules; /* dlopen handles */
    size_t module_count;
    cel_log_fn log_fn;
    int log_level; /* lines below it are dropped */
    void *log_user;
    char last_error[CEL__ERROR_LEN];
};

void cel__settings_init(cel__settings_t *settings);
void cel__settings_free(cel__settings_t *settings);

/* Looks a task up by name. Returns NULL when it is not registered. */
cel_task_t *cel__app_find_task(const cel_app_t *app, const char *name);

/* Parses a Celery rate limit: "10/s", "100/m", "1000/h" or a number per
 * second. Returns CEL_OK or CEL_EINVAL. */
int cel__rate_parse(const char *text, double *per_second);

/* The conf command's JSON object of every setting, with the broker
 * password masked. */
json_t *cel__settings_dump(const cel_app_t *app);

/* True when a line at `level` would reach the log callback. */
bool cel__log_enabled(const cel_app_t *app, int level);

void cel__log(const cel_app_t *app, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void cel__set_error(char *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

struct iovec;

/* Sends every byte of `parts` with sendmsg, waiting while the socket is
 * full (30 s at most, then ETIMEDOUT). Changes `parts`. Returns 0, or -1
 * with errno set. */
int cel__send_all(int fd, struct iovec *parts, int count);

/* Makes jansson keep freed small blocks on per-thread lists for reuse (see
 * json_alloc.c), unless the program set allocation functions of its own.
 * The celeriac program calls it first thing. */
void cel__json_cache_allocations(void);

/* Seconds since the epoch, with microseconds. */
double cel__now(void);
/* Seconds from an arbitrary start, never going back. */
double cel__monotonic(void);

/* How a task run ended. */
typedef enum cel__outcome {
    CEL__OUTCOME_SUCCESS,
    CEL__OUTCOME_FAILURE,
    CEL__OUTCOME_RETRY,
} cel__outcome_t;

/* A message received from the broker and decoded, waiting or running. */
typedef struct cel__request {
    cel__task_message_t msg;
    uint64_t delivery_tag;
    uint64_t connection_epoch; /* which connection the tag belongs to */
    char *exchange;
    char *routing_key;
    bool redelivered;
    cel_task_t *task;
    double time_start;    /* epoch seconds when handed to the pool; 0 */
    int worker_pid;       /* the process running it, 0 until started */
    int terminate_signal; /* revoke(terminate=True) sent this signal */
    bool settled;         /* acked or rejected already */
    /* The pool refused to queue it behind a running task (too long). */
    bool not_queueable;
    /* The body as received. It is kept only for a pool that takes bodies,
     * and only when it is a long, uncompressed v2 list. A prefork child
     * then parses it, so the main process does not write the arguments
     * again. While it is kept, msg.args and msg.kwargs are NULL in the
     * main process, and cel__request_arguments parses them on demand. */
    char *body;
    size_t body_len;
    /* In a prefork child, msg.headers stays NULL until the task reads
     * the headers, and this fetches them from the main process. */
    json_t *(*fetch_headers)(struct cel__request *request);
    /* The AMQP basic properties as received, encoded. The main process
     * keeps them when it decoded the message without a headers object
     * (msg.headers is NULL), so cel__request_headers can build it. */
    void *properties;
    size_t properties_len;
} cel__request_t;

void cel__request_free(cel__request_t *request);

/* Returns a new reference to the request's headers object: msg.headers,
 * or one built from the kept properties. NULL when the message has no
 * headers, or when memory runs out. */
json_t *cel__request_headers(const cel__request_t *request);

/* Sets *args and *kwargs to new references to the request's arguments,
 * parsed from request->body when the request keeps its body. Either may be
 * NULL when the message has none or the body cannot be parsed. */
void cel__request_arguments(const cel__request_t *request, json_t **args,
                            json_t **kwargs);

/* Sets *args and *kwargs to malloc'd repr texts of the request's
 * arguments, as Celery's events and `inspect` show them: the argsrepr and
 * kwargsrepr headers when the message has them, else a repr of the values
 * of at most 1024 bytes. A kept body is parsed only when a header is
 * missing. Either is NULL when memory runs out. */
void cel__request_argument_reprs(const cel__request_t *request, char **args,
                                 char **kwargs);

struct cel_context {
    const cel__request_t *request;
    const char *hostname;
    double soft_deadline; /* monotonic seconds; 0 = none */
    cel__outcome_t outcome;
    bool outcome_set;
    char *exc_type;
    char *exc_module;
    char *exc_message;
    double countdown; /* retry; negative = the task's default delay */
};

void cel__context_clear(cel_context_t *ctx);

#endif
