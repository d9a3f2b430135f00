/* The public settings API, status texts and the task registry. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "celeriac/celeriac.h"
#include "internal.h"

static cel_app_t *app;

static void create_app(void)
{
    app = cel_app_new();
    ck_assert_ptr_nonnull(app);
}

static void free_app(void)
{
    cel_app_free(app);
    app = NULL;
}

static void assert_setting(const char *name, const char *expected)
{
    char buf[256];
    int status = cel_app_get(app, name, buf, sizeof buf);
    ck_assert_msg(status == CEL_OK, "%s: status %d", name, status);
    ck_assert_msg(strcmp(buf, expected) == 0, "%s is '%s', expected '%s'", name,
                  buf, expected);
}

static json_t *noop_task(cel_context_t *ctx, json_t *args, json_t *kwargs)
{
    (void)ctx;
    (void)args;
    (void)kwargs;
    return NULL;
}

/* ---- defaults ----------------------------------------------------------- */

START_TEST(test_settings_have_celery_defaults)
{
    assert_setting("broker_url", "amqp://guest:guest@localhost:5672//");
    assert_setting("result_backend", "None");
    assert_setting("task_default_queue", "celery");
    assert_setting("worker_pool", "prefork");
    assert_setting("task_acks_late", "false");
    assert_setting("task_acks_on_failure_or_timeout", "true");
    assert_setting("task_ignore_result", "false");
    assert_setting("task_track_started", "false");
    assert_setting("worker_send_task_events", "false");
    assert_setting("broker_connection_retry", "true");
    assert_setting("result_persistent", "false");
    assert_setting("worker_prefetch_multiplier", "4");
    assert_setting("worker_concurrency", "0");
    assert_setting("broker_heartbeat", "120");
    assert_setting("broker_connection_max_retries", "100");
    assert_setting("broker_connection_timeout", "4.0");
    assert_setting("task_time_limit", "0.0");
    assert_setting("task_soft_time_limit", "0.0");
    assert_setting("result_expires", "86400");
    assert_setting("celeriac_max_body_size", "134217728");
    assert_setting("celeriac_max_headers", "256");
    assert_setting("celeriac_max_json_depth", "128");
}
END_TEST

/* ---- set and get each kind ---------------------------------------------- */

START_TEST(test_set_string_setting)
{
    ck_assert_int_eq(cel_app_set(app, "broker_url", "amqp://u:p@127.0.0.1//"),
                     CEL_OK);
    assert_setting("broker_url", "amqp://u:p@127.0.0.1//");
    ck_assert_int_eq(cel_app_set(app, "result_backend", "rpc://"), CEL_OK);
    assert_setting("result_backend", "rpc://");
}
END_TEST

START_TEST(test_set_string_none_unsets_it)
{
    ck_assert_int_eq(cel_app_set(app, "result_backend", "rpc://"), CEL_OK);
    ck_assert_int_eq(cel_app_set(app, "result_backend", "None"), CEL_OK);
    assert_setting("result_backend", "None");
    ck_assert_int_eq(cel_app_set(app, "result_backend", "rpc://"), CEL_OK);
    ck_assert_int_eq(cel_app_set(app, "result_backend", NULL), CEL_OK);
    assert_setting("result_backend", "None");
}
END_TEST

START_TEST(test_set_bool_accepts_python_spellings)
{
    static const char *const TRUE_TEXTS[] = {"true", "True", "TRUE",
                                             "yes",  "on",   "1"};
    static const char *const FALSE_TEXTS[] = {"false", "False", "no", "off",
                                              "0"};
    for (size_t i = 0; i < sizeof TRUE_TEXTS / sizeof TRUE_TEXTS[0]; i++) {
        ck_assert_int_eq(cel_app_set(app, "task_acks_late", "false"), CEL_OK);
        ck_assert_int_eq(cel_app_set(app, "task_acks_late", TRUE_TEXTS[i]),
                         CEL_OK);
        assert_setting("task_acks_late", "true");
    }
    for (size_t i = 0; i < sizeof FALSE_TEXTS / sizeof FALSE_TEXTS[0]; i++) {
        ck_assert_int_eq(cel_app_set(app, "task_acks_late", "true"), CEL_OK);
        ck_assert_int_eq(cel_app_set(app, "task_acks_late", FALSE_TEXTS[i]),
                         CEL_OK);
        assert_setting("task_acks_late", "false");
    }
}
END_TEST

START_TEST(test_set_int_setting)
{
    ck_assert_int_eq(cel_app_set(app, "worker_prefetch_multiplier", "8"),
                     CEL_OK);
    assert_setting("worker_prefetch_multiplier", "8");
    ck_assert_int_eq(cel_app_set(app, "broker_connection_max_retries", "7"),
                     CEL_OK);
    assert_setting("broker_connection_max_retries", "7");
    ck_assert_int_eq(cel_app_set(app, "worker_concurrency", "None"), CEL_OK);
    assert_setting("worker_concurrency", "0");
}
END_TEST

START_TEST(test_out_of_range_is_einval)
{
    ck_assert_int_eq(cel_app_set(app, "worker_prefetch_multiplier", "-3"),
                     CEL_EINVAL);
    ck_assert_int_eq(cel_app_set(app, "worker_prefetch_multiplier", "65536"),
                     CEL_EINVAL);
    ck_assert_int_eq(cel_app_set(app, "broker_heartbeat", "99999999"),
                     CEL_EINVAL);
    ck_assert_int_eq(cel_app_set(app, "broker_connection_timeout", "0"),
                     CEL_EINVAL);
    ck_assert_int_eq(cel_app_set(app, "worker_concurrency", "-1"),
                     CEL_EINVAL);
    ck_assert_ptr_nonnull(strstr(cel_app_last_error(app), "from 0 to 1024"));
    assert_setting("worker_prefetch_multiplier", "4");
}
END_TEST

START_TEST(test_set_float_setting)
{
    ck_assert_int_eq(cel_app_set(app, "task_time_limit", "2.5"), CEL_OK);
    assert_setting("task_time_limit", "2.5");
    ck_assert_int_eq(cel_app_set(app, "broker_connection_timeout", "10"),
                     CEL_OK);
    assert_setting("broker_connection_timeout", "10.0");
    ck_assert_int_eq(cel_app_set(app, "task_soft_time_limit", "none"), CEL_OK);
    assert_setting("task_soft_time_limit", "0.0");
}
END_TEST

START_TEST(test_setting_names_ignore_case)
{
    ck_assert_int_eq(cel_app_set(app, "TASK_ACKS_LATE", "true"), CEL_OK);
    assert_setting("task_acks_late", "true");
    assert_setting("Task_Acks_Late", "true");
}
END_TEST

START_TEST(test_get_truncates_to_buffer)
{
    char buf[8];
    ck_assert_int_eq(cel_app_get(app, "broker_url", buf, sizeof buf), CEL_OK);
    ck_assert_str_eq(buf, "amqp://");
}
END_TEST

/* ---- invalid values ----------------------------------------------------- */

typedef struct invalid_case {
    const char *name;
    const char *value;
    const char *unchanged; /* the default, read back after the failure */
    const char *error;
} invalid_case_t;

static const invalid_case_t INVALID[] = {
    {"task_acks_late", "maybe", "false",
     "invalid value 'maybe' for setting task_acks_late: expected true or "
     "false"},
    {"task_acks_late", "", "false",
     "invalid value '' for setting task_acks_late: expected true or false"},
    {"worker_prefetch_multiplier", "4x", "4",
     "invalid value '4x' for setting worker_prefetch_multiplier: expected an "
     "integer"},
    {"worker_prefetch_multiplier", "", "4",
     "invalid value '' for setting worker_prefetch_multiplier: expected an "
     "integer"},
    {"worker_prefetch_multiplier", "1.5", "4",
     "invalid value '1.5' for setting worker_prefetch_multiplier: expected "
     "an integer"},
    {"broker_heartbeat", "99999999999", "120",
     "invalid value '99999999999' for setting broker_heartbeat: expected an "
     "integer"},
    {"broker_connection_timeout", "soon", "4.0",
     "invalid value 'soon' for setting broker_connection_timeout: expected a "
     "number"},
    {"broker_connection_timeout", "inf", "4.0",
     "invalid value 'inf' for setting broker_connection_timeout: expected a "
     "number"},
};

#define INVALID_COUNT (sizeof INVALID / sizeof INVALID[0])

START_TEST(test_set_invalid_value_is_einval)
{
    const invalid_case_t *item = &INVALID[_i];
    ck_assert_int_eq(cel_app_set(app, item->name, item->value), CEL_EINVAL);
    ck_assert_str_eq(cel_app_last_error(app), item->error);
    ck_assert_ptr_nonnull(strstr(cel_app_last_error(app), item->name));
    assert_setting(item->name, item->unchanged);
}
END_TEST

START_TEST(test_set_bool_to_null_is_einval)
{
    /* A NULL value unsets a text, int or float setting. A bool has no unset
     * state, so NULL should fail as "None" does, not crash. */
    ck_assert_int_eq(cel_app_set(app, "task_acks_late", "None"), CEL_EINVAL);
    ck_assert_int_eq(cel_app_set(app, "task_acks_late", NULL), CEL_EINVAL);
    assert_setting("task_acks_late", "false");
}
END_TEST

START_TEST(test_unknown_setting_is_enotfound)
{
    char buf[64] = "untouched";
    ck_assert_int_eq(cel_app_set(app, "no_such_setting", "1"), CEL_ENOTFOUND);
    ck_assert_str_eq(cel_app_last_error(app),
                     "unknown setting no_such_setting");
    ck_assert_int_eq(cel_app_get(app, "no_such_setting", buf, sizeof buf),
                     CEL_ENOTFOUND);
    ck_assert_str_eq(buf, "untouched");
}
END_TEST

/* ---- status texts ------------------------------------------------------- */

START_TEST(test_strerror_is_distinct_for_every_code)
{
    const int first = CEL_OK;
    const int last = CEL_ETIMEOUT;
    for (int status = first; status >= last; status--) {
        const char *text = cel_strerror(status);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(text[0] != '\0', "status %d has no text", status);
        ck_assert_msg(strcmp(text, cel_strerror(1)) != 0,
                      "status %d reads as unknown", status);
        for (int other = status - 1; other >= last; other--)
            ck_assert_msg(strcmp(text, cel_strerror(other)) != 0,
                          "statuses %d and %d share the text '%s'", status,
                          other, text);
    }
}
END_TEST

START_TEST(test_strerror_of_unknown_code)
{
    ck_assert_str_eq(cel_strerror(1), "unknown status");
    ck_assert_str_eq(cel_strerror(CEL_ETIMEOUT - 1), "unknown status");
    ck_assert_str_eq(cel_strerror(-1000), "unknown status");
}
END_TEST

START_TEST(test_strerror_texts)
{
    ck_assert_str_eq(cel_strerror(CEL_OK), "success");
    ck_assert_str_eq(cel_strerror(CEL_EDECODE),
                     "message body could not be decoded");
    ck_assert_str_eq(cel_strerror(CEL_ENOTFOUND), "not found");
    ck_assert_str_eq(cel_strerror(CEL_ETIMEOUT), "timed out");
}
END_TEST

/* ---- task registry ------------------------------------------------------ */

START_TEST(test_add_task_registers_with_celery_defaults)
{
    cel_task_t *task = cel_app_add_task(app, "tasks.add", noop_task);
    ck_assert_ptr_nonnull(task);
    ck_assert_ptr_eq(cel__app_find_task(app, "tasks.add"), task);
    ck_assert_str_eq(task->name, "tasks.add");
    ck_assert_int_eq(task->max_retries, 3);
    ck_assert_double_eq(task->default_retry_delay, 180.0);
    ck_assert_int_eq(task->acks_late, -1);
    ck_assert_int_eq(task->ignore_result, -1);
    ck_assert_double_eq(task->time_limit, 0);
    ck_assert_ptr_null(cel__app_find_task(app, "tasks.mul"));
}
END_TEST

START_TEST(test_add_task_duplicate_returns_null)
{
    cel_task_t *first = cel_app_add_task(app, "tasks.add", noop_task);
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(cel_app_add_task(app, "tasks.add", noop_task));
    ck_assert_str_eq(cel_app_last_error(app),
                     "task tasks.add is already registered");
    ck_assert_ptr_eq(cel__app_find_task(app, "tasks.add"), first);
    ck_assert_uint_eq(app->task_count, 1);
}
END_TEST

START_TEST(test_add_task_needs_name_and_function)
{
    ck_assert_ptr_null(cel_app_add_task(app, NULL, noop_task));
    ck_assert_ptr_null(cel_app_add_task(app, "tasks.add", NULL));
    ck_assert_str_eq(cel_app_last_error(app),
                     "a task needs a name and a function");
    ck_assert_uint_eq(app->task_count, 0);
}
END_TEST

START_TEST(test_add_task_keeps_handles_as_registry_grows)
{
    cel_task_t *handles[100];
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "tasks.t%d", i);
        handles[i] = cel_app_add_task(app, name, noop_task);
        ck_assert_ptr_nonnull(handles[i]);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "tasks.t%d", i);
        ck_assert_ptr_eq(cel__app_find_task(app, name), handles[i]);
    }
}
END_TEST

START_TEST(test_app_free_null_is_noop)
{
    cel_app_free(NULL);
}
END_TEST

static Suite *settings_suite(void)
{
    Suite *suite = suite_create("settings");

    TCase *values = tcase_create("values");
    tcase_add_checked_fixture(values, create_app, free_app);
    tcase_add_test(values, test_settings_have_celery_defaults);
    tcase_add_test(values, test_set_string_setting);
    tcase_add_test(values, test_set_string_none_unsets_it);
    tcase_add_test(values, test_set_bool_accepts_python_spellings);
    tcase_add_test(values, test_set_int_setting);
    tcase_add_test(values, test_set_float_setting);
    tcase_add_test(values, test_out_of_range_is_einval);
    tcase_add_test(values, test_setting_names_ignore_case);
    tcase_add_test(values, test_get_truncates_to_buffer);
    tcase_add_loop_test(values, test_set_invalid_value_is_einval, 0,
                        (int)INVALID_COUNT);
    tcase_add_test(values, test_unknown_setting_is_enotfound);
    suite_add_tcase(suite, values);

    TCase *status = tcase_create("strerror");
    tcase_add_test(status, test_strerror_is_distinct_for_every_code);
    tcase_add_test(status, test_strerror_of_unknown_code);
    tcase_add_test(status, test_strerror_texts);
    suite_add_tcase(suite, status);

    TCase *tasks = tcase_create("tasks");
    tcase_add_checked_fixture(tasks, create_app, free_app);
    tcase_add_test(tasks, test_add_task_registers_with_celery_defaults);
    tcase_add_test(tasks, test_add_task_duplicate_returns_null);
    tcase_add_test(tasks, test_add_task_needs_name_and_function);
    tcase_add_test(tasks, test_add_task_keeps_handles_as_registry_grows);
    tcase_add_test(tasks, test_app_free_null_is_noop);
    suite_add_tcase(suite, tasks);

    /* Tests that pin a bug still open in the code under test. */
    TCase *regressions = tcase_create("regressions");
    tcase_add_checked_fixture(regressions, create_app, free_app);
    tcase_add_test(regressions, test_set_bool_to_null_is_einval);
    suite_add_tcase(suite, regressions);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(settings_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
