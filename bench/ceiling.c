/*
 * The broker ceiling for bench/suite.py: the least work a worker can do per
 * task message, so its drain rate is what RabbitMQ and one AMQP connection
 * carry on this machine.
 *
 * It consumes one queue with basic.qos at the given prefetch count, with
 * global=true as Celery's consumer sets it on RabbitMQ 3.3 and later (kombu's
 * qos_semantics_matches_spec), or per consumer with -C. For each
 * delivery that has a reply_to, it publishes a fixed small JSON reply to the
 * default exchange with the delivery's correlation_id, then acks the
 * delivery. Messages are never decoded. It runs until SIGTERM or SIGINT,
 * then closes the channel, so the broker requeues what was not acked.
 *
 * With -i the reply also carries the correlation_id as "task_id", which
 * Celery's rpc:// result consumer needs to match it to AsyncResult.get().
 * That gives the round-trip latency of the client and the broker alone.
 *
 * With -n COUNT it is the benchmark's result counter instead. It consumes
 * QUEUE without acks and without replying. It prints "first SECONDS" on
 * stdout at the first message, and "done COUNT SECONDS" after COUNT
 * messages or at a stop request. SECONDS is the CLOCK_MONOTONIC time (the
 * clock of Python's time.monotonic) of the first or the last message.
 * After "done" it waits for SIGTERM, so its CPU time can still be read.
 *
 * Usage: ceiling [-h HOST] [-p PORT] [-q QUEUE] [-P PREFETCH] [-i] [-C]
 *                [-n COUNT]
 */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define CHANNEL 1

/* About the size of a Celery rpc result for tasks.add, without a task id. */
static const char REPLY_BODY[] =
    "{\"status\": \"SUCCESS\", \"result\": 0, \"traceback\": null, "
    "\"children\": []}";

/* The reply with -i. Celery task ids are 36-character UUIDs. A
 * correlation_id longer than MAX_TASK_ID is cut, so no client would match
 * that reply. */
#define REPLY_WITH_ID_FORMAT                                                   \
    "{\"task_id\": \"%.*s\", \"status\": \"SUCCESS\", \"result\": 0, "         \
    "\"traceback\": null, \"children\": []}"
#define MAX_TASK_ID 64

static volatile sig_atomic_t stop_requested;

struct options {
    const char *host;
    int port;
    const char *queue;
    int prefetch;
    bool reply_with_task_id;
    bool per_consumer_qos;
    int count; /* -n: messages to count; 0 replies and acks instead */
};

static void request_stop(int signal_number)
{
    (void)signal_number;
    stop_requested = 1;
}

static void print_usage(FILE *stream)
{
    fprintf(stream,
            "usage: ceiling [-h HOST] [-p PORT] [-q QUEUE] [-P PREFETCH] "
            "[-i] [-C] [-n COUNT]\n"
            "\n"
            "Consumes QUEUE (default: celery) on HOST:PORT (default: "
            "127.0.0.1:5672)\n"
            "with basic.qos PREFETCH (default: 8) for the channel, as Celery "
            "sets it,\n"
            "replies to each message's reply_to with a fixed small result "
            "and acks it,\n"
            "until SIGTERM or SIGINT.\n"
            "-i puts the message's correlation_id into the reply as "
            "task_id.\n"
            "-C sets the prefetch per consumer (basic.qos global=false) "
            "instead.\n"
            "-n COUNT only counts COUNT messages, consumed without acks, and "
            "prints\n"
            "\"first SECONDS\" and \"done COUNT SECONDS\" (CLOCK_MONOTONIC) "
            "on stdout.\n");
}

/* Parses a decimal integer into `value`. Returns false unless the text is a
 * whole number in [minimum, maximum]. */
static bool parse_int(const char *text, int minimum, int maximum, int *value)
{
    char *end;
    errno = 0;
    long parsed = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || parsed < minimum ||
        parsed > maximum)
        return false;
    *value = (int)parsed;
    return true;
}

static bool parse_options(int argc, char **argv, struct options *options)
{
    options->host = "127.0.0.1";
    options->port = 5672;
    options->queue = "celery";
    options->prefetch = 8;
    options->reply_with_task_id = false;
    options->per_consumer_qos = false;
    options->count = 0;
    int option;
    while ((option = getopt(argc, argv, "h:p:q:P:iCn:")) != -1) {
        switch (option) {
        case 'n':
            if (!parse_int(optarg, 1, INT_MAX, &options->count)) {
                fprintf(stderr,
                        "ceiling: invalid count '%s': expected 1 or more\n",
                        optarg);
                return false;
            }
            break;
        case 'i':
            options->reply_with_task_id = true;
            break;
        case 'C':
            options->per_consumer_qos = true;
            break;
        case 'h':
            options->host = optarg;
            break;
        case 'p':
            if (!parse_int(optarg, 1, 65535, &options->port)) {
                fprintf(stderr, "ceiling: invalid port '%s'\n", optarg);
                return false;
            }
            break;
        case 'q':
            options->queue = optarg;
            break;
        case 'P':
            if (!parse_int(optarg, 1, 65535, &options->prefetch)) {
                fprintf(stderr,
                        "ceiling: invalid prefetch count '%s': expected 1 "
                        "to 65535\n",
                        optarg);
                return false;
            }
            break;
        default:
            print_usage(stderr);
            return false;
        }
    }
    if (optind != argc) {
        print_usage(stderr);
        return false;
    }
    return true;
}

/* Returns whether `reply` is normal, and otherwise prints why `what`
 * failed. */
static bool check_reply(amqp_rpc_reply_t reply, const char *what)
{
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return true;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        fprintf(stderr, "ceiling: %s failed: %s\n", what,
                amqp_error_string2(reply.library_error));
        return false;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD ||
            reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            /* Both close methods start with reply_code and reply_text. */
            amqp_channel_close_t *close = reply.reply.decoded;
            fprintf(stderr, "ceiling: %s failed: broker closed with %u %.*s\n",
                    what, close->reply_code, (int)close->reply_text.len,
                    (const char *)close->reply_text.bytes);
        } else {
            fprintf(stderr, "ceiling: %s failed: broker method 0x%08x\n", what,
                    reply.reply.id);
        }
        return false;
    default:
        fprintf(stderr, "ceiling: %s failed: no reply\n", what);
        return false;
    }
}

static bool open_session(amqp_connection_state_t conn,
                         const struct options *options)
{
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (socket == NULL) {
        fprintf(stderr, "ceiling: creating a TCP socket failed\n");
        return false;
    }
    int status = amqp_socket_open(socket, options->host, options->port);
    if (status != AMQP_STATUS_OK) {
        fprintf(stderr, "ceiling: connecting to %s:%d failed: %s\n",
                options->host, options->port, amqp_error_string2(status));
        return false;
    }
    if (!check_reply(amqp_login(conn, "/", 0, AMQP_DEFAULT_FRAME_SIZE, 0,
                                AMQP_SASL_METHOD_PLAIN, "guest", "guest"),
                     "login"))
        return false;
    amqp_channel_open(conn, CHANNEL);
    if (!check_reply(amqp_get_rpc_reply(conn), "channel.open"))
        return false;
    /* The counter consumes without acks, so a prefetch would not apply. */
    bool counting = options->count > 0;
    if (!counting) {
        amqp_basic_qos(conn, CHANNEL, 0, (uint16_t)options->prefetch,
                       options->per_consumer_qos ? 0 : 1);
        if (!check_reply(amqp_get_rpc_reply(conn), "basic.qos"))
            return false;
    }
    amqp_basic_consume(conn, CHANNEL, amqp_cstring_bytes(options->queue),
                       amqp_empty_bytes, 0, counting ? 1 : 0, 0,
                       amqp_empty_table);
    return check_reply(amqp_get_rpc_reply(conn), "basic.consume");
}

/* Returns the reply body for `request`, formatted into `buffer` with -i. */
static amqp_bytes_t format_reply_body(const amqp_basic_properties_t *request,
                                      bool reply_with_task_id, char *buffer,
                                      size_t size)
{
    if (!reply_with_task_id)
        return (amqp_bytes_t){sizeof REPLY_BODY - 1, (void *)REPLY_BODY};
    const char *id = "";
    int id_length = 0;
    if (request->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
        id = request->correlation_id.bytes;
        id_length = request->correlation_id.len > MAX_TASK_ID
                        ? MAX_TASK_ID
                        : (int)request->correlation_id.len;
    }
    int length = snprintf(buffer, size, REPLY_WITH_ID_FORMAT, id_length, id);
    return (amqp_bytes_t){(size_t)length, buffer};
}

/* Publishes the fixed reply for `envelope` if it has a reply_to, then acks
 * it. Returns false when a write failed. */
static bool reply_and_ack(amqp_connection_state_t conn,
                          const amqp_envelope_t *envelope,
                          bool reply_with_task_id)
{
    const amqp_basic_properties_t *request = &envelope->message.properties;
    if ((request->_flags & AMQP_BASIC_REPLY_TO_FLAG) &&
        request->reply_to.len > 0) {
        amqp_basic_properties_t reply;
        memset(&reply, 0, sizeof reply);
        reply._flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
                       AMQP_BASIC_CONTENT_ENCODING_FLAG |
                       AMQP_BASIC_DELIVERY_MODE_FLAG;
        reply.content_type = amqp_cstring_bytes("application/json");
        reply.content_encoding = amqp_cstring_bytes("utf-8");
        reply.delivery_mode = 1;
        if (request->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
            reply._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
            reply.correlation_id = request->correlation_id;
        }
        char buffer[sizeof REPLY_WITH_ID_FORMAT + MAX_TASK_ID];
        amqp_bytes_t body = format_reply_body(request, reply_with_task_id,
                                              buffer, sizeof buffer);
        int status = amqp_basic_publish(conn, CHANNEL, amqp_empty_bytes,
                                        request->reply_to, 0, 0, &reply, body);
        if (status != AMQP_STATUS_OK) {
            fprintf(stderr, "ceiling: basic.publish failed: %s\n",
                    amqp_error_string2(status));
            return false;
        }
    }
    int status = amqp_basic_ack(conn, CHANNEL, envelope->delivery_tag, 0);
    if (status != AMQP_STATUS_OK) {
        fprintf(stderr, "ceiling: basic.ack failed: %s\n",
                amqp_error_string2(status));
        return false;
    }
    return true;
}

/* Reads a frame that is not a delivery. Returns false when the broker
 * closed the channel or the connection, or the read failed. */
static bool skip_other_frame(amqp_connection_state_t conn)
{
    amqp_frame_t frame;
    int status = amqp_simple_wait_frame(conn, &frame);
    if (status != AMQP_STATUS_OK) {
        fprintf(stderr, "ceiling: reading a frame failed: %s\n",
                amqp_error_string2(status));
        return false;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD)
        return true;
    switch (frame.payload.method.id) {
    case AMQP_CHANNEL_CLOSE_METHOD:
    case AMQP_CONNECTION_CLOSE_METHOD:
    case AMQP_BASIC_CANCEL_METHOD:
        fprintf(stderr,
                "ceiling: the broker stopped the consumer (method "
                "0x%08x)\n",
                frame.payload.method.id);
        return false;
    default:
        return true;
    }
}

static double monotonic_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

/* Counts a delivery for -n, printing "first" at the first one. */
static void count_delivery(long counted, double *last)
{
    *last = monotonic_seconds();
    if (counted == 1) {
        printf("first %.6f\n", *last);
        fflush(stdout);
    }
}

/* Serves deliveries until a stop request, or with -n until the count is
 * reached. Returns the number of messages handled, or -1 when a broker read
 * or write failed. */
static long consume(amqp_connection_state_t conn, const struct options *options)
{
    long handled = 0;
    double last = 0;
    while (!stop_requested &&
           (options->count == 0 || handled < options->count)) {
        /* A short timeout, so a stop request is seen within 100 ms. */
        struct timeval timeout = {0, 100000};
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply =
            amqp_consume_message(conn, &envelope, &timeout, 0);
        if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
            bool written =
                options->count > 0 ||
                reply_and_ack(conn, &envelope, options->reply_with_task_id);
            amqp_destroy_envelope(&envelope);
            if (!written)
                return -1;
            handled++;
            if (options->count > 0)
                count_delivery(handled, &last);
            continue;
        }
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            reply.library_error == AMQP_STATUS_TIMEOUT)
            continue;
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
            reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
            if (!skip_other_frame(conn))
                return -1;
            continue;
        }
        check_reply(reply, "basic.consume");
        return -1;
    }
    if (options->count > 0) {
        printf("done %ld %.6f\n", handled, last);
        fflush(stdout);
        while (!stop_requested)
            usleep(100000);
    }
    return handled;
}

int main(int argc, char **argv)
{
    struct options options;
    if (!parse_options(argc, argv, &options))
        return 2;

    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = request_stop;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    amqp_connection_state_t conn = amqp_new_connection();
    if (conn == NULL) {
        fprintf(stderr, "ceiling: out of memory\n");
        return 1;
    }
    int exit_status = 1;
    if (!open_session(conn, &options))
        goto out;
    if (options.count > 0)
        fprintf(stderr, "ceiling: counting %d messages of %s\n", options.count,
                options.queue);
    else
        fprintf(stderr, "ceiling: consuming %s with prefetch %d\n",
                options.queue, options.prefetch);

    long handled = consume(conn, &options);
    if (handled < 0)
        goto out;
    fprintf(stderr, "ceiling: stopped after %ld messages\n", handled);
    check_reply(amqp_channel_close(conn, CHANNEL, AMQP_REPLY_SUCCESS),
                "channel.close");
    check_reply(amqp_connection_close(conn, AMQP_REPLY_SUCCESS),
                "connection.close");
    exit_status = 0;
out:
    amqp_destroy_connection(conn);
    return exit_status;
}
