/* Result bodies, exception dicts and tracebacks as Celery's backends store
 * them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* Parses an encoded body, failing the test when it is not a JSON object. */
static json_t *parse_body(const char *text)
{
    ck_assert_ptr_nonnull(text);
    json_error_t error;
    json_t *body = json_loads(text, 0, &error);
    ck_assert_msg(json_is_object(body), "not a JSON object: %s", text);
    return body;
}

static bool ends_with(const char *text, const char *suffix)
{
    size_t len = strlen(text);
    size_t suffix_len = strlen(suffix);
    return len >= suffix_len && strcmp(text + len - suffix_len, suffix) == 0;
}

START_TEST(test_rpc_body_has_exactly_five_keys)
{
    json_t *result = json_integer(5);
    json_t *children = json_array();
    char *text =
        cel__result_encode_rpc("id-1", "SUCCESS", result, NULL, children);
    json_t *body = parse_body(text);

    ck_assert_int_eq(json_object_size(body), 5);
    ck_assert_str_eq(json_string_value(json_object_get(body, "task_id")),
                     "id-1");
    ck_assert_str_eq(json_string_value(json_object_get(body, "status")),
                     "SUCCESS");
    ck_assert(json_equal(json_object_get(body, "result"), result));
    ck_assert(json_is_null(json_object_get(body, "traceback")));
    ck_assert(json_equal(json_object_get(body, "children"), children));

    json_decref(body);
    free(text);
    json_decref(children);
    json_decref(result);
}
END_TEST

START_TEST(test_rpc_text_head_and_end_make_the_whole_body)
{
    const char *result_text = "{\"sum\":[1,\"two\"]}";
    char *whole =
        cel__result_encode_rpc_text("id-\"quoted\"", "SUCCESS", result_text);
    size_t head_len = 0;
    char *head =
        cel__result_rpc_text_head("id-\"quoted\"", "SUCCESS", &head_len);
    ck_assert_ptr_nonnull(whole);
    ck_assert_ptr_nonnull(head);
    ck_assert_uint_eq(head_len, strlen(head));

    char joined[256];
    snprintf(joined, sizeof joined, "%s%s%s", head, result_text,
             CEL__RPC_TEXT_BODY_END);
    ck_assert_str_eq(joined, whole);

    free(head);
    free(whole);
}
END_TEST

/* Under LeakSanitizer this also checks that the default list is freed. */
START_TEST(test_rpc_body_children_default_to_empty_list)
{
    char *text = cel__result_encode_rpc("id-5", "SUCCESS", NULL, NULL, NULL);
    json_t *body = parse_body(text);

    ck_assert_int_eq(json_object_size(body), 5);
    json_t *children = json_object_get(body, "children");
    ck_assert(json_is_array(children));
    ck_assert_int_eq(json_array_size(children), 0);

    json_decref(body);
    free(text);
}
END_TEST

START_TEST(test_rpc_body_null_result_is_json_null)
{
    json_t *children = json_array();
    char *text =
        cel__result_encode_rpc("id-2", "SUCCESS", NULL, NULL, children);
    json_t *body = parse_body(text);
    json_t *result = json_object_get(body, "result");
    ck_assert_ptr_nonnull(result);
    ck_assert(json_is_null(result));

    json_decref(body);
    free(text);
    json_decref(children);
}
END_TEST

START_TEST(test_rpc_body_borrows_result_and_children)
{
    json_t *result = json_pack("{s:i}", "sum", 5);
    json_t *children = json_pack("[[[s, n], n]]", "child-1");
    size_t result_refs = result->refcount;
    size_t children_refs = children->refcount;

    char *text =
        cel__result_encode_rpc("id-3", "SUCCESS", result, NULL, children);
    ck_assert_uint_eq(result->refcount, result_refs);
    ck_assert_uint_eq(children->refcount, children_refs);
    json_t *body = parse_body(text);
    ck_assert(json_equal(json_object_get(body, "result"), result));
    ck_assert(json_equal(json_object_get(body, "children"), children));

    json_decref(body);
    free(text);
    json_decref(result);
    json_decref(children);
}
END_TEST

START_TEST(test_rpc_failure_body_carries_exception_and_traceback)
{
    json_t *exc = cel__exception_new("ValueError", "builtins", "boom");
    char *traceback =
        cel__traceback_format("tasks.fail", "ValueError", "builtins", "boom");
    json_t *children = json_array();
    char *text =
        cel__result_encode_rpc("id-4", "FAILURE", exc, traceback, children);
    json_t *body = parse_body(text);

    ck_assert_str_eq(json_string_value(json_object_get(body, "status")),
                     "FAILURE");
    ck_assert(json_equal(json_object_get(body, "result"), exc));
    ck_assert_str_eq(json_string_value(json_object_get(body, "traceback")),
                     traceback);

    json_decref(body);
    free(text);
    free(traceback);
    json_decref(children);
    json_decref(exc);
}
END_TEST

START_TEST(test_exception_dict_has_celery_shape)
{
    json_t *exc = cel__exception_new("ValueError", "builtins", "boom");
    ck_assert_ptr_nonnull(exc);

    ck_assert_int_eq(json_object_size(exc), 3);
    ck_assert_str_eq(json_string_value(json_object_get(exc, "exc_type")),
                     "ValueError");
    ck_assert_str_eq(json_string_value(json_object_get(exc, "exc_module")),
                     "builtins");
    json_t *message = json_object_get(exc, "exc_message");
    ck_assert(json_is_array(message));
    ck_assert_int_eq(json_array_size(message), 1);
    ck_assert_str_eq(json_string_value(json_array_get(message, 0)), "boom");

    json_decref(exc);
}
END_TEST

START_TEST(test_exception_without_message_has_empty_args)
{
    json_t *exc = cel__exception_new("MaxRetriesExceededError",
                                     "celery.exceptions", NULL);
    ck_assert_ptr_nonnull(exc);

    json_t *message = json_object_get(exc, "exc_message");
    ck_assert(json_is_array(message));
    ck_assert_int_eq(json_array_size(message), 0);
    ck_assert_str_eq(json_string_value(json_object_get(exc, "exc_module")),
                     "celery.exceptions");

    json_decref(exc);
}
END_TEST

START_TEST(test_traceback_ends_with_type_and_message)
{
    char *text =
        cel__traceback_format("tasks.fail", "ValueError", "builtins", "boom");
    ck_assert_ptr_nonnull(text);

    ck_assert_msg(strncmp(text, "Traceback (most recent call last):\n", 35) ==
                      0,
                  "traceback starts with: %s", text);
    ck_assert_ptr_nonnull(strstr(text, "tasks.fail"));
    ck_assert_msg(ends_with(text, "\nValueError: boom\n"),
                  "traceback ends with: %s", text);

    free(text);
}
END_TEST

START_TEST(test_traceback_qualifies_non_builtin_module)
{
    char *text = cel__traceback_format("tasks.fail", "CustomError",
                                       "myapp.errors", "bad input");
    ck_assert_msg(ends_with(text, "\nmyapp.errors.CustomError: bad input\n"),
                  "traceback ends with: %s", text);
    free(text);
}
END_TEST

START_TEST(test_traceback_has_exact_text)
{
    char *text =
        cel__traceback_format("tasks.fail", "ValueError", "builtins", "boom");
    ck_assert_str_eq(text, "Traceback (most recent call last):\n"
                           "  File \"<celeriac>\", in tasks.fail\n"
                           "ValueError: boom\n");
    free(text);
}
END_TEST

/* 2026-12-04T09:29:03.378759Z as epoch seconds. */
#define DATE_DONE_EPOCH 1796376543.378759

START_TEST(test_meta_success_has_celery_keys_in_order)
{
    json_t *result = json_integer(5);
    cel__result_meta_t meta = {
        .task_id = "id-1",
        .status = "SUCCESS",
        .result = result,
        .date_done = DATE_DONE_EPOCH,
    };
    char *text = cel__result_encode_meta(&meta);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, "{\"status\": \"SUCCESS\", \"result\": 5, "
                           "\"traceback\": null, \"children\": [], "
                           "\"date_done\": \"2026-12-04T09:29:03.378759\", "
                           "\"task_id\": \"id-1\"}");
    free(text);
    json_decref(result);
}
END_TEST

START_TEST(test_meta_group_and_parent_ids_when_set)
{
    cel__result_meta_t meta = {
        .task_id = "id-2",
        .status = "SUCCESS",
        .group_id = "group-1",
        .parent_id = "parent-1",
        .date_done = DATE_DONE_EPOCH,
    };
    char *text = cel__result_encode_meta(&meta);
    json_t *body = parse_body(text);

    ck_assert_int_eq(json_object_size(body), 8);
    ck_assert_str_eq(json_string_value(json_object_get(body, "group_id")),
                     "group-1");
    ck_assert_str_eq(json_string_value(json_object_get(body, "parent_id")),
                     "parent-1");
    ck_assert(json_is_null(json_object_get(body, "result")));
    ck_assert(ends_with(text, "\"group_id\": \"group-1\", \"parent_id\": "
                              "\"parent-1\", \"task_id\": \"id-2\"}"));
    json_decref(body);
    free(text);
}
END_TEST

START_TEST(test_meta_date_done_only_for_ready_states)
{
    static const struct {
        const char *status;
        bool ready;
    } CASES[] = {
        {"SUCCESS", true},  {"FAILURE", true}, {"REVOKED", true},
        {"STARTED", false}, {"RETRY", false},  {"PROGRESS", false},
    };
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        cel__result_meta_t meta = {
            .task_id = "id-3",
            .status = CASES[i].status,
            .date_done = DATE_DONE_EPOCH,
        };
        char *text = cel__result_encode_meta(&meta);
        json_t *body = parse_body(text);
        json_t *date_done = json_object_get(body, "date_done");
        ck_assert_msg(json_is_string(date_done) == CASES[i].ready, "%s: %s",
                      CASES[i].status, text);
        ck_assert_msg(json_is_null(date_done) == !CASES[i].ready, "%s",
                      CASES[i].status);
        ck_assert(cel__result_state_is_ready(CASES[i].status) ==
                  CASES[i].ready);
        json_decref(body);
        free(text);
    }
}
END_TEST

START_TEST(test_meta_date_done_without_microseconds)
{
    cel__result_meta_t meta = {
        .task_id = "id-4",
        .status = "FAILURE",
        .date_done = 1796376543.0,
    };
    char *text = cel__result_encode_meta(&meta);
    json_t *body = parse_body(text);
    ck_assert_str_eq(json_string_value(json_object_get(body, "date_done")),
                     "2026-12-04T09:29:03");
    json_decref(body);
    free(text);
}
END_TEST

START_TEST(test_meta_failure_carries_exception_and_children)
{
    json_t *exc = cel__exception_new("ValueError", "builtins", "boom");
    json_t *children = json_pack("[[[s, n], n]]", "child-1");
    cel__result_meta_t meta = {
        .task_id = "id-5",
        .status = "FAILURE",
        .result = exc,
        .traceback = "Traceback\nValueError: boom\n",
        .children = children,
        .date_done = DATE_DONE_EPOCH,
    };
    char *text = cel__result_encode_meta(&meta);
    json_t *body = parse_body(text);

    ck_assert(json_equal(json_object_get(body, "result"), exc));
    ck_assert(json_equal(json_object_get(body, "children"), children));
    ck_assert_str_eq(json_string_value(json_object_get(body, "traceback")),
                     "Traceback\nValueError: boom\n");
    ck_assert_int_eq(json_object_size(body), 6);
    /* Borrowed: the caller's references are untouched. */
    ck_assert_int_eq(exc->refcount, 1);
    ck_assert_int_eq(children->refcount, 1);

    json_decref(body);
    free(text);
    json_decref(children);
    json_decref(exc);
}
END_TEST

START_TEST(test_meta_without_task_id_is_rejected)
{
    cel__result_meta_t meta = {.status = "SUCCESS"};
    ck_assert_ptr_null(cel__result_encode_meta(&meta));
}
END_TEST

/* Expected texts come from Python 3.11's json.dumps([1, id, state,
 * result]), which Celery 5.2's on_chord_part_return writes. */
START_TEST(test_chord_entry_matches_python_bytes)
{
    json_t *five = json_integer(5);
    char *text = cel__chord_entry_encode("id-1", "SUCCESS", five);
    ck_assert_str_eq(text, "[1, \"id-1\", \"SUCCESS\", 5]");
    free(text);
    json_decref(five);

    json_t *exc = cel__exception_new("ValueError", "builtins", "boom");
    text = cel__chord_entry_encode("id-2", "FAILURE", exc);
    ck_assert_str_eq(text, "[1, \"id-2\", \"FAILURE\", {\"exc_type\": "
                           "\"ValueError\", \"exc_message\": [\"boom\"], "
                           "\"exc_module\": \"builtins\"}]");
    free(text);
    json_decref(exc);

    text = cel__chord_entry_encode("id-3", "SUCCESS", NULL);
    ck_assert_str_eq(text, "[1, \"id-3\", \"SUCCESS\", null]");
    free(text);
}
END_TEST

/* The expected text is Python 3.11's json.dumps() of the same value. */
START_TEST(test_python_dumps_matches_python_bytes)
{
    json_error_t error;
    json_t *value = json_loads(
        "{\"s\": \"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u007f \\u00e9 "
        "\\ud83d\\ude00\", \"f\": [0.1, 1e16, 1e-05, 2.5, -0.0, 1.0, "
        "123456789.125], \"n\": null, \"t\": true, \"F\": false, \"i\": -42, "
        "\"e\": {}, \"a\": []}",
        0, &error);
    ck_assert_msg(value != NULL, "%s", error.text);
    char *text = cel__json_dumps_python(value);
    ck_assert_str_eq(
        text, "{\"s\": \"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u007f \\u00e9 "
              "\\ud83d\\ude00\", \"f\": [0.1, 1e+16, 1e-05, 2.5, -0.0, 1.0, "
              "123456789.125], \"n\": null, \"t\": true, \"F\": false, "
              "\"i\": -42, \"e\": {}, \"a\": []}");
    free(text);
    json_decref(value);
}
END_TEST

START_TEST(test_python_dumps_keeps_nul_in_strings)
{
    json_t *value = json_stringn("a\0b", 3);
    char *text = cel__json_dumps_python(value);
    ck_assert_str_eq(text, "\"a\\u0000b\"");
    free(text);
    json_decref(value);
}
END_TEST

static Suite *result_suite(void)
{
    Suite *suite = suite_create("result");

    TCase *rpc = tcase_create("rpc");
    tcase_add_test(rpc, test_rpc_body_has_exactly_five_keys);
    tcase_add_test(rpc, test_rpc_body_null_result_is_json_null);
    tcase_add_test(rpc, test_rpc_body_borrows_result_and_children);
    tcase_add_test(rpc, test_rpc_text_head_and_end_make_the_whole_body);
    tcase_add_test(rpc, test_rpc_failure_body_carries_exception_and_traceback);
    suite_add_tcase(suite, rpc);

    TCase *redis = tcase_create("redis");
    tcase_add_test(redis, test_meta_success_has_celery_keys_in_order);
    tcase_add_test(redis, test_meta_group_and_parent_ids_when_set);
    tcase_add_test(redis, test_meta_date_done_only_for_ready_states);
    tcase_add_test(redis, test_meta_date_done_without_microseconds);
    tcase_add_test(redis, test_meta_failure_carries_exception_and_children);
    tcase_add_test(redis, test_meta_without_task_id_is_rejected);
    tcase_add_test(redis, test_chord_entry_matches_python_bytes);
    tcase_add_test(redis, test_python_dumps_matches_python_bytes);
    tcase_add_test(redis, test_python_dumps_keeps_nul_in_strings);
    suite_add_tcase(suite, redis);

    TCase *exception = tcase_create("exception");
    tcase_add_test(exception, test_exception_dict_has_celery_shape);
    tcase_add_test(exception, test_exception_without_message_has_empty_args);
    tcase_add_test(exception, test_traceback_ends_with_type_and_message);
    tcase_add_test(exception, test_traceback_qualifies_non_builtin_module);
    tcase_add_test(exception, test_traceback_has_exact_text);
    suite_add_tcase(suite, exception);

    /* Tests that pin a bug still open in the code under test. */
    TCase *regressions = tcase_create("regressions");
    tcase_add_test(regressions, test_rpc_body_children_default_to_empty_list);
    suite_add_tcase(suite, regressions);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(result_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
