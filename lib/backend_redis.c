/* The redis:// result backend, as Celery 5.2's RedisBackend writes it: the
 * meta of each task state under celery-task-meta-<id>, published on the
 * channel of the same name, and the chord counters under
 * celery-taskset-meta-<gid>.j/.t/.s.
 *
 * Every write goes through the worker's ordered pending list, so results
 * and chord parts reach Redis in the order the tasks ended, also across an
 * outage: while Redis is unreachable they wait there, and the main loop
 * reconnects with a backoff and writes them in slices. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redis.h"
#include "worker_internal.h"

#define TASK_KEY_PREFIX  "celery-task-meta-"
#define GROUP_KEY_PREFIX "celery-taskset-meta-"
/* Redis refuses strings over 512 MiB, and so does Celery before sending. */
#define MAX_VALUE_SIZE ((size_t)512 * 1024 * 1024)
/* Results written per pipeline, and per main-loop pass. */
#define BATCH_MAX         256
#define SLICE_MAX         1024
#define RETRY_FIRST_DELAY 0.1
#define RETRY_MAX_DELAY   5.0

struct cel__redis_backend {
    cel__redis_config_t config;
    cel__redis_t *connection; /* NULL while disconnected */
    double connect_timeout;   /* seconds */
    double io_timeout;        /* seconds per read or write */
    bool down;                /* unreachable, and the WARNING was logged */
    double retry_delay;       /* seconds; doubles up to RETRY_MAX_DELAY */
    double next_attempt;      /* monotonic time of the next connect */
    bool flushing;            /* guards against re-entry from a callback */
    size_t recovered;         /* kept writes done since the outage began */
    char where[300];          /* rediss://host:port/db, for log lines */
    char last_error[CEL__ERROR_LEN];
};

/* ---- connection state ---------------------------------------------------- */

static int result_expires(const cel_worker_t *worker)
{
    return worker->app->settings.result_expires;
}

static void mark_down(cel_worker_t *worker, const char *reason)
{
    struct cel__redis_backend *backend = worker->redis;
    /* `reason` may point into the connection freed below. */
    cel__set_error(backend->last_error, "%s", reason);
    cel__redis_free(backend->connection);
    backend->connection = NULL;
    if (!backend->down)
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot store results in the Redis result backend at %s: "
                 "%s. They are kept in memory, in order, and written when it "
                 "answers again",
                 backend->where, backend->last_error);
    backend->down = true;
    backend->recovered = 0;
    backend->retry_delay = RETRY_FIRST_DELAY;
    backend->next_attempt = cel__monotonic() + backend->retry_delay;
}

/* Connects; on failure schedules the next attempt with a doubled delay. */
static bool try_connect(cel_worker_t *worker)
{
    struct cel__redis_backend *backend = worker->redis;
    char error[CEL__ERROR_LEN];
    int status =
        cel__redis_connect(&backend->config, backend->connect_timeout,
                           backend->io_timeout, &backend->connection, error);
    if (status == CEL_OK) {
        backend->retry_delay = RETRY_FIRST_DELAY;
        return true;
    }
    if (!backend->down) {
        mark_down(worker, error);
        return false;
    }
    backend->retry_delay = fmin(backend->retry_delay * 2, RETRY_MAX_DELAY);
    backend->next_attempt = cel__monotonic() + backend->retry_delay;
    cel__log(worker->app, CEL_LOG_DEBUG,
             "Redis result backend still not answering (%s); next attempt "
             "in %.1f s",
             error, backend->retry_delay);
    return false;
}

/* Runs a pipeline; a connection failure marks Redis down. */
static int run(cel_worker_t *worker, const cel__redis_pipeline_t *pipeline,
               redisReply ***replies)
{
    struct cel__redis_backend *backend = worker->redis;
    if (backend->connection == NULL)
        return CEL_EBACKEND;
    int status =
        cel__redis_pipeline_run(backend->connection, pipeline, replies);
    if (status != CEL_OK)
        mark_down(worker, cel__redis_error(backend->connection));
    return status;
}

static void add_args(cel__redis_pipeline_t *pipeline, int argc,
                     const char **argv)
{
    cel__redis_pipeline_add(pipeline, argc, argv, NULL);
}

/* Adds SETEX key <result_expires> value, or SET when it is 0. */
static void add_set(cel__redis_pipeline_t *pipeline, int expires,
                    const char *key, const char *value)
{
    char seconds[16];
    snprintf(seconds, sizeof seconds, "%d", expires);
    if (expires > 0)
        add_args(pipeline, 4, (const char *[]){"SETEX", key, seconds, value});
    else
        add_args(pipeline, 3, (const char *[]){"SET", key, value});
}

static char *key_for(const char *prefix, const char *id, const char *suffix)
{
    char *key = NULL;
    if (asprintf(&key, "%s%s%s", prefix, id, suffix) < 0)
        return NULL;
    return key;
}

/* ---- results ------------------------------------------------------------- */

/* Whether a stored meta has status SUCCESS, which Celery never overwrites
 * so that a lost or duplicated run cannot replace a result. */
static bool stored_success(const redisReply *reply)
{
    if (reply->type != REDIS_REPLY_STRING)
        return false;
    json_t *meta = json_loadb(reply->str, reply->len, 0, NULL);
    const char *status = json_string_value(json_object_get(meta, "status"));
    bool success = status != NULL && strcmp(status, "SUCCESS") == 0;
    json_decref(meta);
    return success;
}

/* Collects the run of result items at the head of the list: at most
 * BATCH_MAX, and no task twice, because the GETs of a batch all return
 * before any of its writes is sent. Returns the count. */
static int collect_batch(const cel_worker_t *worker,
                         cel__pending_result_t **batch)
{
    int count = 0;
    for (cel__pending_result_t *item = worker->pending_head;
         item != NULL && item->kind == CEL__PENDING_REDIS_RESULT &&
         count < BATCH_MAX;
         item = item->next) {
        for (int i = 0; i < count; i++)
            if (strcmp(batch[i]->task_id, item->task_id) == 0)
                return count;
        batch[count++] = item;
    }
    return count;
}

/* Logs an error reply to a result write. The result is dropped, as
 * Celery drops a result whose write Redis refuses; only connection
 * failures are retried. */
static void log_refused(cel_worker_t *worker, const char *what,
                        const char *task_id, const redisReply *reply)
{
    cel__log(worker->app, CEL_LOG_ERROR,
             "Redis refused the %s of task %s, which is dropped: %s", what,
             task_id,
             reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                       : "unexpected reply");
}

/* Checks the replies of one MULTI, write..., EXEC block starting at
 * replies[first]: EXEC must return an array without error entries. */
static const redisReply *block_error(redisReply **replies, int first,
                                     int commands)
{
    for (int i = first; i < first + commands + 1; i++)
        if (replies[i]->type == REDIS_REPLY_ERROR)
            return replies[i];
    const redisReply *exec = replies[first + commands + 1];
    if (exec->type == REDIS_REPLY_ERROR)
        return exec;
    if (exec->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i < exec->elements; i++)
        if (exec->element[i]->type == REDIS_REPLY_ERROR)
            return exec->element[i];
    return NULL;
}

/* Writes the metas of `batch` in two round trips: every GET, then a
 * MULTI, SETEX, PUBLISH, EXEC block for each task without a stored
 * SUCCESS. Returns CEL_OK (the items are done) or a connection failure. */
static int write_batch(cel_worker_t *worker, cel__pending_result_t **batch,
                       int count)
{
    cel__redis_pipeline_t gets = {0};
    cel__redis_pipeline_t writes = {0};
    redisReply **current = NULL;
    redisReply **written = NULL;
    char **keys = calloc((size_t)count, sizeof *keys);
    bool *skip = calloc((size_t)count, sizeof *skip);
    int status = keys && skip ? CEL_OK : CEL_ENOMEM;
    for (int i = 0; i < count && status == CEL_OK; i++) {
        keys[i] = key_for(TASK_KEY_PREFIX, batch[i]->task_id, "");
        if (keys[i] == NULL)
            status = CEL_ENOMEM;
        else
            add_args(&gets, 2, (const char *[]){"GET", keys[i]});
    }
    if (status == CEL_OK)
        status = run(worker, &gets, &current);
    for (int i = 0; i < count && status == CEL_OK; i++) {
        skip[i] = stored_success(current[i]);
        if (skip[i]) {
            cel__log(worker->app, CEL_LOG_DEBUG,
                     "Not storing a new state of task %s: its SUCCESS is "
                     "stored already",
                     batch[i]->task_id);
            continue;
        }
        const char *body = batch[i]->body;
        add_args(&writes, 1, (const char *[]){"MULTI"});
        add_set(&writes, result_expires(worker), keys[i], body);
        add_args(&writes, 3, (const char *[]){"PUBLISH", keys[i], body});
        add_args(&writes, 1, (const char *[]){"EXEC"});
    }
    if (status == CEL_OK && writes.count > 0)
        status = run(worker, &writes, &written);
    for (int i = 0, block = 0; i < count && written != NULL; i++) {
        if (skip[i])
            continue;
        const redisReply *error = block_error(written, block * 4, 2);
        if (error != NULL)
            log_refused(worker, "result", batch[i]->task_id, error);
        block++;
    }
    if (status == CEL_ENOMEM)
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Out of memory writing results to Redis; they stay kept");
    cel__redis_replies_free(current, gets.count);
    cel__redis_replies_free(written, writes.count);
    cel__redis_pipeline_clear(&gets);
    cel__redis_pipeline_clear(&writes);
    for (int i = 0; keys != NULL && i < count; i++)
        free(keys[i]);
    free(keys);
    free(skip);
    return status;
}

/* ---- chord parts --------------------------------------------------------- */

typedef struct chord_keys {
    char *j; /* sorted set of [1, id, state, result] entries */
    char *t; /* header members added later (add_to_chord) */
    char *s; /* header size, set by the client or worker applying the chord */
} chord_keys_t;

static int chord_keys_init(chord_keys_t *keys, const char *group_id)
{
    keys->j = key_for(GROUP_KEY_PREFIX, group_id, ".j");
    keys->t = key_for(GROUP_KEY_PREFIX, group_id, ".t");
    keys->s = key_for(GROUP_KEY_PREFIX, group_id, ".s");
    return keys->j && keys->t && keys->s ? CEL_OK : CEL_ENOMEM;
}

static void chord_keys_clear(chord_keys_t *keys)
{
    free(keys->j);
    free(keys->t);
    free(keys->s);
}

/* Parses a counter key's value as Python's int() does; false when it is
 * not a whole number. */
static bool reply_to_count(const redisReply *reply, long long *out)
{
    if (reply->type == REDIS_REPLY_NIL) {
        *out = 0;
        return true;
    }
    if (reply->type == REDIS_REPLY_INTEGER) {
        *out = reply->integer;
        return true;
    }
    if (reply->type != REDIS_REPLY_STRING)
        return false;
    char *end;
    *out = strtoll(reply->str, &end, 10);
    while (*end == ' ' || *end == '\n' || *end == '\t')
        end++;
    return end != reply->str && *end == '\0';
}

/* Decodes one .j member; one that is not JSON is logged and left out. */
static void append_entry(cel_worker_t *worker, json_t *entries,
                         const redisReply *member, const char *group_id)
{
    json_t *entry = member->type == REDIS_REPLY_STRING
                        ? json_loadb(member->str, member->len, 0, NULL)
                        : NULL;
    if (entry == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Leaving out a chord result of group %s that is not JSON",
                 group_id);
        return;
    }
    json_array_append_new(entries, entry);
}

/* Reads and deletes the entries of a complete chord in one MULTI/EXEC.
 * On success *entries is a new array of the decoded entries. */
static int take_entries(cel_worker_t *worker, const chord_keys_t *keys,
                        const char *group_id, json_t **entries)
{
    cel__redis_pipeline_t pipeline = {0};
    redisReply **replies = NULL;
    add_args(&pipeline, 1, (const char *[]){"MULTI"});
    add_args(&pipeline, 4, (const char *[]){"ZRANGE", keys->j, "0", "-1"});
    add_args(&pipeline, 4, (const char *[]){"DEL", keys->j, keys->t, keys->s});
    add_args(&pipeline, 1, (const char *[]){"EXEC"});
    int status = run(worker, &pipeline, &replies);
    *entries = NULL;
    if (status == CEL_OK) {
        const redisReply *error = block_error(replies, 0, 2);
        const redisReply *exec = replies[3];
        if (error != NULL || exec->type != REDIS_REPLY_ARRAY) {
            log_refused(worker, "chord result read", group_id, error);
        } else {
            const redisReply *members = exec->element[0];
            *entries = json_array();
            for (size_t i = 0; *entries && i < members->elements; i++)
                append_entry(worker, *entries, members->element[i], group_id);
        }
    }
    cel__redis_replies_free(replies, pipeline.count);
    cel__redis_pipeline_clear(&pipeline);
    return status;
}

/* Adds the part and reads the counters. Sets *complete when this part
 * was the last one. */
static int add_part(cel_worker_t *worker, const cel__pending_result_t *item,
                    const chord_keys_t *keys, bool *complete)
{
    char score[16] = "+inf";
    if (item->group_index >= 0)
        snprintf(score, sizeof score, "%d", item->group_index);
    char seconds[16];
    int expires = result_expires(worker);
    snprintf(seconds, sizeof seconds, "%d", expires);

    cel__redis_pipeline_t pipeline = {0};
    add_args(&pipeline, 1, (const char *[]){"MULTI"});
    add_args(&pipeline, 4,
             (const char *[]){"ZADD", keys->j, score, item->body});
    add_args(&pipeline, 4, (const char *[]){"ZCOUNT", keys->j, "-inf", "+inf"});
    add_args(&pipeline, 2, (const char *[]){"GET", keys->t});
    add_args(&pipeline, 2, (const char *[]){"GET", keys->s});
    int commands = 4;
    if (expires > 0) {
        const char *chord_keys[] = {keys->j, keys->t, keys->s};
        for (int i = 0; i < 3; i++)
            add_args(&pipeline, 3,
                     (const char *[]){"EXPIRE", chord_keys[i], seconds});
        commands += 3;
    }
    add_args(&pipeline, 1, (const char *[]){"EXEC"});

    redisReply **replies = NULL;
    int status = run(worker, &pipeline, &replies);
    *complete = false;
    if (status == CEL_OK) {
        const redisReply *error = block_error(replies, 0, commands);
        const redisReply *exec = replies[commands + 1];
        long long ready = 0, extra = 0, size = 0;
        if (error != NULL || exec->type != REDIS_REPLY_ARRAY ||
            exec->elements < 4 || !reply_to_count(exec->element[1], &ready) ||
            !reply_to_count(exec->element[2], &extra) ||
            !reply_to_count(exec->element[3], &size)) {
            log_refused(worker, "chord part", item->task_id, error);
        } else {
            /* Without .s the chord size is not set yet, so nothing is due. */
            *complete = exec->element[3]->type != REDIS_REPLY_NIL &&
                        ready == size + extra;
        }
    }
    cel__redis_replies_free(replies, pipeline.count);
    cel__redis_pipeline_clear(&pipeline);
    return status;
}

/* Handles the chord part at the head of the list. The item is popped
 * before cel__chord_complete runs, so a completion is never replayed.
 * NOTE: when the connection drops after the entries were deleted but
 * before the reply arrived, the replayed part finds no .s and the chord
 * body is not sent. */
static int write_chord_part(cel_worker_t *worker)
{
    cel__pending_result_t *item = worker->pending_head;
    chord_keys_t keys = {0};
    bool complete = false;
    json_t *entries = NULL;
    int status = chord_keys_init(&keys, item->group_id);
    if (status == CEL_OK)
        status = add_part(worker, item, &keys, &complete);
    if (status == CEL_OK && complete)
        status = take_entries(worker, &keys, item->group_id, &entries);
    chord_keys_clear(&keys);
    if (status == CEL_ENOMEM)
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Out of memory writing the chord part of task %s; it stays "
                 "kept",
                 item->task_id);
    if (status != CEL_OK)
        return status;
    cel__pending_pop(worker);
    if (entries != NULL)
        cel__chord_complete(worker, item->group_id, item->chord, entries);
    json_decref(entries);
    cel__pending_free(item);
    return CEL_OK;
}

/* ---- the pending list ---------------------------------------------------- */

/* Writes up to `limit` kept items in order, stopping at a connection
 * failure. Returns the number written. */
static size_t flush(cel_worker_t *worker, size_t limit)
{
    struct cel__redis_backend *backend = worker->redis;
    if (backend->flushing)
        return 0;
    backend->flushing = true;
    size_t written = 0;
    cel__pending_result_t *batch[BATCH_MAX];
    while (worker->pending_head != NULL && backend->connection != NULL &&
           written < limit) {
        if (worker->pending_head->kind == CEL__PENDING_CHORD_PART) {
            if (write_chord_part(worker) != CEL_OK)
                break;
            written++;
            continue;
        }
        int count = collect_batch(worker, batch);
        if (count == 0 || write_batch(worker, batch, count) != CEL_OK)
            break;
        for (int i = 0; i < count; i++)
            cel__pending_free(cel__pending_pop(worker));
        written += (size_t)count;
    }
    backend->flushing = false;
    return written;
}

/* Logs the recovery once everything kept has been written. */
static void note_recovery(cel_worker_t *worker, size_t written)
{
    struct cel__redis_backend *backend = worker->redis;
    if (!backend->down)
        return;
    backend->recovered += written;
    if (backend->connection == NULL || worker->pending_head != NULL)
        return;
    cel__log(worker->app, CEL_LOG_INFO,
             "The Redis result backend at %s answers again; wrote the %zu "
             "results kept meanwhile",
             backend->where, backend->recovered);
    backend->down = false;
    backend->recovered = 0;
}

/* Appends an item and writes what can be written now. */
static void submit(cel_worker_t *worker, cel__pending_result_t *item)
{
    cel__pending_keep(worker, item);
    struct cel__redis_backend *backend = worker->redis;
    if (backend->connection == NULL && !backend->down)
        try_connect(worker);
    if (backend->connection != NULL && !backend->flushing)
        note_recovery(worker, flush(worker, SLICE_MAX));
}

int cel__redis_store(cel_worker_t *worker, const cel__task_message_t *msg,
                     const char *status, json_t *result, const char *traceback,
                     json_t *children)
{
    cel__result_meta_t meta = {
        .task_id = msg->id,
        .status = status,
        .result = result,
        .traceback = traceback,
        .children = children,
        .group_id = msg->group,
        .parent_id = msg->parent_id,
        .date_done = cel__now(),
    };
    cel__pending_result_t *item = calloc(1, sizeof *item);
    if (item != NULL) {
        item->kind = CEL__PENDING_REDIS_RESULT;
        item->task_id = strdup(msg->id);
        item->body = cel__result_encode_meta(&meta);
    }
    if (item == NULL || item->task_id == NULL || item->body == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot encode the %s result of task %s as JSON: it has a "
                 "string that is not UTF-8, nests too deeply, or memory ran "
                 "out",
                 status, msg->id);
        if (item != NULL)
            cel__pending_free(item);
        return CEL_EINVAL;
    }
    if (strlen(item->body) > MAX_VALUE_SIZE) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Not storing the %s result of task %s: its %zu bytes exceed "
                 "the 512 MiB Redis allows for a value",
                 status, msg->id, strlen(item->body));
        cel__pending_free(item);
        return CEL_OK;
    }
    submit(worker, item);
    return CEL_OK;
}

/* ---- chords -------------------------------------------------------------- */

static bool check_chord_backend(cel_worker_t *worker, const char *what,
                                const char *group_id)
{
    if (worker->backend == CEL__BACKEND_REDIS)
        return true;
    cel__log(worker->app, CEL_LOG_ERROR,
             "Cannot %s of chord %s: chords need the Redis result backend "
             "(result_backend = redis://...)",
             what, group_id ? group_id : "?");
    return false;
}

/* Runs Celery's chord part-return pipeline for a header member that just
 * finished, in one MULTI/EXEC: ZADD celery-taskset-meta-<gid>.j
 * <group_index, or +inf when it is -1> <[1, task_id, state, result] as
 * json.dumps writes it>, ZCOUNT .j, GET .t, GET .s, and EXPIRE .j .t .s to
 * result_expires when it is above 0. When .s is set and the count equals
 * int(.s) + int(.t or 0), a second MULTI/EXEC reads the entries and
 * deletes .j .t .s, then cel__chord_complete gets the decoded entries in
 * score order. `result` (the exception dict for FAILURE) and `chord` (the
 * body signature) are borrowed. While Redis is unreachable the part waits
 * in the pending list with the results and is replayed in order,
 * completion included. */
void cel__chord_part_return(cel_worker_t *worker, const char *group_id,
                            int group_index, const char *task_id,
                            const char *state, json_t *result, json_t *chord)
{
    if (!check_chord_backend(worker, "count a header result", group_id))
        return;
    if (group_id == NULL || task_id == NULL || state == NULL)
        return;
    cel__pending_result_t *item = calloc(1, sizeof *item);
    if (item != NULL) {
        item->kind = CEL__PENDING_CHORD_PART;
        item->task_id = strdup(task_id);
        item->group_id = strdup(group_id);
        item->group_index = group_index < 0 ? -1 : group_index;
        item->body = cel__chord_entry_encode(task_id, state, result);
        item->chord = json_incref(chord);
    }
    if (item == NULL || item->task_id == NULL || item->group_id == NULL ||
        item->body == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot count task %s in chord %s: out of memory", task_id,
                 group_id);
        if (item != NULL)
            cel__pending_free(item);
        return;
    }
    submit(worker, item);
}

/* SETEX celery-taskset-meta-<gid>.s <result_expires> <size> (SET when
 * result_expires is 0) and PUBLISH, as Celery's set_chord_size does.
 * Returns CEL_OK once Redis stored it, or CEL_EBACKEND (logged) when Redis
 * is unreachable, replies with an error, or is not the backend. Nothing
 * is kept for later, so the caller can fail the chord at once. */
int cel__chord_set_size(cel_worker_t *worker, const char *group_id, size_t size)
{
    if (!check_chord_backend(worker, "set the size", group_id))
        return CEL_EBACKEND;
    struct cel__redis_backend *backend = worker->redis;
    if (backend->connection == NULL &&
        cel__monotonic() >= backend->next_attempt)
        try_connect(worker);
    if (backend->connection == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot set the size of chord %s: the Redis result backend "
                 "at %s is unreachable",
                 group_id, backend->where);
        return CEL_EBACKEND;
    }
    char *key = key_for(GROUP_KEY_PREFIX, group_id, ".s");
    char value[32];
    snprintf(value, sizeof value, "%zu", size);
    cel__redis_pipeline_t pipeline = {0};
    redisReply **replies = NULL;
    int status = key ? CEL_OK : CEL_ENOMEM;
    if (status == CEL_OK) {
        add_args(&pipeline, 1, (const char *[]){"MULTI"});
        add_set(&pipeline, result_expires(worker), key, value);
        add_args(&pipeline, 3, (const char *[]){"PUBLISH", key, value});
        add_args(&pipeline, 1, (const char *[]){"EXEC"});
        status = run(worker, &pipeline, &replies);
    }
    if (status == CEL_OK && block_error(replies, 0, 2) != NULL) {
        log_refused(worker, "chord size", group_id, block_error(replies, 0, 2));
        status = CEL_EBACKEND;
    } else if (status != CEL_OK) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot set the size of chord %s: %s", group_id,
                 status == CEL_ENOMEM ? "out of memory" : backend->last_error);
    }
    cel__redis_replies_free(replies, pipeline.count);
    cel__redis_pipeline_clear(&pipeline);
    free(key);
    return status == CEL_OK ? CEL_OK : CEL_EBACKEND;
}

/* ---- STARTED --------------------------------------------------------------
 */

void cel__store_started(cel_worker_t *worker, const cel__request_t *request)
{
    const cel__settings_t *settings = &worker->app->settings;
    const cel_task_t *task = request->task;
    bool ignored = settings->task_ignore_result;
    if (task != NULL && task->ignore_result >= 0)
        ignored = task->ignore_result;
    /* Celery tracks a start only when the task stores results at all. */
    if (!settings->task_track_started || ignored)
        return;
    int pid = request->worker_pid ? request->worker_pid : (int)getpid();
    json_t *result =
        json_pack("{s:i, s:s}", "pid", pid, "hostname", worker->nodename);
    if (result == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot store STARTED for task %s: out of memory",
                 request->msg.id);
        return;
    }
    cel__store_result(worker, &request->msg, "STARTED", result, NULL, NULL);
    json_decref(result);
}

/* ---- the main loop's part -------------------------------------------------
 */

static void describe_location(struct cel__redis_backend *backend)
{
    const cel__redis_config_t *config = &backend->config;
    bool ipv6 = strchr(config->host, ':') != NULL;
    snprintf(backend->where, sizeof backend->where, "%s%s%s%s:%d/%d",
             config->tls ? "rediss://" : "redis://", ipv6 ? "[" : "",
             config->host, ipv6 ? "]" : "", config->port, config->db);
}

static void warn_insecure_tls(cel_worker_t *worker,
                              const cel__redis_config_t *config)
{
    if (!config->tls || config->cert_reqs == CEL__REDIS_CERT_REQUIRED)
        return;
    cel__log(worker->app, CEL_LOG_WARNING,
             "ssl_cert_reqs=%s for the Redis result backend: %s",
             config->cert_reqs == CEL__REDIS_CERT_NONE ? "none" : "optional",
             config->cert_reqs == CEL__REDIS_CERT_NONE
                 ? "the server certificate is not verified, which leaves "
                   "the connection open to man-in-the-middle attacks"
                 : "for a client this verifies the server as required does");
}

int cel__redis_backend_open(cel_worker_t *worker)
{
    const cel__settings_t *settings = &worker->app->settings;
    struct cel__redis_backend *backend = calloc(1, sizeof *backend);
    if (backend == NULL)
        return CEL_ENOMEM;
    int status = cel__redis_url_parse(settings->result_backend,
                                      &backend->config, worker->last_error);
    if (status != CEL_OK) {
        free(backend);
        return status;
    }
    const cel__redis_config_t *config = &backend->config;
    backend->connect_timeout = config->socket_connect_timeout > 0
                                   ? config->socket_connect_timeout
                                   : settings->redis_socket_connect_timeout;
    backend->io_timeout = config->socket_timeout > 0
                              ? config->socket_timeout
                              : settings->redis_socket_timeout;
    backend->retry_delay = RETRY_FIRST_DELAY;
    describe_location(backend);
    worker->redis = backend;
    warn_insecure_tls(worker, config);
    if (try_connect(worker))
        cel__log(worker->app, CEL_LOG_INFO,
                 "Connected to the Redis result backend at %s", backend->where);
    return CEL_OK;
}

void cel__redis_backend_free(cel_worker_t *worker)
{
    struct cel__redis_backend *backend = worker->redis;
    if (backend == NULL)
        return;
    cel__redis_free(backend->connection);
    cel__redis_config_clear(&backend->config);
    free(backend);
    worker->redis = NULL;
}

void cel__redis_backend_service(cel_worker_t *worker)
{
    struct cel__redis_backend *backend = worker->redis;
    if (backend == NULL || backend->flushing)
        return;
    if (backend->connection == NULL) {
        if (!backend->down || cel__monotonic() < backend->next_attempt)
            return;
        if (!try_connect(worker))
            return;
    }
    note_recovery(worker, flush(worker, SLICE_MAX));
}

double cel__redis_backend_next_wait(const cel_worker_t *worker)
{
    const struct cel__redis_backend *backend = worker->redis;
    if (backend == NULL)
        return -1;
    if (backend->connection != NULL)
        return worker->pending_head != NULL || backend->down ? 0 : -1;
    if (!backend->down)
        return -1;
    double wait = backend->next_attempt - cel__monotonic();
    return wait > 0 ? wait : 0;
}

void cel__redis_backend_drain(cel_worker_t *worker)
{
    struct cel__redis_backend *backend = worker->redis;
    if (backend == NULL || worker->pending_head == NULL)
        return;
    if (backend->connection == NULL)
        try_connect(worker);
    note_recovery(worker, flush(worker, SIZE_MAX));
}
