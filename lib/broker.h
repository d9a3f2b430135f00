/* AMQP 0-9-1 transport on rabbitmq-c. Internal. */
#ifndef CELERIAC_LIB_BROKER_H
#define CELERIAC_LIB_BROKER_H

#include <amqp.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "internal.h"

typedef struct cel__broker cel__broker_t;

/* Message properties for a publish. NULL strings are left out. */
typedef struct cel__publish {
    const char *exchange;
    const char *routing_key;
    const char *correlation_id;
    const char *reply_to;
    const char *expiration;
    int delivery_mode; /* 1 transient, 2 persistent */
    int priority;      /* -1 leaves the property out */
    json_t *headers;   /* borrowed object or NULL */
    const void *body;
    size_t body_len;
    /* When set, the body is these parts one after another (at most
     * CEL__PUBLISH_PARTS_MAX), and body and body_len are not read. */
    const struct iovec *body_parts;
    int body_part_count;
} cel__publish_t;

#define CEL__PUBLISH_PARTS_MAX 8

/*
 * Connects to an amqp:// URL (user, password and vhost percent-decoded,
 * vhost "/" when the path is empty or "/"), logs in and opens channel 1.
 * On failure returns CEL_EBROKER or CEL_EINVAL with the reason in `error`
 * (CEL__ERROR_LEN bytes).
 */
int cel__broker_connect(const char *url, int heartbeat, double timeout,
                        cel__broker_t **out, char *error);

/* The stats command's "broker" object for a URL, as kombu describes a
 * connection: host, user, vhost, port and options, never the password.
 * Returns a new object, or NULL for an invalid URL. */
json_t *cel__broker_describe(const char *url, int heartbeat, double timeout);

/* The channel of the remote-control consumer. */
#define CEL__CONTROL_CHANNEL 2

/* Records that the broker closed the channel or the connection, given the
 * method id of its close, and replies with close-ok. Any other id records
 * that the socket failed. cel__broker_free then sends nothing more. */
void cel__broker_closed_by_peer(cel__broker_t *broker, int method_id);

/* Closes the connection (when still open) and frees. NULL is a no-op. */
void cel__broker_free(cel__broker_t *broker);

/* Declares exchange, queue and binding exactly as Celery does for a task
 * queue: durable direct exchange and durable queue of the same name, with
 * x-max-priority when `max_priority` is positive. Sets `existing` when the
 * queue already existed with other arguments (a quorum queue, say) and is
 * consumed as it is. */
int cel__broker_declare_task_queue(cel__broker_t *broker, const char *queue,
                                   int max_priority, bool *existing);

int cel__broker_qos(cel__broker_t *broker, uint16_t prefetch_count);
int cel__broker_consume(cel__broker_t *broker, const char *queue);
/* Declares Celery's remote-control and event exchanges and starts
 * consuming `<nodename>.celery.pidbox` on channel 2, without acks. */
int cel__broker_open_control(cel__broker_t *broker, const char *nodename);

/* Declares and consumes `<key>.reply.celery.pidbox`, bound to the
 * reply.celery.pidbox exchange by `key`, for this node's own broadcasts. */
int cel__broker_open_reply_queue(cel__broker_t *broker, const char *key);

/* Declares a task queue on a channel of its own and closes it, so a queue
 * the broker refuses (ACCESS_REFUSED, RESOURCE_LOCKED) costs no consumer.
 * Returns CEL_OK when the queue can be consumed. */
int cel__broker_try_declare(cel__broker_t *broker, const char *queue,
                            int max_priority);

/* Checks on a channel of its own that an exchange exists (a passive
 * declare). Returns CEL_OK when it does. */
int cel__broker_exchange_exists(cel__broker_t *broker, const char *exchange);

/* Cancels the consumer of one queue, if there is one. */
int cel__broker_cancel_queue(cel__broker_t *broker, const char *queue);

/* Cancels every consumer this connection started (a warm shutdown). */
int cel__broker_cancel_consumers(cel__broker_t *broker);
/* The socket, to poll for input. */
int cel__broker_fd(const cel__broker_t *broker);
/* True when rabbitmq-c has received bytes or frames not yet read. */
bool cel__broker_has_buffered(const cel__broker_t *broker);
/* Every ack, and a publish without headers whose body fits one frame,
 * waits in the connection's write buffer. It goes out with cel__broker_flush
 * or before anything else is written on the connection. Other publishes go
 * out at once, after what waits. A failed write keeps the waiting publishes
 * for cel__broker_take_unsent. */
int cel__broker_publish(cel__broker_t *broker, const cel__publish_t *msg);
int cel__broker_ack(cel__broker_t *broker, uint64_t delivery_tag);

/* Sends what waits in the write buffer. The worker calls it before it
 * sleeps and before a task runs in its own thread, so every loop pass
 * costs one write. Once a write failed, it keeps failing. */
int cel__broker_flush(cel__broker_t *broker);

/* Hands over the publishes that a failed write or a closed channel kept
 * (their whole frames, ready to send on channel 1 of another connection)
 * and returns how many there are. The caller frees `*bytes`. */
size_t cel__broker_take_unsent(cel__broker_t *broker, unsigned char **bytes,
                               size_t *len);

/* Sends publishes kept by cel__broker_take_unsent on this connection. If
 * that fails they are kept again. */
int cel__broker_send_unsent(cel__broker_t *broker, const unsigned char *bytes,
                            size_t len, size_t count);
int cel__broker_reject(cel__broker_t *broker, uint64_t delivery_tag,
                       bool requeue);

/* Text of the last failure, with the AMQP reply code when the broker closed
 * the channel or connection. Borrowed. */
const char *cel__broker_error(const cel__broker_t *broker);

amqp_connection_state_t cel__broker_connection(cel__broker_t *broker);

/*
 * Converts received headers to a JSON object (new reference). Fails with
 * CEL_ETOOMANY past max_headers keys and CEL_EINVALTASK for values JSON
 * cannot carry (text that is not UTF-8, keys with NUL bytes, NaN or
 * infinite floats, nesting past 32 levels).
 */
int cel__table_to_json(const amqp_table_t *table, size_t max_headers,
                       json_t **out, char *why, size_t why_len);

/*
 * Reads the decoder's fields from received headers without building a
 * JSON object. Text in *out points into the table. Returns false, and
 * leaves the message to cel__table_to_json, unless the table meets all
 * of these: at most max_headers entries, a text task header, no
 * compression header, and nothing that could fail the conversion to
 * JSON. That means ASCII text only, no NUL byte in a key, finite floats
 * and nesting within 32 levels.
 */
bool cel__table_read_fields(const amqp_table_t *table, size_t max_headers,
                            cel__task_fields_t *out);

/* Converts a JSON object to an AMQP table allocated from `pool`, with the
 * field types py-amqp reads back as the same Python values. */
int cel__json_to_table(json_t *object, amqp_pool_t *pool, amqp_table_t *out);

#endif
