/* The worker's state, shared by the files that implement it. Internal. */
#ifndef CELERIAC_LIB_WORKER_INTERNAL_H
#define CELERIAC_LIB_WORKER_INTERNAL_H

#include <signal.h>

#include "broker.h"
#include "eta.h"
#include "internal.h"

typedef enum cel__backend_kind {
    CEL__BACKEND_DISABLED,
    CEL__BACKEND_RPC,
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

    cel__eta_heap_t eta;
    int base_prefetch;    /* concurrency x multiplier; 0 = unlimited */
    int applied_prefetch; /* what the broker was last told */

    unsigned long processed;
    char last_error[CEL__ERROR_LEN];
};

/* Sends a state to the result backend. Does nothing without a backend or
 * when reply_to is empty. `result` is borrowed. */
void cel__store_result(cel_worker_t *worker, const char *task_id,
                       const char *reply_to, const char *correlation_id,
                       const char *status, json_t *result,
                       const char *traceback);

/* Stores an exception state (FAILURE, REVOKED, RETRY) built from parts. */
void cel__store_exception(cel_worker_t *worker, const cel__task_message_t *msg,
                          const char *status, const char *exc_type,
                          const char *exc_module, const char *message,
                          const char *traceback);

/* Runs a request that is due now and settles its message. Takes ownership
 * of the request. */
void cel__execute(cel_worker_t *worker, cel__request_t *request);

/* Settles a message on the current connection; a tag from an earlier
 * connection is dropped, because the broker has requeued it already. */
void cel__ack(cel_worker_t *worker, const cel__request_t *request);
void cel__reject(cel_worker_t *worker, const cel__request_t *request,
                 bool requeue);

/* Ends an expired request: REVOKED stored, message acked. */
void cel__revoke_expired(cel_worker_t *worker, cel__request_t *request);
/* Whether failures, retries and revocations of `task` (NULL: not known)
 * are stored, from its ignore_result option and the settings. */
bool cel__stores_errors(const cel_worker_t *worker, const cel_task_t *task);

#endif
