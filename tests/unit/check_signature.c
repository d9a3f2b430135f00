/* Signatures turned into task messages, as Celery's send_task builds them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static const cel__sig_defaults_t DEFAULTS = {
    .task_id = "fresh-id",
    .reply_to = "oid-of-sender",
    .origin = "celery@test",
    .now = 1796385600.0, /* 2026-12-04T12:00:00Z */
};

static json_t *parse(const char *json_text)
{
    json_error_t error;
    json_t *value = json_loads(json_text, JSON_DECODE_ANY, &error);
    ck_assert_msg(value != NULL, "bad JSON in test: %s (%s)", json_text,
                  error.text);
    return value;
}

static void assert_json(json_t *value, const char *expected)
{
    json_t *want = parse(expected);
    char *got =
        json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    ck_assert_msg(json_equal(value, want), "got %s, want %s", got, expected);
    free(got);
    json_decref(want);
}

/* Builds the message of `sig_text` applied with `partial_text` (or NULL)
 * and `overrides_text` (or NULL). */
static int build(const char *sig_text, const char *partial_text,
                 const char *overrides_text, cel__sig_message_t *out)
{
    json_t *sig = parse(sig_text);
    json_t *partial = partial_text ? parse(partial_text) : NULL;
    json_t *overrides = overrides_text ? parse(overrides_text) : NULL;
    json_t *options = cel__signature_options(sig, overrides);
    json_t *args = cel__signature_args(sig, partial);
    char why[200] = "";
    int status = cel__signature_message(sig, args, options, &DEFAULTS, out, why,
                                        sizeof why);
    json_decref(args);
    json_decref(options);
    json_decref(overrides);
    json_decref(partial);
    json_decref(sig);
    return status;
}

START_TEST(test_signature_kind_from_subtask_type_or_name)
{
    json_t *sig = parse("{\"task\": \"celery.group\"}");
    ck_assert_int_eq(cel__signature_kind(sig), CEL__SIG_GROUP);
    json_decref(sig);
    sig = parse("{\"task\": \"x\", \"subtask_type\": \"chord\"}");
    ck_assert_int_eq(cel__signature_kind(sig), CEL__SIG_CHORD);
    json_decref(sig);
    sig = parse("{\"task\": \"celery.chain\", \"subtask_type\": null}");
    ck_assert_int_eq(cel__signature_kind(sig), CEL__SIG_CHAIN);
    json_decref(sig);
    sig = parse("{\"task\": \"tasks.add\"}");
    ck_assert_int_eq(cel__signature_kind(sig), CEL__SIG_TASK);
    json_decref(sig);
}
END_TEST

START_TEST(test_signature_partial_args_come_first)
{
    cel__sig_message_t out;
    ck_assert_int_eq(build("{\"task\": \"tasks.add\", \"args\": [10], "
                           "\"kwargs\": {\"k\": 1}, \"options\": {}}",
                           "[3]", NULL, &out),
                     CEL_OK);
    assert_json(out.msg.args, "[3, 10]");
    assert_json(out.msg.kwargs, "{\"k\": 1}");
    ck_assert_str_eq(out.msg.id, "fresh-id");
    ck_assert_str_eq(out.msg.correlation_id, "fresh-id");
    ck_assert_str_eq(out.msg.reply_to, "oid-of-sender");
    ck_assert_str_eq(out.msg.origin, "celery@test");
    cel__sig_message_clear(&out);
}
END_TEST

START_TEST(test_signature_immutable_keeps_its_own_args)
{
    cel__sig_message_t out;
    ck_assert_int_eq(build("{\"task\": \"tasks.add\", \"args\": [5, 5], "
                           "\"immutable\": true}",
                           "[3]", NULL, &out),
                     CEL_OK);
    assert_json(out.msg.args, "[5, 5]");
    cel__sig_message_clear(&out);
}
END_TEST

START_TEST(test_signature_options_become_the_message)
{
    cel__sig_message_t out;
    ck_assert_int_eq(
        build("{\"task\": \"tasks.add\", \"args\": [], \"options\": {"
              "\"task_id\": \"frozen\", \"reply_to\": \"client-oid\", "
              "\"queue\": \"q1\", \"priority\": 7, \"time_limit\": 30, "
              "\"soft_time_limit\": 20, \"shadow\": \"alias\", "
              "\"group_id\": \"g1\", \"group_index\": 2, "
              "\"headers\": {\"custom\": \"yes\"}, "
              "\"link\": {\"task\": \"cb\"}, \"link_error\": [{\"task\": "
              "\"eb\"}], \"chord\": {\"task\": \"body\"}, \"retries\": 4}}",
              NULL, NULL, &out),
        CEL_OK);
    ck_assert_str_eq(out.msg.id, "frozen");
    ck_assert_str_eq(out.msg.reply_to, "client-oid");
    ck_assert_str_eq(out.queue, "q1");
    ck_assert_int_eq(out.msg.priority, 7);
    ck_assert(out.msg.time_limit == 30 && out.msg.soft_time_limit == 20);
    ck_assert_str_eq(out.msg.shadow, "alias");
    ck_assert_str_eq(out.msg.group, "g1");
    ck_assert(out.msg.has_group_index && out.msg.group_index == 2);
    ck_assert_int_eq(out.msg.retries, 4);
    assert_json(out.msg.headers, "{\"custom\": \"yes\"}");
    assert_json(out.msg.callbacks, "[{\"task\": \"cb\"}]");
    assert_json(out.msg.errbacks, "[{\"task\": \"eb\"}]");
    assert_json(out.msg.chord, "{\"task\": \"body\"}");
    cel__sig_message_clear(&out);
}
END_TEST

START_TEST(test_signature_overrides_win_except_group_id)
{
    cel__sig_message_t out;
    ck_assert_int_eq(
        build("{\"task\": \"t\", \"options\": {\"parent_id\": \"old\", "
              "\"group_id\": \"mine\"}}",
              NULL,
              "{\"parent_id\": \"p\", \"root_id\": \"r\", \"group_id\": "
              "\"other\", \"priority\": null, \"chain\": []}",
              &out),
        CEL_OK);
    ck_assert_str_eq(out.msg.parent_id, "p");
    ck_assert_str_eq(out.msg.root_id, "r");
    ck_assert_str_eq(out.msg.group, "mine");
    ck_assert_int_eq(out.msg.priority, -1);
    assert_json(out.msg.chain, "[]");
    cel__sig_message_clear(&out);
}
END_TEST

START_TEST(test_signature_countdown_and_expires_are_from_now)
{
    cel__sig_message_t out;
    ck_assert_int_eq(build("{\"task\": \"t\", \"options\": {\"countdown\": "
                           "10, \"expires\": 60}}",
                           NULL, NULL, &out),
                     CEL_OK);
    ck_assert_str_eq(out.msg.eta, "2026-12-04T12:00:10+00:00");
    ck_assert_str_eq(out.msg.expires, "2026-12-04T12:01:00+00:00");
    ck_assert_str_eq(out.expiration, "60000");
    cel__sig_message_clear(&out);

    ck_assert_int_eq(build("{\"task\": \"t\", \"options\": {\"eta\": "
                           "\"2026-12-04T12:05:00+00:00\"}}",
                           NULL, NULL, &out),
                     CEL_OK);
    ck_assert_str_eq(out.msg.eta, "2026-12-04T12:05:00+00:00");
    ck_assert(out.msg.expires == NULL && out.expiration == NULL);
    cel__sig_message_clear(&out);
}
END_TEST

START_TEST(test_signature_exchange_and_queue_objects)
{
    cel__sig_message_t out;
    ck_assert_int_eq(build("{\"task\": \"t\", \"options\": {\"queue\": "
                           "{\"name\": \"qq\"}, \"exchange\": \"ex\", "
                           "\"routing_key\": \"rk\"}}",
                           NULL, NULL, &out),
                     CEL_OK);
    ck_assert_str_eq(out.queue, "qq");
    ck_assert_str_eq(out.exchange, "ex");
    ck_assert_str_eq(out.routing_key, "rk");
    cel__sig_message_clear(&out);
}
END_TEST

START_TEST(test_signature_invalid_ones_are_refused)
{
    cel__sig_message_t out;
    ck_assert_int_eq(build("{\"args\": []}", NULL, NULL, &out), CEL_EINVAL);
    cel__sig_message_clear(&out);
    ck_assert_int_eq(build("{\"task\": \"\"}", NULL, NULL, &out), CEL_EINVAL);
    cel__sig_message_clear(&out);
    ck_assert_int_eq(
        build("{\"task\": \"t\", \"kwargs\": [1]}", NULL, NULL, &out),
        CEL_EINVAL);
    cel__sig_message_clear(&out);
    ck_assert_int_eq(build("{\"task\": \"t\", \"options\": {\"eta\": "
                           "\"not a time\"}}",
                           NULL, NULL, &out),
                     CEL_EINVAL);
    cel__sig_message_clear(&out);
    ck_assert_int_eq(build("[1, 2]", NULL, NULL, &out), CEL_EINVAL);
    cel__sig_message_clear(&out);
}
END_TEST

START_TEST(test_signature_message_encodes_as_v2)
{
    cel__sig_message_t out;
    ck_assert_int_eq(build("{\"task\": \"tasks.add\", \"args\": [1], "
                           "\"options\": {\"task_id\": \"id1\"}}",
                           "[2]", "{\"chain\": [{\"task\": \"next\"}]}", &out),
                     CEL_OK);
    json_t *headers = NULL;
    char *body = NULL;
    size_t body_len = 0;
    ck_assert_int_eq(cel__task_encode_v2(&out.msg, &headers, &body, &body_len),
                     CEL_OK);
    ck_assert_str_eq(json_string_value(json_object_get(headers, "id")), "id1");
    ck_assert_str_eq(json_string_value(json_object_get(headers, "argsrepr")),
                     "(2, 1)");
    json_t *decoded = parse(body);
    assert_json(decoded, "[[2, 1], {}, {\"callbacks\": null, \"errbacks\": "
                         "null, \"chain\": [{\"task\": \"next\"}], "
                         "\"chord\": null}]");
    json_decref(decoded);
    free(body);
    json_decref(headers);
    cel__sig_message_clear(&out);
}
END_TEST

static Suite *signature_suite(void)
{
    Suite *suite = suite_create("signature");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_signature_kind_from_subtask_type_or_name);
    tcase_add_test(core, test_signature_partial_args_come_first);
    tcase_add_test(core, test_signature_immutable_keeps_its_own_args);
    tcase_add_test(core, test_signature_options_become_the_message);
    tcase_add_test(core, test_signature_overrides_win_except_group_id);
    tcase_add_test(core, test_signature_countdown_and_expires_are_from_now);
    tcase_add_test(core, test_signature_exchange_and_queue_objects);
    tcase_add_test(core, test_signature_invalid_ones_are_refused);
    tcase_add_test(core, test_signature_message_encodes_as_v2);
    suite_add_tcase(suite, core);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(signature_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
