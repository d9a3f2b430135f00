/*
 * The prefork pool: task code runs in forked child processes, one task at a
 * time each, so a crash or a hard time limit costs one child and never the
 * worker. The main process keeps the broker connection. A busy child may
 * also hold one queued request, which it starts as soon as its task ends
 * (see claim_state_t).
 *
 * Parent and child talk over two Unix stream sockets, one for each
 * direction, in frames: a 4-byte
 * little-endian length of the rest, the 4-byte length of a JSON object, the
 * object, then a tail of raw bytes. The request goes down in binary as the
 * tail (see send_request), and the run's outcome comes back the same way
 * (see send_run), both with the object {}. The message headers stay in the
 * main process unless the task reads them. Then the child sends
 * {"fetch": "headers"} and the main process replies with a frame of the
 * headers.
 *
 * With one socket for both directions, the main process woke the idle
 * child each time it read a reply. Freeing the reply's buffer signals
 * "writable" on the child's socket, and a child blocked in read() wakes on
 * any event of that socket. A socket per direction avoids that wake-up.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"

typedef struct child {
    pid_t pid;               /* -1 while the slot has no process */
    int fd;                  /* the parent's end of the reply socket */
    int request_fd;          /* the parent's end of the request socket */
    cel__request_t *request; /* set while the child runs a task */
    /* Sent while the child runs `request`, to start when that ends. */
    cel__request_t *queued;
    uint64_t queued_claim;  /* the claim number sent with `queued` */
    uint64_t running_claim; /* the claim of `request`, 0 when unqueued */
    /* A withdrawn request may still wait unread in the child's socket.
     * The child's next reply clears it, because the child reads on then. */
    bool withdrawn_unread;
    double queued_hard;
    double hard;       /* seconds; 0 = none */
    double deadline;   /* monotonic; 0 = none */
    double respawn_at; /* monotonic; when a slot without a process
                          gets one again */
    char *buf;         /* bytes received, not yet a whole frame */
    size_t len;
    size_t cap;
} child_t;

typedef struct prefork_pool {
    cel__pool_t base;
    child_t *children;
    pid_t parent_pid;
    /* One claim word per slot, shared with the children (claim_state_t). */
    _Atomic uint64_t *claims;
    uint64_t last_claim;
    double last_loss; /* monotonic time a child last died */
    int loss_streak;  /* children lost less than a second apart */
} prefork_pool_t;

/*
 * A child may hold a queued request in its socket while it runs another,
 * so it goes from one task to the next without waiting for the main
 * process. The main process can still take a queued request back (for an
 * idle child, a revoke or a shutdown) until the child starts it. Each
 * queued request carries a claim number, and the slot's shared word
 * contains that number times 4 plus the state below. The child moves it from
 * CLAIM_QUEUED to CLAIM_STARTED, the main process to CLAIM_WITHDRAWN, both
 * with compare-and-swap, so exactly one of them wins. A child skips a
 * request it loses, without a reply. Claim number 0 means "run it": the
 * main process sends it only to an idle child and never takes it back.
 */
typedef enum claim_state {
    CLAIM_QUEUED = 1,
    CLAIM_STARTED = 2,
    CLAIM_WITHDRAWN = 3,
} claim_state_t;

static uint64_t claim_word(uint64_t claim, claim_state_t state)
{
    return claim * 4 + (uint64_t)state;
}

/* A queued request is written while the child runs a task and does not
 * read. Its frame must fit in the socket's buffer (about 208 KiB by
 * default on Linux) beside one withdrawn frame the child has not read yet.
 * A longer frame would block the main process in the write while the
 * child blocks writing its reply, so it waits for an idle child. */
#define QUEUED_FRAME_MAX ((size_t)64 * 1024)

/* Children that die in quick succession (a task that crashes each time it
 * is requeued) are replaced after a growing delay, up to this long. */
#define RESPAWN_DELAY_MAX 1.0

/* The main process sizes its receive buffer for a reply's whole frame at
 * once only up to this length; longer ones grow by doubling. */
#define FRAME_PRESIZE_MAX ((size_t)256 * 1024 * 1024)

/* ---- framing ------------------------------------------------------------ */

static void put_length(unsigned char head[4], size_t len)
{
    head[0] = (unsigned char)len;
    head[1] = (unsigned char)(len >> 8);
    head[2] = (unsigned char)(len >> 16);
    head[3] = (unsigned char)(len >> 24);
}

/* Sends a frame of the object of `count` members followed by the
 * `tail_count` parts of its tail (at most 4). */
static int send_frame(int fd, const cel__json_member_t *members, size_t count,
                      const struct iovec *tail, int tail_count)
{
    size_t tail_len = 0;
    for (int i = 0; i < tail_count; i++)
        tail_len += tail[i].iov_len;
    size_t len = 0;
    char *text = cel__json_dump_members(members, count, &len);
    if (text == NULL || len > UINT32_MAX - 4 - tail_len) {
        free(text);
        return -1;
    }
    unsigned char head[8];
    put_length(head, 4 + len + tail_len);
    put_length(head + 4, len);
    struct iovec parts[6] = {{head, sizeof head}, {text, len}};
    for (int i = 0; i < tail_count; i++)
        parts[2 + i] = tail[i];
    int status = cel__send_all(fd, parts, 2 + tail_count);
    free(text);
    return status;
}

static uint32_t get_length(const char *bytes)
{
    const unsigned char *b = (const unsigned char *)bytes;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
           (uint32_t)b[3] << 24;
}

/* Parses the `len` bytes after a frame's length: the object's length, the
 * object, the tail. Returns the object, or NULL for a bad frame. */
static json_t *parse_frame(const char *bytes, size_t len, const char **tail,
                           size_t *tail_len)
{
    *tail = NULL;
    *tail_len = 0;
    if (len < 4)
        return NULL;
    size_t object_len = get_length(bytes);
    if (object_len > len - 4)
        return NULL;
    json_t *object = NULL;
    cel__json_parse(bytes + 4, object_len, CEL__JSON_MAX_DEPTH, &object, NULL,
                    0);
    *tail = bytes + 4 + object_len;
    *tail_len = len - 4 - object_len;
    return object;
}

/* Bytes a child has read from its socket. The first `used` bytes are the
 * frame read last, kept until the next read so its tail stays valid. */
typedef struct frame_reader {
    char *buf;
    size_t len;
    size_t cap;
    size_t used;
} frame_reader_t;

/* Reads at least `want` bytes into the reader with as few reads as the
 * sender allows. Returns 0, or -1 on EOF, error or ENOMEM. */
static int fill_reader(int fd, frame_reader_t *reader, size_t want)
{
    if (reader->cap < want) {
        size_t cap = reader->cap ? reader->cap : 65536;
        while (cap < want)
            cap *= 2;
        char *grown = realloc(reader->buf, cap);
        if (grown == NULL)
            return -1;
        reader->buf = grown;
        reader->cap = cap;
    }
    while (reader->len < want) {
        ssize_t n =
            read(fd, reader->buf + reader->len, reader->cap - reader->len);
        if (n > 0)
            reader->len += (size_t)n;
        else if (!(n < 0 && errno == EINTR))
            return -1;
    }
    return 0;
}

/* Blocking read of one frame; NULL on EOF or a bad frame. The whole frame
 * usually arrives in one read. When `tail` is not NULL it points to the
 * frame's tail, valid until the next read_frame. */
static json_t *read_frame(int fd, frame_reader_t *reader, const char **tail,
                          size_t *tail_len)
{
    if (reader->used > 0) {
        memmove(reader->buf, reader->buf + reader->used,
                reader->len - reader->used);
        reader->len -= reader->used;
        reader->used = 0;
    }
    if (fill_reader(fd, reader, 4) != 0)
        return NULL;
    size_t len = get_length(reader->buf);
    if (fill_reader(fd, reader, 4 + len) != 0)
        return NULL;
    const char *rest;
    size_t rest_len;
    json_t *object = parse_frame(reader->buf + 4, len, &rest, &rest_len);
    if (tail != NULL) {
        *tail = rest;
        *tail_len = rest_len;
    }
    reader->used = 4 + len;
    return object;
}

/* ---- messages ----------------------------------------------------------- */

/* A request travels in binary as the tail of a frame whose object is {}.
 * First come nine texts, each a 4-byte length (NO_TEXT for NULL) and the
 * bytes. Then the retries (4 bytes), redelivered (1 byte) and the soft
 * limit follow, the limit as a double in memory form, since parent and
 * child are the same program. Last come args and kwargs as JSON texts, or
 * NO_TEXT and then the message body as received up to the end, when the
 * main process kept it (cel__request_t.body). Parsing a JSON object of the
 * same fields cost the child about 10000 instructions per task. */
#define NO_TEXT       UINT32_MAX
#define REQUEST_TEXTS 9

typedef struct field_writer {
    unsigned char *data;
    size_t len;
} field_writer_t;

static void put_u32(field_writer_t *w, uint32_t value)
{
    put_length(w->data + w->len, value);
    w->len += 4;
}

static void put_text(field_writer_t *w, const char *text)
{
    if (text == NULL) {
        put_u32(w, NO_TEXT);
        return;
    }
    size_t len = strlen(text);
    put_u32(w, (uint32_t)len);
    memcpy(w->data + w->len, text, len);
    w->len += len;
}

/* Sends a request to a child, without the headers. Returns 0, -1 when the
 * write failed, or 1 without writing when the frame would be longer than
 * `max_len` (0 for no limit). */
static int send_request(int fd, const cel__request_t *request, double soft,
                        uint64_t claim, size_t max_len)
{
    const cel__task_message_t *msg = &request->msg;
    const char *texts[REQUEST_TEXTS] = {
        msg->id,        msg->task,         msg->root_id,
        msg->parent_id, msg->group,        msg->eta,
        msg->expires,   request->exchange, request->routing_key,
    };
    size_t fixed = 4 + 1 + sizeof soft + sizeof claim + 4;
    for (int i = 0; i < REQUEST_TEXTS; i++) {
        size_t len = texts[i] ? strlen(texts[i]) : 0;
        if (len >= NO_TEXT)
            return -1;
        fixed += 4 + len;
    }
    size_t args_len = 0;
    size_t kwargs_len = 0;
    char *args = NULL;
    char *kwargs = NULL;
    unsigned char *fields = NULL;
    int status = -1;
    if (request->body == NULL) {
        args = cel__json_dump(msg->args ? msg->args : json_null(), &args_len);
        kwargs = cel__json_dump(msg->kwargs ? msg->kwargs : json_null(),
                                &kwargs_len);
        if (args == NULL || kwargs == NULL || args_len >= NO_TEXT ||
            kwargs_len > UINT32_MAX)
            goto out;
    }
    size_t variable = request->body ? request->body_len : args_len + kwargs_len;
    if (max_len > 0 && fixed + variable > max_len) {
        status = 1;
        goto out;
    }
    fields = malloc(fixed);
    if (fields == NULL)
        goto out;
    field_writer_t w = {fields, 0};
    for (int i = 0; i < REQUEST_TEXTS; i++)
        put_text(&w, texts[i]);
    put_u32(&w, (uint32_t)msg->retries);
    w.data[w.len++] = request->redelivered ? 1 : 0;
    memcpy(w.data + w.len, &soft, sizeof soft);
    w.len += sizeof soft;
    memcpy(w.data + w.len, &claim, sizeof claim);
    w.len += sizeof claim;
    if (request->body != NULL) {
        put_u32(&w, NO_TEXT);
        const struct iovec tail[2] = {
            {fields, w.len},
            {request->body, request->body_len},
        };
        status = send_frame(fd, NULL, 0, tail, 2);
    } else {
        put_u32(&w, (uint32_t)args_len);
        unsigned char kwargs_head[4];
        put_length(kwargs_head, kwargs_len);
        const struct iovec tail[4] = {
            {fields, w.len},
            {args, args_len},
            {kwargs_head, sizeof kwargs_head},
            {kwargs, kwargs_len},
        };
        status = send_frame(fd, NULL, 0, tail, 4);
    }
out:
    free(fields);
    free(args);
    free(kwargs);
    return status;
}

/* Reads the fields send_request or send_run wrote, in order. */
typedef struct field_reader {
    const unsigned char *pos;
    const unsigned char *end;
    bool failed;
} field_reader_t;

static uint32_t take_u32(field_reader_t *r)
{
    if (r->end - r->pos < 4) {
        r->failed = true;
        return 0;
    }
    uint32_t value = get_length((const char *)r->pos);
    r->pos += 4;
    return value;
}

static const unsigned char *take_bytes(field_reader_t *r, size_t len)
{
    if ((size_t)(r->end - r->pos) < len) {
        r->failed = true;
        return NULL;
    }
    const unsigned char *bytes = r->pos;
    r->pos += len;
    return bytes;
}

static char *take_text(field_reader_t *r)
{
    uint32_t len = take_u32(r);
    if (r->failed || len == NO_TEXT)
        return NULL;
    const unsigned char *bytes = take_bytes(r, len);
    char *text = bytes ? strndup((const char *)bytes, len) : NULL;
    if (bytes != NULL && text == NULL)
        r->failed = true;
    return text;
}

/* Parses a JSON text of `len` bytes of the request; NULL for JSON null. */
static json_t *take_json(field_reader_t *r, uint32_t len)
{
    const unsigned char *bytes = r->failed ? NULL : take_bytes(r, len);
    json_t *value = NULL;
    if (bytes == NULL ||
        cel__json_parse((const char *)bytes, len, CEL__JSON_MAX_DEPTH, &value,
                        NULL, 0) != CEL_OK) {
        r->failed = true;
        return NULL;
    }
    if (json_is_null(value)) {
        json_decref(value);
        return NULL;
    }
    return value;
}

/* Takes args and kwargs from the kept body, a v2 [args, kwargs, embed]
 * list that the main process has already decoded from the same bytes. */
static void take_body_arguments(field_reader_t *r, cel__task_message_t *msg)
{
    json_t *body = take_json(r, (uint32_t)(r->end - r->pos));
    if (json_is_array(body))
        cel__task_body_arguments(body, &msg->args, &msg->kwargs);
    else
        r->failed = true;
    json_decref(body);
}

/* Builds the child's copy of a request from the tail of its frame; NULL
 * when the frame is bad or the task is unknown. */
static cel__request_t *decode_request(cel_app_t *app, const char *bytes,
                                      size_t len, double *soft, uint64_t *claim)
{
    cel__request_t *request = calloc(1, sizeof *request);
    if (request == NULL)
        return NULL;
    cel__task_message_t *msg = &request->msg;
    msg->protocol = 2;
    msg->priority = -1;
    field_reader_t r = {(const unsigned char *)bytes,
                        (const unsigned char *)bytes + len, false};
    char **texts[REQUEST_TEXTS] = {
        &msg->id,        &msg->task,         &msg->root_id,
        &msg->parent_id, &msg->group,        &msg->eta,
        &msg->expires,   &request->exchange, &request->routing_key,
    };
    for (int i = 0; i < REQUEST_TEXTS; i++)
        *texts[i] = take_text(&r);
    msg->retries = (int)take_u32(&r);
    const unsigned char *redelivered = take_bytes(&r, 1);
    request->redelivered = redelivered != NULL && *redelivered != 0;
    const unsigned char *limit = take_bytes(&r, sizeof *soft);
    if (limit != NULL)
        memcpy(soft, limit, sizeof *soft);
    const unsigned char *claimed = take_bytes(&r, sizeof *claim);
    if (claimed != NULL)
        memcpy(claim, claimed, sizeof *claim);
    msg->headers = NULL; /* fetched when the task reads them */
    uint32_t args_len = take_u32(&r);
    if (args_len == NO_TEXT) {
        take_body_arguments(&r, msg);
    } else {
        msg->args = take_json(&r, args_len);
        msg->kwargs = take_json(&r, take_u32(&r));
    }
    request->task =
        !r.failed && msg->task ? cel__app_find_task(app, msg->task) : NULL;
    if (request->task == NULL) {
        cel__request_free(request);
        return NULL;
    }
    return request;
}

/* The outcome of a run travels in binary as the tail of a frame whose
 * object is {}: the kind (4 bytes), the countdown and the runtime as
 * doubles in memory form, the texts exc_type, exc_module and exc_message as
 * in a request, then the result's JSON text up to the end, so the main
 * process can pass it on without parsing it. Parsing a JSON object of these
 * fields took the main process about 5000 instructions per task. */
#define RUN_TEXTS 3

/* Sends the outcome of a run back to the parent. A result that JSON cannot
 * carry makes the run fail with EncodeError. */
static int send_run(int fd, const cel__run_t *run)
{
    size_t result_len = 0;
    char *result =
        cel__json_dump(run->result ? run->result : json_null(), &result_len);
    if (result == NULL && run->kind == CEL__RUN_SUCCESS) {
        cel__run_t failed = {
            .kind = CEL__RUN_FAILURE,
            .exc_type = "EncodeError",
            .exc_module = "kombu.exceptions",
            .exc_message = CEL__UNENCODABLE_RESULT,
            .runtime = run->runtime,
        };
        return send_run(fd, &failed);
    }
    if (result == NULL)
        return -1;
    const char *texts[RUN_TEXTS] = {run->exc_type, run->exc_module,
                                    run->exc_message};
    size_t fixed = 4 + sizeof run->countdown + sizeof run->runtime;
    for (int i = 0; i < RUN_TEXTS; i++) {
        size_t len = texts[i] ? strlen(texts[i]) : 0;
        if (len >= NO_TEXT) {
            free(result);
            return -1;
        }
        fixed += 4 + len;
    }
    unsigned char *fields = malloc(fixed);
    int status = -1;
    if (fields != NULL) {
        field_writer_t w = {fields, 0};
        put_u32(&w, (uint32_t)run->kind);
        memcpy(w.data + w.len, &run->countdown, sizeof run->countdown);
        w.len += sizeof run->countdown;
        memcpy(w.data + w.len, &run->runtime, sizeof run->runtime);
        w.len += sizeof run->runtime;
        for (int i = 0; i < RUN_TEXTS; i++)
            put_text(&w, texts[i]);
        const struct iovec tail[2] = {{fields, w.len}, {result, result_len}};
        status = send_frame(fd, NULL, 0, tail, 2);
    }
    free(fields);
    free(result);
    return status;
}

/* A result text at least this long stays in the receive buffer, which the
 * run takes over, instead of being copied out of it. */
#define RESULT_TAKEOVER_MIN 65536

/* Reads the outcome send_run wrote into `run`. Returns false for a reply
 * that is cut short. `block`, when not NULL, is the malloc'd buffer whose
 * data ends with `bytes`, and it has a byte of room after them. A long
 * result text then stays in it, and the run owns `block`. */
static bool decode_run(const char *bytes, size_t len, char *block,
                       cel__run_t *run)
{
    memset(run, 0, sizeof *run);
    field_reader_t r = {(const unsigned char *)bytes,
                        (const unsigned char *)bytes + len, false};
    uint32_t kind = take_u32(&r);
    const unsigned char *countdown = take_bytes(&r, sizeof run->countdown);
    const unsigned char *runtime = take_bytes(&r, sizeof run->runtime);
    run->exc_type = take_text(&r);
    run->exc_module = take_text(&r);
    run->exc_message = take_text(&r);
    if (r.failed) {
        cel__run_clear(run);
        return false;
    }
    run->kind = kind == CEL__RUN_FAILURE || kind == CEL__RUN_RETRY
                    ? (cel__run_kind_t)kind
                    : CEL__RUN_SUCCESS;
    memcpy(&run->countdown, countdown, sizeof run->countdown);
    memcpy(&run->runtime, runtime, sizeof run->runtime);
    /* The result is the rest, parsed only when a value is needed. */
    size_t result_len = (size_t)(r.end - r.pos);
    if (block != NULL && result_len >= RESULT_TAKEOVER_MIN) {
        run->result_block = block;
        run->result_text = (char *)r.pos;
        run->result_text[result_len] = '\0';
        run->result_text_len = result_len;
    } else if (result_len > 0 && (run->result_text = malloc(result_len + 1))) {
        memcpy(run->result_text, r.pos, result_len);
        run->result_text[result_len] = '\0';
        run->result_text_len = result_len;
    }
    return true;
}

/* ---- the child ---------------------------------------------------------- */

/* The child's ends of its two sockets and what it has read. */
static int child_request_fd = -1;
static int child_reply_fd = -1;
static frame_reader_t child_reader;

/* A request frame's tail that a child read while it waited for headers. A
 * queued request, or a withdrawn one, can come before the headers. */
typedef struct held_request {
    char *bytes;
    size_t len;
    struct held_request *next;
} held_request_t;

static held_request_t *held_head;
static held_request_t **held_tail = &held_head;

static void hold_request(const char *bytes, size_t len)
{
    held_request_t *held = malloc(sizeof *held);
    char *copy = malloc(len ? len : 1);
    if (held == NULL || copy == NULL)
        _exit(3); /* the parent reports the running task as lost */
    memcpy(copy, bytes, len);
    *held = (held_request_t){copy, len, NULL};
    *held_tail = held;
    held_tail = &held->next;
}

static held_request_t *take_held_request(void)
{
    held_request_t *held = held_head;
    if (held != NULL) {
        held_head = held->next;
        if (held_head == NULL)
            held_tail = &held_head;
    }
    return held;
}

/* Requests the headers of the running task from the main process. The
 * task gets an empty object when the reply has none, and the child exits
 * when the socket is closed. */
static json_t *fetch_headers(cel__request_t *request)
{
    (void)request;
    const cel__json_member_t ask[] = {{.key = "fetch", .text = "headers"}};
    if (send_frame(child_reply_fd, ask, 1, NULL, 0) != 0)
        _exit(3);
    json_t *reply;
    for (;;) {
        const char *tail = NULL;
        size_t tail_len = 0;
        reply = read_frame(child_request_fd, &child_reader, &tail, &tail_len);
        if (reply == NULL)
            _exit(3);
        if (json_object_get(reply, "headers") != NULL)
            break;
        hold_request(tail, tail_len);
        json_decref(reply);
    }
    json_t *headers = json_object_get(reply, "headers");
    headers = json_is_object(headers) ? json_incref(headers) : json_object();
    json_decref(reply);
    return headers;
}

static void child_failure(cel__run_t *run, const char *message)
{
    memset(run, 0, sizeof *run);
    run->kind = CEL__RUN_FAILURE;
    run->exc_type = strdup("RuntimeError");
    run->exc_module = strdup("builtins");
    run->exc_message = strdup(message);
}

/* True when the child may run a request sent with `claim`: an unqueued
 * one, or a queued one the main process has not taken back. */
static bool child_claims(prefork_pool_t *pool, int index, uint64_t claim)
{
    if (claim == 0)
        return true;
    uint64_t expected = claim_word(claim, CLAIM_QUEUED);
    return atomic_compare_exchange_strong(&pool->claims[index], &expected,
                                          claim_word(claim, CLAIM_STARTED));
}

static void child_main(prefork_pool_t *pool, int index, int request_fd,
                       int reply_fd)
{
    /* A warm shutdown lets running tasks finish even when the signal went
     * to every process of the worker, as systemd sends it. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGUSR1, SIG_IGN);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGQUIT, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != pool->parent_pid)
        _exit(0);
    /* A child woken by a request does not preempt the main process, which
     * goes on reading and flushing until it waits for input. */
    const struct sched_param batch = {.sched_priority = 0};
    sched_setscheduler(0, SCHED_BATCH, &batch);
    child_request_fd = request_fd;
    child_reply_fd = reply_fd;
    for (;;) {
        const char *job = NULL;
        size_t job_len = 0;
        held_request_t *held = take_held_request();
        if (held != NULL) {
            job = held->bytes;
            job_len = held->len;
        } else {
            json_t *object =
                read_frame(request_fd, &child_reader, &job, &job_len);
            if (object == NULL)
                _exit(0);
            json_decref(object);
        }
        double soft = 0;
        uint64_t claim = 0;
        cel__request_t *request =
            decode_request(pool->base.app, job, job_len, &soft, &claim);
        if (held != NULL) {
            free(held->bytes);
            free(held);
        }
        if (!child_claims(pool, index, claim)) {
            cel__request_free(request);
            continue;
        }
        if (request != NULL)
            request->fetch_headers = fetch_headers;
        cel__run_t run;
        if (request != NULL)
            cel__run_task(request, pool->base.hostname, soft, &run);
        else
            child_failure(&run, "the child process could not read the task");
        if (send_run(reply_fd, &run) != 0) {
            /* The parent treats a child without a reply as lost. */
            _exit(3);
        }
        cel__run_clear(&run);
        cel__request_free(request);
    }
}

/* ---- the parent --------------------------------------------------------- */

static void close_pair(int pair[2])
{
    close(pair[0]);
    close(pair[1]);
}

/* Starts the process of slot `index`. Index 0 of each socket pair is the
 * parent's end, index 1 the child's. */
static int spawn(prefork_pool_t *pool, int index)
{
    child_t *child = &pool->children[index];
    int request[2], reply[2];
    atomic_store(&pool->claims[index], 0);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, request) != 0)
        return CEL_ENOMEM;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, reply) != 0) {
        close_pair(request);
        return CEL_ENOMEM;
    }
    pid_t pid = fork();
    if (pid < 0) {
        close_pair(request);
        close_pair(reply);
        return CEL_ENOMEM;
    }
    if (pid == 0) {
        close(request[0]);
        close(reply[0]);
        for (int i = 0; i < pool->base.size; i++) {
            if (i == index || pool->children[i].fd < 0)
                continue;
            close(pool->children[i].fd);
            close(pool->children[i].request_fd);
        }
        int inherited = pool->base.inherited_fd
                            ? pool->base.inherited_fd(pool->base.owner)
                            : -1;
        if (inherited >= 0)
            close(inherited);
        child_main(pool, index, request[1], reply[1]);
        _exit(0);
    }
    close(request[1]);
    close(reply[1]);
    child->pid = pid;
    child->fd = reply[0];
    child->request_fd = request[0];
    child->len = 0;
    child->running_claim = 0;
    child->withdrawn_unread = false;
    return CEL_OK;
}

/* Waits for a child that closed its socket or was killed. */
static int reap(child_t *child)
{
    int status = 0;
    while (waitpid(child->pid, &status, 0) < 0 && errno == EINTR)
        ;
    close(child->fd);
    close(child->request_fd);
    child->fd = -1;
    child->request_fd = -1;
    child->pid = -1;
    child->len = 0;
    return status;
}

/* Replaces the process of a slot; a slot that cannot fork, or waits out
 * the respawn delay, counts as busy until a later call succeeds. */
static void replace(prefork_pool_t *pool, int index)
{
    double now = cel__monotonic();
    pool->loss_streak = now - pool->last_loss < 1.0 ? pool->loss_streak + 1 : 0;
    pool->last_loss = now;
    if (pool->loss_streak > 0) {
        int exponent = pool->loss_streak < 10 ? pool->loss_streak : 10;
        double delay = 0.01 * (double)(1 << exponent);
        if (delay > RESPAWN_DELAY_MAX)
            delay = RESPAWN_DELAY_MAX;
        if (pool->loss_streak == 1)
            cel__log(pool->base.app, CEL_LOG_WARNING,
                     "Pool processes exit in quick succession; each is "
                     "replaced after a delay of up to %gs",
                     RESPAWN_DELAY_MAX);
        pool->children[index].respawn_at = now + delay;
        pool->base.busy++;
        return;
    }
    if (spawn(pool, index) != CEL_OK) {
        cel__log(pool->base.app, CEL_LOG_ERROR,
                 "Cannot start a pool process: %s; trying again shortly",
                 strerror(errno));
        pool->children[index].respawn_at = now + 0.1;
        pool->base.busy++;
    }
}

/* Takes the queued request of `child` back if the child has not started
 * it; returns it or NULL. */
static cel__request_t *withdraw_from(prefork_pool_t *pool, child_t *child)
{
    cel__request_t *request = child->queued;
    if (request == NULL)
        return NULL;
    uint64_t expected = claim_word(child->queued_claim, CLAIM_QUEUED);
    if (!atomic_compare_exchange_strong(
            &pool->claims[child - pool->children], &expected,
            claim_word(child->queued_claim, CLAIM_WITHDRAWN)))
        return NULL;
    child->queued = NULL;
    child->withdrawn_unread = true;
    return request;
}

/* Gives the owner back the queued request of a child that has ended, so
 * another child runs it. A child killed at a hard limit may have replied
 * and started it already, before the main process read the reply. Then
 * it started and died with the child, and it ends as lost. */
static void give_back_queued(prefork_pool_t *pool, child_t *child)
{
    cel__request_t *request = withdraw_from(pool, child);
    if (request != NULL) {
        pool->base.give_back(pool->base.owner, request);
        return;
    }
    request = child->queued;
    if (request == NULL)
        return;
    child->queued = NULL;
    pool->base.promote(pool->base.owner, request);
    cel__log(pool->base.app, CEL_LOG_ERROR,
             "A pool process was killed just after it started task %s[%s]",
             request->msg.task, request->msg.id);
    cel__run_t run = {.kind = CEL__RUN_LOST, .signal = SIGKILL};
    pool->base.done(pool->base.owner, request, &run);
}

/* Makes the child's queued request its running one, unless the owner
 * takes it back in `promote`. */
static void promote_queued(prefork_pool_t *pool, child_t *child)
{
    cel__request_t *next = child->queued;
    if (next == NULL)
        return;
    pool->base.promote(pool->base.owner, next);
    if (child->queued != next)
        return;
    child->queued = NULL;
    child->request = next;
    child->running_claim = child->queued_claim;
    next->worker_pid = (int)child->pid;
    child->hard = child->queued_hard;
    child->deadline = child->hard > 0 ? cel__monotonic() + child->hard : 0;
    pool->base.busy++;
}

static void finish(prefork_pool_t *pool, child_t *child, cel__run_t *run)
{
    cel__request_t *request = child->request;
    child->request = NULL;
    child->deadline = 0;
    child->withdrawn_unread = false;
    pool->base.busy--;
    /* The child goes on to its queued request as soon as it has replied,
     * so that one starts now, and its ack goes out with this result. */
    if (child->pid > 0)
        promote_queued(pool, child);
    pool->base.done(pool->base.owner, request, run);
}

/* Handles a child whose socket reached EOF: it exited or crashed. */
static void on_child_exit(prefork_pool_t *pool, int index)
{
    child_t *child = &pool->children[index];
    pid_t pid = child->pid;
    int status = reap(child);
    give_back_queued(pool, child);
    if (child->request != NULL) {
        cel__run_t run = {.kind = CEL__RUN_LOST};
        if (WIFSIGNALED(status))
            run.signal = WTERMSIG(status);
        else
            run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        cel__log(pool->base.app, CEL_LOG_ERROR,
                 "Pool process %d exited while running task %s[%s]", (int)pid,
                 child->request->msg.task, child->request->msg.id);
        finish(pool, child, &run);
    } else {
        cel__log(pool->base.app, CEL_LOG_WARNING,
                 "Idle pool process %d exited; starting another", (int)pid);
    }
    replace(pool, index);
}

static void kill_at_limit(prefork_pool_t *pool, int index)
{
    child_t *child = &pool->children[index];
    kill(child->pid, SIGKILL);
    reap(child);
    give_back_queued(pool, child);
    cel__run_t run = {.kind = CEL__RUN_TIME_LIMIT, .limit = child->hard};
    finish(pool, child, &run);
    replace(pool, index);
}

/* Sends a child the headers of the task it runs. */
static void send_headers(prefork_pool_t *pool, child_t *child)
{
    json_t *headers = cel__request_headers(child->request);
    const cel__json_member_t members[] = {
        {.key = "headers", .value = headers, .raw = "{}"},
    };
    if (send_frame(child->request_fd, members, 1, NULL, 0) != 0)
        cel__log(pool->base.app, CEL_LOG_WARNING,
                 "Cannot send the headers of task %s to pool process %d: %s",
                 child->request->msg.id, (int)child->pid, strerror(errno));
    json_decref(headers);
}

/* Reads what a child sent and settles every whole reply in it; returns
 * false when the socket reached EOF. Replies that arrived before the EOF
 * still count, so a child that dies right after replying loses nothing. */
static bool receive(prefork_pool_t *pool, child_t *child)
{
    bool open = true;
    for (;;) {
        size_t want = child->len + 65536;
        if (child->len >= 4) {
            /* Room for the whole frame at once, so a long reply is not
             * copied again by each doubling. */
            size_t frame = 4 + (size_t)get_length(child->buf) + 1;
            if (frame > want && frame <= FRAME_PRESIZE_MAX)
                want = frame;
        }
        if (child->cap < want) {
            size_t cap = child->cap ? child->cap * 2 : 131072;
            if (cap < want)
                cap = want;
            char *grown = realloc(child->buf, cap);
            if (grown == NULL)
                return true; /* try again on the next pass */
            child->buf = grown;
            child->cap = cap;
        }
        size_t room = child->cap - child->len;
        ssize_t n =
            recv(child->fd, child->buf + child->len, room, MSG_DONTWAIT);
        if (n > 0) {
            child->len += (size_t)n;
            /* A short read took everything queued, so asking again would
             * only return EAGAIN: one syscall fewer per reply. */
            if ((size_t)n < room)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        open = false;
        break;
    }
    while (child->len >= 4) {
        uint32_t len = get_length(child->buf);
        if (child->len < 4 + (size_t)len)
            break;
        const char *tail;
        size_t tail_len;
        json_t *reply = parse_frame(child->buf + 4, len, &tail, &tail_len);
        bool fetch = json_object_get(reply, "fetch") != NULL;
        cel__run_t run;
        /* Only the last frame in the buffer can hand the buffer over. */
        char *block = child->len == 4 + (size_t)len ? child->buf : NULL;
        bool decoded = reply != NULL && !fetch && child->request != NULL &&
                       decode_run(tail, tail_len, block, &run);
        json_decref(reply);
        if (decoded && run.result_block != NULL) {
            child->buf = NULL;
            child->cap = 0;
            child->len = 0;
        } else {
            memmove(child->buf, child->buf + 4 + len, child->len - 4 - len);
            child->len -= 4 + (size_t)len;
        }
        if (child->request == NULL)
            continue;
        if (fetch) {
            send_headers(pool, child);
            continue;
        }
        if (!decoded)
            child_failure(&run, "the pool process sent an unreadable result");
        finish(pool, child, &run);
    }
    return open;
}

static int prefork_start(cel__pool_t *base)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    pool->parent_pid = getpid();
    for (int i = 0; i < base->size; i++) {
        int status = spawn(pool, i);
        if (status != CEL_OK)
            return status;
    }
    return CEL_OK;
}

static int prefork_submit(cel__pool_t *base, cel__request_t *request,
                          double soft, double hard)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++) {
        child_t *child = &pool->children[i];
        if (child->pid < 0 || child->request != NULL)
            continue;
        int status = send_request(child->request_fd, request, soft, 0, 0);
        child->request = request;
        child->running_claim = 0;
        request->worker_pid = (int)child->pid;
        child->hard = hard;
        child->deadline = hard > 0 ? cel__monotonic() + hard : 0;
        base->busy++;
        if (status != 0) {
            /* The child is gone or stuck: end it and report the loss. */
            kill(child->pid, SIGKILL);
            on_child_exit(pool, i);
        }
        return CEL_OK;
    }
    return CEL_EINVAL;
}

/* A child that runs a task, with nothing queued behind it. The slot has
 * one claim word, so a request queued earlier must have been claimed
 * before the word takes the next claim. */
static bool has_room(const prefork_pool_t *pool, int index)
{
    const child_t *child = &pool->children[index];
    return child->pid > 0 && child->request != NULL && child->queued == NULL &&
           !child->withdrawn_unread &&
           (child->running_claim == 0 ||
            atomic_load(&pool->claims[index]) ==
                claim_word(child->running_claim, CLAIM_STARTED));
}

static bool prefork_has_queue_room(const cel__pool_t *base)
{
    const prefork_pool_t *pool = (const prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++)
        if (has_room(pool, i))
            return true;
    return false;
}

static int prefork_queue(cel__pool_t *base, cel__request_t *request,
                         double soft, double hard)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++) {
        child_t *child = &pool->children[i];
        if (!has_room(pool, i))
            continue;
        uint64_t claim = ++pool->last_claim;
        uint64_t previous =
            atomic_exchange(&pool->claims[i], claim_word(claim, CLAIM_QUEUED));
        int status = send_request(child->request_fd, request, soft, claim,
                                  QUEUED_FRAME_MAX);
        if (status == 1) {
            /* Nothing was sent, so no child can change the word meanwhile,
             * and has_room still finds the running request's claim. */
            atomic_store(&pool->claims[i], previous);
            return CEL_ETOOBIG;
        }
        child->queued = request;
        child->queued_claim = claim;
        child->queued_hard = hard;
        if (status != 0) {
            /* The child is gone or stuck. End it and report the loss of
             * its running task, and the queued request goes back to the
             * owner. */
            kill(child->pid, SIGKILL);
            on_child_exit(pool, i);
        }
        return CEL_OK;
    }
    return CEL_EINVAL;
}

static cel__request_t *prefork_withdraw(cel__pool_t *base,
                                        const cel__request_t *request)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++) {
        child_t *child = &pool->children[i];
        if (child->queued == NULL ||
            (request != NULL && child->queued != request))
            continue;
        cel__request_t *taken = withdraw_from(pool, child);
        if (taken != NULL || request != NULL)
            return taken;
    }
    return NULL;
}

/* Lists up to `max` requests of the children: the queued ones when
 * `queued` is set, else the running ones. */
static int list_child_requests(const cel__pool_t *base, bool queued,
                               const cel__request_t **out, int max)
{
    const prefork_pool_t *pool = (const prefork_pool_t *)base;
    int count = 0;
    for (int i = 0; i < base->size && count < max; i++) {
        const child_t *child = &pool->children[i];
        const cel__request_t *request = queued ? child->queued : child->request;
        if (request != NULL)
            out[count++] = request;
    }
    return count;
}

static int prefork_list_queued(const cel__pool_t *base,
                               const cel__request_t **out, int max)
{
    return list_child_requests(base, true, out, max);
}

static int prefork_poll_fds(cel__pool_t *base, struct pollfd *fds, int max)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    int count = 0;
    for (int i = 0; i < base->size && count < max; i++) {
        if (pool->children[i].fd < 0)
            continue;
        fds[count].fd = pool->children[i].fd;
        fds[count].events = POLLIN;
        fds[count].revents = 0;
        count++;
    }
    return count;
}

/* True when poll reported input or an error on `fd`, or no poll results
 * were given. */
static bool has_input(int fd, const struct pollfd *fds, int count)
{
    if (fds == NULL)
        return true;
    for (int i = 0; i < count; i++)
        if (fds[i].fd == fd)
            return fds[i].revents != 0;
    return false;
}

static void prefork_process(cel__pool_t *base, const struct pollfd *fds,
                            int count)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    double now = cel__monotonic();
    for (int i = 0; i < base->size; i++) {
        child_t *child = &pool->children[i];
        if (child->pid < 0) {
            /* A slot whose fork failed or that waits out its delay. */
            if (now >= child->respawn_at && spawn(pool, i) == CEL_OK)
                base->busy--;
            continue;
        }
        if (has_input(child->fd, fds, count) && !receive(pool, child)) {
            on_child_exit(pool, i);
            continue;
        }
        if (child->request != NULL && child->deadline > 0 &&
            now >= child->deadline)
            kill_at_limit(pool, i);
    }
}

static double prefork_next_deadline(const cel__pool_t *base)
{
    const prefork_pool_t *pool = (const prefork_pool_t *)base;
    double next = 0;
    for (int i = 0; i < base->size; i++) {
        const child_t *child = &pool->children[i];
        double deadline = child->pid < 0 ? child->respawn_at : child->deadline;
        if ((child->pid < 0 || child->request != NULL) && deadline > 0 &&
            (next == 0 || deadline < next))
            next = deadline;
    }
    return next;
}

static bool prefork_is_running(const cel__pool_t *base, const char *task_id)
{
    const prefork_pool_t *pool = (const prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++) {
        const cel__request_t *request = pool->children[i].request;
        if (request != NULL && request->msg.id != NULL &&
            strcmp(request->msg.id, task_id) == 0)
            return true;
    }
    return false;
}

static int prefork_list_running(const cel__pool_t *base,
                                const cel__request_t **out, int max)
{
    return list_child_requests(base, false, out, max);
}

static bool prefork_terminate(cel__pool_t *base, const char *task_id,
                              int signum)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++) {
        child_t *child = &pool->children[i];
        if (child->request == NULL || child->request->msg.id == NULL ||
            strcmp(child->request->msg.id, task_id) != 0)
            continue;
        if (child->queued != NULL) {
            /* A child that started its queued request has finished this
             * task, and the signal would hit the other one. */
            cel__request_t *queued = withdraw_from(pool, child);
            if (queued == NULL)
                return false;
            pool->base.give_back(pool->base.owner, queued);
        }
        child->request->terminate_signal = signum;
        /* The child ignores SIGTERM and SIGINT for warm shutdowns, so
         * those would not stop it: it gets SIGKILL instead. */
        int sent = signum == SIGTERM || signum == SIGINT ? SIGKILL : signum;
        kill(child->pid, sent);
        return true;
    }
    return false;
}

static int prefork_list_pids(const cel__pool_t *base, int *out, int max)
{
    const prefork_pool_t *pool = (const prefork_pool_t *)base;
    int count = 0;
    for (int i = 0; i < base->size && count < max; i++)
        if (pool->children[i].pid > 0)
            out[count++] = (int)pool->children[i].pid;
    return count;
}

static void prefork_stop(cel__pool_t *base)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++) {
        child_t *child = &pool->children[i];
        if (child->pid < 0)
            continue;
        /* Idle children exit on EOF; a busy one is abandoned mid-task. */
        if (child->request != NULL)
            kill(child->pid, SIGKILL);
        shutdown(child->request_fd, SHUT_RDWR);
        reap(child);
        cel__request_free(withdraw_from(pool, child));
        if (child->request != NULL) {
            cel__request_free(child->request);
            child->request = NULL;
            base->busy--;
        }
    }
}

static void prefork_free(cel__pool_t *base)
{
    prefork_pool_t *pool = (prefork_pool_t *)base;
    for (int i = 0; i < base->size; i++)
        free(pool->children[i].buf);
    free(pool->children);
    munmap(pool->claims, (size_t)base->size * sizeof *pool->claims);
    free(pool);
}

static const cel__pool_ops_t PREFORK_OPS = {
    .start = prefork_start,
    .submit = prefork_submit,
    .poll_fds = prefork_poll_fds,
    .process = prefork_process,
    .next_deadline = prefork_next_deadline,
    .is_running = prefork_is_running,
    .list_running = prefork_list_running,
    .terminate = prefork_terminate,
    .queue = prefork_queue,
    .has_queue_room = prefork_has_queue_room,
    .withdraw = prefork_withdraw,
    .list_queued = prefork_list_queued,
    .list_pids = prefork_list_pids,
    .stop = prefork_stop,
    .free = prefork_free,
};

cel__pool_t *cel__pool_prefork_new(int size)
{
    prefork_pool_t *pool = calloc(1, sizeof *pool);
    if (pool == NULL)
        return NULL;
    pool->children = calloc((size_t)size, sizeof *pool->children);
    /* Zeroed, and shared with every child forked later. */
    void *claims =
        mmap(NULL, (size_t)size * sizeof *pool->claims, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pool->children == NULL || claims == MAP_FAILED) {
        if (claims != MAP_FAILED)
            munmap(claims, (size_t)size * sizeof *pool->claims);
        free(pool->children);
        free(pool);
        return NULL;
    }
    pool->claims = claims;
    for (int i = 0; i < size; i++) {
        pool->children[i].pid = -1;
        pool->children[i].fd = -1;
        pool->children[i].request_fd = -1;
    }
    pool->base.ops = &PREFORK_OPS;
    pool->base.name = "prefork";
    pool->base.enforces_hard_limit = true;
    pool->base.takes_body = true;
    pool->base.size = size;
    return &pool->base;
}
