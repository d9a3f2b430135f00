/* The Redis connection: TCP or TLS socket I/O with timeouts, commands
 * pipelined in one write, replies parsed by hiredis's redisReader. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"
#include "redis.h"

#define READ_CHUNK 16384

struct cel__redis {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    redisReader *reader;
    double io_timeout;
    bool broken; /* an I/O call failed; the stream state is unknown */
    struct cel__redis *next_open;
    char error[CEL__ERROR_LEN];
};

/* ---- fork safety --------------------------------------------------------- */

/* Every open connection, so that a forked pool child closes their sockets.
 * Without this a child would keep a TCP connection open after the parent
 * closed it, and Redis would keep the client until the child exits. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static struct cel__redis *open_connections;

static void before_fork(void)
{
    pthread_mutex_lock(&open_lock);
}

static void after_fork_in_parent(void)
{
    pthread_mutex_unlock(&open_lock);
}

/* The child closes the descriptors only. It must not touch the TLS state,
 * which the parent still uses on the same connection. */
static void after_fork_in_child(void)
{
    for (struct cel__redis *redis = open_connections; redis != NULL;
         redis = redis->next_open)
        if (redis->fd >= 0) {
            close(redis->fd);
            redis->fd = -1;
        }
    pthread_mutex_unlock(&open_lock);
}

static void install_atfork(void)
{
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

static void register_open(struct cel__redis *redis)
{
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&open_lock);
    redis->next_open = open_connections;
    open_connections = redis;
    pthread_mutex_unlock(&open_lock);
}

static void unregister_open(struct cel__redis *redis)
{
    pthread_mutex_lock(&open_lock);
    for (struct cel__redis **link = &open_connections; *link != NULL;
         link = &(*link)->next_open)
        if (*link == redis) {
            *link = redis->next_open;
            break;
        }
    pthread_mutex_unlock(&open_lock);
}

/* ---- waiting ------------------------------------------------------------- */

/* Waits until the socket is ready for `events` or the deadline (monotonic
 * seconds) passes. Returns CEL_OK, CEL_ETIMEOUT or CEL_EBACKEND. */
static int wait_socket(struct cel__redis *redis, short events, double deadline)
{
    for (;;) {
        double left = deadline - cel__monotonic();
        if (left <= 0) {
            cel__set_error(redis->error, "timed out waiting for Redis");
            return CEL_ETIMEOUT;
        }
        struct pollfd pfd = {.fd = redis->fd, .events = events};
        int ready = poll(&pfd, 1, (int)ceil(left * 1000.0));
        if (ready > 0)
            return CEL_OK;
        if (ready < 0 && errno != EINTR) {
            cel__set_error(redis->error, "poll failed: %s", strerror(errno));
            return CEL_EBACKEND;
        }
    }
}

/* The deadline of the next wait: the fixed one of the handshake, or a
 * fresh io_timeout for commands, renewed after every bit of progress. */
static double next_deadline(const struct cel__redis *redis, double fixed)
{
    return fixed > 0 ? fixed : cel__monotonic() + redis->io_timeout;
}

/* ---- TLS ----------------------------------------------------------------- */

static void set_tls_error(struct cel__redis *redis, const char *what)
{
    char detail[256] = "";
    unsigned long code = ERR_get_error();
    if (code != 0)
        ERR_error_string_n(code, detail, sizeof detail);
    ERR_clear_error();
    if (redis->ssl != NULL &&
        SSL_get_verify_mode(redis->ssl) != SSL_VERIFY_NONE &&
        SSL_get_verify_result(redis->ssl) != X509_V_OK) {
        long result = SSL_get_verify_result(redis->ssl);
        cel__set_error(redis->error,
                       "%s: the server certificate failed verification: %s",
                       what, X509_verify_cert_error_string(result));
        return;
    }
    cel__set_error(redis->error, "%s: %s", what,
                   detail[0] ? detail : "the connection closed");
}

/* Maps an SSL_ERROR_WANT_* code to the poll events to wait for; 0 for a
 * real failure. */
static short tls_wait_events(struct cel__redis *redis, int rc)
{
    switch (SSL_get_error(redis->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return POLLIN;
    case SSL_ERROR_WANT_WRITE:
        return POLLOUT;
    default:
        return 0;
    }
}

static int load_tls_files(struct cel__redis *redis,
                          const cel__redis_config_t *config)
{
    SSL_CTX *ctx = redis->ctx;
    int loaded =
        config->ca_certs
            ? SSL_CTX_load_verify_locations(ctx, config->ca_certs, NULL)
            : SSL_CTX_set_default_verify_paths(ctx);
    if (loaded != 1) {
        set_tls_error(redis, config->ca_certs
                                 ? "cannot load ssl_ca_certs"
                                 : "cannot load the default CA certificates");
        return CEL_EBACKEND;
    }
    if (config->certfile == NULL)
        return CEL_OK;
    /* Python's load_cert_chain() reads the key from the certificate file
     * when no key file is given; so does this. */
    const char *keyfile = config->keyfile ? config->keyfile : config->certfile;
    if (SSL_CTX_use_certificate_chain_file(ctx, config->certfile) != 1) {
        set_tls_error(redis, "cannot load ssl_certfile");
        return CEL_EBACKEND;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, keyfile, SSL_FILETYPE_PEM) != 1) {
        set_tls_error(redis, "cannot load ssl_keyfile");
        return CEL_EBACKEND;
    }
    return CEL_OK;
}

static bool is_ip_address(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 ||
           inet_pton(AF_INET6, host, buf) == 1;
}

/* Creates the TLS context and session for the connected socket. */
static int tls_setup(struct cel__redis *redis,
                     const cel__redis_config_t *config)
{
    redis->ctx = SSL_CTX_new(TLS_client_method());
    if (redis->ctx == NULL) {
        set_tls_error(redis, "cannot create the TLS context");
        return CEL_ENOMEM;
    }
    SSL_CTX_set_mode(redis->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(redis->ctx,
                       config->cert_reqs == CEL__REDIS_CERT_NONE
                           ? SSL_VERIFY_NONE
                           : SSL_VERIFY_PEER,
                       NULL);
    int status = load_tls_files(redis, config);
    if (status != CEL_OK)
        return status;
    redis->ssl = SSL_new(redis->ctx);
    if (redis->ssl == NULL || SSL_set_fd(redis->ssl, redis->fd) != 1) {
        set_tls_error(redis, "cannot create the TLS session");
        return CEL_ENOMEM;
    }
    bool ip = is_ip_address(config->host);
    /* Python sends the host name as SNI unless it is an IP address. */
    if (!ip)
        SSL_set_tlsext_host_name(redis->ssl, config->host);
    if (config->check_hostname && config->cert_reqs != CEL__REDIS_CERT_NONE) {
        X509_VERIFY_PARAM *param = SSL_get0_param(redis->ssl);
        int set = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, config->host)
                     : X509_VERIFY_PARAM_set1_host(param, config->host, 0);
        if (set != 1) {
            set_tls_error(redis, "cannot set the host name to verify");
            return CEL_EINVAL;
        }
    }
    return CEL_OK;
}

static int tls_handshake(struct cel__redis *redis, double deadline)
{
    for (;;) {
        int rc = SSL_connect(redis->ssl);
        if (rc == 1)
            return CEL_OK;
        short events = tls_wait_events(redis, rc);
        if (events == 0) {
            set_tls_error(redis, "TLS handshake with Redis failed");
            return CEL_EBACKEND;
        }
        int status = wait_socket(redis, events, deadline);
        if (status != CEL_OK)
            return status;
    }
}

/* ---- raw I/O ------------------------------------------------------------- */

/* Writes all of buf. `fixed` is a fixed deadline, or 0 for io_timeout. */
static int write_all(struct cel__redis *redis, const char *buf, size_t len,
                     double fixed)
{
    size_t sent = 0;
    while (sent < len) {
        short events = POLLOUT;
        ssize_t n;
        if (redis->ssl != NULL) {
            /* NOTE: OpenSSL writes without MSG_NOSIGNAL, so a peer that
             * closed the connection raises SIGPIPE unless it is ignored,
             * as the celeriac command does. */
            int chunk = len - sent > INT32_MAX ? INT32_MAX : (int)(len - sent);
            int rc = SSL_write(redis->ssl, buf + sent, chunk);
            n = rc > 0 ? rc : -1;
            if (rc <= 0 && (events = tls_wait_events(redis, rc)) == 0) {
                set_tls_error(redis, "cannot write to Redis");
                return CEL_EBACKEND;
            }
        } else {
            n = send(redis->fd, buf + sent, len - sent, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                errno != EINTR) {
                cel__set_error(redis->error, "cannot write to Redis: %s",
                               strerror(errno));
                return CEL_EBACKEND;
            }
        }
        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        int status = wait_socket(redis, events, next_deadline(redis, fixed));
        if (status != CEL_OK)
            return status;
    }
    return CEL_OK;
}

/* Reads what is available, waiting when nothing is. Returns the byte
 * count, or a negative status. */
static ssize_t read_some(struct cel__redis *redis, char *buf, size_t cap,
                         double fixed)
{
    for (;;) {
        short events = POLLIN;
        ssize_t n;
        if (redis->ssl != NULL) {
            int rc = SSL_read(redis->ssl, buf, (int)cap);
            if (rc > 0)
                return rc;
            if ((events = tls_wait_events(redis, rc)) == 0) {
                set_tls_error(redis, "cannot read from Redis");
                return CEL_EBACKEND;
            }
        } else {
            n = recv(redis->fd, buf, cap, 0);
            if (n > 0)
                return n;
            if (n == 0) {
                cel__set_error(redis->error, "Redis closed the connection");
                return CEL_EBACKEND;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                cel__set_error(redis->error, "cannot read from Redis: %s",
                               strerror(errno));
                return CEL_EBACKEND;
            }
        }
        int status = wait_socket(redis, events, next_deadline(redis, fixed));
        if (status != CEL_OK)
            return status;
    }
}

/* Reads `count` replies into a new array. */
static int read_replies(struct cel__redis *redis, int count, redisReply ***out,
                        double fixed)
{
    redisReply **replies =
        calloc((size_t)(count > 0 ? count : 1), sizeof *replies);
    if (replies == NULL) {
        cel__set_error(redis->error, "out of memory");
        return CEL_ENOMEM;
    }
    char buf[READ_CHUNK];
    int got = 0;
    while (got < count) {
        void *reply = NULL;
        if (redisReaderGetReply(redis->reader, &reply) != REDIS_OK) {
            cel__set_error(redis->error, "invalid reply from Redis: %s",
                           redis->reader->errstr);
            cel__redis_replies_free(replies, got);
            return CEL_EBACKEND;
        }
        if (reply != NULL) {
            replies[got++] = reply;
            continue;
        }
        ssize_t n = read_some(redis, buf, sizeof buf, fixed);
        if (n < 0 || redisReaderFeed(redis->reader, buf, (size_t)n) != 0) {
            if (n >= 0)
                cel__set_error(redis->error, "out of memory");
            cel__redis_replies_free(replies, got);
            return n < 0 ? (int)n : CEL_ENOMEM;
        }
    }
    *out = replies;
    return CEL_OK;
}

static int run_pipeline(struct cel__redis *redis,
                        const cel__redis_pipeline_t *pipeline,
                        redisReply ***replies, double fixed)
{
    if (pipeline->failed) {
        cel__set_error(redis->error, "out of memory formatting commands");
        return CEL_ENOMEM;
    }
    if (redis->broken || redis->fd < 0) {
        cel__set_error(redis->error, "the connection to Redis is closed");
        return CEL_EBACKEND;
    }
    int status = write_all(redis, pipeline->buf, pipeline->len, fixed);
    if (status == CEL_OK)
        status = read_replies(redis, pipeline->count, replies, fixed);
    if (status != CEL_OK)
        redis->broken = true;
    return status;
}

/* ---- pipelines ----------------------------------------------------------- */

void cel__redis_pipeline_add(cel__redis_pipeline_t *pipeline, int argc,
                             const char **argv, const size_t *argvlen)
{
    if (pipeline->failed)
        return;
    char *command = NULL;
    int len = redisFormatCommandArgv(&command, argc, argv, argvlen);
    if (len < 0 || command == NULL) {
        pipeline->failed = true;
        return;
    }
    if (pipeline->len + (size_t)len > pipeline->cap) {
        size_t cap = pipeline->cap ? pipeline->cap : 256;
        while (cap < pipeline->len + (size_t)len)
            cap *= 2;
        char *grown = realloc(pipeline->buf, cap);
        if (grown == NULL) {
            pipeline->failed = true;
            redisFreeCommand(command);
            return;
        }
        pipeline->buf = grown;
        pipeline->cap = cap;
    }
    memcpy(pipeline->buf + pipeline->len, command, (size_t)len);
    pipeline->len += (size_t)len;
    pipeline->count++;
    redisFreeCommand(command);
}

void cel__redis_pipeline_clear(cel__redis_pipeline_t *pipeline)
{
    free(pipeline->buf);
    memset(pipeline, 0, sizeof *pipeline);
}

int cel__redis_pipeline_run(cel__redis_t *redis,
                            const cel__redis_pipeline_t *pipeline,
                            redisReply ***replies)
{
    return run_pipeline(redis, pipeline, replies, 0);
}

void cel__redis_replies_free(redisReply **replies, int count)
{
    if (replies == NULL)
        return;
    for (int i = 0; i < count; i++)
        if (replies[i] != NULL)
            freeReplyObject(replies[i]);
    free(replies);
}

const char *cel__redis_error(const cel__redis_t *redis)
{
    return redis->error;
}

/* ---- connecting ---------------------------------------------------------- */

/* Connects one resolved address without blocking past the deadline. */
static int connect_address(struct cel__redis *redis, const struct addrinfo *ai,
                           double deadline)
{
    redis->fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
               ai->ai_protocol);
    if (redis->fd < 0) {
        cel__set_error(redis->error, "cannot create a socket: %s",
                       strerror(errno));
        return CEL_EBACKEND;
    }
    int one = 1;
    setsockopt(redis->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(redis->fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return CEL_OK;
    if (errno != EINPROGRESS) {
        cel__set_error(redis->error, "cannot connect: %s", strerror(errno));
        return CEL_EBACKEND;
    }
    int status = wait_socket(redis, POLLOUT, deadline);
    if (status != CEL_OK)
        return status;
    int error = 0;
    socklen_t error_len = sizeof error;
    if (getsockopt(redis->fd, SOL_SOCKET, SO_ERROR, &error, &error_len) != 0)
        error = errno;
    if (error != 0) {
        cel__set_error(redis->error, "cannot connect: %s", strerror(error));
        return CEL_EBACKEND;
    }
    return CEL_OK;
}

/* Tries each address of host:port in turn. */
static int open_socket(struct cel__redis *redis,
                       const cel__redis_config_t *config, double deadline)
{
    char port[16];
    snprintf(port, sizeof port, "%d", config->port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV,
    };
    struct addrinfo *addresses = NULL;
    /* NOTE: getaddrinfo() has no timeout, so a slow DNS server can hold
     * the caller past connect_timeout. Numeric addresses are not looked
     * up. */
    int rc = getaddrinfo(config->host, port, &hints, &addresses);
    if (rc != 0) {
        cel__set_error(redis->error, "cannot resolve %s: %s", config->host,
                       gai_strerror(rc));
        return CEL_EBACKEND;
    }
    int status = CEL_EBACKEND;
    for (struct addrinfo *ai = addresses; ai != NULL; ai = ai->ai_next) {
        status = connect_address(redis, ai, deadline);
        if (status == CEL_OK)
            break;
        close(redis->fd);
        redis->fd = -1;
    }
    freeaddrinfo(addresses);
    return status;
}

/* Adds a command of one to three arguments; trailing NULLs are left out. */
static void add_command(cel__redis_pipeline_t *pipeline, const char *name,
                        const char *first, const char *second)
{
    const char *argv[3] = {name, first, second};
    int argc = 1;
    if (second != NULL)
        argc = 3;
    else if (first != NULL)
        argc = 2;
    cel__redis_pipeline_add(pipeline, argc, argv, NULL);
}

/* Checks the replies to [AUTH] [SELECT] PING, naming the first failure.
 * The password never appears in the text. */
static int check_handshake(struct cel__redis *redis,
                           const cel__redis_config_t *config,
                           redisReply **replies, int count)
{
    bool auth = config->password != NULL || config->username != NULL;
    for (int i = 0; i < count; i++) {
        if (replies[i]->type != REDIS_REPLY_ERROR)
            continue;
        const char *what = "PING failed";
        if (auth && i == 0)
            what = "authentication failed";
        else if (config->db != 0 && i == count - 2)
            what = "SELECT failed";
        cel__set_error(redis->error, "Redis %s: %s", what, replies[i]->str);
        return CEL_EBACKEND;
    }
    return CEL_OK;
}

/* Sends [AUTH] [SELECT] PING in one round trip. A server older than
 * Redis 6 takes no user name, so like redis-py this retries AUTH with the
 * password alone when the server rejects the two-argument form. */
static int handshake(struct cel__redis *redis,
                     const cel__redis_config_t *config, double deadline,
                     bool with_username)
{
    char db[16];
    snprintf(db, sizeof db, "%d", config->db);
    cel__redis_pipeline_t pipeline = {0};
    if (with_username && config->username != NULL)
        add_command(&pipeline, "AUTH", config->username,
                    config->password ? config->password : "");
    else if (config->password != NULL)
        add_command(&pipeline, "AUTH", config->password, NULL);
    if (config->db != 0)
        add_command(&pipeline, "SELECT", db, NULL);
    add_command(&pipeline, "PING", NULL, NULL);

    redisReply **replies = NULL;
    int status = run_pipeline(redis, &pipeline, &replies, deadline);
    if (status == CEL_OK) {
        bool retry = with_username && config->username != NULL &&
                     config->password != NULL &&
                     replies[0]->type == REDIS_REPLY_ERROR &&
                     strstr(replies[0]->str, "wrong number of arguments");
        status = retry
                     ? handshake(redis, config, deadline, false)
                     : check_handshake(redis, config, replies, pipeline.count);
    }
    cel__redis_replies_free(replies, pipeline.count);
    cel__redis_pipeline_clear(&pipeline);
    return status;
}

int cel__redis_connect(const cel__redis_config_t *config,
                       double connect_timeout, double io_timeout,
                       cel__redis_t **out, char *error)
{
    *out = NULL;
    struct cel__redis *redis = calloc(1, sizeof *redis);
    if (redis == NULL) {
        cel__set_error(error, "out of memory");
        return CEL_ENOMEM;
    }
    redis->fd = -1;
    redis->io_timeout = io_timeout;
    redis->reader = redisReaderCreate();
    double deadline = cel__monotonic() + connect_timeout;
    int status =
        redis->reader ? open_socket(redis, config, deadline) : CEL_ENOMEM;
    if (status == CEL_OK && config->tls)
        status = tls_setup(redis, config);
    if (status == CEL_OK && config->tls)
        status = tls_handshake(redis, deadline);
    if (status == CEL_OK)
        status = handshake(redis, config, deadline, true);
    if (status != CEL_OK) {
        cel__set_error(error, "%s:%d: %s", config->host, config->port,
                       status == CEL_ENOMEM && redis->error[0] == '\0'
                           ? "out of memory"
                           : redis->error);
        redis->broken = true;
        cel__redis_free(redis);
        return status;
    }
    register_open(redis);
    *out = redis;
    return CEL_OK;
}

void cel__redis_free(cel__redis_t *redis)
{
    if (redis == NULL)
        return;
    unregister_open(redis);
    if (redis->ssl != NULL) {
        /* close_notify only on a healthy connection: on a broken one the
         * write could fail or wait. */
        if (!redis->broken && redis->fd >= 0)
            SSL_shutdown(redis->ssl);
        SSL_free(redis->ssl);
    }
    SSL_CTX_free(redis->ctx);
    if (redis->fd >= 0)
        close(redis->fd);
    if (redis->reader != NULL)
        redisReaderFree(redis->reader);
    free(redis);
}
