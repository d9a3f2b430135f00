/* Canvas on the worker side: callbacks, chains, errbacks, groups and chord
 * bodies sent from the main process when a task ends, as Celery's tracer
 * and backends send them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "worker_internal.h"

/* Follow-up messages kept for a later connection; past this many the
 * oldest is dropped, so a long outage cannot exhaust memory. */
#define PENDING_MESSAGES_MAX 100000
/* Names remembered per connection: queues declared and exchanges found. */
#define NAME_CACHE_MAX 64

typedef struct pending_message {
    struct pending_message *next;
    char *exchange;
    char *routing_key;
    char *correlation_id;
    char *reply_to;
    char *expiration;
    int priority;
    json_t *headers;
    char *body;
    size_t body_len;
} pending_message_t;

/* Names checked on one connection; the oldest goes when it is full. */
typedef struct name_cache {
    char *names[NAME_CACHE_MAX];
    size_t count;
    uint64_t epoch; /* the connection the names belong to */
} name_cache_t;

struct cel__canvas {
    char reply_to[37]; /* what Celery calls the app's oid */
    pending_message_t *head;
    pending_message_t *tail;
    size_t pending_count;
    name_cache_t declared_queues;
    name_cache_t found_exchanges;
    bool chord_unsupported; /* the last error was a chord without Redis */
    /* Follow-ups that cannot be published now are dropped, not kept: the
     * broker will deliver their acks_late parent again, and its rerun
     * sends them. */
    bool drop_unsent;
    /* The header member being reported, the parent of a body it sends. */
    const cel__task_message_t *chord_member;
};

static void cache_clear(name_cache_t *cache)
{
    for (size_t i = 0; i < cache->count; i++)
        free(cache->names[i]);
    cache->count = 0;
}

/* Whether `name` was added on connection `epoch`. Names of an earlier
 * connection are forgotten first. */
static bool cache_has(name_cache_t *cache, uint64_t epoch, const char *name)
{
    if (cache->epoch != epoch) {
        cache_clear(cache);
        cache->epoch = epoch;
    }
    for (size_t i = 0; i < cache->count; i++)
        if (strcmp(cache->names[i], name) == 0)
            return true;
    return false;
}

static void cache_add(name_cache_t *cache, const char *name)
{
    if (cache->count == NAME_CACHE_MAX) {
        free(cache->names[0]);
        memmove(cache->names, cache->names + 1,
                (NAME_CACHE_MAX - 1) * sizeof cache->names[0]);
        cache->count--;
    }
    cache->names[cache->count] = strdup(name);
    if (cache->names[cache->count] != NULL)
        cache->count++;
}

/* The task whose end sends the follow-ups: the parent of what it sends. */
typedef struct sender {
    const char *id;
    const char *root_id;
} sender_t;

static void new_id(char out[37])
{
    uuid_t raw;
    uuid_generate(raw);
    uuid_unparse_lower(raw, out);
}

static struct cel__canvas *canvas_of(cel_worker_t *worker)
{
    if (worker->canvas == NULL) {
        worker->canvas = calloc(1, sizeof *worker->canvas);
        if (worker->canvas != NULL)
            new_id(worker->canvas->reply_to);
    }
    return worker->canvas;
}

/* ---- publishing ------------------------------------------------------ */

static void free_pending_message(pending_message_t *item)
{
    free(item->exchange);
    free(item->routing_key);
    free(item->correlation_id);
    free(item->reply_to);
    free(item->expiration);
    json_decref(item->headers);
    free(item->body);
    free(item);
}

static char *dup_or_null(const char *text)
{
    return text ? strdup(text) : NULL;
}

static void add_pending_message(cel_worker_t *worker,
                                const cel__publish_t *publish,
                                const char *task_id)
{
    struct cel__canvas *canvas = canvas_of(worker);
    pending_message_t *item = canvas ? calloc(1, sizeof *item) : NULL;
    if (item != NULL) {
        item->exchange = dup_or_null(publish->exchange);
        item->routing_key = dup_or_null(publish->routing_key);
        item->correlation_id = dup_or_null(publish->correlation_id);
        item->reply_to = dup_or_null(publish->reply_to);
        item->expiration = dup_or_null(publish->expiration);
        item->priority = publish->priority;
        item->headers = json_incref(publish->headers);
        item->body = malloc(publish->body_len + 1);
        item->body_len = publish->body_len;
        if (item->body != NULL)
            memcpy(item->body, publish->body, publish->body_len);
    }
    if (item == NULL || item->body == NULL || item->exchange == NULL ||
        item->routing_key == NULL) {
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Dropping follow-up task %s: out of memory", task_id);
        if (item != NULL)
            free_pending_message(item);
        return;
    }
    if (canvas->pending_count >= PENDING_MESSAGES_MAX) {
        pending_message_t *oldest = canvas->head;
        canvas->head = oldest->next;
        canvas->pending_count--;
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Dropping follow-up task %s: more than %d messages wait "
                 "for the broker",
                 oldest->correlation_id ? oldest->correlation_id : "?",
                 PENDING_MESSAGES_MAX);
        free_pending_message(oldest);
        if (canvas->head == NULL)
            canvas->tail = NULL;
    }
    if (canvas->tail != NULL)
        canvas->tail->next = item;
    else
        canvas->head = item;
    canvas->tail = item;
    canvas->pending_count++;
}

void cel__canvas_drop_unsent(cel_worker_t *worker, bool drop)
{
    if (canvas_of(worker) != NULL)
        worker->canvas->drop_unsent = drop;
}

size_t cel__canvas_pending(const cel_worker_t *worker)
{
    return worker->canvas ? worker->canvas->pending_count : 0;
}

void cel__canvas_flush(cel_worker_t *worker)
{
    struct cel__canvas *canvas = worker->canvas;
    size_t sent = 0;
    while (canvas != NULL && canvas->head != NULL && worker->broker != NULL) {
        pending_message_t *item = canvas->head;
        cel__publish_t publish = {
            .exchange = item->exchange,
            .routing_key = item->routing_key,
            .correlation_id = item->correlation_id,
            .reply_to = item->reply_to,
            .expiration = item->expiration,
            .delivery_mode = 2,
            .priority = item->priority,
            .headers = item->headers,
            .body = item->body,
            .body_len = item->body_len,
        };
        if (cel__broker_publish(worker->broker, &publish) != CEL_OK)
            break;
        canvas->head = item->next;
        if (canvas->head == NULL)
            canvas->tail = NULL;
        canvas->pending_count--;
        free_pending_message(item);
        sent++;
    }
    if (sent > 0)
        cel__log(worker->app, CEL_LOG_INFO,
                 "Sent %zu follow-up tasks kept while the broker was away",
                 sent);
}

void cel__canvas_free(cel_worker_t *worker)
{
    struct cel__canvas *canvas = worker->canvas;
    if (canvas == NULL)
        return;
    if (canvas->pending_count > 0)
        cel__log(worker->app, CEL_LOG_ERROR,
                 "%zu follow-up tasks were never sent: the broker did not "
                 "come back",
                 canvas->pending_count);
    while (canvas->head != NULL) {
        pending_message_t *item = canvas->head;
        canvas->head = item->next;
        free_pending_message(item);
    }
    cache_clear(&canvas->declared_queues);
    cache_clear(&canvas->found_exchanges);
    free(canvas);
    worker->canvas = NULL;
}

/* Declares a queue once per connection, as Celery's producer declares the
 * queue it routes to, so a follow-up for a queue without consumers waits
 * there. A rejected declaration is logged, and the message is still sent. */
static void declare_once(cel_worker_t *worker, const char *queue)
{
    struct cel__canvas *canvas = canvas_of(worker);
    if (canvas == NULL || worker->broker == NULL ||
        cache_has(&canvas->declared_queues, worker->connection_epoch, queue))
        return;
    for (size_t i = 0; i < worker->queue_count; i++)
        if (strcmp(worker->queues[i], queue) == 0)
            return;
    if (cel__broker_try_declare(
            worker->broker, queue,
            worker->app->settings.task_queue_max_priority) != CEL_OK)
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot declare queue %s for a follow-up task (%s); "
                 "sending it anyway",
                 queue, cel__broker_error(worker->broker));
    cache_add(&canvas->declared_queues, queue);
}

/* Checks once per connection that an exchange a follow-up names exists,
 * because publishing to a missing one makes the broker close the channel
 * the worker consumes on. Without a connection the message is kept, and
 * the check waits for the next one. */
static bool exchange_usable(cel_worker_t *worker, const char *exchange)
{
    struct cel__canvas *canvas = canvas_of(worker);
    if (canvas == NULL || worker->broker == NULL ||
        cache_has(&canvas->found_exchanges, worker->connection_epoch, exchange))
        return true;
    if (cel__broker_exchange_exists(worker->broker, exchange) != CEL_OK)
        return false;
    cache_add(&canvas->found_exchanges, exchange);
    return true;
}

/* Sends one built message the way Celery routes it: to an exchange and
 * routing key when both are given, else to the queue (options.queue or
 * task_default_queue) through the default exchange. */
static int send_message(cel_worker_t *worker, cel__sig_message_t *out)
{
    json_t *headers = NULL;
    char *body = NULL;
    size_t body_len = 0;
    int status = cel__task_encode_v2(&out->msg, &headers, &body, &body_len);
    if (status != CEL_OK) {
        cel__set_error(worker->last_error,
                       "cannot encode follow-up task %s: out of memory",
                       out->msg.id);
        return status;
    }
    cel__publish_t publish = {
        .correlation_id = out->msg.id,
        .reply_to = out->msg.reply_to,
        .expiration = out->expiration,
        .delivery_mode = 2,
        .priority = out->msg.priority,
        .headers = headers,
        .body = body,
        .body_len = body_len,
    };
    if (out->exchange && out->exchange[0] && out->routing_key &&
        out->routing_key[0]) {
        publish.exchange = out->exchange;
        publish.routing_key = out->routing_key;
        if (!exchange_usable(worker, publish.exchange)) {
            cel__set_error(worker->last_error,
                           "exchange '%s' of follow-up task %s[%s] was not "
                           "found: %s",
                           publish.exchange, out->msg.task, out->msg.id,
                           cel__broker_error(worker->broker));
            json_decref(headers);
            free(body);
            return CEL_ENOTFOUND;
        }
    } else {
        publish.exchange = "";
        publish.routing_key = out->queue && out->queue[0]
                                  ? out->queue
                                  : worker->app->settings.task_default_queue;
        declare_once(worker, publish.routing_key);
    }
    bool sent = worker->broker != NULL &&
                cel__broker_publish(worker->broker, &publish) == CEL_OK;
    if (!sent && worker->canvas->drop_unsent) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot send follow-up task %s[%s] now; it is dropped, "
                 "because the broker delivers its acks_late parent again",
                 out->msg.task, out->msg.id);
    } else if (!sent) {
        cel__log(worker->app, CEL_LOG_WARNING,
                 "Cannot send follow-up task %s[%s] now; it is kept for the "
                 "next connection",
                 out->msg.task, out->msg.id);
        add_pending_message(worker, &publish, out->msg.id);
    } else {
        cel__log(worker->app, CEL_LOG_DEBUG, "Sent follow-up task %s[%s]",
                 out->msg.task, out->msg.id);
    }
    json_decref(headers);
    free(body);
    return CEL_OK;
}

/* ---- applying signatures --------------------------------------------- */

static json_t *apply(cel_worker_t *worker, json_t *sig, json_t *partial,
                     json_t *overrides, const sender_t *sender);

/* The result tuple Celery's AsyncResult.as_tuple() gives: [[id, parent],
 * children]. Takes `parent` and `children` (NULL for null). */
static json_t *result_tuple(const char *id, json_t *parent, json_t *children)
{
    return json_pack("[[so]o]", id, parent ? parent : json_null(),
                     children ? children : json_null());
}

static json_t *options_of(json_t *sig)
{
    json_t *options = json_object_get(sig, "options");
    if (!json_is_object(options)) {
        options = json_object();
        json_object_set_new(sig, "options", options);
    }
    return options;
}

static void set_text_default(json_t *object, const char *key, const char *value)
{
    if (value != NULL && !json_is_string(json_object_get(object, key)))
        json_object_set_new(object, key, json_string(value));
}

static json_t *apply_task(cel_worker_t *worker, json_t *sig, json_t *partial,
                          json_t *overrides, const sender_t *sender)
{
    json_t *options = cel__signature_options(sig, overrides);
    json_t *args = cel__signature_args(sig, partial);
    if (options == NULL || args == NULL) {
        json_decref(options);
        json_decref(args);
        cel__set_error(worker->last_error, "out of memory");
        return NULL;
    }
    /* send_task in a worker makes the running task the parent. */
    if (sender != NULL) {
        set_text_default(options, "parent_id", sender->id);
        set_text_default(options, "root_id", sender->root_id);
    }
    char task_id[37];
    new_id(task_id);
    cel__sig_defaults_t defaults = {
        .task_id = task_id,
        .reply_to = canvas_of(worker) ? worker->canvas->reply_to : task_id,
        .origin = worker->nodename,
        .now = cel__now(),
    };
    cel__sig_message_t out;
    char why[256];
    json_t *tuple = NULL;
    if (cel__signature_message(sig, args, options, &defaults, &out, why,
                               sizeof why) != CEL_OK)
        cel__set_error(worker->last_error, "invalid signature: %s", why);
    else if (send_message(worker, &out) == CEL_OK)
        tuple = result_tuple(out.msg.id, NULL, NULL);
    cel__sig_message_clear(&out);
    json_decref(options);
    json_decref(args);
    return tuple;
}

/* Appends the members of a group to `out`, nested groups unrolled. */
static int flatten_group(json_t *tasks, json_t *out, int depth)
{
    if (!json_is_array(tasks) || depth > 32)
        return CEL_EINVAL;
    size_t index;
    json_t *member;
    json_array_foreach(tasks, index, member) {
        if (!json_is_object(member))
            return CEL_EINVAL;
        if (cel__signature_kind(member) == CEL__SIG_GROUP) {
            json_t *kwargs = json_object_get(member, "kwargs");
            if (flatten_group(json_object_get(kwargs, "tasks"), out,
                              depth + 1) != CEL_OK)
                return CEL_EINVAL;
        } else {
            json_array_append_new(out, json_deep_copy(member));
        }
    }
    return CEL_OK;
}

static json_t *group_members(cel_worker_t *worker, json_t *sig)
{
    json_t *members = json_array();
    json_t *kwargs = json_object_get(sig, "kwargs");
    if (members == NULL ||
        flatten_group(json_object_get(kwargs, "tasks"), members, 0) != CEL_OK) {
        cel__set_error(worker->last_error,
                       "invalid signature: a group needs a list of "
                       "signatures in kwargs.tasks");
        json_decref(members);
        return NULL;
    }
    return members;
}

static bool chords_supported(cel_worker_t *worker)
{
    if (worker->backend == CEL__BACKEND_REDIS)
        return true;
    worker->canvas->chord_unsupported = true;
    cel__set_error(worker->last_error,
                   "cannot start a chord: chords need the Redis result "
                   "backend");
    return false;
}

/* group.apply_async: every member gets the partial args, the group id and
 * its index; a chord header also gets the body and sets the chord size. */
static json_t *apply_group(cel_worker_t *worker, json_t *sig, json_t *partial,
                           json_t *overrides, const sender_t *sender)
{
    json_t *members = group_members(worker, sig);
    json_t *options = members ? cel__signature_options(sig, overrides) : NULL;
    json_t *args = cel__signature_args(sig, partial);
    json_t *results = json_array();
    json_t *tuple = NULL;
    if (options == NULL || args == NULL || results == NULL)
        goto done;
    char group_id[37];
    const char *frozen_id =
        json_string_value(json_object_get(options, "task_id"));
    if (frozen_id != NULL && strlen(frozen_id) < sizeof group_id)
        strcpy(group_id, frozen_id);
    else
        new_id(group_id);
    json_object_del(options, "task_id");
    json_object_set_new(options, "group_id", json_string(group_id));

    json_t *chord = json_object_get(options, "chord");
    if (json_is_object(chord) &&
        (!chords_supported(worker) ||
         cel__chord_set_size(worker, group_id, json_array_size(members)) !=
             CEL_OK)) {
        if (worker->backend == CEL__BACKEND_REDIS)
            cel__set_error(worker->last_error,
                           "cannot set the size of chord %s", group_id);
        goto done;
    }
    size_t index;
    json_t *member;
    json_array_foreach(members, index, member) {
        json_t *member_options = options_of(member);
        set_text_default(member_options, "group_id", group_id);
        if (!json_is_integer(json_object_get(member_options, "group_index")))
            json_object_set_new(member_options, "group_index",
                                json_integer((json_int_t)index));
        json_t *member_result = apply(worker, member, args, options, sender);
        if (member_result == NULL)
            goto done;
        json_array_append_new(results, member_result);
    }
    tuple = result_tuple(group_id, NULL, json_incref(results));
done:
    json_decref(results);
    json_decref(args);
    json_decref(options);
    json_decref(members);
    return tuple;
}

/* The chain's steps in order, nested chains flattened, deep copies. */
static int flatten_chain(json_t *tasks, json_t *out, int depth)
{
    if (!json_is_array(tasks) || depth > 32)
        return CEL_EINVAL;
    size_t index;
    json_t *step;
    json_array_foreach(tasks, index, step) {
        if (!json_is_object(step))
            return CEL_EINVAL;
        if (cel__signature_kind(step) == CEL__SIG_CHAIN) {
            json_t *kwargs = json_object_get(step, "kwargs");
            if (flatten_chain(json_object_get(kwargs, "tasks"), out,
                              depth + 1) != CEL_OK)
                return CEL_EINVAL;
            continue;
        }
        json_t *copy = json_deep_copy(step);
        /* A group of one is its member (maybe_unroll_group). */
        json_t *kwargs = json_object_get(copy, "kwargs");
        json_t *members = json_object_get(kwargs, "tasks");
        if (cel__signature_kind(copy) == CEL__SIG_GROUP &&
            json_array_size(members) == 1 &&
            json_is_object(json_array_get(members, 0))) {
            json_t *only = json_deep_copy(json_array_get(members, 0));
            json_decref(copy);
            copy = only;
        }
        json_array_append_new(out, copy);
    }
    return CEL_OK;
}

/* A chord of `header` (a group signature) with `body`, as the chain code
 * builds one when a group is followed by another step. */
static json_t *make_chord(json_t *header, json_t *body)
{
    return json_pack("{s:s, s:[], s:{s:O, s:O, s:{}}, s:{}, s:s, s:b}", "task",
                     "celery.chord", "args", "kwargs", "header", header, "body",
                     body, "kwargs", "options", "subtask_type", "chord",
                     "immutable", 0);
}

/* The signature whose options carry the id of a step's result: the step
 * itself, or the body of a chord. */
static json_t *result_holder(json_t *step)
{
    if (cel__signature_kind(step) == CEL__SIG_CHORD) {
        json_t *body = json_object_get(json_object_get(step, "kwargs"), "body");
        if (json_is_object(body))
            return body;
    }
    return step;
}

/* Gives a step its task id (Signature.freeze), and for the chain's last
 * step the group, chord and index the chain itself belongs to. */
static const char *freeze_step(cel_worker_t *worker, json_t *step,
                               json_t *chain_options, bool last)
{
    json_t *holder = result_holder(step);
    json_t *options = options_of(holder);
    const char *chain_id =
        json_string_value(json_object_get(chain_options, "task_id"));
    if (!json_is_string(json_object_get(options, "task_id"))) {
        char id[37];
        new_id(id);
        json_object_set_new(options, "task_id",
                            json_string(last && chain_id ? chain_id : id));
    }
    set_text_default(options, "reply_to", worker->canvas->reply_to);
    set_text_default(
        options, "root_id",
        json_string_value(json_object_get(chain_options, "root_id")));
    if (last) {
        set_text_default(
            options, "group_id",
            json_string_value(json_object_get(chain_options, "group_id")));
        json_t *chord = json_object_get(chain_options, "chord");
        json_t *index = json_object_get(chain_options, "group_index");
        if (json_is_object(chord))
            json_object_set(options, "chord", chord);
        if (json_is_integer(index))
            json_object_set(options, "group_index", index);
    }
    return json_string_value(json_object_get(options, "task_id"));
}

/* Adds the chain's errbacks to a step, as Signature.link_error does. */
static void add_errbacks(json_t *step, json_t *errbacks)
{
    if (errbacks == NULL || json_is_null(errbacks))
        return;
    json_t *holder = result_holder(step);
    if (cel__signature_kind(holder) == CEL__SIG_GROUP) {
        json_t *members =
            json_object_get(json_object_get(holder, "kwargs"), "tasks");
        size_t index;
        json_t *member;
        json_array_foreach(members, index, member)
            if (json_is_object(member))
                add_errbacks(member, errbacks);
        return;
    }
    json_t *options = options_of(holder);
    json_t *list = json_object_get(options, "link_error");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(options, "link_error", list);
    }
    if (json_is_array(errbacks))
        json_array_extend(list, errbacks);
    else
        json_array_append(list, errbacks);
}

/* Option names chain.run takes for itself instead of passing on. */
static const char *const CHAIN_OWN_OPTIONS[] = {
    "task_id",    "group_id", "chord",     "group_index", "link",
    "link_error", "root_id",  "parent_id", NULL,
};

/* chain.apply_async: freezes every step, turns a group followed by a step
 * into a chord, and sends the first step with the rest reversed in
 * embed.chain. */
static json_t *apply_chain(cel_worker_t *worker, json_t *sig, json_t *partial,
                           json_t *overrides, const sender_t *sender)
{
    json_t *options = cel__signature_options(sig, overrides);
    json_t *args = cel__signature_args(sig, partial);
    json_t *steps = json_array();
    json_t *reversed = json_array(); /* frozen steps, last first */
    json_t *tuple = NULL;
    if (options == NULL || args == NULL || steps == NULL || reversed == NULL)
        goto done;
    json_t *kwargs = json_object_get(sig, "kwargs");
    if (flatten_chain(json_object_get(kwargs, "tasks"), steps, 0) != CEL_OK) {
        cel__set_error(worker->last_error,
                       "invalid signature: a chain needs a list of "
                       "signatures in kwargs.tasks");
        goto done;
    }
    if (json_array_size(steps) == 0) {
        tuple = json_null();
        goto done;
    }
    if (canvas_of(worker) == NULL)
        goto done;
    json_t *errbacks = json_object_get(options, "link_error");
    json_t *previous = NULL;
    for (size_t i = json_array_size(steps); i-- > 0;) {
        json_t *step = json_incref(json_array_get(steps, i));
        if (i == 0) {
            json_t *first_args = cel__signature_args(step, args);
            json_object_set_new(step, "args", first_args);
        }
        if (cel__signature_kind(step) == CEL__SIG_GROUP && previous != NULL) {
            json_t *chord = make_chord(step, previous);
            json_array_remove(reversed, json_array_size(reversed) - 1);
            json_decref(step);
            step = chord;
        }
        freeze_step(worker, step, options, json_array_size(reversed) == 0);
        add_errbacks(step, errbacks);
        json_array_append(reversed, step);
        previous = step;
        json_decref(step);
    }
    json_t *link = json_object_get(options, "link");
    if (link != NULL && !json_is_null(link)) {
        json_t *last_options =
            options_of(result_holder(json_array_get(reversed, 0)));
        json_t *list = json_object_get(last_options, "link");
        if (!json_is_array(list)) {
            list = json_array();
            json_object_set_new(last_options, "link", list);
        }
        if (json_is_array(link))
            json_array_extend(list, link);
        else
            json_array_append(list, link);
    }
    /* The result is the last step's, with each earlier step as parent. */
    json_t *parent = NULL;
    for (size_t i = json_array_size(reversed); i-- > 0;) {
        json_t *holder = result_holder(json_array_get(reversed, i));
        parent = result_tuple(
            json_string_value(json_object_get(options_of(holder), "task_id")),
            parent, NULL);
    }
    json_t *first =
        json_incref(json_array_get(reversed, json_array_size(reversed) - 1));
    json_array_remove(reversed, json_array_size(reversed) - 1);
    json_t *first_overrides = json_copy(options);
    for (size_t k = 0; CHAIN_OWN_OPTIONS[k] != NULL; k++)
        json_object_del(first_overrides, CHAIN_OWN_OPTIONS[k]);
    if (json_array_size(reversed) > 0)
        json_object_set(first_overrides, "chain", reversed);
    else
        json_object_del(first_overrides, "chain");
    json_t *sent = apply(worker, first, NULL, first_overrides, sender);
    json_decref(first_overrides);
    json_decref(first);
    if (sent != NULL)
        tuple = json_array_size(reversed) > 0 ? json_incref(parent) : sent;
    if (sent != NULL && tuple != sent)
        json_decref(sent);
    json_decref(parent);
done:
    json_decref(reversed);
    json_decref(steps);
    json_decref(args);
    json_decref(options);
    return tuple;
}

/* chord.apply_async: the body takes the options, the header is sent as a
 * group whose members carry the body. */
static json_t *apply_chord(cel_worker_t *worker, json_t *sig, json_t *partial,
                           json_t *overrides, const sender_t *sender)
{
    json_t *kwargs = json_object_get(sig, "kwargs");
    json_t *header = json_object_get(kwargs, "header");
    json_t *body = json_object_get(kwargs, "body");
    if (!json_is_object(body) ||
        !(json_is_array(header) || json_is_object(header))) {
        cel__set_error(worker->last_error,
                       "invalid signature: a chord needs a header and a body");
        return NULL;
    }
    json_t *options = cel__signature_options(sig, overrides);
    json_t *args = cel__signature_args(sig, partial);
    json_t *group = json_is_object(header)
                        ? json_deep_copy(header)
                        : json_pack("{s:s, s:[], s:{s:O}, s:{}, s:s}", "task",
                                    "celery.group", "args", "kwargs", "tasks",
                                    header, "options", "subtask_type", "group");
    json_t *members = group ? group_members(worker, group) : NULL;
    json_t *body_copy = json_deep_copy(body);
    json_t *tuple = NULL;
    if (options == NULL || args == NULL || members == NULL ||
        body_copy == NULL || canvas_of(worker) == NULL)
        goto done;
    if (json_array_size(members) == 1) {
        /* chord([A], B) is sent as A | B. */
        json_t *chain = json_pack("{s:s, s:[], s:{s:[OO]}, s:{}, s:s}", "task",
                                  "celery.chain", "args", "kwargs", "tasks",
                                  json_array_get(members, 0), body, "options",
                                  "subtask_type", "chain");
        tuple =
            chain ? apply_chain(worker, chain, args, options, sender) : NULL;
        json_decref(chain);
        goto done;
    }
    json_t *body_options = options_of(body_copy);
    const char *task_id =
        json_string_value(json_object_get(options, "task_id"));
    const char *key;
    json_t *value;
    json_object_foreach(options, key, value) {
        if (strcmp(key, "task_id") != 0 && !json_is_null(value))
            json_object_set(body_options, key, value);
    }
    char body_id[37];
    new_id(body_id);
    set_text_default(body_options, "task_id", task_id ? task_id : body_id);
    set_text_default(body_options, "reply_to", worker->canvas->reply_to);
    const char *body_task_id =
        json_string_value(json_object_get(body_options, "task_id"));
    if (json_array_size(members) == 0) {
        json_t *empty = json_pack("[[]]");
        json_t *sent = apply(worker, body_copy, empty, NULL, sender);
        json_decref(empty);
        if (sent != NULL)
            tuple = result_tuple(body_task_id, NULL, NULL);
        json_decref(sent);
        goto done;
    }
    if (!chords_supported(worker))
        goto done;
    json_t *header_options = json_copy(options);
    json_object_del(header_options, "chain");
    json_object_del(header_options, "task_id");
    json_object_set(header_options, "chord", body_copy);
    json_t *sent = apply_group(worker, group, args, header_options, sender);
    json_decref(header_options);
    /* The header's group result is the parent of the body's. */
    if (sent != NULL)
        tuple = result_tuple(body_task_id, sent, NULL);
done:
    json_decref(body_copy);
    json_decref(members);
    json_decref(group);
    json_decref(args);
    json_decref(options);
    return tuple;
}

static json_t *apply(cel_worker_t *worker, json_t *sig, json_t *partial,
                     json_t *overrides, const sender_t *sender)
{
    if (!json_is_object(sig)) {
        cel__set_error(worker->last_error,
                       "invalid signature: not a dict but a JSON %s",
                       json_is_array(sig) ? "list" : "scalar");
        return NULL;
    }
    switch (cel__signature_kind(sig)) {
    case CEL__SIG_GROUP:
        return apply_group(worker, sig, partial, overrides, sender);
    case CEL__SIG_CHAIN:
        return apply_chain(worker, sig, partial, overrides, sender);
    case CEL__SIG_CHORD:
        return apply_chord(worker, sig, partial, overrides, sender);
    case CEL__SIG_TASK:
        break;
    }
    return apply_task(worker, sig, partial, overrides, sender);
}

/* ---- the tracer's steps ---------------------------------------------- */

static json_t *group_of(json_t *signatures)
{
    return json_pack("{s:s, s:[], s:{s:O}, s:{}, s:s, s:b}", "task",
                     "celery.group", "args", "kwargs", "tasks", signatures,
                     "options", "subtask_type", "group", "immutable", 0);
}

static void sender_of(const cel__task_message_t *msg, sender_t *out)
{
    out->id = msg->id;
    out->root_id = msg->root_id ? msg->root_id : msg->id;
}

/* The options every follow-up of a finished task gets. */
static json_t *parent_options(const cel__task_message_t *msg)
{
    json_t *options = json_pack("{s:s, s:s}", "parent_id", msg->id, "root_id",
                                msg->root_id ? msg->root_id : msg->id);
    if (options != NULL && msg->priority >= 0)
        json_object_set_new(options, "priority", json_integer(msg->priority));
    return options;
}

static int append_sent(json_t *children, json_t *tuple)
{
    if (tuple == NULL)
        return CEL_EINVAL;
    if (children != NULL && !json_is_null(tuple))
        json_array_append(children, tuple);
    json_decref(tuple);
    return CEL_OK;
}

/* One callback is applied as it is; of several, groups are applied one by
 * one and the rest go out together as one new group. */
static int send_callbacks(cel_worker_t *worker, const cel__task_message_t *msg,
                          json_t *partial, json_t *options, json_t *children)
{
    json_t *callbacks = msg->callbacks;
    sender_t sender;
    sender_of(msg, &sender);
    if (!json_is_array(callbacks) || json_array_size(callbacks) == 0)
        return CEL_OK;
    if (json_array_size(callbacks) == 1)
        return append_sent(children, apply(worker, json_array_get(callbacks, 0),
                                           partial, options, &sender));
    json_t *plain = json_array();
    size_t index;
    json_t *callback;
    int status = CEL_OK;
    json_array_foreach(callbacks, index, callback) {
        if (json_is_object(callback) &&
            cel__signature_kind(callback) == CEL__SIG_GROUP)
            status = append_sent(
                children, apply(worker, callback, partial, options, &sender));
        else
            json_array_append(plain, callback);
        if (status != CEL_OK)
            break;
    }
    if (status == CEL_OK && json_array_size(plain) > 0) {
        json_t *group = group_of(plain);
        status = append_sent(children,
                             apply(worker, group, partial, options, &sender));
        json_decref(group);
    }
    json_decref(plain);
    return status;
}

int cel__canvas_on_success(cel_worker_t *worker, const cel__request_t *request,
                           json_t *result, json_t *children)
{
    const cel__task_message_t *msg = &request->msg;
    bool has_chain = json_is_array(msg->chain) && json_array_size(msg->chain);
    if ((!json_is_array(msg->callbacks) ||
         json_array_size(msg->callbacks) == 0) &&
        !has_chain)
        return CEL_OK;
    json_t *partial = json_pack("[O]", result);
    json_t *options = parent_options(msg);
    int status = CEL_ENOMEM;
    if (partial == NULL || options == NULL || canvas_of(worker) == NULL)
        goto done;
    worker->canvas->chord_unsupported = false;
    status = send_callbacks(worker, msg, partial, options, children);
    if (status == CEL_OK && has_chain) {
        size_t last = json_array_size(msg->chain) - 1;
        json_t *rest = json_array();
        for (size_t i = 0; i < last; i++)
            json_array_append(rest, json_array_get(msg->chain, i));
        json_object_set_new(options, "chain", rest);
        sender_t sender;
        sender_of(msg, &sender);
        status = append_sent(children,
                             apply(worker, json_array_get(msg->chain, last),
                                   partial, options, &sender));
    }
done:
    json_decref(partial);
    json_decref(options);
    if (status != CEL_OK && worker->canvas && worker->canvas->chord_unsupported)
        return CEL_EBACKEND;
    return status;
}

void cel__canvas_chord_part(cel_worker_t *worker,
                            const cel__task_message_t *msg, const char *state,
                            json_t *result)
{
    if (!json_is_object(msg->chord) || msg->group == NULL || msg->id == NULL ||
        worker->backend != CEL__BACKEND_REDIS)
        return;
    struct cel__canvas *canvas = canvas_of(worker);
    if (canvas != NULL)
        canvas->chord_member = msg;
    cel__chord_part_return(worker, msg->group,
                           msg->has_group_index ? msg->group_index : -1,
                           msg->id, state, result, msg->chord);
    if (canvas != NULL)
        canvas->chord_member = NULL;
}

/* Sends errbacks as one group with the failed task's id prepended. */
static void send_errbacks(cel_worker_t *worker, json_t *errbacks,
                          const char *failed_id, const char *root_id)
{
    if (!json_is_array(errbacks) || json_array_size(errbacks) == 0)
        return;
    json_t *group = group_of(errbacks);
    json_t *partial = json_pack("[s]", failed_id);
    json_t *options = json_pack("{s:s, s:s}", "parent_id", failed_id, "root_id",
                                root_id ? root_id : failed_id);
    json_t *sent = group && partial && options
                       ? apply(worker, group, partial, options, NULL)
                       : NULL;
    if (sent == NULL)
        cel__log(worker->app, CEL_LOG_ERROR,
                 "Cannot send the errbacks of task %s: %s", failed_id,
                 worker->last_error);
    json_decref(sent);
    json_decref(options);
    json_decref(partial);
    json_decref(group);
}

/* Stores the failure under every later chain step with an id, so a client
 * waiting on the chain's last result receives it. */
static void fail_chain(cel_worker_t *worker, const cel__request_t *request,
                       json_t *exc, const char *traceback)
{
    json_t *chain = request->msg.chain;
    size_t index;
    json_t *step;
    json_array_foreach(chain, index, step) {
        json_t *options = json_object_get(step, "options");
        cel__task_message_t target = {0};
        target.id =
            (char *)json_string_value(json_object_get(options, "task_id"));
        target.reply_to =
            (char *)json_string_value(json_object_get(options, "reply_to"));
        target.group =
            (char *)json_string_value(json_object_get(options, "group_id"));
        target.parent_id =
            (char *)json_string_value(json_object_get(options, "parent_id"));
        json_t *group_index = json_object_get(options, "group_index");
        target.has_group_index = json_is_integer(group_index);
        target.group_index = (int)json_integer_value(group_index);
        target.chord = json_object_get(options, "chord");
        if (target.id == NULL)
            continue;
        if (cel__stores_errors(worker, request->task))
            cel__store_result(worker, &target, "FAILURE", exc, traceback, NULL);
        cel__canvas_chord_part(worker, &target, "FAILURE", exc);
    }
}

void cel__canvas_on_failure(cel_worker_t *worker, const cel__request_t *request,
                            json_t *exc, const char *traceback)
{
    const cel__task_message_t *msg = &request->msg;
    cel__canvas_chord_part(worker, msg, "FAILURE", exc);
    if (json_is_array(msg->chain))
        fail_chain(worker, request, exc, traceback);
    send_errbacks(worker, msg->errbacks, msg->id, msg->root_id);
}

/* ---- chord completion ------------------------------------------------- */

/* Python's repr of a stored exception dict: ValueError('boom'). */
static char *stored_exception_repr(json_t *exc)
{
    const char *type = json_string_value(json_object_get(exc, "exc_type"));
    json_t *args = json_object_get(exc, "exc_message");
    if (type == NULL)
        return cel__pyrepr(exc, 1024, false);
    char *inner = NULL;
    if (json_is_array(args)) {
        char *tuple = cel__pyrepr(args, 1024, true);
        size_t len = tuple ? strlen(tuple) : 0;
        /* (a,) prints as ValueError(a), as Python prints one argument. */
        if (len >= 3 && tuple[len - 2] == ',' && json_array_size(args) == 1)
            tuple[len - 2] = ')', tuple[len - 1] = '\0';
        inner = tuple;
    } else if (args != NULL) {
        char *arg_repr = cel__pyrepr(args, 1024, false);
        if (arg_repr != NULL && asprintf(&inner, "(%s)", arg_repr) < 0)
            inner = NULL;
        free(arg_repr);
    }
    char *repr = NULL;
    if (asprintf(&repr, "%s%s", type, inner ? inner : "()") < 0)
        repr = NULL;
    free(inner);
    return repr;
}

static void fail_chord(cel_worker_t *worker, json_t *chord, const char *reason)
{
    json_t *options = json_object_get(chord, "options");
    cel__task_message_t target = {0};
    target.id = (char *)json_string_value(json_object_get(options, "task_id"));
    target.reply_to =
        (char *)json_string_value(json_object_get(options, "reply_to"));
    cel__log(worker->app, CEL_LOG_ERROR, "Chord body %s failed: %s",
             target.id ? target.id : "(no id)", reason);
    if (target.id == NULL)
        return;
    send_errbacks(worker, json_object_get(options, "link_error"), target.id,
                  target.id);
    json_t *exc = cel__exception_new("ChordError", "celery.exceptions", reason);
    char *traceback =
        cel__traceback_format(json_string_value(json_object_get(chord, "task")),
                              "ChordError", "celery.exceptions", reason);
    cel__store_result(worker, &target, "FAILURE", exc, traceback, NULL);
    free(traceback);
    json_decref(exc);
}

void cel__chord_complete(cel_worker_t *worker, const char *group_id,
                         json_t *chord, json_t *entries)
{
    json_t *results = json_array();
    size_t index;
    json_t *entry;
    json_array_foreach(entries, index, entry) {
        const char *id = json_string_value(json_array_get(entry, 1));
        const char *state = json_string_value(json_array_get(entry, 2));
        json_t *value = json_array_get(entry, 3);
        if (state != NULL &&
            (strcmp(state, "FAILURE") == 0 || strcmp(state, "REVOKED") == 0)) {
            char *repr = stored_exception_repr(value);
            char *reason = NULL;
            if (asprintf(&reason, "Dependency %s raised %s", id ? id : "?",
                         repr ? repr : "an exception") < 0)
                reason = NULL;
            fail_chord(worker, chord, reason ? reason : "a dependency failed");
            free(reason);
            free(repr);
            json_decref(results);
            return;
        }
        json_array_append(results, value ? value : json_null());
    }
    /* As in a Python worker, the member that finished last is the body's
     * parent, unless the body names one. A part replayed after a Redis
     * outage has no member at hand. */
    const cel__task_message_t *member =
        worker->canvas ? worker->canvas->chord_member : NULL;
    sender_t sender;
    if (member != NULL)
        sender_of(member, &sender);
    json_t *partial = json_pack("[O]", results);
    json_t *sent =
        partial ? apply(worker, chord, partial, NULL, member ? &sender : NULL)
                : NULL;
    if (sent == NULL) {
        char reason[CEL__ERROR_LEN + 32];
        snprintf(reason, sizeof reason, "Callback error: %s",
                 worker->last_error);
        cel__log(worker->app, CEL_LOG_ERROR, "Chord %s: %s", group_id, reason);
        fail_chord(worker, chord, reason);
    }
    json_decref(sent);
    json_decref(partial);
    json_decref(results);
}
