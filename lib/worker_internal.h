/* The worker's state, shared by the files that implement it. Internal. */
#ifndef CELERIAC_LIB_WORKER_INTERNAL_H
#define CELERIAC_LIB_WORKER_INTERNAL_H

#include <signal.h>

#include "broker.h"
#include "eta.h"
#include "internal.h"
#include "pool.h"

/* A FIFO of requests that are due and wait for an idle pool slot. */
typedef struct cel__request_queue {
    cel__request_t **items;
    size_t head;
    size_t count;
    size_t cap;
} cel__request_queue_t;

/* What a kept backend write is. */
typedef enum cel__pending_kind {
    CEL__PENDING_RPC,          /* a result message for the broker */
    CEL__PENDING_REDIS_RESULT, /* a task meta for Redis */
    CEL__PENDING_CHORD_PART,   /* a chord header result for Redis */
} cel__pending_kind_t;

/* A backend write that could not be done yet, kept in order for the next
 * connection. Strings are owned. */
typedef struct cel__pending_result {
    struct cel__pending_result *next;
    cel__pending_kind_t kind;
    char *task_id;
    char *reply_to;       /* rpc only */
    char *correlation_id; /* rpc only */
    char *body;           /* rpc message, redis meta, or chord entry */
    char *group_id;       /* chord part only */
    int group_index;      /* chord part only; -1 for none (score +inf) */
    json_t *chord;        /* chord part only: the body signature, owned */
} cel__pending_result_t;

typedef enum cel__backend_kind {
    CEL__BACKEND_DISABLED,
    CEL__BACKEND_RPC,
    CEL__BACKEND_REDIS,
} cel__backend_kind_t;

struct cel_worker {
    cel_app_t *app;
    char *nodename;
    char **queues;
    size_t queue_count;
    volatile sig_atomic_t stop_requested;

    cel__broker_t *broker;
    uint64_t connection_epoch;
    cel__limits_t limits;
    cel__backend_kind_t backend;
    struct cel__redis_backend *redis; /* CEL__BACKEND_REDIS only */

    cel__pool_t *pool;
    cel__request_queue_t ready;
    /* Redelivered copies of tasks that still run: the broker took the
     * message back (a lost channel, consumer_timeout) while the first run
     * went on. Each is settled when that run ends. */
    cel__request_queue_t duplicates;
    /* Due requests of rate-limited tasks, waiting for a token. */
    cel__request_queue_t rate_held;
    cel__pending_result_t *pending_head;
    cel__pending_result_t *pending_tail;
    size_t pending_count;
    /* rpc results and follow-ups whose write failed, as whole AMQP frames
     * for the next connection (see cel__broker_take_unsent). */
    unsigned char *unsent;
    size_t unsent_len;
    size_t unsent_count;
    bool consuming; /* false once a warm shutdown cancelled the consumers */
    double next_broker_call; /* monotonic; when rabbitmq-c is next called */

    bool task_events;      /* -E, or the enable_events command */
    unsigned long clock;   /* Lamport clock of events and control replies */
    double next_heartbeat; /* monotonic time of the next worker-heartbeat */
    double started_at;     /* monotonic time the worker started */
    struct cel__revoked *revoked;
    bool mingle;  /* ask neighbours at startup */
    bool mingled; /* done once */
    unsigned long mingle_replies;

    cel__eta_heap_t eta;
    int base_prefetch;    /* concurrency x multiplier; 0 = unlimited */
    int applied_prefetch; /* what the broker was last told */

    unsigned long processed;
    struct cel__canvas *canvas; /* follow-up messages; NULL until needed */
    char last_error[CEL__ERROR_LEN];
};

/* Sends a state of the task `msg` describes (its id, reply_to,
 * correlation_id, group and parent_id) to the result backend. Does nothing
 * without a backend, or with rpc when reply_to is empty. `result` and
 * `children` (NULL: []) are borrowed. Returns CEL_EINVAL, after logging
 * why, when the state cannot be encoded as JSON. */
int cel__store_result(cel_worker_t *worker, const cel__task_message_t *msg,
                      const char *status, json_t *result, const char *traceback,
                      json_t *children);

/* Stores a state whose result is JSON text already, with no traceback and
 * no children. Only the rpc backend takes it. Does nothing otherwise. */
void cel__store_result_text(cel_worker_t *worker,
                            const cel__task_message_t *msg, const char *status,
                            const char *result_text, size_t result_len);

/* Stores an exception state (FAILURE, REVOKED, RETRY) built from parts. */
void cel__store_exception(cel_worker_t *worker, const cel__task_message_t *msg,
                          const char *status, const char *exc_type,
                          const char *exc_module, const char *message,
                          const char *traceback);

/* Starts a request that is due now: checks expiry, acks it unless
 * acks_late, and hands it to the pool. Takes ownership of the request. */
void cel__start(cel_worker_t *worker, cel__request_t *request);

/* Queues a request in the pool behind a running task, after the same
 * checks as cel__start. The caller checks cel__pool_has_queue_room. The
 * ack waits until cel__promote. Returns true when it took ownership of
 * the request, false when the pool rejected it. A request too long to
 * queue is then marked not to be offered again. */
bool cel__queue(cel_worker_t *worker, cel__request_t *request);

/* Called by the pool just before a queued request starts: acks it and
 * records the start, or takes it back from the pool when it was revoked
 * or has expired meanwhile, or its connection closed. */
void cel__promote(cel_worker_t *worker, cel__request_t *request);

/* Stores the outcome of a finished run and settles its message. Takes
 * ownership of the request and of the run's members. */
void cel__settle(cel_worker_t *worker, cel__request_t *request,
                 cel__run_t *run);

/* The hard time limit of a request in seconds, 0 for none: the message's
 * timelimit header, else the task's option, else task_time_limit. */
double cel__hard_limit(const cel_worker_t *worker,
                       const cel__request_t *request);

int cel__ready_push(cel__request_queue_t *queue, cel__request_t *request);
/* Puts a request back at the head, to be popped next. */
int cel__ready_push_front(cel__request_queue_t *queue, cel__request_t *request);
/* Returns the oldest request, or NULL when the queue is empty. */
cel__request_t *cel__ready_pop(cel__request_queue_t *queue);
/* Frees every request left and the storage. */
void cel__ready_clear(cel__request_queue_t *queue);

/* Settles the parked redelivered copy of a task whose run just ended: acks
 * it, or requeues it when `requeue` is set. */
void cel__settle_duplicate(cel_worker_t *worker, const char *task_id,
                           bool requeue);

/* Python's repr of an exception: ValueError('boom'). Returns malloc'd
 * text, or NULL when out of memory. */
char *cel__exception_repr(const char *exc_type, const char *message);

/* ---- events (events.c) ---- */

unsigned long cel__clock_forward(cel_worker_t *worker);
/* Moves the clock past a value another node sent. */
void cel__clock_adjust(cel_worker_t *worker, unsigned long other);
/* Adds the standard fields (type, hostname, timestamp, utcoffset, pid,
 * clock) and publishes. Takes `fields` (NULL for none). Sends nothing
 * without a broker connection. */
void cel__event_send(cel_worker_t *worker, const char *type, json_t *fields);
/* A task event with `uuid`, sent only while task events are enabled.
 * Takes `fields`. */
void cel__event_task(cel_worker_t *worker, const char *type,
                     const cel__request_t *request, json_t *fields);
void cel__event_task_received(cel_worker_t *worker,
                              const cel__request_t *request);
/* task-failed with the exception's repr and traceback (NULL for none). */
void cel__event_task_failed(cel_worker_t *worker, const cel__request_t *request,
                            const char *exception, const char *traceback);
/* worker-online, worker-heartbeat or worker-offline with the load fields. */
void cel__event_worker(cel_worker_t *worker, const char *type);
void cel__event_heartbeat_if_due(cel_worker_t *worker);
void cel__event_wakeup_heartbeat(cel_worker_t *worker);

/* ---- remote control (control.c) ---- */

/* Broadcasts hello with this node's revoked ids; replies arrive on the
 * reply queue bound by `reply_key` and are merged as they come. */
int cel__control_mingle(cel_worker_t *worker, const char *reply_key);

/* Handles one message from the node's pidbox queue. */
void cel__control_handle(cel_worker_t *worker, amqp_envelope_t *envelope);

/* Ends a request that was revoked: REVOKED stored, task-revoked sent,
 * message acked. `reason` is "revoked", "expired" or "terminated". */
void cel__revoke_request(cel_worker_t *worker, cel__request_t *request,
                         const char *reason, int signum);

/* Publishes the rpc results kept while the broker was away. */
void cel__flush_pending_results(cel_worker_t *worker);
void cel__free_pending_results(cel_worker_t *worker);

/* Appends a write to the pending list, dropping the oldest past the cap
 * of 100000. Takes ownership of `item`. */
void cel__pending_keep(cel_worker_t *worker, cel__pending_result_t *item);
/* Unlinks and returns the oldest kept write; the list must not be empty. */
cel__pending_result_t *cel__pending_pop(cel_worker_t *worker);
void cel__pending_free(cel__pending_result_t *item);

/* ---- the redis result backend (backend_redis.c) ---- */

/* Parses the redis:// or rediss:// result_backend URL, then connects once.
 * Returns CEL_EINVAL with the reason in worker->last_error for a bad URL;
 * an unreachable server is only logged, and retried later. */
int cel__redis_backend_open(cel_worker_t *worker);
void cel__redis_backend_free(cel_worker_t *worker);

/* Writes the meta of one task state, or keeps it in order while Redis is
 * unreachable. Arguments as for cel__store_result. */
int cel__redis_store(cel_worker_t *worker, const cel__task_message_t *msg,
                     const char *status, json_t *result, const char *traceback,
                     json_t *children);

/* Called on every pass of the main loop: reconnects with a backoff (0.1 s
 * doubling to 5 s) and writes the kept results in slices, so the loop is
 * never held for long. */
void cel__redis_backend_service(cel_worker_t *worker);
/* Seconds until cel__redis_backend_service has work, or -1 for none. */
double cel__redis_backend_next_wait(const cel_worker_t *worker);
/* At shutdown: one more connect when needed, then every kept write. */
void cel__redis_backend_drain(cel_worker_t *worker);

/* Stores STARTED for a request that is about to run, when
 * task_track_started is set and the task stores results, with the result
 * {"pid": request->worker_pid (or this process when 0), "hostname":
 * nodename}, as Celery does. Works with rpc and redis. Call it while the
 * request is alive and before its outcome is stored. */
void cel__store_started(cel_worker_t *worker, const cel__request_t *request);

/* Settles a message on the current connection; a tag from an earlier
 * connection is dropped, because the broker has requeued it already. */
/* Returns false when the ack could not be sent: the message goes back to
 * its queue when the connection closes. */
bool cel__ack(cel_worker_t *worker, cel__request_t *request);
void cel__reject(cel_worker_t *worker, cel__request_t *request, bool requeue);

/* Ends an expired request: REVOKED stored, message acked. */
void cel__revoke_expired(cel_worker_t *worker, cel__request_t *request);
/* Whether failures, retries and revocations of `task` (NULL: not known)
 * are stored, from its ignore_result option and the settings. */
bool cel__stores_errors(const cel_worker_t *worker, const cel_task_t *task);

/* ---- canvas (canvas.c) ---- */

/* Sends the callbacks and the next chain element of a task that succeeded,
 * appending the result tuple of each message sent to `children`. Returns
 * CEL_OK, or an error with the reason in worker->last_error when a
 * signature cannot be applied (the task then fails): CEL_EBACKEND for a
 * chord without the Redis backend, another error for an invalid one. */
int cel__canvas_on_success(cel_worker_t *worker, const cel__request_t *request,
                           json_t *result, json_t *children);

/* After the FAILURE of a task is stored: stores it under every remaining
 * chain task id, reports chord members, and sends the errbacks. `exc` is
 * the stored exception (borrowed). */
void cel__canvas_on_failure(cel_worker_t *worker, const cel__request_t *request,
                            json_t *exc, const char *traceback);

/* Reports a finished chord header member to the Redis backend. */
void cel__canvas_chord_part(cel_worker_t *worker,
                            const cel__task_message_t *msg, const char *state,
                            json_t *result);

/* The last member of the chord `group_id` finished: sends the body with
 * the header results in order, or fails it with ChordError. `entries` are
 * the decoded [1, id, state, result] items, `chord` the body signature. */
void cel__chord_complete(cel_worker_t *worker, const char *group_id,
                         json_t *chord, json_t *entries);

/* Redis backend chord counting (see the Redis backend for details): adds
 * one finished header member; calls cel__chord_complete when it is the
 * last. group_index -1 counts as +inf. */
void cel__chord_part_return(cel_worker_t *worker, const char *group_id,
                            int group_index, const char *task_id,
                            const char *state, json_t *result, json_t *chord);
/* Sets celery-taskset-meta-<gid>.s, the number of header members. */
int cel__chord_set_size(cel_worker_t *worker, const char *group_id,
                        size_t size);

/* Sets whether follow-ups that cannot be published now are dropped
 * instead of kept for the next connection. */
void cel__canvas_drop_unsent(cel_worker_t *worker, bool drop);

/* Publishes follow-up messages kept while the broker was away. */
void cel__canvas_flush(cel_worker_t *worker);

/* Returns how many follow-up messages wait for the broker. */
size_t cel__canvas_pending(const cel_worker_t *worker);
void cel__canvas_free(cel_worker_t *worker);

#endif
