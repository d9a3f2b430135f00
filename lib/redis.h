/* A small Redis client for the result backend. Internal.
 *
 * hiredis 0.14 (Debian 12) has no TLS, so this file's implementation does
 * its own socket I/O: a connect with a timeout, poll-based reads and writes
 * with a timeout, and OpenSSL for rediss://. hiredis only formats commands
 * (redisFormatCommandArgv) and parses replies (redisReader).
 *
 * A connection is used by one thread at a time. */
#ifndef CELERIAC_LIB_REDIS_H
#define CELERIAC_LIB_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

/* ssl_cert_reqs of a rediss:// URL. For a client, Python's CERT_OPTIONAL
 * verifies the server like CERT_REQUIRED, and so does this client. */
typedef enum cel__redis_cert_reqs {
    CEL__REDIS_CERT_NONE,
    CEL__REDIS_CERT_OPTIONAL,
    CEL__REDIS_CERT_REQUIRED,
} cel__redis_cert_reqs_t;

/* Where and how to connect, from a redis:// or rediss:// URL. Strings are
 * owned (free with cel__redis_config_clear); NULL means not given. */
typedef struct cel__redis_config {
    char *host;
    int port;
    int db;
    char *username;
    char *password;
    bool tls;
    cel__redis_cert_reqs_t cert_reqs;
    char *ca_certs; /* PEM file; NULL: the system's default CA store */
    char *certfile; /* client certificate chain, PEM */
    char *keyfile;  /* its private key; NULL: in certfile */
    bool check_hostname;
    double socket_timeout;         /* seconds; 0: not in the URL */
    double socket_connect_timeout; /* seconds; 0: not in the URL */
} cel__redis_config_t;

/*
 * Parses redis://[[user]:password@]host[:port][/db] or rediss://... as
 * Celery 5.2 and kombu do: host defaults to localhost, port to 6379, db to
 * 0, and user, password, host and query values are percent-decoded. The
 * query may carry ssl_cert_reqs (required, optional, none or CERT_*; a
 * rediss:// URL must have it), ssl_ca_certs, ssl_certfile, ssl_keyfile and
 * ssl_check_hostname (rediss:// only), socket_timeout and
 * socket_connect_timeout (seconds). Returns CEL_OK, CEL_ENOMEM, or
 * CEL_EINVAL with the reason in `error` (CEL__ERROR_LEN bytes). `out` is
 * filled on success and left cleared on failure.
 */
int cel__redis_url_parse(const char *url, cel__redis_config_t *out,
                         char *error);

void cel__redis_config_clear(cel__redis_config_t *config);

typedef struct cel__redis cel__redis_t;

/*
 * Connects to the server, completes the TLS handshake when configured,
 * then sends AUTH (when a password is set), SELECT (db other than 0) and
 * PING. All of it must finish within `connect_timeout` seconds. Later
 * commands wait at most `io_timeout` seconds for each read or write to
 * make progress. On success *out is a new connection (free with
 * cel__redis_free). On failure returns CEL_EBACKEND, CEL_ETIMEOUT or
 * CEL_ENOMEM with the reason in `error` (CEL__ERROR_LEN bytes).
 */
int cel__redis_connect(const cel__redis_config_t *config,
                       double connect_timeout, double io_timeout,
                       cel__redis_t **out, char *error);

/* Closes the connection. NULL is a no-op. */
void cel__redis_free(cel__redis_t *redis);

/* The reason the last call on `redis` failed. */
const char *cel__redis_error(const cel__redis_t *redis);

/* Commands formatted in the Redis protocol, to be sent in one write. */
typedef struct cel__redis_pipeline {
    char *buf;
    size_t len;
    size_t cap;
    int count;
    bool failed; /* an append ran out of memory */
} cel__redis_pipeline_t;

/* Appends one command. `argvlen` NULL means every argument is a
 * NUL-terminated string. A failure sets `failed`. */
void cel__redis_pipeline_add(cel__redis_pipeline_t *pipeline, int argc,
                             const char **argv, const size_t *argvlen);

/* Frees the buffer and empties the pipeline for reuse. */
void cel__redis_pipeline_clear(cel__redis_pipeline_t *pipeline);

/*
 * Sends every command of `pipeline` and reads one reply for each. On
 * success *replies is a malloc'd array of pipeline->count replies, which
 * the caller frees with cel__redis_replies_free. A reply of type
 * REDIS_REPLY_ERROR is a success here: the caller reads it. Returns
 * CEL_EBACKEND, CEL_ETIMEOUT or CEL_ENOMEM when the connection failed; it
 * must then be freed, because replies may still be in flight.
 */
int cel__redis_pipeline_run(cel__redis_t *redis,
                            const cel__redis_pipeline_t *pipeline,
                            redisReply ***replies);

void cel__redis_replies_free(redisReply **replies, int count);

#endif
