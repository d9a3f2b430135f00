/* The Redis backend's chord primitives and STARTED, against the Redis on
 * 127.0.0.1:6379, database 9, with unique keys. When that Redis does not
 * answer, the tests that need it print a note and pass without checks.
 *
 * The worker is built by hand, not with cel_worker_new(), so that the
 * worker loop and the canvas code stay out of this program and the
 * cel__chord_complete below replaces the library's weak default. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

#include "redis.h"
#include "worker_internal.h"

#define TEST_BACKEND "redis://127.0.0.1:6379/9"

/* What the last cel__chord_complete call received. */
static int completions;
static char completed_group[64];
static json_t *completed_chord;
static json_t *completed_entries;

void cel__chord_complete(cel_worker_t *worker, const char *group_id,
                         json_t *chord, json_t *entries)
{
    (void)worker;
    completions++;
    snprintf(completed_group, sizeof completed_group, "%s", group_id);
    completed_chord = chord;
    json_decref(completed_entries);
    completed_entries = json_deep_copy(entries);
}

static char log_text[8192];

static void capture_log(void *user, int level, const char *message)
{
    (void)user;
    size_t used = strlen(log_text);
    snprintf(log_text + used, sizeof log_text - used, "%d %s\n", level,
             message);
}

static cel__redis_t *direct; /* a connection of the test's own */

static bool redis_available(void)
{
    cel__redis_config_t config;
    char error[CEL__ERROR_LEN];
    if (cel__redis_url_parse(TEST_BACKEND, &config, error) != CEL_OK)
        return false;
    int status = cel__redis_connect(&config, 1.0, 5.0, &direct, error);
    cel__redis_config_clear(&config);
    if (status != CEL_OK)
        fprintf(stderr, "check_backend_redis: skipped, %s\n", error);
    return status == CEL_OK;
}

/* Runs one command on the test's connection; the caller frees the reply. */
static redisReply *command(int argc, const char **argv)
{
    cel__redis_pipeline_t pipeline = {0};
    redisReply **replies = NULL;
    cel__redis_pipeline_add(&pipeline, argc, argv, NULL);
    int status = cel__redis_pipeline_run(direct, &pipeline, &replies);
    cel__redis_pipeline_clear(&pipeline);
    ck_assert_int_eq(status, CEL_OK);
    redisReply *reply = replies[0];
    free(replies);
    return reply;
}

static long long command_integer(int argc, const char **argv)
{
    redisReply *reply = command(argc, argv);
    ck_assert_int_eq(reply->type, REDIS_REPLY_INTEGER);
    long long value = reply->integer;
    freeReplyObject(reply);
    return value;
}

static void new_id(char *out)
{
    uuid_t raw;
    uuid_generate(raw);
    uuid_unparse_lower(raw, out);
}

static char *group_key(const char *group_id, const char *suffix)
{
    char *key = NULL;
    ck_assert_int_ge(
        asprintf(&key, "celery-taskset-meta-%s%s", group_id, suffix), 0);
    return key;
}

static cel_worker_t *make_worker(const char *backend_url)
{
    cel_app_t *app = cel_app_new();
    ck_assert_ptr_nonnull(app);
    cel_app_set_log_callback(app, capture_log, NULL);
    ck_assert_int_eq(cel_app_set(app, "result_backend", backend_url), CEL_OK);
    cel_worker_t *worker = calloc(1, sizeof *worker);
    ck_assert_ptr_nonnull(worker);
    worker->app = app;
    worker->nodename = strdup("celery@unit-test");
    log_text[0] = '\0';
    completions = 0;
    if (strncmp(backend_url, "redis", 5) == 0) {
        worker->backend = CEL__BACKEND_REDIS;
        ck_assert_int_eq(cel__redis_backend_open(worker), CEL_OK);
    } else {
        worker->backend = CEL__BACKEND_RPC;
    }
    return worker;
}

static void free_worker(cel_worker_t *worker)
{
    cel__redis_backend_free(worker);
    cel__free_pending_results(worker);
    cel_app_free(worker->app);
    free(worker->nodename);
    free(worker);
    json_decref(completed_entries);
    completed_entries = NULL;
}

START_TEST(test_chord_completes_in_group_index_order)
{
    if (!redis_available())
        return;
    cel_worker_t *worker = make_worker(TEST_BACKEND);
    char group_id[37], ids[3][37];
    new_id(group_id);
    for (int i = 0; i < 3; i++)
        new_id(ids[i]);
    json_t *chord = json_pack("{s:s}", "task", "tasks.xsum");

    ck_assert_int_eq(cel__chord_set_size(worker, group_id, 3), CEL_OK);
    /* Members finish out of order; the entries come back by index. */
    int order[3] = {2, 0, 1};
    for (int k = 0; k < 3; k++) {
        int i = order[k];
        json_t *result = json_integer(10 * i);
        cel__chord_part_return(worker, group_id, i, ids[i], "SUCCESS", result,
                               chord);
        json_decref(result);
        ck_assert_int_eq(completions, k == 2 ? 1 : 0);
    }

    ck_assert_str_eq(completed_group, group_id);
    ck_assert_ptr_eq(completed_chord, chord);
    ck_assert_int_eq(json_array_size(completed_entries), 3);
    for (int i = 0; i < 3; i++) {
        json_t *expected =
            json_pack("[i, s, s, i]", 1, ids[i], "SUCCESS", 10 * i);
        json_t *entry = json_array_get(completed_entries, (size_t)i);
        ck_assert_msg(json_equal(entry, expected), "entry %d differs", i);
        json_decref(expected);
    }
    char *keys[3] = {group_key(group_id, ".j"), group_key(group_id, ".t"),
                     group_key(group_id, ".s")};
    ck_assert_int_eq(command_integer(4, (const char *[]){"EXISTS", keys[0],
                                                         keys[1], keys[2]}),
                     0);
    for (int i = 0; i < 3; i++)
        free(keys[i]);
    json_decref(chord);
    free_worker(worker);
}
END_TEST

/* A Python worker that ran one member writes json.dumps([1, id, state,
 * result]) itself; the C parts must count it and complete the chord. */
START_TEST(test_chord_counts_python_written_entry)
{
    if (!redis_available())
        return;
    cel_worker_t *worker = make_worker(TEST_BACKEND);
    char group_id[37], python_id[37], c_id[37];
    new_id(group_id);
    new_id(python_id);
    new_id(c_id);
    char *jkey = group_key(group_id, ".j");
    char entry[128];
    snprintf(entry, sizeof entry, "[1, \"%s\", \"SUCCESS\", 7]", python_id);
    command_integer(4, (const char *[]){"ZADD", jkey, "0", entry});

    ck_assert_int_eq(cel__chord_set_size(worker, group_id, 2), CEL_OK);
    json_t *result = json_integer(8);
    cel__chord_part_return(worker, group_id, 1, c_id, "SUCCESS", result, NULL);
    json_decref(result);

    ck_assert_int_eq(completions, 1);
    json_t *expected = json_pack("[[i, s, s, i], [i, s, s, i]]", 1, python_id,
                                 "SUCCESS", 7, 1, c_id, "SUCCESS", 8);
    ck_assert(json_equal(completed_entries, expected));
    json_decref(expected);
    free(jkey);
    free_worker(worker);
}
END_TEST

START_TEST(test_chord_without_size_waits)
{
    if (!redis_available())
        return;
    cel_worker_t *worker = make_worker(TEST_BACKEND);
    char group_id[37], task_id[37];
    new_id(group_id);
    new_id(task_id);
    json_t *exc = cel__exception_new("ValueError", "builtins", "boom");
    cel__chord_part_return(worker, group_id, -1, task_id, "FAILURE", exc, NULL);

    ck_assert_int_eq(completions, 0);
    char *jkey = group_key(group_id, ".j");
    redisReply *members =
        command(5, (const char *[]){"ZRANGE", jkey, "0", "-1", "WITHSCORES"});
    ck_assert_int_eq(members->type, REDIS_REPLY_ARRAY);
    ck_assert_int_eq(members->elements, 2);
    char *expected = cel__chord_entry_encode(task_id, "FAILURE", exc);
    ck_assert_str_eq(members->element[0]->str, expected);
    /* group_index -1 scores +inf, as Celery's None does. */
    ck_assert_str_eq(members->element[1]->str, "inf");
    freeReplyObject(members);
    long long ttl = command_integer(2, (const char *[]){"TTL", jkey});
    ck_assert_int_gt(ttl, 86400 - 60);
    ck_assert_int_le(ttl, 86400);

    command_integer(2, (const char *[]){"DEL", jkey});
    free(expected);
    free(jkey);
    json_decref(exc);
    free_worker(worker);
}
END_TEST

START_TEST(test_chord_counts_added_members)
{
    if (!redis_available())
        return;
    cel_worker_t *worker = make_worker(TEST_BACKEND);
    char group_id[37], ids[3][37];
    new_id(group_id);
    char *tkey = group_key(group_id, ".t");
    command_integer(2, (const char *[]){"INCR", tkey});
    ck_assert_int_eq(cel__chord_set_size(worker, group_id, 2), CEL_OK);
    for (int i = 0; i < 3; i++) {
        new_id(ids[i]);
        cel__chord_part_return(worker, group_id, i, ids[i], "SUCCESS", NULL,
                               NULL);
        ck_assert_int_eq(completions, i == 2 ? 1 : 0);
    }
    ck_assert_int_eq(json_array_size(completed_entries), 3);
    free(tkey);
    free_worker(worker);
}
END_TEST

START_TEST(test_chord_size_is_stored_with_ttl)
{
    if (!redis_available())
        return;
    cel_worker_t *worker = make_worker(TEST_BACKEND);
    char group_id[37];
    new_id(group_id);
    ck_assert_int_eq(cel__chord_set_size(worker, group_id, 5), CEL_OK);
    char *skey = group_key(group_id, ".s");
    redisReply *value = command(2, (const char *[]){"GET", skey});
    ck_assert_int_eq(value->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(value->str, "5");
    freeReplyObject(value);
    long long ttl = command_integer(2, (const char *[]){"TTL", skey});
    ck_assert_int_gt(ttl, 86400 - 60);
    command_integer(2, (const char *[]){"DEL", skey});
    free(skey);
    free_worker(worker);
}
END_TEST

START_TEST(test_chord_with_rpc_backend_logs_error)
{
    cel_worker_t *worker = make_worker("rpc://");
    cel__chord_part_return(worker, "group-1", 0, "task-1", "SUCCESS", NULL,
                           NULL);
    ck_assert_int_eq(cel__chord_set_size(worker, "group-1", 1), CEL_EBACKEND);
    ck_assert_int_eq(completions, 0);
    ck_assert_int_eq(worker->pending_count, 0);
    ck_assert_ptr_nonnull(strstr(log_text, "40 Cannot count a header result "
                                           "of chord group-1"));
    ck_assert_ptr_nonnull(
        strstr(log_text, "40 Cannot set the size of chord group-1"));
    free_worker(worker);
}
END_TEST

/* A part that cannot be written waits in the pending list. */
START_TEST(test_chord_part_kept_while_redis_is_down)
{
    cel_worker_t *worker = make_worker("redis://127.0.0.1:1/0");
    ck_assert_ptr_nonnull(strstr(log_text, "30 Cannot store results"));
    cel__chord_part_return(worker, "group-2", 0, "task-2", "SUCCESS", NULL,
                           NULL);
    ck_assert_int_eq(worker->pending_count, 1);
    ck_assert_int_eq(worker->pending_head->kind, CEL__PENDING_CHORD_PART);
    ck_assert_str_eq(worker->pending_head->group_id, "group-2");
    ck_assert_int_eq(cel__chord_set_size(worker, "group-2", 1), CEL_EBACKEND);
    ck_assert_int_eq(completions, 0);
    free_worker(worker);
}
END_TEST

START_TEST(test_started_meta_has_pid_and_hostname)
{
    if (!redis_available())
        return;
    cel_worker_t *worker = make_worker(TEST_BACKEND);
    ck_assert_int_eq(cel_app_set(worker->app, "task_track_started", "true"),
                     CEL_OK);
    cel_task_t task = {.name = "tasks.sleep", .ignore_result = -1};
    cel__request_t request = {.task = &task, .worker_pid = 4321};
    char task_id[37];
    new_id(task_id);
    request.msg.id = task_id;
    cel__store_started(worker, &request);

    char *key = NULL;
    ck_assert_int_ge(asprintf(&key, "celery-task-meta-%s", task_id), 0);
    redisReply *value = command(2, (const char *[]){"GET", key});
    ck_assert_int_eq(value->type, REDIS_REPLY_STRING);
    json_t *meta = json_loads(value->str, 0, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(meta, "status")),
                     "STARTED");
    json_t *expected =
        json_pack("{s:i, s:s}", "pid", 4321, "hostname", "celery@unit-test");
    ck_assert(json_equal(json_object_get(meta, "result"), expected));
    ck_assert(json_is_null(json_object_get(meta, "date_done")));
    json_decref(expected);
    json_decref(meta);
    freeReplyObject(value);
    command_integer(2, (const char *[]){"DEL", key});
    free(key);
    free_worker(worker);
}
END_TEST

START_TEST(test_started_skipped_without_tracking)
{
    if (!redis_available())
        return;
    cel_worker_t *worker = make_worker(TEST_BACKEND);
    cel_task_t task = {.name = "tasks.sleep", .ignore_result = -1};
    cel__request_t request = {.task = &task};
    char task_id[37];
    new_id(task_id);
    request.msg.id = task_id;
    cel__store_started(worker, &request);

    /* Tracked, but the task ignores its results: nothing either. */
    ck_assert_int_eq(cel_app_set(worker->app, "task_track_started", "true"),
                     CEL_OK);
    task.ignore_result = 1;
    cel__store_started(worker, &request);

    char *key = NULL;
    ck_assert_int_ge(asprintf(&key, "celery-task-meta-%s", task_id), 0);
    ck_assert_int_eq(command_integer(2, (const char *[]){"EXISTS", key}), 0);
    free(key);
    free_worker(worker);
}
END_TEST

static void close_direct(void)
{
    cel__redis_free(direct);
    direct = NULL;
}

static Suite *backend_redis_suite(void)
{
    Suite *suite = suite_create("backend_redis");

    TCase *chord = tcase_create("chord");
    tcase_add_checked_fixture(chord, NULL, close_direct);
    tcase_add_test(chord, test_chord_completes_in_group_index_order);
    tcase_add_test(chord, test_chord_counts_python_written_entry);
    tcase_add_test(chord, test_chord_without_size_waits);
    tcase_add_test(chord, test_chord_counts_added_members);
    tcase_add_test(chord, test_chord_size_is_stored_with_ttl);
    tcase_add_test(chord, test_chord_with_rpc_backend_logs_error);
    tcase_add_test(chord, test_chord_part_kept_while_redis_is_down);
    suite_add_tcase(suite, chord);

    TCase *started = tcase_create("started");
    tcase_add_checked_fixture(started, NULL, close_direct);
    tcase_add_test(started, test_started_meta_has_pid_and_hostname);
    tcase_add_test(started, test_started_skipped_without_tracking);
    suite_add_tcase(suite, started);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(backend_redis_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
