/* AMQP 0-9-1 transport on rabbitmq-c: connect, declare, consume, publish. */
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>

#include "broker.h"

#define CHANNEL   1
#define FRAME_MAX 131072

#define CONSUMERS_MAX       64
#define TRIAL_CHANNEL       3
#define RPC_TIMEOUT_SECONDS 10

struct cel__broker {
    amqp_connection_state_t conn;
    bool open;
    bool channel_closed;   /* the broker closed the channel */
    int rpc_channel;       /* the channel of the RPC being checked */
    bool per_consumer_qos; /* a consumed queue refuses global QoS */
    char *consumer_tags[CONSUMERS_MAX];
    char *consumer_queues[CONSUMERS_MAX];
    size_t consumer_count;
    /* Acks and small publishes wait in `out` until cel__broker_flush, so
     * one pass of the worker loop sends them in one write. */
    unsigned char *out;
    size_t out_len;
    size_t out_cap;
    /* Start and end offsets in `out` of each waiting publish, two per
     * publish, for keeping them when the write fails. */
    size_t *spans;
    size_t span_len;
    size_t span_cap;
    bool write_failed;
    /* Whole publish frames that never reached the broker, for the next
     * connection (see cel__broker_take_unsent). */
    unsigned char *unsent;
    size_t unsent_len;
    size_t unsent_count;
    char error[CEL__ERROR_LEN];
};

/* Past this many waiting bytes the buffer is sent at once. Bodies larger
 * than OUT_DIRECT_BODY are sent from where they are, without a copy. */
#define OUT_LIMIT       65536
#define OUT_DIRECT_BODY 16384

/* The rabbitmq-c connection, with every waiting frame sent first, so
 * frames reach the broker in the order they were written. */
static amqp_connection_state_t conn_of(cel__broker_t *broker)
{
    cel__broker_flush(broker);
    return broker->conn;
}

amqp_connection_state_t cel__broker_connection(cel__broker_t *broker)
{
    return conn_of(broker);
}

const char *cel__broker_error(const cel__broker_t *broker)
{
    return broker->error;
}

/* Describes a failed RPC reply; returns CEL_EINVAL for PRECONDITION_FAILED
 * and ACCESS_REFUSED, which retrying cannot fix, else CEL_EBROKER. */
static int reply_error(cel__broker_t *broker, amqp_rpc_reply_t reply,
                       const char *what)
{
    int status = CEL_EBROKER;
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return CEL_OK;
    case AMQP_RESPONSE_NONE:
        cel__set_error(broker->error, "%s: no reply from the broker", what);
        break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        cel__set_error(broker->error, "%s: %s", what,
                       amqp_error_string2(reply.library_error));
        break;
    case AMQP_RESPONSE_SERVER_EXCEPTION: {
        uint16_t code = 0;
        amqp_bytes_t text = {0, NULL};
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *close = reply.reply.decoded;
            code = close->reply_code;
            text = close->reply_text;
            amqp_send_method(broker->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD,
                             &(amqp_connection_close_ok_t){0});
            broker->open = false;
        } else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *close = reply.reply.decoded;
            code = close->reply_code;
            text = close->reply_text;
            amqp_send_method(broker->conn, broker->rpc_channel,
                             AMQP_CHANNEL_CLOSE_OK_METHOD,
                             &(amqp_channel_close_ok_t){0});
        }
        cel__set_error(broker->error, "%s: broker closed the %s: %u %.*s", what,
                       reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD
                           ? "connection"
                           : "channel",
                       code, (int)text.len, (const char *)text.bytes);
        if (code == AMQP_PRECONDITION_FAILED || code == AMQP_ACCESS_REFUSED ||
            code == AMQP_NOT_ALLOWED)
            status = CEL_EINVAL;
        break;
    }
    }
    return status;
}

static int check_reply(cel__broker_t *broker, const char *what)
{
    return reply_error(broker, amqp_get_rpc_reply(conn_of(broker)), what);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes `text` in place. Returns -1 on a broken escape. */
static int percent_decode(char *text)
{
    char *out = text;
    for (char *in = text; *in != '\0'; in++) {
        if (*in != '%') {
            *out++ = *in;
            continue;
        }
        int high = hex_value(in[1]);
        int low = high >= 0 ? hex_value(in[2]) : -1;
        if (low < 0)
            return -1;
        *out++ = (char)(high * 16 + low);
        in += 2;
    }
    *out = '\0';
    return 0;
}

/*
 * Splits a broker URL into the part rabbitmq-c parses (scheme, user,
 * password, host, port) and the vhost, which kombu takes from the path:
 * "amqp://host//" and "amqp://host" both mean vhost "/". Accepts Celery's
 * pyamqp:// alias.
 */
static char *split_url(const char *url, char **vhost)
{
    const char *rest;
    if (strncmp(url, "pyamqp://", 9) == 0)
        rest = url + 9;
    else if (strncmp(url, "amqp://", 7) == 0)
        rest = url + 7;
    else
        return NULL;
    const char *slash = strchr(rest, '/');
    size_t authority = slash ? (size_t)(slash - rest) : strlen(rest);
    char *normal = NULL;
    if (asprintf(&normal, "amqp://%.*s", (int)authority, rest) < 0)
        return NULL;
    *vhost = strdup(slash && slash[1] ? slash + 1 : "/");
    if (*vhost == NULL || percent_decode(*vhost) != 0) {
        free(*vhost);
        free(normal);
        return NULL;
    }
    return normal;
}

json_t *cel__broker_describe(const char *url, int heartbeat, double timeout)
{
    char *vhost = NULL;
    char *normal = url ? split_url(url, &vhost) : NULL;
    struct amqp_connection_info info;
    json_t *out = NULL;
    if (normal != NULL && amqp_parse_url(normal, &info) == AMQP_STATUS_OK)
        out = json_pack(
            "{s:s, s:s, s:s, s:i, s:b, s:b, s:s, s:f, s:{}, s:s, s:n, s:f, "
            "s:s, s:[]}",
            "hostname", info.host, "userid", info.user, "virtual_host", vhost,
            "port", info.port, "insist", 0, "ssl", 0, "transport", "amqp",
            "connect_timeout", timeout, "transport_options", "login_method",
            "PLAIN", "uri_prefix", "heartbeat", (double)heartbeat,
            "failover_strategy", "round-robin", "alternates");
    free(normal);
    free(vhost);
    return out;
}

/* Logs in, telling RabbitMQ that this client handles basic.cancel, which
 * the broker then sends when a consumed queue is deleted. */
static amqp_rpc_reply_t login_with_capabilities(amqp_connection_state_t conn,
                                                const char *vhost,
                                                int heartbeat, const char *user,
                                                const char *password)
{
    amqp_table_entry_t capability_entries[] = {
        {amqp_cstring_bytes("consumer_cancel_notify"),
         {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
    };
    amqp_table_entry_t property_entries[] = {
        {amqp_cstring_bytes("product"),
         {.kind = AMQP_FIELD_KIND_UTF8,
          .value.bytes = amqp_cstring_bytes("celeriac")}},
        {amqp_cstring_bytes("version"),
         {.kind = AMQP_FIELD_KIND_UTF8,
          .value.bytes = amqp_cstring_bytes(CEL_VERSION)}},
        {amqp_cstring_bytes("capabilities"),
         {.kind = AMQP_FIELD_KIND_TABLE,
          .value.table = {1, capability_entries}}},
    };
    amqp_table_t properties = {3, property_entries};
    return amqp_login_with_properties(conn, vhost, 0, FRAME_MAX, heartbeat,
                                      &properties, AMQP_SASL_METHOD_PLAIN, user,
                                      password);
}

int cel__broker_connect(const char *url, int heartbeat, double timeout,
                        cel__broker_t **out, char *error)
{
    *out = NULL;
    char *vhost = NULL;
    char *normal = url ? split_url(url, &vhost) : NULL;
    struct amqp_connection_info info;
    if (normal == NULL || amqp_parse_url(normal, &info) != AMQP_STATUS_OK) {
        cel__set_error(error, "invalid broker URL: expected "
                              "amqp://user:password@host:port/vhost");
        free(normal);
        free(vhost);
        return CEL_EINVAL;
    }

    cel__broker_t *broker = calloc(1, sizeof *broker);
    int status = CEL_EBROKER;
    if (broker == NULL || (broker->conn = amqp_new_connection()) == NULL) {
        status = CEL_ENOMEM;
        goto fail;
    }
    amqp_socket_t *socket = amqp_tcp_socket_new(broker->conn);
    struct timeval tv = {(time_t)timeout,
                         (suseconds_t)((timeout - (long)timeout) * 1e6)};
    int rc = socket
                 ? amqp_socket_open_noblock(socket, info.host, info.port, &tv)
                 : AMQP_STATUS_NO_MEMORY;
    if (rc != AMQP_STATUS_OK) {
        cel__set_error(broker->error, "cannot connect to %s:%d: %s", info.host,
                       info.port, amqp_error_string2(rc));
        goto fail;
    }
    amqp_set_handshake_timeout(broker->conn, &tv);
    /* An RPC the broker does not reply to fails after this timeout instead
     * of blocking the worker loop. */
    struct timeval rpc_timeout = {RPC_TIMEOUT_SECONDS, 0};
    amqp_set_rpc_timeout(broker->conn, &rpc_timeout);
    amqp_rpc_reply_t login = login_with_capabilities(
        broker->conn, vhost, heartbeat, info.user, info.password);
    if ((status = reply_error(broker, login, "login")) != CEL_OK)
        goto fail;
    broker->open = true;
    broker->rpc_channel = CHANNEL;
    amqp_channel_open(broker->conn, CHANNEL);
    if ((status = check_reply(broker, "channel.open")) != CEL_OK)
        goto fail;
    free(normal);
    free(vhost);
    *out = broker;
    return CEL_OK;

fail:
    if (broker != NULL)
        cel__set_error(error, "%s@%s:%d, vhost '%s': %s", info.user, info.host,
                       info.port, vhost, broker->error);
    else
        cel__set_error(error, "out of memory");
    cel__broker_free(broker);
    free(normal);
    free(vhost);
    return status == CEL_OK ? CEL_EBROKER : status;
}

void cel__broker_closed_by_peer(cel__broker_t *broker, int method_id)
{
    if (method_id == AMQP_CONNECTION_CLOSE_METHOD) {
        amqp_send_method(broker->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD,
                         &(amqp_connection_close_ok_t){0});
        broker->open = false;
    } else if (method_id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_send_method(broker->conn, CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD,
                         &(amqp_channel_close_ok_t){0});
        broker->channel_closed = true;
    } else {
        /* The socket failed: nothing more can be sent on it. */
        broker->open = false;
    }
}

void cel__broker_free(cel__broker_t *broker)
{
    if (broker == NULL)
        return;
    if (broker->conn != NULL) {
        if (broker->open) {
            if (!broker->channel_closed)
                amqp_channel_close(conn_of(broker), CHANNEL,
                                   AMQP_REPLY_SUCCESS);
            amqp_connection_close(broker->conn, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(broker->conn);
    }
    for (size_t i = 0; i < broker->consumer_count; i++) {
        free(broker->consumer_tags[i]);
        free(broker->consumer_queues[i]);
    }
    free(broker->out);
    free(broker->spans);
    free(broker->unsent);
    free(broker);
}

/* Declares the queue Celery's way. A queue that exists with other
 * arguments, such as a quorum queue, makes the broker close the channel
 * with PRECONDITION_FAILED; it is then consumed as it is. */
static int declare_queue(cel__broker_t *broker, int channel, const char *queue,
                         int max_priority, bool *existing)
{
    amqp_bytes_t name = amqp_cstring_bytes(queue);
    amqp_table_entry_t priority_entry = {
        amqp_cstring_bytes("x-max-priority"),
        {.kind = AMQP_FIELD_KIND_I32, .value.i32 = max_priority}};
    amqp_table_t arguments = amqp_empty_table;
    if (max_priority > 0)
        arguments = (amqp_table_t){1, &priority_entry};
    *existing = false;
    amqp_queue_declare(conn_of(broker), channel, name, 0, 1, 0, 0, arguments);
    amqp_rpc_reply_t reply = amqp_get_rpc_reply(conn_of(broker));
    bool precondition =
        reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD &&
        ((amqp_channel_close_t *)reply.reply.decoded)->reply_code ==
            AMQP_PRECONDITION_FAILED;
    int status = reply_error(broker, reply, "queue.declare");
    if (status == CEL_OK || !precondition)
        return status;

    char first_error[CEL__ERROR_LEN];
    snprintf(first_error, sizeof first_error, "%s", broker->error);
    amqp_channel_open(conn_of(broker), channel);
    if ((status = check_reply(broker, "channel.open")) != CEL_OK)
        return status;
    amqp_queue_declare(conn_of(broker), channel, name, 1, 1, 0, 0,
                       amqp_empty_table);
    if (check_reply(broker, "queue.declare passive") != CEL_OK) {
        snprintf(broker->error, sizeof broker->error, "%s", first_error);
        return CEL_EINVAL;
    }
    snprintf(broker->error, sizeof broker->error, "%s", first_error);
    *existing = true;
    broker->per_consumer_qos = true;
    return CEL_OK;
}

static int declare_task_queue_on(cel__broker_t *broker, int channel,
                                 const char *queue, int max_priority,
                                 bool *existing)
{
    amqp_bytes_t name = amqp_cstring_bytes(queue);
    amqp_exchange_declare(conn_of(broker), channel, name,
                          amqp_cstring_bytes("direct"), 0, 1, 0, 0,
                          amqp_empty_table);
    int status = check_reply(broker, "exchange.declare");
    if (status != CEL_OK)
        return status;
    if ((status = declare_queue(broker, channel, queue, max_priority,
                                existing)) != CEL_OK)
        return status;
    amqp_queue_bind(conn_of(broker), channel, name, name, name,
                    amqp_empty_table);
    return check_reply(broker, "queue.bind");
}

int cel__broker_declare_task_queue(cel__broker_t *broker, const char *queue,
                                   int max_priority, bool *existing)
{
    return declare_task_queue_on(broker, CHANNEL, queue, max_priority,
                                 existing);
}

/* Opens the trial channel, runs `step` on it and closes it again. The
 * broker closes the channel of a declare it rejects, so declares of names
 * chosen at run time go there and cost the worker's channels nothing. The
 * error of `step` is kept over that of the close. */
static int on_trial_channel(cel__broker_t *broker,
                            int (*step)(cel__broker_t *broker, const void *arg),
                            const void *arg)
{
    amqp_channel_open(conn_of(broker), TRIAL_CHANNEL);
    broker->rpc_channel = TRIAL_CHANNEL;
    int status = check_reply(broker, "channel.open");
    if (status == CEL_OK)
        status = step(broker, arg);
    char error[CEL__ERROR_LEN];
    snprintf(error, sizeof error, "%s", broker->error);
    if (status == CEL_OK ||
        strstr(error, "broker closed the channel") == NULL) {
        amqp_channel_close(conn_of(broker), TRIAL_CHANNEL, AMQP_REPLY_SUCCESS);
        amqp_get_rpc_reply(conn_of(broker));
    }
    broker->rpc_channel = CHANNEL;
    snprintf(broker->error, sizeof broker->error, "%s", error);
    return status;
}

typedef struct trial_queue {
    const char *queue;
    int max_priority;
} trial_queue_t;

static int declare_trial_queue(cel__broker_t *broker, const void *arg)
{
    const trial_queue_t *trial = arg;
    bool existing = false;
    return declare_task_queue_on(broker, TRIAL_CHANNEL, trial->queue,
                                 trial->max_priority, &existing);
}

int cel__broker_try_declare(cel__broker_t *broker, const char *queue,
                            int max_priority)
{
    trial_queue_t trial = {queue, max_priority};
    return on_trial_channel(broker, declare_trial_queue, &trial);
}

static int declare_exchange_passive(cel__broker_t *broker, const void *arg)
{
    amqp_exchange_declare(conn_of(broker), TRIAL_CHANNEL,
                          amqp_cstring_bytes(arg), amqp_cstring_bytes("direct"),
                          1, 0, 0, 0, amqp_empty_table);
    return check_reply(broker, "exchange.declare");
}

int cel__broker_exchange_exists(cel__broker_t *broker, const char *exchange)
{
    return on_trial_channel(broker, declare_exchange_passive, exchange);
}

int cel__broker_qos(cel__broker_t *broker, uint16_t prefetch_count)
{
    /* global=true, as Celery sends it to RabbitMQ 3.3 and later, unless a
     * quorum queue is consumed: those refuse global QoS. */
    amqp_basic_qos(conn_of(broker), CHANNEL, 0, prefetch_count,
                   broker->per_consumer_qos ? 0 : 1);
    return check_reply(broker, "basic.qos");
}

int cel__broker_consume(cel__broker_t *broker, const char *queue)
{
    if (broker->consumer_count == CONSUMERS_MAX) {
        cel__set_error(broker->error, "more than %d queues to consume",
                       CONSUMERS_MAX);
        return CEL_EINVAL;
    }
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(conn_of(broker), CHANNEL, amqp_cstring_bytes(queue),
                           amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    int status = check_reply(broker, "basic.consume");
    if (status != CEL_OK || ok == NULL)
        return status;
    char *tag = malloc(ok->consumer_tag.len + 1);
    if (tag == NULL)
        return CEL_ENOMEM;
    memcpy(tag, ok->consumer_tag.bytes, ok->consumer_tag.len);
    tag[ok->consumer_tag.len] = '\0';
    char *name = strdup(queue);
    if (name == NULL) {
        free(tag);
        return CEL_ENOMEM;
    }
    broker->consumer_queues[broker->consumer_count] = name;
    broker->consumer_tags[broker->consumer_count++] = tag;
    return CEL_OK;
}

int cel__broker_cancel_queue(cel__broker_t *broker, const char *queue)
{
    for (size_t i = 0; i < broker->consumer_count; i++) {
        if (strcmp(broker->consumer_queues[i], queue) != 0)
            continue;
        amqp_basic_cancel(conn_of(broker), CHANNEL,
                          amqp_cstring_bytes(broker->consumer_tags[i]));
        int status = check_reply(broker, "basic.cancel");
        free(broker->consumer_tags[i]);
        free(broker->consumer_queues[i]);
        broker->consumer_count--;
        broker->consumer_tags[i] =
            broker->consumer_tags[broker->consumer_count];
        broker->consumer_queues[i] =
            broker->consumer_queues[broker->consumer_count];
        return status;
    }
    return CEL_OK;
}

int cel__broker_cancel_consumers(cel__broker_t *broker)
{
    int status = CEL_OK;
    for (size_t i = 0; i < broker->consumer_count && status == CEL_OK; i++) {
        amqp_basic_cancel(conn_of(broker), CHANNEL,
                          amqp_cstring_bytes(broker->consumer_tags[i]));
        status = check_reply(broker, "basic.cancel");
    }
    return status;
}

int cel__broker_fd(const cel__broker_t *broker)
{
    return amqp_get_sockfd(broker->conn);
}

bool cel__broker_has_buffered(const cel__broker_t *broker)
{
    return amqp_frames_enqueued(broker->conn) ||
           amqp_data_in_buffer(broker->conn);
}

static int write_status(cel__broker_t *broker, int rc, const char *what)
{
    if (rc == AMQP_STATUS_OK)
        return CEL_OK;
    cel__set_error(broker->error, "%s: %s", what, amqp_error_string2(rc));
    return CEL_EBROKER;
}

/* Declares a pidbox queue as kombu's Mailbox does (auto-delete, with
 * control_queue_expires 10 s and control_queue_ttl 300 s in ms), binds it
 * to `exchange` by `routing_key` and consumes it without acks. */
static int consume_mailbox_queue(cel__broker_t *broker, const char *queue,
                                 const char *exchange, const char *routing_key,
                                 bool exclusive)
{
    amqp_table_entry_t entries[] = {
        {amqp_cstring_bytes("x-expires"),
         {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 10000}},
        {amqp_cstring_bytes("x-message-ttl"),
         {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 300000}},
    };
    amqp_table_t arguments = {2, entries};
    amqp_queue_declare(conn_of(broker), CEL__CONTROL_CHANNEL,
                       amqp_cstring_bytes(queue), 0, 0, 0, 1, arguments);
    int status = check_reply(broker, "queue.declare");
    if (status != CEL_OK)
        return status;
    amqp_queue_bind(conn_of(broker), CEL__CONTROL_CHANNEL,
                    amqp_cstring_bytes(queue), amqp_cstring_bytes(exchange),
                    amqp_cstring_bytes(routing_key), amqp_empty_table);
    if ((status = check_reply(broker, "queue.bind")) != CEL_OK)
        return status;
    amqp_basic_consume(conn_of(broker), CEL__CONTROL_CHANNEL,
                       amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 1,
                       exclusive ? 1 : 0, amqp_empty_table);
    return check_reply(broker, "basic.consume");
}

static int open_control_entities(cel__broker_t *broker, const char *nodename);

int cel__broker_open_control(cel__broker_t *broker, const char *nodename)
{
    broker->rpc_channel = CEL__CONTROL_CHANNEL;
    int status = open_control_entities(broker, nodename);
    broker->rpc_channel = CHANNEL;
    return status;
}

static int open_control_entities(cel__broker_t *broker, const char *nodename)
{
    amqp_channel_open(conn_of(broker), CEL__CONTROL_CHANNEL);
    int status = check_reply(broker, "channel.open");
    if (status != CEL_OK)
        return status;
    amqp_exchange_declare(conn_of(broker), CEL__CONTROL_CHANNEL,
                          amqp_cstring_bytes("celery.pidbox"),
                          amqp_cstring_bytes("fanout"), 0, 0, 0, 0,
                          amqp_empty_table);
    if ((status = check_reply(broker, "exchange.declare")) != CEL_OK)
        return status;
    amqp_exchange_declare(conn_of(broker), CEL__CONTROL_CHANNEL,
                          amqp_cstring_bytes("reply.celery.pidbox"),
                          amqp_cstring_bytes("direct"), 0, 0, 0, 0,
                          amqp_empty_table);
    if ((status = check_reply(broker, "exchange.declare")) != CEL_OK)
        return status;
    amqp_exchange_declare(
        conn_of(broker), CEL__CONTROL_CHANNEL, amqp_cstring_bytes("celeryev"),
        amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
    if ((status = check_reply(broker, "exchange.declare")) != CEL_OK)
        return status;

    char queue[512];
    snprintf(queue, sizeof queue, "%s.celery.pidbox", nodename);
    return consume_mailbox_queue(broker, queue, "celery.pidbox", "", false);
}

static int open_reply_entities(cel__broker_t *broker, const char *key);

int cel__broker_open_reply_queue(cel__broker_t *broker, const char *key)
{
    broker->rpc_channel = CEL__CONTROL_CHANNEL;
    int status = open_reply_entities(broker, key);
    broker->rpc_channel = CHANNEL;
    return status;
}

static int open_reply_entities(cel__broker_t *broker, const char *key)
{
    char queue[128];
    snprintf(queue, sizeof queue, "%s.reply.celery.pidbox", key);
    return consume_mailbox_queue(broker, queue, "reply.celery.pidbox", key,
                                 true);
}

/* ---- publishing in one write -------------------------------------------- */

/* Room for the method and header frames of a publish without headers:
 * 7 + 4 + 2 + 2 * 256 + 1 + 1 and 7 + 14 + 4 * 256 + 2 + 1, rounded up. */
#define PUBLISH_HEAD_MAX 1600
#define FRAME_END        0xCE

typedef struct frame_writer {
    unsigned char *data;
    size_t len;
} frame_writer_t;

static void put_u8(frame_writer_t *w, unsigned value)
{
    w->data[w->len++] = (unsigned char)value;
}

static void put_u16(frame_writer_t *w, unsigned value)
{
    put_u8(w, (value >> 8) & 0xFF);
    put_u8(w, value & 0xFF);
}

static void put_u32(frame_writer_t *w, uint32_t value)
{
    put_u16(w, value >> 16);
    put_u16(w, value & 0xFFFF);
}

static void put_u64(frame_writer_t *w, uint64_t value)
{
    put_u32(w, (uint32_t)(value >> 32));
    put_u32(w, (uint32_t)value);
}

static void put_short_string(frame_writer_t *w, const char *text, size_t len)
{
    put_u8(w, (unsigned)len);
    memcpy(w->data + w->len, text, len);
    w->len += len;
}

/* Writes a frame's type, channel and a size that end_frame fills in.
 * Returns where the payload starts. */
static size_t begin_frame(frame_writer_t *w, unsigned type)
{
    put_u8(w, type);
    put_u16(w, CHANNEL);
    put_u32(w, 0);
    return w->len;
}

static void end_frame(frame_writer_t *w, size_t payload_start)
{
    uint32_t size = (uint32_t)(w->len - payload_start);
    frame_writer_t at = {w->data, payload_start - 4};
    put_u32(&at, size);
    put_u8(w, FRAME_END);
}

static bool short_string_fits(const char *text)
{
    return text == NULL || strlen(text) <= 255;
}

/* ---- the write buffer ---------------------------------------------------- */

static int reserve_out(cel__broker_t *broker, size_t more)
{
    if (broker->out_cap - broker->out_len >= more)
        return CEL_OK;
    size_t cap = broker->out_cap ? broker->out_cap : 4096;
    while (cap - broker->out_len < more)
        cap *= 2;
    unsigned char *grown = realloc(broker->out, cap);
    if (grown == NULL)
        return CEL_ENOMEM;
    broker->out = grown;
    broker->out_cap = cap;
    return CEL_OK;
}

static int add_span(cel__broker_t *broker, size_t begin, size_t end)
{
    if (broker->span_len + 2 > broker->span_cap) {
        size_t cap = broker->span_cap ? broker->span_cap * 2 : 64;
        size_t *grown = realloc(broker->spans, cap * sizeof *grown);
        if (grown == NULL)
            return CEL_ENOMEM;
        broker->spans = grown;
        broker->span_cap = cap;
    }
    broker->spans[broker->span_len++] = begin;
    broker->spans[broker->span_len++] = end;
    return CEL_OK;
}

/* Empties the write buffer after a failed write or a closed channel. The
 * publishes in it are kept for the next connection. The acks are dropped,
 * because the broker delivers unacked messages again anyway. */
static void keep_unsent(cel__broker_t *broker)
{
    size_t bytes = 0;
    for (size_t i = 0; i < broker->span_len; i += 2)
        bytes += broker->spans[i + 1] - broker->spans[i];
    unsigned char *grown =
        bytes ? realloc(broker->unsent, broker->unsent_len + bytes) : NULL;
    if (bytes > 0 && grown == NULL) {
        cel__set_error(broker->error,
                       "out of memory keeping %zu unsent publishes",
                       broker->span_len / 2);
    } else if (bytes > 0) {
        broker->unsent = grown;
        for (size_t i = 0; i < broker->span_len; i += 2) {
            size_t len = broker->spans[i + 1] - broker->spans[i];
            memcpy(broker->unsent + broker->unsent_len,
                   broker->out + broker->spans[i], len);
            broker->unsent_len += len;
        }
        broker->unsent_count += broker->span_len / 2;
    }
    broker->out_len = 0;
    broker->span_len = 0;
}

/* Ends a write of the waiting frames (and perhaps one more publish). */
static int after_write(cel__broker_t *broker, int sent)
{
    if (sent == 0) {
        broker->out_len = 0;
        broker->span_len = 0;
        return CEL_OK;
    }
    cel__set_error(broker->error, "sending to the broker failed: %s",
                   strerror(errno));
    broker->write_failed = true;
    keep_unsent(broker);
    return CEL_EBROKER;
}

int cel__broker_flush(cel__broker_t *broker)
{
    if (!broker->open || broker->channel_closed || broker->write_failed) {
        keep_unsent(broker);
        return CEL_EBROKER;
    }
    if (broker->out_len == 0)
        return CEL_OK;
    struct iovec part = {broker->out, broker->out_len};
    return after_write(broker,
                       cel__send_all(amqp_get_sockfd(broker->conn), &part, 1));
}

size_t cel__broker_take_unsent(cel__broker_t *broker, unsigned char **bytes,
                               size_t *len)
{
    cel__broker_flush(broker);
    size_t count = broker->unsent_count;
    *bytes = broker->unsent;
    *len = broker->unsent_len;
    broker->unsent = NULL;
    broker->unsent_len = 0;
    broker->unsent_count = 0;
    return count;
}

int cel__broker_send_unsent(cel__broker_t *broker, const unsigned char *bytes,
                            size_t len, size_t count)
{
    if (len == 0)
        return CEL_OK;
    if (cel__broker_flush(broker) != CEL_OK)
        return CEL_EBROKER;
    /* One span covers them all, because they are whole publishes. */
    if (reserve_out(broker, len) != CEL_OK ||
        add_span(broker, 0, len) != CEL_OK)
        return write_status(broker, AMQP_STATUS_NO_MEMORY, "basic.publish");
    memcpy(broker->out, bytes, len);
    broker->out_len = len;
    int status = cel__broker_flush(broker);
    if (status != CEL_OK) {
        /* keep_unsent counted the span as one publish. */
        broker->unsent_count += count - 1;
    }
    return status;
}

/* Writes the method and header frames of a publish without headers. */
static void put_publish_head(frame_writer_t *w, const cel__publish_t *msg,
                             size_t body_len)
{
    size_t start = begin_frame(w, AMQP_FRAME_METHOD);
    put_u16(w, 60); /* basic */
    put_u16(w, 40); /* publish */
    put_u16(w, 0);  /* reserved (ticket) */
    put_short_string(w, msg->exchange, strlen(msg->exchange));
    put_short_string(w, msg->routing_key, strlen(msg->routing_key));
    put_u8(w, 0); /* neither mandatory nor immediate */
    end_frame(w, start);

    unsigned flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
                     AMQP_BASIC_CONTENT_ENCODING_FLAG |
                     AMQP_BASIC_DELIVERY_MODE_FLAG;
    if (msg->priority >= 0)
        flags |= AMQP_BASIC_PRIORITY_FLAG;
    if (msg->correlation_id != NULL)
        flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
    if (msg->reply_to != NULL)
        flags |= AMQP_BASIC_REPLY_TO_FLAG;
    if (msg->expiration != NULL)
        flags |= AMQP_BASIC_EXPIRATION_FLAG;
    start = begin_frame(w, AMQP_FRAME_HEADER);
    put_u16(w, 60); /* basic */
    put_u16(w, 0);  /* weight */
    put_u64(w, body_len);
    put_u16(w, flags);
    /* Properties follow in the order of their flag bits. */
    put_short_string(w, "application/json", 16);
    put_short_string(w, "utf-8", 5);
    put_u8(w, (unsigned)msg->delivery_mode);
    if (msg->priority >= 0)
        put_u8(w, (unsigned)msg->priority);
    if (msg->correlation_id != NULL)
        put_short_string(w, msg->correlation_id, strlen(msg->correlation_id));
    if (msg->reply_to != NULL)
        put_short_string(w, msg->reply_to, strlen(msg->reply_to));
    if (msg->expiration != NULL)
        put_short_string(w, msg->expiration, strlen(msg->expiration));
    end_frame(w, start);
}

/* The maximum number of body frames in one sendmsg of a direct publish,
 * and the iovecs they need: a mark per frame, the body pieces, the
 * buffered frames, the publish head and the last frame end. */
#define SEND_FRAMES 32
#define SEND_IOVECS (2 * SEND_FRAMES + CEL__PUBLISH_PARTS_MAX + 3)

/* Copies a publish of a small body into the write buffer as its three
 * frames. Returns false when memory ran out, leaving the buffer as it was. */
static bool buffer_publish(cel__broker_t *broker, const cel__publish_t *msg,
                           const struct iovec *parts, int part_count,
                           size_t body_len)
{
    size_t bound = PUBLISH_HEAD_MAX + 8 + body_len;
    if (reserve_out(broker, bound) != CEL_OK ||
        add_span(broker, broker->out_len, broker->out_len) != CEL_OK)
        return false;
    frame_writer_t w = {broker->out, broker->out_len};
    put_publish_head(&w, msg, body_len);
    put_u8(&w, AMQP_FRAME_BODY);
    put_u16(&w, CHANNEL);
    put_u32(&w, (uint32_t)body_len);
    for (int i = 0; i < part_count; i++) {
        memcpy(w.data + w.len, parts[i].iov_base, parts[i].iov_len);
        w.len += parts[i].iov_len;
    }
    put_u8(&w, FRAME_END);
    broker->out_len = w.len;
    broker->spans[broker->span_len - 1] = w.len;
    return true;
}

/* Sends the buffered frames and then a publish at once, the body frames
 * pointing into the body parts, so the body is never copied. Returns 0, or
 * -1 when a write failed. */
static int send_publish(cel__broker_t *broker, const cel__publish_t *msg,
                        const struct iovec *parts, size_t body_len,
                        size_t frame_body_max)
{
    int fd = amqp_get_sockfd(broker->conn);
    unsigned char head[PUBLISH_HEAD_MAX];
    frame_writer_t w = {head, 0};
    put_publish_head(&w, msg, body_len);
    /* Each mark ends the frame before (except the first) and starts the
     * next body frame. */
    unsigned char marks[SEND_FRAMES][8];
    struct iovec iov[SEND_IOVECS];
    int count = 0;
    int marks_used = 0;
    if (broker->out_len > 0)
        iov[count++] = (struct iovec){broker->out, broker->out_len};
    iov[count++] = (struct iovec){head, w.len};

    size_t left = body_len;
    size_t offset = 0; /* into *parts */
    bool first = true;
    while (left > 0) {
        size_t frame_len = left < frame_body_max ? left : frame_body_max;
        frame_writer_t mark = {marks[marks_used++], 0};
        if (!first)
            put_u8(&mark, FRAME_END);
        put_u8(&mark, AMQP_FRAME_BODY);
        put_u16(&mark, CHANNEL);
        put_u32(&mark, (uint32_t)frame_len);
        iov[count++] = (struct iovec){mark.data, mark.len};
        left -= frame_len;
        first = false;
        while (frame_len > 0) {
            size_t piece = parts->iov_len - offset;
            if (piece > frame_len)
                piece = frame_len;
            iov[count++] =
                (struct iovec){(char *)parts->iov_base + offset, piece};
            offset += piece;
            frame_len -= piece;
            if (offset == parts->iov_len) {
                parts++;
                offset = 0;
            }
        }
        /* Room for one more frame: its mark, its pieces and the end. */
        bool full = marks_used == SEND_FRAMES ||
                    count + 2 + CEL__PUBLISH_PARTS_MAX + 1 > SEND_IOVECS;
        if (left > 0 && full) {
            int sent = cel__send_all(fd, iov, count);
            /* What was buffered is out, so a later failure keeps none of
             * it twice. */
            after_write(broker, sent);
            if (sent != 0)
                return -1;
            count = 0;
            marks_used = 0;
        }
    }
    unsigned char end = FRAME_END;
    iov[count++] = (struct iovec){&end, 1};
    int sent = cel__send_all(fd, iov, count);
    after_write(broker, sent);
    return sent;
}

/* Writes a publish without headers in our own frames, with the bytes
 * rabbitmq-c would send. A small publish waits in the write buffer, and a
 * larger one goes out at once after the waiting frames, in as few sendmsg
 * calls as its frames need. Returns 1 when the publish does not qualify,
 * so the caller publishes through rabbitmq-c. */
static int publish_direct(cel__broker_t *broker, const cel__publish_t *msg,
                          const struct iovec *parts, int part_count,
                          size_t body_len)
{
    size_t frame_max = (size_t)amqp_get_frame_max(broker->conn);
    if (msg->headers != NULL || body_len == 0 || frame_max < 4096 ||
        !short_string_fits(msg->exchange) ||
        !short_string_fits(msg->routing_key) ||
        !short_string_fits(msg->correlation_id) ||
        !short_string_fits(msg->reply_to) ||
        !short_string_fits(msg->expiration))
        return 1;
    if (broker->write_failed || !broker->open || broker->channel_closed)
        return write_status(broker, AMQP_STATUS_SOCKET_ERROR, "basic.publish");
    if (body_len <= OUT_DIRECT_BODY) {
        if (broker->out_len + PUBLISH_HEAD_MAX + 8 + body_len > OUT_LIMIT &&
            cel__broker_flush(broker) != CEL_OK)
            return write_status(broker, AMQP_STATUS_SOCKET_ERROR,
                                "basic.publish");
        if (buffer_publish(broker, msg, parts, part_count, body_len))
            return CEL_OK;
    }
    /* A body frame carries frame_max less its 7-byte head and end byte. */
    if (send_publish(broker, msg, parts, body_len, frame_max - 8) != 0)
        return write_status(broker, AMQP_STATUS_SOCKET_ERROR, "basic.publish");
    return CEL_OK;
}

/* Joins body parts into one malloc'd buffer, for rabbitmq-c. */
static void *join_parts(const struct iovec *parts, int part_count,
                        size_t body_len)
{
    char *joined = malloc(body_len ? body_len : 1);
    size_t at = 0;
    for (int i = 0; joined != NULL && i < part_count; i++) {
        memcpy(joined + at, parts[i].iov_base, parts[i].iov_len);
        at += parts[i].iov_len;
    }
    return joined;
}

int cel__broker_publish(cel__broker_t *broker, const cel__publish_t *msg)
{
    struct iovec whole = {(void *)msg->body, msg->body_len};
    const struct iovec *parts = &whole;
    int part_count = 1;
    size_t body_len = msg->body_len;
    if (msg->body_parts != NULL) {
        if (msg->body_part_count > CEL__PUBLISH_PARTS_MAX)
            return write_status(broker, AMQP_STATUS_INVALID_PARAMETER,
                                "basic.publish");
        parts = msg->body_parts;
        part_count = msg->body_part_count;
        body_len = 0;
        for (int i = 0; i < part_count; i++)
            body_len += parts[i].iov_len;
    }
    int direct = publish_direct(broker, msg, parts, part_count, body_len);
    if (direct != 1)
        return direct;
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
                   AMQP_BASIC_CONTENT_ENCODING_FLAG |
                   AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/json");
    props.content_encoding = amqp_cstring_bytes("utf-8");
    props.delivery_mode = (uint8_t)msg->delivery_mode;
    if (msg->priority >= 0) {
        props._flags |= AMQP_BASIC_PRIORITY_FLAG;
        props.priority = (uint8_t)msg->priority;
    }
    if (msg->correlation_id != NULL) {
        props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        props.correlation_id = amqp_cstring_bytes(msg->correlation_id);
    }
    if (msg->reply_to != NULL) {
        props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        props.reply_to = amqp_cstring_bytes(msg->reply_to);
    }
    if (msg->expiration != NULL) {
        props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        props.expiration = amqp_cstring_bytes(msg->expiration);
    }

    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    int status = CEL_OK;
    if (msg->headers != NULL) {
        props._flags |= AMQP_BASIC_HEADERS_FLAG;
        status = cel__json_to_table(msg->headers, &pool, &props.headers);
    }
    void *joined = NULL;
    if (status == CEL_OK && msg->body_parts != NULL) {
        joined = join_parts(parts, part_count, body_len);
        if (joined == NULL)
            status =
                write_status(broker, AMQP_STATUS_NO_MEMORY, "basic.publish");
    }
    if (status == CEL_OK) {
        amqp_bytes_t body = {body_len, joined ? joined : (void *)msg->body};
        int rc = amqp_basic_publish(
            conn_of(broker), CHANNEL, amqp_cstring_bytes(msg->exchange),
            amqp_cstring_bytes(msg->routing_key), 0, 0, &props, body);
        status = write_status(broker, rc, "basic.publish");
    }
    free(joined);
    empty_amqp_pool(&pool);
    return status;
}

int cel__broker_ack(cel__broker_t *broker, uint64_t delivery_tag)
{
    if (broker->write_failed)
        return CEL_EBROKER;
    /* 7 bytes of frame head, 13 of basic.ack, the frame end. */
    if (broker->out_len + 21 > OUT_LIMIT && cel__broker_flush(broker) != CEL_OK)
        return CEL_EBROKER;
    if (reserve_out(broker, 21) != CEL_OK)
        return write_status(broker, AMQP_STATUS_NO_MEMORY, "basic.ack");
    frame_writer_t w = {broker->out, broker->out_len};
    size_t start = begin_frame(&w, AMQP_FRAME_METHOD);
    put_u16(&w, 60); /* basic */
    put_u16(&w, 80); /* ack */
    put_u64(&w, delivery_tag);
    put_u8(&w, 0); /* not multiple */
    end_frame(&w, start);
    broker->out_len = w.len;
    return CEL_OK;
}

int cel__broker_reject(cel__broker_t *broker, uint64_t delivery_tag,
                       bool requeue)
{
    return write_status(
        broker,
        amqp_basic_reject(conn_of(broker), CHANNEL, delivery_tag, requeue),
        "basic.reject");
}
