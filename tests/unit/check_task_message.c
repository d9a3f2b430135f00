/*
 * Task message codec: decoding the golden Celery 5.2.6 messages, v1, hybrid
 * and malformed bodies, the decoder caps, and v2 encoding.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "support_golden.h"

#define WHY_LEN        256
#define TIME_TOLERANCE 1e-6

/* Golden file stems, listed once in main() and read by the loop tests. */
static char **golden_names;
static size_t golden_count;

/* Decodes a golden file with the default caps. Returns the decode status. */
static int decode_golden(const char *name, golden_message_t *golden,
                         cel__task_message_t *msg, char *why)
{
    char error[256];
    int loaded = golden_message_load(name, golden, error, sizeof error);
    ck_assert_msg(loaded == 0, "%s", error);
    cel__limits_t limits;
    cel__limits_default(&limits);
    return cel__task_decode(&golden->wire, &limits, msg, why, WHY_LEN);
}

/* Decodes a body given as text with the given headers (borrowed). */
static int decode_text(json_t *headers, const char *body,
                       const cel__limits_t *limits, cel__task_message_t *msg,
                       char *why)
{
    cel__limits_t defaults;
    cel__limits_default(&defaults);
    cel__wire_message_t wire = {
        .content_type = "application/json",
        .content_encoding = "utf-8",
        .correlation_id = "corr-1",
        .reply_to = "reply-1",
        .priority = -1,
        .headers = headers,
        .body = body,
        .body_len = strlen(body),
    };
    return cel__task_decode(&wire, limits ? limits : &defaults, msg, why,
                            WHY_LEN);
}

/* Returns v2 headers {task, id} as a new object. */
static json_t *minimal_headers(void)
{
    return json_pack("{s:s, s:s}", "task", "tasks.add", "id", "task-1");
}

static void assert_json_text(json_t *actual, const char *expected_text,
                             const char *field)
{
    json_error_t error;
    json_t *expected = json_loads(expected_text, JSON_DECODE_ANY, &error);
    ck_assert_msg(expected != NULL, "bad expected JSON for %s", field);
    char *actual_text = json_dumps(actual, JSON_COMPACT | JSON_ENCODE_ANY);
    ck_assert_msg(json_equal(actual, expected), "%s is %s, expected %s", field,
                  actual_text ? actual_text : "NULL", expected_text);
    free(actual_text);
    json_decref(expected);
}

static void assert_list_size(json_t *list, int expected, const char *field)
{
    if (expected < 0) {
        ck_assert_msg(list == NULL, "%s is present, expected NULL", field);
        return;
    }
    ck_assert_msg(json_is_array(list), "%s is not a list", field);
    ck_assert_int_eq(json_array_size(list), expected);
}

/* ---- golden messages: every field against the file's own data ---------- */

static void assert_text_member(const char *golden, json_t *fields,
                               const char *key, const char *actual)
{
    const char *expected = json_string_value(json_object_get(fields, key));
    bool same =
        (expected == NULL && actual == NULL) ||
        (expected != NULL && actual != NULL && strcmp(expected, actual) == 0);
    ck_assert_msg(same, "%s: %s is '%s', expected '%s'", golden, key,
                  actual ? actual : "NULL", expected ? expected : "NULL");
}

static void assert_embed_member(const char *golden, json_t *embed,
                                const char *key, json_t *actual)
{
    json_t *expected = json_object_get(embed, key);
    if (expected == NULL || json_is_null(expected)) {
        ck_assert_msg(actual == NULL, "%s: %s should be NULL", golden, key);
        return;
    }
    ck_assert_msg(json_equal(actual, expected), "%s: %s differs", golden, key);
}

START_TEST(test_decode_golden_fields_match_file)
{
    const char *name = golden_names[_i];
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_golden(name, &golden, &msg, why);
    ck_assert_msg(status == CEL_OK, "%s: status %d (%s)", name, status, why);

    json_t *body = golden_body_json(&golden);
    ck_assert_msg(body != NULL, "%s: body is not JSON", name);
    bool is_v2 = json_object_get(golden.headers, "task") != NULL;
    json_t *fields = is_v2 ? golden.headers : body;
    json_t *args =
        is_v2 ? json_array_get(body, 0) : json_object_get(body, "args");
    json_t *kwargs =
        is_v2 ? json_array_get(body, 1) : json_object_get(body, "kwargs");
    json_t *embed = is_v2 ? json_array_get(body, 2) : body;

    ck_assert_int_eq(msg.protocol, is_v2 ? 2 : 1);
    ck_assert(!msg.hybrid);
    assert_text_member(name, fields, "id", msg.id);
    assert_text_member(name, fields, "task", msg.task);
    assert_text_member(name, fields, "shadow", msg.shadow);
    assert_text_member(name, fields, "group", msg.group);
    assert_text_member(name, fields, "eta", msg.eta);
    assert_text_member(name, fields, "expires", msg.expires);
    if (is_v2) {
        assert_text_member(name, fields, "root_id", msg.root_id);
        assert_text_member(name, fields, "parent_id", msg.parent_id);
        assert_text_member(name, fields, "origin", msg.origin);
        assert_text_member(name, fields, "argsrepr", msg.argsrepr);
        assert_text_member(name, fields, "kwargsrepr", msg.kwargsrepr);
        ck_assert_msg(json_equal(msg.headers, golden.headers),
                      "%s: headers differ", name);
    }
    ck_assert_int_eq(msg.retries,
                     json_integer_value(json_object_get(fields, "retries")));
    ck_assert_int_eq(msg.ignore_result,
                     json_is_true(json_object_get(fields, "ignore_result")));
    ck_assert_int_eq(msg.has_group_index,
                     json_is_integer(json_object_get(fields, "group_index")));
    ck_assert_msg(json_equal(msg.args, args), "%s: args differ", name);
    ck_assert_msg(json_equal(msg.kwargs, kwargs), "%s: kwargs differ", name);
    assert_embed_member(name, embed, "callbacks", msg.callbacks);
    assert_embed_member(name, embed, "errbacks", msg.errbacks);
    assert_embed_member(name, embed, "chain", msg.chain);
    assert_embed_member(name, embed, "chord", msg.chord);
    ck_assert_pstr_eq(msg.reply_to, golden.wire.reply_to);
    ck_assert_pstr_eq(msg.correlation_id, golden.wire.correlation_id);
    ck_assert_int_eq(msg.priority, golden.wire.priority);

    json_decref(body);
    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

/* ---- golden messages: literal expected values -------------------------- */

typedef struct golden_expectation {
    const char *name;
    int protocol;
    bool compressed;
    const char *eta;
    double eta_ts;
    const char *expires;
    double expires_ts;
    int retries;
    double time_limit;
    double soft_time_limit;
    bool ignore_result;
    int priority;
    const char *shadow;
    const char *group;
    int callbacks; /* list size, -1 for NULL */
    int errbacks;
    int chain;
    bool chord;
    const char *args;
    const char *kwargs;
} golden_expectation_t;

static const golden_expectation_t EXPECTATIONS[] = {
    {"add", 2,  false, NULL, 0,  NULL, 0,  0,     0,       0,
     false, -1, NULL,  NULL, -1, -1,   -1, false, "[2,3]", "{}"},
    {"chain_first", 2,  false, NULL, 0,  NULL, 0, 0,     0,       0,
     false,         -1, NULL,  NULL, -1, -1,   2, false, "[1,2]", "{}"},
    {"compression_zlib",
     2,
     true,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"countdown",
     2,
     false,
     "2026-12-04T10:24:55.402092+00:00",
     1796379895.402092,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"custom_headers",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"eta_datetime",
     2,
     false,
     "2030-01-02T03:04:05.678901+00:00",
     1893553445.678901,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"eta_naive_datetime",
     2,
     false,
     "2030-01-02T03:04:05",
     1893553445.0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"expires",
     2,
     false,
     NULL,
     0,
     "2026-12-04T10:25:45.563644+00:00",
     1796379945.563644,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"float_args", 2,  false, NULL, 0,  NULL, 0,  0,     0,           0,
     false,        -1, NULL,  NULL, -1, -1,   -1, false, "[2.5,0.1]", "{}"},
    {"group_member",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     "6b966424-85a8-496d-861b-571e19fe1958",
     -1,
     -1,
     -1,
     false,
     "[1,1]",
     "{}"},
    {"ignore_result",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     true,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"kwargs_only",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[]",
     "{\"x\":2,\"y\":3}"},
    {"large_int",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[1099511627776,1]",
     "{}"},
    {"link", 2,  false, NULL, 0, NULL, 0,  0,     0,       0,
     false,  -1, NULL,  NULL, 1, -1,   -1, false, "[2,3]", "{}"},
    {"link_error",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     1,
     -1,
     false,
     "[\"boom\"]",
     "{}"},
    {"nested_args",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[{\"a\":[1,2,{\"b\":null,\"c\":[true,false]}],\"d\":{\"e\":{\"f\":\"\"}},"
     "\"g\":[]}]",
     "{}"},
    {"priority", 2, false, NULL, 0,  NULL, 0,  0,     0,       0,
     false,      5, NULL,  NULL, -1, -1,   -1, false, "[2,3]", "{}"},
    {"protocol_v1", 1,  false, NULL, 0,  NULL, 0,  0,     0,       0,
     false,         -1, NULL,  NULL, -1, -1,   -1, false, "[2,3]", "{}"},
    {"protocol_v1_countdown",
     1,
     false,
     "2026-12-04T10:24:55.893210+00:00",
     1796379895.89321,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"retry",
     2,
     false,
     "2026-12-04T10:24:46.124228+00:00",
     1796379886.124228,
     NULL,
     0,
     2,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[3]",
     "{}"},
    {"send_task", 2, false, NULL, 0,  NULL, 0,  0,     0,       0,
     false,       0, NULL,  NULL, -1, -1,   -1, false, "[2,3]", "{}"},
    {"shadow",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     "tasks.add.shadowed",
     NULL,
     -1,
     -1,
     -1,
     false,
     "[2,3]",
     "{}"},
    {"time_limits", 2,  false, NULL, 0,  NULL, 0,  0,     30,      20,
     false,         -1, NULL,  NULL, -1, -1,   -1, false, "[2,3]", "{}"},
    {"unicode_args",
     2,
     false,
     NULL,
     0,
     NULL,
     0,
     0,
     0,
     0,
     false,
     -1,
     NULL,
     NULL,
     -1,
     -1,
     -1,
     false,
     "[\"h\\u00e9llo w\\u00f6rld \\u2603 \\u65e5\\u672c \\ud83d\\ude00\"]",
     "{}"},
};

#define EXPECTATION_COUNT (sizeof EXPECTATIONS / sizeof EXPECTATIONS[0])

START_TEST(test_decode_golden_fields_have_literal_values)
{
    const golden_expectation_t *want = &EXPECTATIONS[_i];
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_golden(want->name, &golden, &msg, why);
    ck_assert_msg(status == CEL_OK, "%s: status %d (%s)", want->name, status,
                  why);

    ck_assert_int_eq(msg.protocol, want->protocol);
    ck_assert_int_eq(json_object_get(msg.headers, "compression") != NULL,
                     want->compressed);
    ck_assert_pstr_eq(msg.eta, want->eta);
    if (want->eta != NULL)
        ck_assert_double_eq_tol(msg.eta_ts, want->eta_ts, TIME_TOLERANCE);
    ck_assert_pstr_eq(msg.expires, want->expires);
    if (want->expires != NULL)
        ck_assert_double_eq_tol(msg.expires_ts, want->expires_ts,
                                TIME_TOLERANCE);
    ck_assert_int_eq(msg.retries, want->retries);
    ck_assert_double_eq(msg.time_limit, want->time_limit);
    ck_assert_double_eq(msg.soft_time_limit, want->soft_time_limit);
    ck_assert_int_eq(msg.ignore_result, want->ignore_result);
    ck_assert_int_eq(msg.priority, want->priority);
    ck_assert_pstr_eq(msg.shadow, want->shadow);
    ck_assert_pstr_eq(msg.group, want->group);
    ck_assert(!msg.has_group_index);
    assert_list_size(msg.callbacks, want->callbacks, "callbacks");
    assert_list_size(msg.errbacks, want->errbacks, "errbacks");
    assert_list_size(msg.chain, want->chain, "chain");
    ck_assert_int_eq(msg.chord != NULL, want->chord);
    assert_json_text(msg.args, want->args, "args");
    assert_json_text(msg.kwargs, want->kwargs, "kwargs");

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_golden_folder_has_one_expectation_per_file)
{
    ck_assert_int_eq(golden_count, EXPECTATION_COUNT);
    for (size_t i = 0; i < golden_count; i++)
        ck_assert_str_eq(golden_names[i], EXPECTATIONS[i].name);
}
END_TEST

START_TEST(test_decode_add_has_exact_v2_fields)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("add", &golden, &msg, why), CEL_OK);

    ck_assert_int_eq(msg.protocol, 2);
    ck_assert(!msg.hybrid);
    ck_assert_str_eq(msg.id, "31df8d65-1e52-43c6-a6bd-296dee9680c7");
    ck_assert_str_eq(msg.task, "tasks.add");
    ck_assert_str_eq(msg.root_id, "31df8d65-1e52-43c6-a6bd-296dee9680c7");
    ck_assert_ptr_null(msg.parent_id);
    ck_assert_ptr_null(msg.group);
    ck_assert_ptr_null(msg.shadow);
    ck_assert_str_eq(msg.origin, "gen6705@vm");
    ck_assert_str_eq(msg.argsrepr, "(2, 3)");
    ck_assert_str_eq(msg.kwargsrepr, "{}");
    ck_assert_str_eq(msg.reply_to, "76747e26-fc40-3218-be3c-b1d7ae7620d8");
    ck_assert_str_eq(msg.correlation_id,
                     "31df8d65-1e52-43c6-a6bd-296dee9680c7");
    ck_assert_ptr_null(msg.eta);
    ck_assert_ptr_null(msg.expires);
    ck_assert_int_eq(msg.retries, 0);
    ck_assert_int_eq(msg.priority, -1);
    ck_assert_ptr_null(msg.callbacks);
    ck_assert_ptr_null(msg.errbacks);
    ck_assert_ptr_null(msg.chain);
    ck_assert_ptr_null(msg.chord);
    assert_json_text(msg.args, "[2,3]", "args");
    assert_json_text(msg.kwargs, "{}", "kwargs");
    ck_assert_int_eq(json_object_size(msg.headers), 16);

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_chain_keeps_reversed_order)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("chain_first", &golden, &msg, why), CEL_OK);

    ck_assert_int_eq(json_array_size(msg.chain), 2);
    json_t *last = json_array_get(msg.chain, 1);
    json_t *first = json_array_get(msg.chain, 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "task")),
                     "tasks.mul");
    ck_assert_str_eq(json_string_value(json_object_get(last, "task")),
                     "tasks.add");
    assert_json_text(json_object_get(last, "args"), "[3]", "chain[1].args");

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_link_callback_is_signature)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("link", &golden, &msg, why), CEL_OK);

    json_t *callback = json_array_get(msg.callbacks, 0);
    ck_assert_str_eq(json_string_value(json_object_get(callback, "task")),
                     "tasks.mul");
    assert_json_text(json_object_get(callback, "args"), "[10]",
                     "callback args");
    ck_assert(json_is_false(json_object_get(callback, "immutable")));

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_custom_headers_are_kept)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("custom_headers", &golden, &msg, why),
                     CEL_OK);

    ck_assert_str_eq(
        json_string_value(json_object_get(msg.headers, "x-trace-id")),
        "trace-1234");
    ck_assert_int_eq(json_integer_value(json_object_get(msg.headers, "tenant")),
                     42);
    assert_json_text(json_object_get(msg.headers, "flags"), "[true,null,1.5]",
                     "flags header");
    assert_json_text(json_object_get(msg.headers, "meta"), "{\"k\":\"v\"}",
                     "meta header");

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_unicode_args_are_utf8)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("unicode_args", &golden, &msg, why), CEL_OK);

    ck_assert_str_eq(json_string_value(json_array_get(msg.args, 0)),
                     "h\xc3\xa9llo w\xc3\xb6rld \xe2\x98\x83 "
                     "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_large_int_keeps_64_bits)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("large_int", &golden, &msg, why), CEL_OK);

    json_t *first = json_array_get(msg.args, 0);
    ck_assert(json_is_integer(first));
    ck_assert(json_integer_value(first) == 1099511627776LL);

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_v1_has_no_v2_only_fields)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("protocol_v1", &golden, &msg, why), CEL_OK);

    ck_assert_int_eq(msg.protocol, 1);
    ck_assert(!msg.hybrid);
    ck_assert_str_eq(msg.id, "cbc1fa45-713e-490d-ba0b-1b18f2c37996");
    ck_assert_str_eq(msg.task, "tasks.add");
    ck_assert_ptr_null(msg.root_id);
    ck_assert_ptr_null(msg.parent_id);
    ck_assert_ptr_null(msg.group);
    ck_assert_ptr_null(msg.chain);
    ck_assert_ptr_nonnull(msg.headers);
    ck_assert_int_eq(json_object_size(msg.headers), 0);
    ck_assert_str_eq(msg.correlation_id,
                     "cbc1fa45-713e-490d-ba0b-1b18f2c37996");

    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_v1_taskset_becomes_group)
{
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(
        NULL,
        "{\"task\": \"tasks.add\", \"id\": \"v1-1\", \"args\": [1], "
        "\"kwargs\": {}, \"taskset\": \"set-7\", \"retries\": 1}",
        NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);

    ck_assert_int_eq(msg.protocol, 1);
    ck_assert_str_eq(msg.group, "set-7");
    ck_assert_str_eq(msg.id, "v1-1");
    ck_assert_int_eq(msg.retries, 1);
    ck_assert_int_eq(json_object_size(msg.headers), 0);

    cel__task_message_clear(&msg);
}
END_TEST

START_TEST(test_decode_v1_callbacks_and_chord_are_read)
{
    json_t *headers = json_object();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(
        headers,
        "{\"task\": \"tasks.add\", \"id\": \"v1-2\", \"args\": [], "
        "\"kwargs\": {}, \"callbacks\": [{\"task\": \"tasks.mul\"}], "
        "\"errbacks\": null, \"chord\": {\"task\": \"tasks.sum\"}, "
        "\"chain\": [{\"task\": \"tasks.ignored\"}]}",
        NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);

    ck_assert_int_eq(json_array_size(msg.callbacks), 1);
    ck_assert_ptr_null(msg.errbacks);
    ck_assert_ptr_nonnull(msg.chord);
    ck_assert_ptr_null(msg.chain);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

/* ---- hybrid and embed -------------------------------------------------- */

START_TEST(test_decode_hybrid_reads_fields_from_body)
{
    json_t *headers = minimal_headers();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(
        headers,
        "{\"id\": \"body-id\", \"task\": \"tasks.other\", \"args\": [1, 2], "
        "\"kwargs\": {\"z\": 1}, \"retries\": 3, \"root_id\": \"root-9\", "
        "\"parent_id\": \"parent-9\", \"eta\": \"2026-01-02T03:04:05Z\", "
        "\"callbacks\": [{\"task\": \"tasks.mul\"}], "
        "\"chain\": [{\"task\": \"tasks.dropped\"}]}",
        NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);

    ck_assert_int_eq(msg.protocol, 2);
    ck_assert(msg.hybrid);
    ck_assert_str_eq(msg.id, "task-1");
    ck_assert_str_eq(msg.task, "tasks.add");
    ck_assert_int_eq(msg.retries, 3);
    ck_assert_str_eq(msg.root_id, "root-9");
    ck_assert_str_eq(msg.parent_id, "parent-9");
    ck_assert_str_eq(msg.eta, "2026-01-02T03:04:05Z");
    ck_assert_double_eq_tol(msg.eta_ts, 1767323045.0, TIME_TOLERANCE);
    assert_json_text(msg.args, "[1,2]", "args");
    assert_json_text(msg.kwargs, "{\"z\":1}", "kwargs");
    ck_assert_int_eq(json_array_size(msg.callbacks), 1);
    ck_assert_ptr_null(msg.chain);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_hybrid_headers_override_body)
{
    json_t *headers = minimal_headers();
    json_object_set_new(headers, "retries", json_integer(5));
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers,
                             "{\"args\": [], \"kwargs\": {}, \"retries\": 3, "
                             "\"id\": \"body-id\"}",
                             NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);

    ck_assert(msg.hybrid);
    ck_assert_str_eq(msg.id, "task-1");
    ck_assert_int_eq(msg.retries, 5);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_hybrid_kwargs_not_mapping_is_rejected)
{
    json_t *headers = minimal_headers();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "{\"args\": [], \"kwargs\": [1]}", NULL,
                             &msg, why);
    ck_assert_int_eq(status, CEL_EINVALTASK);
    ck_assert_str_eq(why, "task keyword arguments are not a mapping");

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_v2_embed_null_is_accepted)
{
    json_t *headers = minimal_headers();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status =
        decode_text(headers, "[[4], {\"a\": 1}, null]", NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);

    ck_assert_int_eq(msg.protocol, 2);
    assert_json_text(msg.args, "[4]", "args");
    assert_json_text(msg.kwargs, "{\"a\":1}", "kwargs");
    ck_assert_ptr_null(msg.callbacks);
    ck_assert_ptr_null(msg.errbacks);
    ck_assert_ptr_null(msg.chain);
    ck_assert_ptr_null(msg.chord);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_v2_empty_embed_is_accepted)
{
    json_t *headers = minimal_headers();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "[[], {}, {}]", NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);
    ck_assert_ptr_null(msg.callbacks);
    ck_assert_ptr_null(msg.chord);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_v2_body_with_two_elements_is_rejected)
{
    json_t *headers = minimal_headers();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "[[2, 3], {}]", NULL, &msg, why);
    ck_assert_int_eq(status, CEL_EINVALTASK);
    ck_assert_str_eq(why, "the body is not a list of [args, kwargs, embed]");
    ck_assert_str_eq(msg.id, "task-1");
    ck_assert_str_eq(msg.task, "tasks.add");

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_v2_body_with_four_elements_is_rejected)
{
    json_t *headers = minimal_headers();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "[[], {}, null, 1]", NULL, &msg, why);
    ck_assert_int_eq(status, CEL_EINVALTASK);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_v2_null_args_and_kwargs_become_empty)
{
    json_t *headers = minimal_headers();
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "[null, null, null]", NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);
    assert_json_text(msg.args, "[]", "args");
    assert_json_text(msg.kwargs, "{}", "kwargs");

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_embed_member_of_wrong_type_is_rejected)
{
    static const char *const BODIES[] = {
        "[[], {}, {\"callbacks\": \"tasks.mul\"}]",
        "[[], {}, {\"errbacks\": {}}]",
        "[[], {}, {\"chain\": 1}]",
        "[[], {}, {\"chord\": []}]",
    };
    static const char *const REASONS[] = {
        "embed callbacks is not a list",
        "embed errbacks is not a list",
        "embed chain is not a list",
        "embed chord is not a signature",
    };
    for (size_t i = 0; i < sizeof BODIES / sizeof BODIES[0]; i++) {
        json_t *headers = minimal_headers();
        cel__task_message_t msg;
        char why[WHY_LEN];
        int status = decode_text(headers, BODIES[i], NULL, &msg, why);
        ck_assert_msg(status == CEL_EINVALTASK, "%s: status %d", BODIES[i],
                      status);
        ck_assert_str_eq(why, REASONS[i]);
        cel__task_message_clear(&msg);
        json_decref(headers);
    }
}
END_TEST

/* ---- header fields ------------------------------------------------------ */

START_TEST(test_decode_group_index_and_timelimit_are_read)
{
    json_t *headers = minimal_headers();
    json_object_set_new(headers, "group", json_string("group-1"));
    json_object_set_new(headers, "group_index", json_integer(3));
    json_object_set_new(headers, "timelimit", json_pack("[n, f]", 7.5));
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "[[], {}, null]", NULL, &msg, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);

    ck_assert_str_eq(msg.group, "group-1");
    ck_assert(msg.has_group_index);
    ck_assert_int_eq(msg.group_index, 3);
    ck_assert_double_eq(msg.time_limit, 0);
    ck_assert_double_eq(msg.soft_time_limit, 7.5);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_bad_retries_are_rejected)
{
    json_t *values[] = {json_integer(-1), json_string("1"), json_real(1.5)};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        json_t *headers = minimal_headers();
        json_object_set_new(headers, "retries", values[i]);
        cel__task_message_t msg;
        char why[WHY_LEN];
        int status = decode_text(headers, "[[], {}, null]", NULL, &msg, why);
        ck_assert_int_eq(status, CEL_EINVALTASK);
        ck_assert_str_eq(why, "retries is not a non-negative integer");
        cel__task_message_clear(&msg);
        json_decref(headers);
    }
}
END_TEST

START_TEST(test_decode_bad_timelimit_is_rejected)
{
    json_t *values[] = {json_integer(30), json_pack("[i]", 30),
                        json_pack("[i, i, i]", 1, 2, 3),
                        json_pack("[s, n]", "30"), json_pack("[i, n]", -1)};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        json_t *headers = minimal_headers();
        json_object_set_new(headers, "timelimit", values[i]);
        cel__task_message_t msg;
        char why[WHY_LEN];
        int status = decode_text(headers, "[[], {}, null]", NULL, &msg, why);
        ck_assert_msg(status == CEL_EINVALTASK, "case %zu: status %d", i,
                      status);
        ck_assert_str_eq(why,
                         "timelimit is not [hard, soft] with numbers or nulls");
        cel__task_message_clear(&msg);
        json_decref(headers);
    }
}
END_TEST

START_TEST(test_decode_eta_not_string_is_rejected)
{
    json_t *headers = minimal_headers();
    json_object_set_new(headers, "eta", json_integer(1767323045));
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "[[], {}, null]", NULL, &msg, why);
    ck_assert_int_eq(status, CEL_EINVALTASK);
    ck_assert_str_eq(why, "eta is not a string");

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_headers_not_table_are_rejected)
{
    json_t *headers = json_pack("[s]", "task");
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, "[[], {}, null]", NULL, &msg, why);
    ck_assert_int_eq(status, CEL_EINVALTASK);
    ck_assert_str_eq(why, "the headers are not a table");

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

/* A copy ends at the NUL byte, so "tasks.add\0x" would run tasks.add. */
START_TEST(test_decode_nul_in_task_or_id_is_invalid)
{
    static const char *const keys[] = {"task", "id"};
    static const char *const reasons[] = {"the task name contains a NUL byte",
                                          "the task id contains a NUL byte"};
    json_t *headers = minimal_headers();
    json_object_set_new(headers, keys[_i], json_stringn("tasks.add\0x", 11));
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_text(headers, "[[1, 2], {}, null]", NULL, &msg, why),
                     CEL_EINVALTASK);
    ck_assert_str_eq(why, reasons[_i]);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_missing_content_type_means_json)
{
    json_t *headers = minimal_headers();
    cel__limits_t limits;
    cel__limits_default(&limits);
    const char *body = "[[1], {}, null]";
    cel__wire_message_t wire = {.priority = -1,
                                .headers = headers,
                                .body = body,
                                .body_len = strlen(body)};
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(cel__task_decode(&wire, &limits, &msg, why, WHY_LEN),
                     CEL_OK);
    ck_assert_ptr_null(msg.reply_to);
    ck_assert_ptr_null(msg.correlation_id);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_rejected_content_keeps_ids_for_reporting)
{
    json_t *headers = json_pack("{s:s}", "task", "tasks.add");
    cel__limits_t limits;
    cel__limits_default(&limits);
    const char *body = "not read";
    cel__wire_message_t wire = {.content_type = "application/x-yaml",
                                .correlation_id = "corr-5",
                                .reply_to = "reply-5",
                                .priority = 3,
                                .headers = headers,
                                .body = body,
                                .body_len = strlen(body)};
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = cel__task_decode(&wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_ECONTENT);
    ck_assert_str_eq(why, "content type 'application/x-yaml' is not accepted "
                          "(accept_content is json)");
    ck_assert_str_eq(msg.task, "tasks.add");
    ck_assert_str_eq(msg.id, "corr-5");
    ck_assert_str_eq(msg.reply_to, "reply-5");
    ck_assert_str_eq(msg.correlation_id, "corr-5");
    ck_assert_int_eq(msg.priority, 3);

    cel__task_message_clear(&msg);
    json_decref(headers);
}
END_TEST

START_TEST(test_decode_clear_twice_is_safe)
{
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden("link", &golden, &msg, why), CEL_OK);
    cel__task_message_clear(&msg);
    ck_assert_ptr_null(msg.id);
    ck_assert_ptr_null(msg.args);
    ck_assert_ptr_null(msg.callbacks);
    ck_assert_ptr_null(msg.headers);
    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

/* ---- malformed cases --------------------------------------------------- */

typedef struct malformed_expectation {
    const char *name;
    int status;
} malformed_expectation_t;

static const malformed_expectation_t MALFORMED[] = {
    {"body_not_json", CEL_EDECODE},
    {"body_json_string", CEL_EINVALTASK},
    {"v2_body_two_elements", CEL_EINVALTASK},
    {"args_not_list", CEL_EINVALTASK},
    {"kwargs_not_dict", CEL_EINVALTASK},
    {"embed_not_object", CEL_EINVALTASK},
    {"missing_id_header", CEL_EINVALTASK},
    {"eta_not_a_date", CEL_EINVALTASK},
    {"expires_garbage", CEL_EINVALTASK},
    {"content_type_pickle", CEL_ECONTENT},
    {"compression_invalid_zlib", CEL_EDECODE},
    {"compression_bzip2", CEL_ECOMPRESS},
    {"v1_body_without_task", CEL_EINVALTASK},
    {"v1_args_not_list", CEL_EINVALTASK},
    {"empty_body", CEL_EDECODE},
    {"body_nested_10000_levels", CEL_ETOODEEP},
    {"unknown_task", CEL_OK},
    {"int_beyond_64_bits", CEL_EDECODE},
};

#define MALFORMED_COUNT (sizeof MALFORMED / sizeof MALFORMED[0])

/* Checks whether a status belongs to the outcome class malformed.json names. */
static bool status_fits_outcome(const char *expected, int status)
{
    if (strcmp(expected, "ack_drop") == 0 ||
        strcmp(expected, "decode_failure") == 0)
        return status == CEL_EDECODE || status == CEL_ETOODEEP;
    if (strcmp(expected, "reject") == 0)
        return status == CEL_EINVALTASK || status == CEL_ECONTENT ||
               status == CEL_ECOMPRESS || status == CEL_ETOOMANY ||
               status == CEL_ETOOBIG;
    if (strcmp(expected, "not_registered") == 0)
        return status == CEL_OK;
    return false;
}

START_TEST(test_decode_malformed_case_has_expected_status)
{
    golden_message_t *cases;
    size_t count;
    char error[256];
    ck_assert_msg(golden_cases_load(&cases, &count, error, sizeof error) == 0,
                  "%s", error);
    ck_assert_int_eq(count, MALFORMED_COUNT);

    const malformed_expectation_t *want = &MALFORMED[_i];
    golden_message_t *item = &cases[_i];
    ck_assert_str_eq(item->name, want->name);

    cel__limits_t limits;
    cel__limits_default(&limits);
    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = cel__task_decode(&item->wire, &limits, &msg, why, WHY_LEN);
    ck_assert_msg(status == want->status, "%s: status %d (%s), expected %d",
                  want->name, status, why, want->status);
    ck_assert_msg(status_fits_outcome(item->expected, status),
                  "%s: status %d does not fit outcome %s", want->name, status,
                  item->expected);
    if (status != CEL_OK)
        ck_assert_msg(why[0] != '\0', "%s: no reason given", want->name);

    const char *id = json_string_value(json_object_get(item->headers, "id"));
    if (id != NULL)
        ck_assert_pstr_eq(msg.id, id);
    ck_assert_pstr_eq(msg.reply_to, item->wire.reply_to);

    cel__task_message_clear(&msg);
    golden_cases_free(cases, count);
}
END_TEST

START_TEST(test_decode_unknown_task_keeps_its_name)
{
    golden_message_t *cases;
    size_t count;
    char error[256];
    ck_assert_msg(golden_cases_load(&cases, &count, error, sizeof error) == 0,
                  "%s", error);
    golden_message_t *item = NULL;
    for (size_t i = 0; i < count; i++)
        if (strcmp(cases[i].name, "unknown_task") == 0)
            item = &cases[i];
    ck_assert_ptr_nonnull(item);

    cel__limits_t limits;
    cel__limits_default(&limits);
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(cel__task_decode(&item->wire, &limits, &msg, why, WHY_LEN),
                     CEL_OK);
    ck_assert_str_eq(msg.task, "tasks.no_such_task");
    ck_assert_int_eq(msg.priority, 0);

    cel__task_message_clear(&msg);
    golden_cases_free(cases, count);
}
END_TEST

/* ---- caps --------------------------------------------------------------- */

START_TEST(test_decode_body_over_max_body_is_too_big)
{
    golden_message_t golden;
    char error[256];
    ck_assert_int_eq(golden_message_load("add", &golden, error, sizeof error),
                     0);
    cel__limits_t limits;
    cel__limits_default(&limits);
    cel__task_message_t msg;
    char why[WHY_LEN];
    char expected_why[WHY_LEN];

    limits.max_body = golden.body_len - 1;
    int status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_ETOOBIG);
    snprintf(expected_why, sizeof expected_why,
             "the body is %zu bytes, over the cap of %zu", golden.body_len,
             limits.max_body);
    ck_assert_str_eq(why, expected_why);
    ck_assert_str_eq(msg.id, "31df8d65-1e52-43c6-a6bd-296dee9680c7");
    cel__task_message_clear(&msg);

    limits.max_body = golden.body_len;
    status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_OK);
    cel__task_message_clear(&msg);

    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_inflated_body_over_max_body_is_too_big)
{
    golden_message_t golden;
    char error[256];
    ck_assert_int_eq(
        golden_message_load("compression_zlib", &golden, error, sizeof error),
        0);
    const char *inflated =
        "[[2, 3], {}, {\"callbacks\": null, \"errbacks\": null, "
        "\"chain\": null, \"chord\": null}]";
    size_t inflated_len = strlen(inflated);
    ck_assert_uint_lt(golden.body_len, inflated_len);

    cel__limits_t limits;
    cel__limits_default(&limits);
    cel__task_message_t msg;
    char why[WHY_LEN];
    char expected_why[WHY_LEN];

    limits.max_body = inflated_len - 1;
    int status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_ETOOBIG);
    snprintf(expected_why, sizeof expected_why,
             "the body inflates past the cap of %zu bytes", limits.max_body);
    ck_assert_str_eq(why, expected_why);
    cel__task_message_clear(&msg);

    limits.max_body = inflated_len;
    status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);
    assert_json_text(msg.args, "[2,3]", "args");
    cel__task_message_clear(&msg);

    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_headers_over_max_headers_are_too_many)
{
    golden_message_t golden;
    char error[256];
    ck_assert_int_eq(golden_message_load("add", &golden, error, sizeof error),
                     0);
    ck_assert_int_eq(json_object_size(golden.headers), 16);
    cel__limits_t limits;
    cel__limits_default(&limits);
    cel__task_message_t msg;
    char why[WHY_LEN];

    limits.max_headers = 15;
    int status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_ETOOMANY);
    ck_assert_str_eq(why, "the message has 16 headers, over the cap of 15");
    ck_assert_str_eq(msg.id, "31df8d65-1e52-43c6-a6bd-296dee9680c7");
    ck_assert_str_eq(msg.task, "tasks.add");
    cel__task_message_clear(&msg);

    limits.max_headers = 16;
    status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_OK);
    cel__task_message_clear(&msg);

    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_body_over_max_depth_is_too_deep)
{
    golden_message_t golden;
    char error[256];
    ck_assert_int_eq(golden_message_load("add", &golden, error, sizeof error),
                     0);
    cel__limits_t limits;
    cel__limits_default(&limits);
    cel__task_message_t msg;
    char why[WHY_LEN];

    /* [[2, 3], {}, {...}] nests two levels deep. */
    limits.max_depth = 1;
    int status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_ETOODEEP);
    ck_assert_str_eq(why, "the body nests deeper than 1 levels");
    cel__task_message_clear(&msg);

    limits.max_depth = 2;
    status = cel__task_decode(&golden.wire, &limits, &msg, why, WHY_LEN);
    ck_assert_int_eq(status, CEL_OK);
    cel__task_message_clear(&msg);

    golden_message_free(&golden);
}
END_TEST

START_TEST(test_decode_default_depth_cap_names_128)
{
    json_t *headers = minimal_headers();
    size_t depth = 129;
    char *body = malloc(depth * 2 + 16);
    size_t len = 0;
    body[len++] = '[';
    for (size_t i = 1; i < depth; i++)
        body[len++] = '[';
    for (size_t i = 0; i < depth; i++)
        body[len++] = ']';
    body[len] = '\0';

    cel__task_message_t msg;
    char why[WHY_LEN];
    int status = decode_text(headers, body, NULL, &msg, why);
    ck_assert_int_eq(status, CEL_ETOODEEP);
    ck_assert_str_eq(why, "the body nests deeper than 128 levels");

    cel__task_message_clear(&msg);
    free(body);
    json_decref(headers);
}
END_TEST

START_TEST(test_limits_default_values)
{
    cel__limits_t limits;
    cel__limits_default(&limits);
    ck_assert_uint_eq(limits.max_body, 128u * 1024 * 1024);
    ck_assert_uint_eq(limits.max_headers, 256);
    ck_assert_int_eq(limits.max_depth, 128);
}
END_TEST

START_TEST(test_json_check_depth_counts_brackets_outside_strings)
{
    const char *three = "[{\"a\": [1]}]";
    ck_assert_int_eq(cel__json_check_depth(three, strlen(three), 3), CEL_OK);
    ck_assert_int_eq(cel__json_check_depth(three, strlen(three), 2),
                     CEL_ETOODEEP);

    const char *in_string = "[\"[[[[{{{{\"]";
    ck_assert_int_eq(cel__json_check_depth(in_string, strlen(in_string), 1),
                     CEL_OK);

    const char *escaped_quote = "[\"\\\"[[[[\"]";
    ck_assert_int_eq(
        cel__json_check_depth(escaped_quote, strlen(escaped_quote), 1), CEL_OK);

    const char *flat = "[1], [2], [3]";
    ck_assert_int_eq(cel__json_check_depth(flat, strlen(flat), 1), CEL_OK);

    /* Only the first len bytes count. */
    ck_assert_int_eq(cel__json_check_depth("[[[", 1, 1), CEL_OK);
}
END_TEST

/* ---- encoding ----------------------------------------------------------- */

static const char *const CELERY_52_KEYS[] = {
    "lang",     "task",       "id",      "shadow",
    "eta",      "expires",    "group",   "group_index",
    "retries",  "timelimit",  "root_id", "parent_id",
    "argsrepr", "kwargsrepr", "origin",  "ignore_result"};

#define CELERY_52_KEY_COUNT (sizeof CELERY_52_KEYS / sizeof CELERY_52_KEYS[0])

/* Fills a message with a value in every field encode_v2 writes. */
static void fill_message(cel__task_message_t *msg)
{
    memset(msg, 0, sizeof *msg);
    msg->protocol = 2;
    msg->id = strdup("enc-1");
    msg->task = strdup("tasks.add");
    msg->shadow = strdup("tasks.add.alias");
    msg->root_id = strdup("root-1");
    msg->parent_id = strdup("parent-1");
    msg->group = strdup("group-1");
    msg->origin = strdup("gen1@host");
    msg->eta = strdup("2030-01-02T03:04:05.678901+00:00");
    msg->eta_ts = 1893553445.678901;
    msg->expires = strdup("2030-01-02T04:04:05+00:00");
    msg->expires_ts = 1893557045.0;
    msg->retries = 4;
    msg->group_index = 2;
    msg->has_group_index = true;
    msg->time_limit = 30;
    msg->soft_time_limit = 20.5;
    msg->ignore_result = true;
    msg->priority = -1;
    msg->args = json_pack("[i, s]", 2, "x");
    msg->kwargs = json_pack("{s:b}", "flag", 1);
    msg->callbacks = json_pack("[{s:s}]", "task", "tasks.mul");
    msg->errbacks = json_pack("[{s:s}]", "task", "tasks.on_error");
    msg->chain = json_pack("[{s:s}]", "task", "tasks.next");
    msg->chord = json_pack("{s:s}", "task", "tasks.sum");
    msg->headers =
        json_pack("{s:s, s:i}", "x-trace-id", "trace-9", "tenant", 7);
}

/* Decodes what encode_v2 produced, as a transport would deliver it. */
static int decode_encoded(json_t *headers, const char *body, size_t body_len,
                          cel__task_message_t *out, char *why)
{
    cel__limits_t limits;
    cel__limits_default(&limits);
    cel__wire_message_t wire = {.content_type = "application/json",
                                .content_encoding = "utf-8",
                                .correlation_id = "enc-1",
                                .reply_to = "reply-9",
                                .priority = -1,
                                .headers = headers,
                                .body = body,
                                .body_len = body_len};
    return cel__task_decode(&wire, &limits, out, why, WHY_LEN);
}

START_TEST(test_encode_v2_round_trip_keeps_every_field)
{
    cel__task_message_t msg;
    fill_message(&msg);
    json_t *headers;
    char *body;
    size_t body_len;
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_OK);

    cel__task_message_t back;
    char why[WHY_LEN];
    int status = decode_encoded(headers, body, body_len, &back, why);
    ck_assert_msg(status == CEL_OK, "status %d (%s)", status, why);

    ck_assert_int_eq(back.protocol, 2);
    ck_assert(!back.hybrid);
    ck_assert_str_eq(back.id, msg.id);
    ck_assert_str_eq(back.task, msg.task);
    ck_assert_str_eq(back.shadow, msg.shadow);
    ck_assert_str_eq(back.root_id, msg.root_id);
    ck_assert_str_eq(back.parent_id, msg.parent_id);
    ck_assert_str_eq(back.group, msg.group);
    ck_assert_str_eq(back.origin, msg.origin);
    ck_assert_str_eq(back.eta, msg.eta);
    ck_assert_double_eq_tol(back.eta_ts, msg.eta_ts, TIME_TOLERANCE);
    ck_assert_str_eq(back.expires, msg.expires);
    ck_assert_double_eq_tol(back.expires_ts, msg.expires_ts, TIME_TOLERANCE);
    ck_assert_str_eq(back.argsrepr, "(2, 'x')");
    ck_assert_str_eq(back.kwargsrepr, "{'flag': True}");
    ck_assert_int_eq(back.retries, 4);
    ck_assert(back.has_group_index);
    ck_assert_int_eq(back.group_index, 2);
    ck_assert_double_eq(back.time_limit, 30);
    ck_assert_double_eq(back.soft_time_limit, 20.5);
    ck_assert(back.ignore_result);
    ck_assert(json_equal(back.args, msg.args));
    ck_assert(json_equal(back.kwargs, msg.kwargs));
    ck_assert(json_equal(back.callbacks, msg.callbacks));
    ck_assert(json_equal(back.errbacks, msg.errbacks));
    ck_assert(json_equal(back.chain, msg.chain));
    ck_assert(json_equal(back.chord, msg.chord));
    ck_assert_str_eq(
        json_string_value(json_object_get(back.headers, "x-trace-id")),
        "trace-9");
    ck_assert_int_eq(
        json_integer_value(json_object_get(back.headers, "tenant")), 7);

    cel__task_message_clear(&back);
    cel__task_message_clear(&msg);
    json_decref(headers);
    free(body);
}
END_TEST

START_TEST(test_encode_v2_headers_are_celery_52_keys)
{
    cel__task_message_t msg;
    memset(&msg, 0, sizeof msg);
    msg.id = strdup("enc-2");
    msg.task = strdup("tasks.add");
    msg.args = json_pack("[i, i]", 2, 3);
    msg.kwargs = json_object();
    json_t *headers;
    char *body;
    size_t body_len;
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_OK);

    ck_assert_int_eq(json_object_size(headers), CELERY_52_KEY_COUNT);
    for (size_t i = 0; i < CELERY_52_KEY_COUNT; i++)
        ck_assert_msg(json_object_get(headers, CELERY_52_KEYS[i]) != NULL,
                      "header %s is missing", CELERY_52_KEYS[i]);
    ck_assert_str_eq(json_string_value(json_object_get(headers, "lang")), "py");
    ck_assert_str_eq(json_string_value(json_object_get(headers, "argsrepr")),
                     "(2, 3)");
    ck_assert_str_eq(json_string_value(json_object_get(headers, "kwargsrepr")),
                     "{}");
    assert_json_text(json_object_get(headers, "timelimit"), "[null,null]",
                     "timelimit");
    assert_json_text(json_object_get(headers, "retries"), "0", "retries");
    assert_json_text(json_object_get(headers, "ignore_result"), "false",
                     "ignore_result");
    assert_json_text(json_object_get(headers, "group_index"), "null",
                     "group_index");
    assert_json_text(json_object_get(headers, "eta"), "null", "eta");
    assert_json_text(json_object_get(headers, "shadow"), "null", "shadow");

    cel__task_message_clear(&msg);
    json_decref(headers);
    free(body);
}
END_TEST

START_TEST(test_encode_v2_keeps_custom_headers_but_not_compression)
{
    cel__task_message_t msg;
    fill_message(&msg);
    json_object_set_new(msg.headers, "compression",
                        json_string("application/x-gzip"));
    json_t *headers;
    char *body;
    size_t body_len;
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_OK);

    ck_assert_int_eq(json_object_size(headers), CELERY_52_KEY_COUNT + 2);
    ck_assert_ptr_null(json_object_get(headers, "compression"));
    ck_assert_str_eq(json_string_value(json_object_get(headers, "x-trace-id")),
                     "trace-9");
    ck_assert_int_eq(json_integer_value(json_object_get(headers, "tenant")), 7);
    /* The message's own headers are copied, not changed. */
    ck_assert_ptr_nonnull(json_object_get(msg.headers, "compression"));

    cel__task_message_clear(&msg);
    json_decref(headers);
    free(body);
}
END_TEST

START_TEST(test_encode_v2_body_is_args_kwargs_embed)
{
    cel__task_message_t msg;
    memset(&msg, 0, sizeof msg);
    msg.id = strdup("enc-3");
    msg.task = strdup("tasks.add");
    msg.args = json_pack("[i, i]", 2, 3);
    msg.kwargs = json_object();
    json_t *headers;
    char *body;
    size_t body_len;
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_OK);

    ck_assert_uint_eq(body_len, strlen(body));
    json_error_t error;
    json_t *parsed = json_loadb(body, body_len, 0, &error);
    assert_json_text(parsed,
                     "[[2,3],{},{\"callbacks\":null,\"errbacks\":null,"
                     "\"chain\":null,\"chord\":null}]",
                     "body");

    json_decref(parsed);
    cel__task_message_clear(&msg);
    json_decref(headers);
    free(body);
}
END_TEST

START_TEST(test_encode_v2_keeps_given_argsrepr)
{
    cel__task_message_t msg;
    memset(&msg, 0, sizeof msg);
    msg.id = strdup("enc-4");
    msg.task = strdup("tasks.add");
    msg.args = json_pack("[i]", 1);
    msg.kwargs = json_object();
    msg.argsrepr = strdup("(<secret>,)");
    msg.kwargsrepr = strdup("{<hidden>}");
    json_t *headers;
    char *body;
    size_t body_len;
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_OK);

    ck_assert_str_eq(json_string_value(json_object_get(headers, "argsrepr")),
                     "(<secret>,)");
    ck_assert_str_eq(json_string_value(json_object_get(headers, "kwargsrepr")),
                     "{<hidden>}");

    cel__task_message_clear(&msg);
    json_decref(headers);
    free(body);
}
END_TEST

START_TEST(test_encode_v2_without_args_reprs_empty_tuple)
{
    cel__task_message_t msg;
    memset(&msg, 0, sizeof msg);
    msg.id = strdup("enc-5");
    msg.task = strdup("tasks.noargs");
    json_t *headers;
    char *body;
    size_t body_len;
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_OK);

    json_error_t error;
    json_t *parsed = json_loadb(body, body_len, 0, &error);
    assert_json_text(json_array_get(parsed, 0), "[]", "body args");
    assert_json_text(json_array_get(parsed, 1), "{}", "body kwargs");
    /* The reprs describe the [] and {} that the body carries. */
    ck_assert_str_eq(json_string_value(json_object_get(headers, "argsrepr")),
                     "()");
    ck_assert_str_eq(json_string_value(json_object_get(headers, "kwargsrepr")),
                     "{}");

    json_decref(parsed);
    cel__task_message_clear(&msg);
    json_decref(headers);
    free(body);
}
END_TEST

START_TEST(test_encode_v2_without_id_or_task_is_invalid)
{
    cel__task_message_t msg;
    memset(&msg, 0, sizeof msg);
    json_t *headers = (json_t *)1;
    char *body = (char *)1;
    size_t body_len = 0;

    msg.task = strdup("tasks.add");
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_EINVAL);
    ck_assert_ptr_null(headers);
    ck_assert_ptr_null(body);
    cel__task_message_clear(&msg);

    msg.id = strdup("enc-6");
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_EINVAL);
    cel__task_message_clear(&msg);
}
END_TEST

/* Decoding a golden v2 message and encoding it again gives back the same
 * headers (less compression) and the same body JSON. */
START_TEST(test_encode_v2_of_golden_reproduces_it)
{
    const char *name = golden_names[_i];
    golden_message_t golden;
    cel__task_message_t msg;
    char why[WHY_LEN];
    ck_assert_int_eq(decode_golden(name, &golden, &msg, why), CEL_OK);
    if (msg.protocol != 2) {
        cel__task_message_clear(&msg);
        golden_message_free(&golden);
        return;
    }

    json_t *headers;
    char *body;
    size_t body_len;
    ck_assert_int_eq(cel__task_encode_v2(&msg, &headers, &body, &body_len),
                     CEL_OK);

    json_t *expected_headers = json_deep_copy(golden.headers);
    json_object_del(expected_headers, "compression");
    /* The encoder sends timelimit as floats ([30.0, 20.0]), so compare it
     * by value. */
    json_t *timelimit = json_object_get(headers, "timelimit");
    json_t *expected_timelimit = json_object_get(expected_headers, "timelimit");
    for (size_t i = 0; i < 2; i++) {
        json_t *value = json_array_get(timelimit, i);
        json_t *expected = json_array_get(expected_timelimit, i);
        ck_assert_int_eq(json_is_null(value), json_is_null(expected));
        ck_assert_double_eq(json_number_value(value),
                            json_number_value(expected));
    }
    json_object_del(headers, "timelimit");
    json_object_del(expected_headers, "timelimit");
    char *actual_text = json_dumps(headers, JSON_COMPACT | JSON_SORT_KEYS);
    char *expected_text =
        json_dumps(expected_headers, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_str_eq(actual_text, expected_text);

    json_t *expected_body = golden_body_json(&golden);
    json_error_t error;
    json_t *actual_body = json_loadb(body, body_len, 0, &error);
    ck_assert_msg(json_equal(actual_body, expected_body), "%s: body differs",
                  name);

    free(actual_text);
    free(expected_text);
    json_decref(actual_body);
    json_decref(expected_body);
    json_decref(expected_headers);
    json_decref(headers);
    free(body);
    cel__task_message_clear(&msg);
    golden_message_free(&golden);
}
END_TEST

static json_t *body_from_text(const char *text)
{
    json_error_t error;
    json_t *body = json_loads(text, 0, &error);
    ck_assert_msg(body != NULL, "invalid test body: %s", error.text);
    return body;
}

START_TEST(test_body_arguments_nulls_become_empty)
{
    json_t *body = body_from_text("[null, null, null]");
    json_t *args = NULL, *kwargs = NULL;
    cel__task_body_arguments(body, &args, &kwargs);
    ck_assert(json_is_array(args));
    ck_assert_uint_eq(json_array_size(args), 0);
    ck_assert(json_is_object(kwargs));
    ck_assert_uint_eq(json_object_size(kwargs), 0);
    json_decref(args);
    json_decref(kwargs);
    json_decref(body);
}
END_TEST

START_TEST(test_body_arguments_are_the_body_members)
{
    json_t *body = body_from_text("[[1, \"two\"], {\"x\": 3}, {}]");
    json_t *args = NULL, *kwargs = NULL;
    cel__task_body_arguments(body, &args, &kwargs);
    ck_assert_ptr_eq(args, json_array_get(body, 0));
    ck_assert_ptr_eq(kwargs, json_array_get(body, 1));
    json_decref(body);
    /* The references are new, so they outlive the body. */
    ck_assert_int_eq(json_integer_value(json_array_get(args, 0)), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(kwargs, "x")), 3);
    json_decref(args);
    json_decref(kwargs);
}
END_TEST

START_TEST(test_body_arguments_of_short_list_are_empty)
{
    json_t *body = body_from_text("[]");
    json_t *args = NULL, *kwargs = NULL;
    cel__task_body_arguments(body, &args, &kwargs);
    ck_assert(json_is_array(args));
    ck_assert(json_is_object(kwargs));
    json_decref(args);
    json_decref(kwargs);
    json_decref(body);
}
END_TEST

static Suite *task_message_suite(void)
{
    Suite *suite = suite_create("task_message");

    TCase *golden = tcase_create("golden");
    tcase_add_loop_test(golden, test_decode_golden_fields_match_file, 0,
                        (int)golden_count);
    tcase_add_loop_test(golden, test_decode_golden_fields_have_literal_values,
                        0, (int)EXPECTATION_COUNT);
    tcase_add_test(golden, test_golden_folder_has_one_expectation_per_file);
    tcase_add_test(golden, test_decode_add_has_exact_v2_fields);
    tcase_add_test(golden, test_decode_chain_keeps_reversed_order);
    tcase_add_test(golden, test_decode_link_callback_is_signature);
    tcase_add_test(golden, test_decode_custom_headers_are_kept);
    tcase_add_test(golden, test_decode_unicode_args_are_utf8);
    tcase_add_test(golden, test_decode_large_int_keeps_64_bits);
    tcase_add_test(golden, test_decode_v1_has_no_v2_only_fields);
    tcase_add_test(golden, test_decode_clear_twice_is_safe);
    suite_add_tcase(suite, golden);

    TCase *forms = tcase_create("forms");
    tcase_add_test(forms, test_decode_v1_taskset_becomes_group);
    tcase_add_test(forms, test_decode_v1_callbacks_and_chord_are_read);
    tcase_add_test(forms, test_decode_hybrid_reads_fields_from_body);
    tcase_add_test(forms, test_decode_hybrid_headers_override_body);
    tcase_add_test(forms, test_decode_hybrid_kwargs_not_mapping_is_rejected);
    tcase_add_test(forms, test_decode_v2_embed_null_is_accepted);
    tcase_add_test(forms, test_decode_v2_empty_embed_is_accepted);
    tcase_add_test(forms, test_decode_v2_body_with_two_elements_is_rejected);
    tcase_add_test(forms, test_decode_v2_body_with_four_elements_is_rejected);
    tcase_add_test(forms, test_decode_v2_null_args_and_kwargs_become_empty);
    tcase_add_test(forms, test_decode_embed_member_of_wrong_type_is_rejected);
    suite_add_tcase(suite, forms);

    TCase *fields = tcase_create("fields");
    tcase_add_test(fields, test_decode_group_index_and_timelimit_are_read);
    tcase_add_test(fields, test_decode_bad_retries_are_rejected);
    tcase_add_test(fields, test_decode_bad_timelimit_is_rejected);
    tcase_add_test(fields, test_decode_eta_not_string_is_rejected);
    tcase_add_test(fields, test_decode_headers_not_table_are_rejected);
    tcase_add_test(fields, test_decode_missing_content_type_means_json);
    tcase_add_test(fields,
                   test_decode_rejected_content_keeps_ids_for_reporting);
    suite_add_tcase(suite, fields);

    TCase *malformed = tcase_create("malformed");
    tcase_add_loop_test(malformed,
                        test_decode_malformed_case_has_expected_status, 0,
                        (int)MALFORMED_COUNT);
    tcase_add_test(malformed, test_decode_unknown_task_keeps_its_name);
    tcase_add_loop_test(malformed, test_decode_nul_in_task_or_id_is_invalid, 0,
                        2);
    suite_add_tcase(suite, malformed);

    TCase *caps = tcase_create("caps");
    tcase_add_test(caps, test_decode_body_over_max_body_is_too_big);
    tcase_add_test(caps, test_decode_inflated_body_over_max_body_is_too_big);
    tcase_add_test(caps, test_decode_headers_over_max_headers_are_too_many);
    tcase_add_test(caps, test_decode_body_over_max_depth_is_too_deep);
    tcase_add_test(caps, test_decode_default_depth_cap_names_128);
    tcase_add_test(caps, test_limits_default_values);
    tcase_add_test(caps, test_json_check_depth_counts_brackets_outside_strings);
    suite_add_tcase(suite, caps);

    TCase *encode = tcase_create("encode");
    tcase_add_test(encode, test_encode_v2_round_trip_keeps_every_field);
    tcase_add_test(encode, test_encode_v2_headers_are_celery_52_keys);
    tcase_add_test(encode,
                   test_encode_v2_keeps_custom_headers_but_not_compression);
    tcase_add_test(encode, test_encode_v2_body_is_args_kwargs_embed);
    tcase_add_test(encode, test_encode_v2_keeps_given_argsrepr);
    tcase_add_test(encode, test_encode_v2_without_id_or_task_is_invalid);
    tcase_add_loop_test(encode, test_encode_v2_of_golden_reproduces_it, 0,
                        (int)golden_count);
    suite_add_tcase(suite, encode);

    TCase *body_arguments = tcase_create("body_arguments");
    tcase_add_test(body_arguments, test_body_arguments_nulls_become_empty);
    tcase_add_test(body_arguments, test_body_arguments_are_the_body_members);
    tcase_add_test(body_arguments,
                   test_body_arguments_of_short_list_are_empty);
    suite_add_tcase(suite, body_arguments);

    /* Tests that pin a bug still open in the code under test. */
    TCase *regressions = tcase_create("regressions");
    tcase_add_test(regressions, test_encode_v2_without_args_reprs_empty_tuple);
    suite_add_tcase(suite, regressions);

    return suite;
}

int main(void)
{
    golden_names = golden_names_list(&golden_count);
    if (golden_names == NULL || golden_count == 0) {
        fprintf(stderr, "no golden messages under %s/golden\n", CEL_TEST_DATA);
        return EXIT_FAILURE;
    }
    SRunner *runner = srunner_create(task_message_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    golden_names_free(golden_names, golden_count);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
