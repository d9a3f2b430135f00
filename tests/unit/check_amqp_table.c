/*
 * AMQP header tables. For every table that the fast path
 * (cel__table_read_fields, then cel__task_decode with wire.fields)
 * accepts, it must give the same outcome as the JSON path
 * (cel__table_to_json, then cel__task_decode with wire.headers). It must
 * reject every table that the JSON path could fail to convert.
 * cel__request_headers later builds the headers object of a fast-path
 * message from its encoded properties.
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "internal.h"
#include "support_golden.h"

#define WHY_LEN   256
#define LABEL_LEN 160
/* Room for the largest synthetic table, which has max_headers + 1 entries. */
#define ENTRIES_MAX (CEL__DEFAULT_MAX_HEADERS + 8)
/* The deepest nesting tried when looking for the JSON path's limit. */
#define NESTING_MAX 40
/* Big enough for the encoded properties of every table in this file. */
#define PROPERTIES_MAX 65536

#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

/* Golden file stems and malformed cases, loaded once in main(). */
static char **golden_names;
static size_t golden_count;
static golden_message_t *malformed_cases;
static size_t malformed_count;

/* The goldens the fast path must take: every v2 message whose headers are
 * ASCII and carry no compression header. compression_zlib, unicode_args,
 * protocol_v1 and protocol_v1_countdown must fall back to JSON. */
static const char *const FAST_PATH_GOLDENS[] = {
    "add",          "chain_first",        "countdown",   "custom_headers",
    "eta_datetime", "eta_naive_datetime", "expires",     "float_args",
    "group_member", "ignore_result",      "kwargs_only", "large_int",
    "link",         "link_error",         "nested_args", "priority",
    "retry",        "send_task",          "shadow",      "time_limits",
};

/* The malformed cases the fast path must take: a text task header, no
 * compression header and a body that starts with '['. */
static const char *const FAST_PATH_MALFORMED[] = {
    "body_not_json",   "v2_body_two_elements", "args_not_list",
    "kwargs_not_dict", "embed_not_object",     "missing_id_header",
    "eta_not_a_date",  "expires_garbage",      "body_nested_10000_levels",
    "unknown_task",    "int_beyond_64_bits",
};

static const char SYNTHETIC_BODY[] =
    "[[2, 3], {}, {\"callbacks\": null, \"errbacks\": null, \"chain\": null, "
    "\"chord\": null}]";

static bool name_listed(const char *name, const char *const *list, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (strcmp(name, list[i]) == 0)
            return true;
    return false;
}

/* ---- building tables ---------------------------------------------------- */

/* A table under construction, with its entries and values in `pool`. */
typedef struct table_builder {
    amqp_pool_t pool;
    amqp_table_t table;
} table_builder_t;

static void builder_init(table_builder_t *builder)
{
    init_amqp_pool(&builder->pool, 4096);
    builder->table.num_entries = 0;
    builder->table.entries = amqp_pool_alloc(
        &builder->pool, ENTRIES_MAX * sizeof *builder->table.entries);
    ck_assert_ptr_nonnull(builder->table.entries);
}

static void builder_free(table_builder_t *builder)
{
    empty_amqp_pool(&builder->pool);
}

/* Appends an entry with a key of `len` bytes and returns its value for the
 * caller to fill in. The key is borrowed. */
static amqp_field_value_t *builder_add_key(table_builder_t *builder,
                                           const char *key, size_t len)
{
    ck_assert_int_lt(builder->table.num_entries, ENTRIES_MAX);
    amqp_table_entry_t *entry =
        &builder->table.entries[builder->table.num_entries++];
    entry->key.len = len;
    entry->key.bytes = (void *)key;
    entry->value.kind = AMQP_FIELD_KIND_VOID;
    return &entry->value;
}

static amqp_field_value_t *builder_add(table_builder_t *builder,
                                       const char *key)
{
    return builder_add_key(builder, key, strlen(key));
}

/* Returns a text value of `len` bytes, borrowed. */
static amqp_field_value_t text_value(const char *text, size_t len)
{
    amqp_field_value_t value = {.kind = AMQP_FIELD_KIND_UTF8};
    value.value.bytes.len = len;
    value.value.bytes.bytes = (void *)text;
    return value;
}

static amqp_field_value_t cstring_value(const char *text)
{
    return text_value(text, strlen(text));
}

/* Returns an array value holding a copy of `members`, from the pool. */
static amqp_field_value_t array_value(table_builder_t *builder,
                                      const amqp_field_value_t *members,
                                      int count)
{
    amqp_field_value_t value = {.kind = AMQP_FIELD_KIND_ARRAY};
    value.value.array.num_entries = count;
    value.value.array.entries = NULL;
    if (count > 0) {
        value.value.array.entries =
            amqp_pool_alloc(&builder->pool, (size_t)count * sizeof *members);
        ck_assert_ptr_nonnull(value.value.array.entries);
        memcpy(value.value.array.entries, members,
               (size_t)count * sizeof *members);
    }
    return value;
}

/* Adds the task and id headers every synthetic message starts with. */
static void add_task_headers(table_builder_t *builder)
{
    *builder_add(builder, "lang") = cstring_value("py");
    *builder_add(builder, "task") = cstring_value("tasks.add");
    *builder_add(builder, "id") = cstring_value("synthetic-1");
}

/* ---- the two paths ------------------------------------------------------ */

typedef struct path_outcome {
    int status;
    char why[WHY_LEN];
    cel__task_message_t msg;
} path_outcome_t;

static void outcome_clear(path_outcome_t *outcome)
{
    cel__task_message_clear(&outcome->msg);
}

static cel__wire_message_t synthetic_wire(void)
{
    cel__wire_message_t wire = {
        .content_type = "application/json",
        .content_encoding = "utf-8",
        .correlation_id = "corr-1",
        .reply_to = "reply-1",
        .priority = -1,
        .body = SYNTHETIC_BODY,
        .body_len = strlen(SYNTHETIC_BODY),
    };
    return wire;
}

/* Decodes with the headers object from cel__table_to_json, as the worker
 * does for every message the fast path rejects. A failed conversion is
 * the outcome, as in decode_delivery. */
static void decode_json_path(const amqp_table_t *table,
                             cel__wire_message_t wire,
                             const cel__limits_t *limits, path_outcome_t *out)
{
    memset(out, 0, sizeof *out);
    json_t *headers = NULL;
    out->status = cel__table_to_json(table, limits->max_headers, &headers,
                                     out->why, WHY_LEN);
    if (out->status != CEL_OK)
        return;
    wire.headers = headers;
    wire.fields = NULL;
    out->status = cel__task_decode(&wire, limits, &out->msg, out->why, WHY_LEN);
    json_decref(headers);
}

/* Decodes with the fields read straight from the table, when the worker
 * would: the body starts with '[' and cel__table_read_fields accepts the
 * table. Returns whether the fast path was taken. */
static bool decode_fast_path(const amqp_table_t *table,
                             cel__wire_message_t wire,
                             const cel__limits_t *limits, path_outcome_t *out)
{
    memset(out, 0, sizeof *out);
    const char *body = wire.body;
    cel__task_fields_t fields;
    if (wire.body_len == 0 || body[0] != '[' ||
        !cel__table_read_fields(table, limits->max_headers, &fields))
        return false;
    wire.headers = NULL;
    wire.fields = &fields;
    out->status = cel__task_decode(&wire, limits, &out->msg, out->why, WHY_LEN);
    return true;
}

static void assert_same_text(const char *label, const char *member,
                             const char *json_path, const char *fast_path)
{
    bool same = (json_path == NULL && fast_path == NULL) ||
                (json_path != NULL && fast_path != NULL &&
                 strcmp(json_path, fast_path) == 0);
    ck_assert_msg(same,
                  "%s: %s is '%s' on the JSON path, '%s' on the fast "
                  "path",
                  label, member, json_path ? json_path : "NULL",
                  fast_path ? fast_path : "NULL");
}

static void assert_same_integer(const char *label, const char *member,
                                long long json_path, long long fast_path)
{
    ck_assert_msg(json_path == fast_path,
                  "%s: %s is %lld on the JSON path, %lld on the fast path",
                  label, member, json_path, fast_path);
}

/* Exact equality, because both paths compute from the same input. */
static void assert_same_real(const char *label, const char *member,
                             double json_path, double fast_path)
{
    bool same =
        json_path == fast_path || (isnan(json_path) && isnan(fast_path));
    ck_assert_msg(same,
                  "%s: %s is %.17g on the JSON path, %.17g on the fast "
                  "path",
                  label, member, json_path, fast_path);
}

static void assert_same_json(const char *label, const char *member,
                             json_t *json_path, json_t *fast_path)
{
    bool same = (json_path == NULL && fast_path == NULL) ||
                (json_path != NULL && fast_path != NULL &&
                 json_equal(json_path, fast_path));
    ck_assert_msg(same, "%s: %s differs between the JSON and fast paths", label,
                  member);
}

static void assert_same_outcome(const char *label, const path_outcome_t *json,
                                const path_outcome_t *fast)
{
    const cel__task_message_t *a = &json->msg;
    const cel__task_message_t *b = &fast->msg;
    ck_assert_msg(json->status == fast->status,
                  "%s: status %d on the JSON path (%s), %d on the fast path "
                  "(%s)",
                  label, json->status, json->why, fast->status, fast->why);
    ck_assert_msg(strcmp(json->why, fast->why) == 0,
                  "%s: why is '%s' on the JSON path, '%s' on the fast path",
                  label, json->why, fast->why);

    assert_same_text(label, "id", a->id, b->id);
    assert_same_text(label, "task", a->task, b->task);
    assert_same_text(label, "shadow", a->shadow, b->shadow);
    assert_same_text(label, "root_id", a->root_id, b->root_id);
    assert_same_text(label, "parent_id", a->parent_id, b->parent_id);
    assert_same_text(label, "group", a->group, b->group);
    assert_same_text(label, "origin", a->origin, b->origin);
    assert_same_text(label, "reply_to", a->reply_to, b->reply_to);
    assert_same_text(label, "correlation_id", a->correlation_id,
                     b->correlation_id);
    assert_same_text(label, "eta", a->eta, b->eta);
    assert_same_text(label, "expires", a->expires, b->expires);
    assert_same_text(label, "argsrepr", a->argsrepr, b->argsrepr);
    assert_same_text(label, "kwargsrepr", a->kwargsrepr, b->kwargsrepr);

    assert_same_integer(label, "retries", a->retries, b->retries);
    assert_same_integer(label, "group_index", a->group_index, b->group_index);
    assert_same_integer(label, "has_group_index", a->has_group_index,
                        b->has_group_index);
    assert_same_integer(label, "ignore_result", a->ignore_result,
                        b->ignore_result);
    assert_same_integer(label, "priority", a->priority, b->priority);
    assert_same_integer(label, "protocol", a->protocol, b->protocol);
    assert_same_integer(label, "hybrid", a->hybrid, b->hybrid);

    assert_same_real(label, "time_limit", a->time_limit, b->time_limit);
    assert_same_real(label, "soft_time_limit", a->soft_time_limit,
                     b->soft_time_limit);
    assert_same_real(label, "eta_ts", a->eta_ts, b->eta_ts);
    assert_same_real(label, "expires_ts", a->expires_ts, b->expires_ts);

    assert_same_json(label, "args", a->args, b->args);
    assert_same_json(label, "kwargs", a->kwargs, b->kwargs);
    assert_same_json(label, "callbacks", a->callbacks, b->callbacks);
    assert_same_json(label, "errbacks", a->errbacks, b->errbacks);
    assert_same_json(label, "chain", a->chain, b->chain);
    assert_same_json(label, "chord", a->chord, b->chord);

    ck_assert_msg(b->headers == NULL,
                  "%s: the fast path decoded a headers object", label);
}

/* Decodes a synthetic table both ways with the default limits. Asserts
 * that the fast path takes it and that both outcomes are the same, and
 * leaves them for the caller to check further and clear. */
static void decode_both_ways(const char *label, const amqp_table_t *table,
                             path_outcome_t *json_path,
                             path_outcome_t *fast_path)
{
    cel__limits_t limits;
    cel__limits_default(&limits);
    decode_json_path(table, synthetic_wire(), &limits, json_path);
    bool fast_path_taken =
        decode_fast_path(table, synthetic_wire(), &limits, fast_path);
    ck_assert_msg(fast_path_taken, "%s: the fast path rejected the table",
                  label);
    assert_same_outcome(label, json_path, fast_path);
}

static bool fast_path_accepts(const amqp_table_t *table, size_t max_headers)
{
    cel__task_fields_t fields;
    return cel__table_read_fields(table, max_headers, &fields);
}

/* Returns the status of cel__table_to_json with no cap on the headers. */
static int json_conversion_status(const amqp_table_t *table)
{
    json_t *headers = NULL;
    char why[WHY_LEN];
    int status = cel__table_to_json(table, SIZE_MAX, &headers, why, WHY_LEN);
    json_decref(headers);
    return status;
}

/* ---- golden messages and malformed cases -------------------------------- */

/* Decodes one loaded message both ways, asserting whether the fast path
 * takes it and, when it does, that both outcomes are the same. */
static void assert_paths_agree(const golden_message_t *message,
                               bool expect_fast_path)
{
    const char *label = message->name;
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_table_t table;
    int built = golden_table_build(
        json_object_get(message->document, "headers"), &pool, &table);
    ck_assert_msg(built == 0, "%s: the tagged headers do not build a table",
                  label);

    /* The built table must convert to the headers the loader untagged. */
    json_t *converted = NULL;
    char why[WHY_LEN];
    int status = cel__table_to_json(&table, SIZE_MAX, &converted, why, WHY_LEN);
    ck_assert_msg(status == CEL_OK, "%s: cel__table_to_json failed: %s", label,
                  why);
    ck_assert_msg(json_equal(converted, message->headers),
                  "%s: the table converts to other headers than the file's",
                  label);
    json_decref(converted);

    cel__limits_t limits;
    cel__limits_default(&limits);
    path_outcome_t json_path, fast_path;
    decode_json_path(&table, message->wire, &limits, &json_path);
    bool fast_path_taken =
        decode_fast_path(&table, message->wire, &limits, &fast_path);
    ck_assert_msg(fast_path_taken == expect_fast_path,
                  "%s: the fast path was %s, expected %s", label,
                  fast_path_taken ? "taken" : "not taken",
                  expect_fast_path ? "taken" : "not taken");
    if (fast_path_taken)
        assert_same_outcome(label, &json_path, &fast_path);

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    empty_amqp_pool(&pool);
}

START_TEST(test_golden_paths_agree)
{
    const char *name = golden_names[_i];
    golden_message_t golden;
    char error[256];
    int loaded = golden_message_load(name, &golden, error, sizeof error);
    ck_assert_msg(loaded == 0, "%s", error);
    assert_paths_agree(&golden, name_listed(name, FAST_PATH_GOLDENS,
                                            COUNT_OF(FAST_PATH_GOLDENS)));
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_malformed_paths_agree)
{
    const golden_message_t *message = &malformed_cases[_i];
    assert_paths_agree(message, name_listed(message->name, FAST_PATH_MALFORMED,
                                            COUNT_OF(FAST_PATH_MALFORMED)));
}
END_TEST

/* A renamed data file must not silently shorten the fast-path lists. */
START_TEST(test_fast_path_lists_name_existing_messages)
{
    for (size_t i = 0; i < COUNT_OF(FAST_PATH_GOLDENS); i++) {
        bool found = false;
        for (size_t j = 0; j < golden_count; j++)
            found = found || strcmp(FAST_PATH_GOLDENS[i], golden_names[j]) == 0;
        ck_assert_msg(found, "no golden file named %s", FAST_PATH_GOLDENS[i]);
    }
    for (size_t i = 0; i < COUNT_OF(FAST_PATH_MALFORMED); i++) {
        bool found = false;
        for (size_t j = 0; j < malformed_count; j++)
            found = found || strcmp(FAST_PATH_MALFORMED[i],
                                    malformed_cases[j].name) == 0;
        ck_assert_msg(found, "no malformed case named %s",
                      FAST_PATH_MALFORMED[i]);
    }
}
END_TEST

/* ---- synthetic tables: every kind in every field ------------------------ */

static amqp_field_value_t pair_members[2] = {
    {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 10},
    {.kind = AMQP_FIELD_KIND_VOID},
};
static amqp_field_value_t triple_members[3] = {
    {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 10},
    {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 5},
    {.kind = AMQP_FIELD_KIND_VOID},
};
static amqp_field_value_t single_member[1] = {
    {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 1.0},
};
static amqp_table_entry_t inner_entries[1] = {
    {.key = {.len = 1, .bytes = "k"},
     .value = {.kind = AMQP_FIELD_KIND_UTF8,
               .value.bytes = {.len = 1, .bytes = "v"}}},
};

typedef struct field_sample {
    const char *label;
    amqp_field_value_t value;
} field_sample_t;

/* One value of each kind, with the edges the conversions care about.
 * Every one converts to JSON, so the fast path may take any of them. */
static const field_sample_t SAMPLES[] = {
    {"VOID", {.kind = AMQP_FIELD_KIND_VOID}},
    {"BOOLEAN true", {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1}},
    {"BOOLEAN false", {.kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 0}},
    {"I8 -5", {.kind = AMQP_FIELD_KIND_I8, .value.i8 = -5}},
    {"U8 200", {.kind = AMQP_FIELD_KIND_U8, .value.u8 = 200}},
    {"I16 -300", {.kind = AMQP_FIELD_KIND_I16, .value.i16 = -300}},
    {"U16 60000", {.kind = AMQP_FIELD_KIND_U16, .value.u16 = 60000}},
    {"I32 7", {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 7}},
    {"I32 -7", {.kind = AMQP_FIELD_KIND_I32, .value.i32 = -7}},
    {"U32 4e9", {.kind = AMQP_FIELD_KIND_U32, .value.u32 = 4000000000u}},
    {"I64 2^40", {.kind = AMQP_FIELD_KIND_I64, .value.i64 = INT64_C(1) << 40}},
    {"I64 -2^40",
     {.kind = AMQP_FIELD_KIND_I64, .value.i64 = -(INT64_C(1) << 40)}},
    {"U64 5", {.kind = AMQP_FIELD_KIND_U64, .value.u64 = 5}},
    {"U64 2^32+5",
     {.kind = AMQP_FIELD_KIND_U64, .value.u64 = (UINT64_C(1) << 32) + 5}},
    {"U64 2^63", {.kind = AMQP_FIELD_KIND_U64, .value.u64 = UINT64_C(1) << 63}},
    {"TIMESTAMP 1.7e9",
     {.kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = 1700000000}},
    {"TIMESTAMP 2^63+1",
     {.kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = (UINT64_C(1) << 63) + 1}},
    {"F32 1.5", {.kind = AMQP_FIELD_KIND_F32, .value.f32 = 1.5f}},
    {"F64 2.25", {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 2.25}},
    {"F64 -0.5", {.kind = AMQP_FIELD_KIND_F64, .value.f64 = -0.5}},
    {"F64 1e300", {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 1e300}},
    {"DECIMAL 123.45",
     {.kind = AMQP_FIELD_KIND_DECIMAL,
      .value.decimal = {.decimals = 2, .value = 12345}}},
    {"DECIMAL -0.5",
     {.kind = AMQP_FIELD_KIND_DECIMAL,
      .value.decimal = {.decimals = 1, .value = (uint32_t)-5}}},
    {"DECIMAL with 255 decimals",
     {.kind = AMQP_FIELD_KIND_DECIMAL,
      .value.decimal = {.decimals = 255, .value = 7}}},
    {"empty UTF8 with NULL bytes",
     {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = {.len = 0, .bytes = NULL}}},
    {"empty UTF8 with a pointer",
     {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = {.len = 0, .bytes = ""}}},
    {"UTF8 tasks.add",
     {.kind = AMQP_FIELD_KIND_UTF8,
      .value.bytes = {.len = 9, .bytes = "tasks.add"}}},
    {"UTF8 ISO-8601",
     {.kind = AMQP_FIELD_KIND_UTF8,
      .value.bytes = {.len = 25, .bytes = "2030-01-02T03:04:05+00:00"}}},
    {"UTF8 with a NUL",
     {.kind = AMQP_FIELD_KIND_UTF8,
      .value.bytes = {.len = 7, .bytes = "abc\0def"}}},
    {"BYTES",
     {.kind = AMQP_FIELD_KIND_BYTES,
      .value.bytes = {.len = 7, .bytes = "x-bytes"}}},
    {"empty ARRAY",
     {.kind = AMQP_FIELD_KIND_ARRAY,
      .value.array = {.num_entries = 0, .entries = NULL}}},
    {"ARRAY of 1",
     {.kind = AMQP_FIELD_KIND_ARRAY,
      .value.array = {.num_entries = 1, .entries = single_member}}},
    {"ARRAY of 2",
     {.kind = AMQP_FIELD_KIND_ARRAY,
      .value.array = {.num_entries = 2, .entries = pair_members}}},
    {"ARRAY of 3",
     {.kind = AMQP_FIELD_KIND_ARRAY,
      .value.array = {.num_entries = 3, .entries = triple_members}}},
    {"empty TABLE",
     {.kind = AMQP_FIELD_KIND_TABLE,
      .value.table = {.num_entries = 0, .entries = NULL}}},
    {"TABLE",
     {.kind = AMQP_FIELD_KIND_TABLE,
      .value.table = {.num_entries = 1, .entries = inner_entries}}},
};

/* The headers the decoder reads, spelled out here rather than taken from
 * cel__task_field_names, plus one it ignores. */
static const char *const SWEEP_KEYS[] = {
    "id",          "task",          "shadow",    "root_id",
    "parent_id",   "group",         "origin",    "argsrepr",
    "kwargsrepr",  "eta",           "expires",   "retries",
    "group_index", "ignore_result", "timelimit", "x-custom",
};

static bool is_text_kind(uint8_t kind)
{
    return kind == AMQP_FIELD_KIND_UTF8 || kind == AMQP_FIELD_KIND_BYTES;
}

/* Each sample as the value of one header, added after the task headers so
 * that it replaces task or id. The fast path must take every table except
 * those whose task ends up not text. */
START_TEST(test_every_kind_in_each_header_agrees)
{
    const char *key = SWEEP_KEYS[_i];
    cel__limits_t limits;
    cel__limits_default(&limits);
    for (size_t i = 0; i < COUNT_OF(SAMPLES); i++) {
        char label[LABEL_LEN];
        snprintf(label, sizeof label, "%s = %s", key, SAMPLES[i].label);
        table_builder_t builder;
        builder_init(&builder);
        add_task_headers(&builder);
        *builder_add(&builder, key) = SAMPLES[i].value;

        path_outcome_t json_path, fast_path;
        decode_json_path(&builder.table, synthetic_wire(), &limits, &json_path);
        bool fast_path_taken = decode_fast_path(
            &builder.table, synthetic_wire(), &limits, &fast_path);
        bool expected =
            strcmp(key, "task") != 0 || is_text_kind(SAMPLES[i].value.kind);
        ck_assert_msg(fast_path_taken == expected, "%s: the fast path was %s",
                      label, fast_path_taken ? "taken" : "not taken");
        if (fast_path_taken)
            assert_same_outcome(label, &json_path, &fast_path);

        outcome_clear(&json_path);
        outcome_clear(&fast_path);
        builder_free(&builder);
    }
}
END_TEST

/* Each sample as one member of timelimit, the other member VOID. */
START_TEST(test_every_kind_as_timelimit_member_agrees)
{
    int position = _i;
    for (size_t i = 0; i < COUNT_OF(SAMPLES); i++) {
        char label[LABEL_LEN];
        snprintf(label, sizeof label, "timelimit member %d = %s", position,
                 SAMPLES[i].label);
        table_builder_t builder;
        builder_init(&builder);
        add_task_headers(&builder);
        amqp_field_value_t members[2] = {{.kind = AMQP_FIELD_KIND_VOID},
                                         {.kind = AMQP_FIELD_KIND_VOID}};
        members[position] = SAMPLES[i].value;
        *builder_add(&builder, "timelimit") = array_value(&builder, members, 2);

        path_outcome_t json_path, fast_path;
        decode_both_ways(label, &builder.table, &json_path, &fast_path);
        outcome_clear(&json_path);
        outcome_clear(&fast_path);
        builder_free(&builder);
    }
}
END_TEST

/* ---- synthetic tables: kinds the goldens lack --------------------------- */

START_TEST(test_u64_retries_with_sign_bit_fail_both)
{
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    /* The JSON path reads U64 as signed, so these bits are -1. */
    amqp_field_value_t *retries = builder_add(&builder, "retries");
    retries->kind = AMQP_FIELD_KIND_U64;
    retries->value.u64 = UINT64_MAX;

    path_outcome_t json_path, fast_path;
    decode_both_ways("U64 retries 2^64-1", &builder.table, &json_path,
                     &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_EINVALTASK);
    ck_assert_str_eq(fast_path.why, "retries is not a non-negative integer");

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

START_TEST(test_u64_retries_in_range_are_read)
{
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    amqp_field_value_t *retries = builder_add(&builder, "retries");
    retries->kind = AMQP_FIELD_KIND_U64;
    retries->value.u64 = 3;

    path_outcome_t json_path, fast_path;
    decode_both_ways("U64 retries 3", &builder.table, &json_path, &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert_int_eq(fast_path.msg.retries, 3);

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

START_TEST(test_timestamp_group_index_is_read)
{
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    amqp_field_value_t *group_index = builder_add(&builder, "group_index");
    group_index->kind = AMQP_FIELD_KIND_TIMESTAMP;
    group_index->value.u64 = 7;

    path_outcome_t json_path, fast_path;
    decode_both_ways("TIMESTAMP group_index", &builder.table, &json_path,
                     &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert(fast_path.msg.has_group_index);
    ck_assert_int_eq(fast_path.msg.group_index, 7);

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

typedef struct timelimit_case {
    const char *label;
    amqp_field_value_t hard;
    amqp_field_value_t soft;
    int status;
    double time_limit;
    double soft_time_limit;
} timelimit_case_t;

static const timelimit_case_t TIMELIMIT_CASES[] = {
    {"F32 and F64",
     {.kind = AMQP_FIELD_KIND_F32, .value.f32 = 1.5f},
     {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 2.25},
     CEL_OK,
     1.5,
     2.25},
    {"DECIMAL and I8",
     {.kind = AMQP_FIELD_KIND_DECIMAL,
      .value.decimal = {.decimals = 2, .value = 150}},
     {.kind = AMQP_FIELD_KIND_I8, .value.i8 = 3},
     CEL_OK,
     1.5,
     3},
    {"I8 and VOID",
     {.kind = AMQP_FIELD_KIND_I8, .value.i8 = 30},
     {.kind = AMQP_FIELD_KIND_VOID},
     CEL_OK,
     30,
     0},
    {"U64 and TIMESTAMP",
     {.kind = AMQP_FIELD_KIND_U64, .value.u64 = 60},
     {.kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = 45},
     CEL_OK,
     60,
     45},
    {"negative I8",
     {.kind = AMQP_FIELD_KIND_I8, .value.i8 = -1},
     {.kind = AMQP_FIELD_KIND_VOID},
     CEL_EINVALTASK,
     0,
     0},
    {"negative F64",
     {.kind = AMQP_FIELD_KIND_VOID},
     {.kind = AMQP_FIELD_KIND_F64, .value.f64 = -0.5},
     CEL_EINVALTASK,
     0,
     0},
    {"negative F32",
     {.kind = AMQP_FIELD_KIND_F32, .value.f32 = -2.0f},
     {.kind = AMQP_FIELD_KIND_VOID},
     CEL_EINVALTASK,
     0,
     0},
    {"negative DECIMAL",
     {.kind = AMQP_FIELD_KIND_DECIMAL,
      .value.decimal = {.decimals = 1, .value = (uint32_t)-5}},
     {.kind = AMQP_FIELD_KIND_VOID},
     CEL_EINVALTASK,
     0,
     0},
    {"U64 with the sign bit",
     {.kind = AMQP_FIELD_KIND_U64, .value.u64 = UINT64_MAX},
     {.kind = AMQP_FIELD_KIND_VOID},
     CEL_EINVALTASK,
     0,
     0},
};

START_TEST(test_timelimit_member_kinds_agree)
{
    const timelimit_case_t *c = &TIMELIMIT_CASES[_i];
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    amqp_field_value_t members[2] = {c->hard, c->soft};
    *builder_add(&builder, "timelimit") = array_value(&builder, members, 2);

    path_outcome_t json_path, fast_path;
    decode_both_ways(c->label, &builder.table, &json_path, &fast_path);
    ck_assert_msg(fast_path.status == c->status, "%s: status %d (%s)", c->label,
                  fast_path.status, fast_path.why);
    if (c->status == CEL_OK) {
        ck_assert_double_eq(fast_path.msg.time_limit, c->time_limit);
        ck_assert_double_eq(fast_path.msg.soft_time_limit, c->soft_time_limit);
    } else {
        ck_assert_str_eq(fast_path.why,
                         "timelimit is not [hard, soft] with numbers or nulls");
    }

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

/* timelimit with 0, 1 or 3 members instead of 2. */
START_TEST(test_timelimit_of_wrong_size_fails_both)
{
    static const int sizes[] = {0, 1, 3};
    int size = sizes[_i];
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "timelimit") =
        array_value(&builder, triple_members, size);

    char label[LABEL_LEN];
    snprintf(label, sizeof label, "timelimit of %d members", size);
    path_outcome_t json_path, fast_path;
    decode_both_ways(label, &builder.table, &json_path, &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_EINVALTASK);
    ck_assert_str_eq(fast_path.why,
                     "timelimit is not [hard, soft] with numbers or nulls");

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

START_TEST(test_duplicate_keys_later_entry_wins)
{
    table_builder_t builder;
    builder_init(&builder);
    *builder_add(&builder, "task") = cstring_value("tasks.first");
    *builder_add(&builder, "id") = cstring_value("first-id");
    *builder_add(&builder, "retries") =
        (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = 1};
    *builder_add(&builder, "task") = cstring_value("tasks.add");
    *builder_add(&builder, "id") = cstring_value("second-id");
    *builder_add(&builder, "retries") =
        (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = 4};

    path_outcome_t json_path, fast_path;
    decode_both_ways("duplicate task, id and retries", &builder.table,
                     &json_path, &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert_str_eq(fast_path.msg.task, "tasks.add");
    ck_assert_str_eq(fast_path.msg.id, "second-id");
    ck_assert_int_eq(fast_path.msg.retries, 4);

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

/* A later timelimit replaces the members of an earlier one too. */
START_TEST(test_duplicate_timelimit_later_entry_wins)
{
    amqp_field_value_t first[2] = {
        {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 1.0},
        {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 2.0},
    };
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "timelimit") = array_value(&builder, first, 2);
    *builder_add(&builder, "timelimit") =
        array_value(&builder, pair_members, 2);

    path_outcome_t json_path, fast_path;
    decode_both_ways("two pairs", &builder.table, &json_path, &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert_double_eq(fast_path.msg.time_limit, 10);
    ck_assert_double_eq(fast_path.msg.soft_time_limit, 0);
    outcome_clear(&json_path);
    outcome_clear(&fast_path);

    /* A later entry of 3 members makes the earlier valid pair invalid. */
    *builder_add(&builder, "timelimit") =
        array_value(&builder, triple_members, 3);
    decode_both_ways("pair then 3 members", &builder.table, &json_path,
                     &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_EINVALTASK);
    outcome_clear(&json_path);
    outcome_clear(&fast_path);

    /* And a valid pair after that makes it valid again. */
    *builder_add(&builder, "timelimit") = array_value(&builder, first, 2);
    decode_both_ways("3 members then pair", &builder.table, &json_path,
                     &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert_double_eq(fast_path.msg.time_limit, 1);
    ck_assert_double_eq(fast_path.msg.soft_time_limit, 2);

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

/* An empty text may come with a NULL pointer or, as rabbitmq-c 0.11.0
 * decodes it, with a pointer into the frame. */
START_TEST(test_empty_text_id_is_empty_string)
{
    static const char *const pointers[] = {NULL, "not read"};
    const char *pointer = pointers[_i];
    table_builder_t builder;
    builder_init(&builder);
    *builder_add(&builder, "task") = cstring_value("tasks.add");
    *builder_add(&builder, "id") = text_value(pointer, 0);

    const char *label = pointer ? "empty id with a pointer" : "empty id, NULL";
    path_outcome_t json_path, fast_path;
    decode_both_ways(label, &builder.table, &json_path, &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert_str_eq(fast_path.msg.id, "");

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

START_TEST(test_origin_with_nul_is_truncated)
{
    static const char origin[] = "gen6705\0@vm";
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "origin") = text_value(origin, sizeof origin - 1);

    path_outcome_t json_path, fast_path;
    decode_both_ways("origin with a NUL", &builder.table, &json_path,
                     &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert_str_eq(fast_path.msg.origin, "gen6705");

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

START_TEST(test_eta_with_nul_is_parsed_up_to_nul)
{
    static const char eta[] = "2030-01-02T03:04:05+00:00\0garbage";
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "eta") = text_value(eta, sizeof eta - 1);

    path_outcome_t json_path, fast_path;
    decode_both_ways("eta with a NUL", &builder.table, &json_path, &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_OK);
    ck_assert_str_eq(fast_path.msg.eta, "2030-01-02T03:04:05+00:00");

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

START_TEST(test_eta_not_iso8601_fails_both)
{
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "eta") = cstring_value("next tuesday");

    path_outcome_t json_path, fast_path;
    decode_both_ways("eta 'next tuesday'", &builder.table, &json_path,
                     &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_EINVALTASK);
    ck_assert_str_eq(fast_path.why,
                     "eta 'next tuesday' is not an ISO-8601 date-time");

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

/* An integer, a timestamp and a real eta all fail as not text. */
START_TEST(test_eta_not_text_fails_both)
{
    static const field_sample_t etas[] = {
        {"I32 eta", {.kind = AMQP_FIELD_KIND_I32, .value.i32 = 1700000000}},
        {"TIMESTAMP eta",
         {.kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = 1700000000}},
        {"F64 eta", {.kind = AMQP_FIELD_KIND_F64, .value.f64 = 1.7e9}},
    };
    const field_sample_t *sample = &etas[_i];
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "eta") = sample->value;

    path_outcome_t json_path, fast_path;
    decode_both_ways(sample->label, &builder.table, &json_path, &fast_path);
    ck_assert_int_eq(fast_path.status, CEL_EINVALTASK);
    ck_assert_str_eq(fast_path.why, "eta is not a string");

    outcome_clear(&json_path);
    outcome_clear(&fast_path);
    builder_free(&builder);
}
END_TEST

/* ---- tables the fast path must reject ----------------------------------- */

/* "é" in UTF-8: valid text that is not ASCII. */
#define NON_ASCII_TEXT "('h\xc3\xa9llo',)"

/* Non-ASCII text at the top, in an array, in a nested table and as BYTES.
 * The JSON path converts all of them, so the message falls back to it. */
START_TEST(test_read_fields_rejects_non_ascii_text)
{
    static amqp_field_value_t member[1] = {
        {.kind = AMQP_FIELD_KIND_UTF8,
         .value.bytes = {.len = sizeof NON_ASCII_TEXT - 1,
                         .bytes = NON_ASCII_TEXT}},
    };
    static amqp_table_entry_t entry[1] = {
        {.key = {.len = 1, .bytes = "k"},
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value.bytes = {.len = sizeof NON_ASCII_TEXT - 1,
                                   .bytes = NON_ASCII_TEXT}}},
    };
    static const field_sample_t places[] = {
        {"UTF8 argsrepr",
         {.kind = AMQP_FIELD_KIND_UTF8,
          .value.bytes = {.len = sizeof NON_ASCII_TEXT - 1,
                          .bytes = NON_ASCII_TEXT}}},
        {"BYTES argsrepr",
         {.kind = AMQP_FIELD_KIND_BYTES,
          .value.bytes = {.len = sizeof NON_ASCII_TEXT - 1,
                          .bytes = NON_ASCII_TEXT}}},
        {"in an array",
         {.kind = AMQP_FIELD_KIND_ARRAY,
          .value.array = {.num_entries = 1, .entries = member}}},
        {"in a table",
         {.kind = AMQP_FIELD_KIND_TABLE,
          .value.table = {.num_entries = 1, .entries = entry}}},
    };
    const field_sample_t *place = &places[_i];
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "argsrepr") = place->value;

    ck_assert_msg(json_conversion_status(&builder.table) == CEL_OK,
                  "%s: the JSON path cannot convert it", place->label);
    ck_assert_msg(!fast_path_accepts(&builder.table, SIZE_MAX),
                  "%s: the fast path accepted non-ASCII text", place->label);
    builder_free(&builder);
}
END_TEST

START_TEST(test_read_fields_rejects_non_ascii_key)
{
    static const char key[] = "cl\xc3\xa9";
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add_key(&builder, key, sizeof key - 1) = cstring_value("v");

    ck_assert_int_eq(json_conversion_status(&builder.table), CEL_OK);
    ck_assert(!fast_path_accepts(&builder.table, SIZE_MAX));
    builder_free(&builder);
}
END_TEST

/* jansson's copies and the pool frames cut a key at a NUL byte, so both
 * paths reject such a key, at the top level and in a nested table. */
START_TEST(test_both_paths_reject_key_with_nul)
{
    static const char key[] = "x-a\0b";
    static amqp_table_entry_t nested_entry[1] = {
        {.key = {.len = sizeof key - 1, .bytes = (void *)key},
         .value = {.kind = AMQP_FIELD_KIND_VOID}},
    };
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    if (_i == 0) {
        *builder_add_key(&builder, key, sizeof key - 1) = cstring_value("v");
    } else {
        amqp_field_value_t *value = builder_add(&builder, "x-nested");
        value->kind = AMQP_FIELD_KIND_TABLE;
        value->value.table = (amqp_table_t){1, nested_entry};
    }

    ck_assert_int_eq(json_conversion_status(&builder.table), CEL_EINVALTASK);
    ck_assert(!fast_path_accepts(&builder.table, SIZE_MAX));
    builder_free(&builder);
}
END_TEST

/* A compression header of any kind, even one the decoder would ignore. */
START_TEST(test_read_fields_rejects_compression_header)
{
    static const field_sample_t compressions[] = {
        {"UTF8 compression",
         {.kind = AMQP_FIELD_KIND_UTF8,
          .value.bytes = {.len = 18, .bytes = "application/x-gzip"}}},
        {"VOID compression", {.kind = AMQP_FIELD_KIND_VOID}},
    };
    const field_sample_t *sample = &compressions[_i];
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "compression") = sample->value;

    ck_assert_msg(!fast_path_accepts(&builder.table, SIZE_MAX),
                  "%s: the fast path accepted it", sample->label);
    builder_free(&builder);
}
END_TEST

START_TEST(test_read_fields_rejects_missing_task)
{
    table_builder_t builder;
    builder_init(&builder);
    *builder_add(&builder, "id") = cstring_value("synthetic-1");
    *builder_add(&builder, "retries") =
        (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I32, .value.i32 = 0};

    ck_assert(!fast_path_accepts(&builder.table, SIZE_MAX));
    builder_free(&builder);
}
END_TEST

/* Every sample that is not text, as the only task header. */
START_TEST(test_read_fields_rejects_task_not_text)
{
    for (size_t i = 0; i < COUNT_OF(SAMPLES); i++) {
        if (is_text_kind(SAMPLES[i].value.kind))
            continue;
        table_builder_t builder;
        builder_init(&builder);
        *builder_add(&builder, "id") = cstring_value("synthetic-1");
        *builder_add(&builder, "task") = SAMPLES[i].value;
        ck_assert_msg(!fast_path_accepts(&builder.table, SIZE_MAX),
                      "task = %s: the fast path accepted it", SAMPLES[i].label);
        builder_free(&builder);
    }
}
END_TEST

/* Exactly max_headers entries pass, one more fails, as in the JSON path.
 * Tried with a cap of 3 and with the default cap. */
START_TEST(test_read_fields_rejects_more_than_max_headers)
{
    cel__limits_t limits;
    cel__limits_default(&limits);
    size_t caps[] = {3, limits.max_headers};
    size_t cap = caps[_i];
    static char keys[ENTRIES_MAX][16];

    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    while ((size_t)builder.table.num_entries < cap) {
        int n = builder.table.num_entries;
        snprintf(keys[n], sizeof keys[n], "x-filler-%d", n);
        *builder_add(&builder, keys[n]) = cstring_value("filler");
    }
    ck_assert_msg(fast_path_accepts(&builder.table, cap),
                  "%zu entries with a cap of %zu: rejected", cap, cap);

    *builder_add(&builder, "x-one-more") = cstring_value("filler");
    json_t *headers = NULL;
    char why[WHY_LEN];
    ck_assert_int_eq(
        cel__table_to_json(&builder.table, cap, &headers, why, WHY_LEN),
        CEL_ETOOMANY);
    ck_assert_msg(!fast_path_accepts(&builder.table, cap),
                  "%zu entries with a cap of %zu: accepted", cap + 1, cap);
    builder_free(&builder);
}
END_TEST

/* Returns a value of `levels` nested arrays or tables around a VOID. */
static amqp_field_value_t nested_value(table_builder_t *builder, int levels,
                                       bool tables)
{
    amqp_field_value_t value = {.kind = AMQP_FIELD_KIND_VOID};
    for (int level = 0; level < levels; level++) {
        if (!tables) {
            value = array_value(builder, &value, 1);
            continue;
        }
        amqp_table_entry_t *entry =
            amqp_pool_alloc(&builder->pool, sizeof *entry);
        ck_assert_ptr_nonnull(entry);
        entry->key.len = 1;
        entry->key.bytes = "n";
        entry->value = value;
        value.kind = AMQP_FIELD_KIND_TABLE;
        value.value.table.num_entries = 1;
        value.value.table.entries = entry;
    }
    return value;
}

/* Builds a table whose "x-nested" header nests `levels` deep, and returns
 * whether the fast path accepts it, with the JSON path's status. */
static bool nesting_accepted(int levels, bool tables, int *json_status)
{
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "x-nested") = nested_value(&builder, levels, tables);
    *json_status = json_conversion_status(&builder.table);
    bool accepted = fast_path_accepts(&builder.table, SIZE_MAX);
    builder_free(&builder);
    return accepted;
}

/* The fast path accepts exactly the depths the JSON path converts, with
 * arrays (_i 0) and with tables (_i 1). */
START_TEST(test_read_fields_nesting_limit_matches_json)
{
    bool tables = _i == 1;
    const char *shape = tables ? "tables" : "arrays";
    int first_failure = 0;
    for (int levels = 1; levels <= NESTING_MAX; levels++) {
        int status;
        bool accepted = nesting_accepted(levels, tables, &status);
        ck_assert_msg(accepted == (status == CEL_OK),
                      "%d nested %s: JSON status %d, but the fast path %s",
                      levels, shape, status,
                      accepted ? "accepted" : "rejected");
        if (first_failure == 0 && status != CEL_OK)
            first_failure = levels;
        ck_assert_msg(first_failure == 0 || status == CEL_EINVALTASK,
                      "%d nested %s: JSON status %d after failing at %d",
                      levels, shape, status, first_failure);
    }
    ck_assert_msg(first_failure > 1,
                  "%s: the JSON path failed at depth %d of 1 to %d, so the "
                  "test found no depth limit",
                  shape, first_failure, NESTING_MAX);

    int status;
    ck_assert_msg(!nesting_accepted(first_failure, tables, &status),
                  "%d nested %s: accepted where the JSON path starts failing",
                  first_failure, shape);
    ck_assert_msg(nesting_accepted(first_failure - 1, tables, &status),
                  "%d nested %s: rejected one level below the JSON limit",
                  first_failure - 1, shape);
}
END_TEST

/* 'Z' is no AMQP field type, and the JSON path fails on it. */
START_TEST(test_read_fields_rejects_unknown_kind)
{
    static amqp_field_value_t unknown_member[1] = {{.kind = 'Z'}};
    static amqp_table_entry_t unknown_entry[1] = {
        {.key = {.len = 1, .bytes = "k"}, .value = {.kind = 'Z'}},
    };
    static const field_sample_t places[] = {
        {"at the top", {.kind = 'Z'}},
        {"in an array",
         {.kind = AMQP_FIELD_KIND_ARRAY,
          .value.array = {.num_entries = 1, .entries = unknown_member}}},
        {"in a table",
         {.kind = AMQP_FIELD_KIND_TABLE,
          .value.table = {.num_entries = 1, .entries = unknown_entry}}},
    };
    const field_sample_t *place = &places[_i];
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    *builder_add(&builder, "x-unknown") = place->value;

    ck_assert_msg(json_conversion_status(&builder.table) == CEL_EINVALTASK,
                  "%s: the JSON path converted kind 'Z'", place->label);
    ck_assert_msg(!fast_path_accepts(&builder.table, SIZE_MAX),
                  "%s: the fast path accepted kind 'Z'", place->label);
    builder_free(&builder);
}
END_TEST

static const field_sample_t NON_FINITE_REALS[] = {
    {"F64 NaN", {.kind = AMQP_FIELD_KIND_F64, .value.f64 = NAN}},
    {"F64 +inf", {.kind = AMQP_FIELD_KIND_F64, .value.f64 = INFINITY}},
    {"F64 -inf", {.kind = AMQP_FIELD_KIND_F64, .value.f64 = -INFINITY}},
    {"F32 NaN", {.kind = AMQP_FIELD_KIND_F32, .value.f32 = NAN}},
    {"F32 +inf", {.kind = AMQP_FIELD_KIND_F32, .value.f32 = INFINITY}},
};

/* JSON has no NaN or infinity, so the JSON path rejects such a header.
 * The fast path must leave the message to it, or the worker runs a
 * message it would otherwise reject. Each real
 * goes in a custom header (even _i) and in timelimit (odd _i). */
START_TEST(test_read_fields_rejects_non_finite_reals)
{
    const field_sample_t *real = &NON_FINITE_REALS[_i / 2];
    bool in_timelimit = _i % 2 == 1;
    char label[LABEL_LEN];
    snprintf(label, sizeof label, "%s in %s", real->label,
             in_timelimit ? "timelimit" : "x-ratio");
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    if (in_timelimit) {
        amqp_field_value_t members[2] = {real->value,
                                         {.kind = AMQP_FIELD_KIND_VOID}};
        *builder_add(&builder, "timelimit") = array_value(&builder, members, 2);
    } else {
        *builder_add(&builder, "x-ratio") = real->value;
    }

    ck_assert_msg(json_conversion_status(&builder.table) != CEL_OK,
                  "%s: the JSON path converted it", label);
    ck_assert_msg(!fast_path_accepts(&builder.table, SIZE_MAX),
                  "%s: the fast path accepted a header the JSON path cannot "
                  "convert",
                  label);
    builder_free(&builder);
}
END_TEST

/* ---- cel__request_headers ----------------------------------------------- */

/* Returns a request keeping `table` as encoded basic properties, the way
 * decode_delivery keeps a fast-path message's properties. */
static cel__request_t *request_with_properties(const amqp_table_t *table)
{
    amqp_basic_properties_t properties;
    memset(&properties, 0, sizeof properties);
    properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG |
                        AMQP_BASIC_CORRELATION_ID_FLAG |
                        AMQP_BASIC_DELIVERY_MODE_FLAG;
    properties.content_type = amqp_cstring_bytes("application/json");
    properties.correlation_id = amqp_cstring_bytes("corr-1");
    properties.delivery_mode = 2;
    if (table != NULL) {
        properties._flags |= AMQP_BASIC_HEADERS_FLAG;
        properties.headers = *table;
    }

    char *buffer = malloc(PROPERTIES_MAX);
    ck_assert_ptr_nonnull(buffer);
    amqp_bytes_t encoded = {.len = PROPERTIES_MAX, .bytes = buffer};
    int length = amqp_encode_properties(AMQP_BASIC_CLASS, &properties, encoded);
    ck_assert_msg(length > 0, "amqp_encode_properties failed: %d", length);

    cel__request_t *request = calloc(1, sizeof *request);
    ck_assert_ptr_nonnull(request);
    request->properties = malloc((size_t)length);
    ck_assert_ptr_nonnull(request->properties);
    memcpy(request->properties, buffer, (size_t)length);
    request->properties_len = (size_t)length;
    free(buffer);
    return request;
}

/* Asserts that the headers built from the encoded table equal what
 * cel__table_to_json gives for the table itself. */
static void assert_request_headers_match(const char *label,
                                         const amqp_table_t *table)
{
    json_t *expected = NULL;
    char why[WHY_LEN];
    int status = cel__table_to_json(table, SIZE_MAX, &expected, why, WHY_LEN);
    ck_assert_msg(status == CEL_OK, "%s: cel__table_to_json failed: %s", label,
                  why);

    cel__request_t *request = request_with_properties(table);
    json_t *headers = cel__request_headers(request);
    ck_assert_msg(headers != NULL, "%s: no headers", label);
    ck_assert_msg(json_equal(headers, expected),
                  "%s: the headers differ from cel__table_to_json's", label);

    json_decref(headers);
    json_decref(expected);
    cel__request_free(request);
}

START_TEST(test_request_headers_of_golden_match_table)
{
    const char *name = golden_names[_i];
    golden_message_t golden;
    char error[256];
    ck_assert_msg(golden_message_load(name, &golden, error, sizeof error) == 0,
                  "%s", error);
    amqp_pool_t pool;
    init_amqp_pool(&pool, 4096);
    amqp_table_t table;
    ck_assert_msg(
        golden_table_build(json_object_get(golden.document, "headers"), &pool,
                           &table) == 0,
        "%s: the tagged headers do not build a table", name);

    assert_request_headers_match(name, &table);

    empty_amqp_pool(&pool);
    golden_message_free(&golden);
}
END_TEST

/* Every sample under its own key, through the wire encoding and back. */
START_TEST(test_request_headers_of_every_kind_match_table)
{
    static char keys[COUNT_OF(SAMPLES)][16];
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    for (size_t i = 0; i < COUNT_OF(SAMPLES); i++) {
        snprintf(keys[i], sizeof keys[i], "x-sample-%zu", i);
        *builder_add(&builder, keys[i]) = SAMPLES[i].value;
    }

    assert_request_headers_match("every kind", &builder.table);
    builder_free(&builder);
}
END_TEST

START_TEST(test_request_headers_returns_msg_headers)
{
    table_builder_t builder;
    builder_init(&builder);
    add_task_headers(&builder);
    /* Properties that would give other headers, to show which one wins. */
    cel__request_t *request = request_with_properties(&builder.table);
    json_t *headers = json_pack("{s:s}", "task", "tasks.kept");
    request->msg.headers = headers;
    size_t refcount = headers->refcount;

    json_t *returned = cel__request_headers(request);
    ck_assert_ptr_eq(returned, headers);
    ck_assert_uint_eq(headers->refcount, refcount + 1);

    json_decref(returned);
    cel__request_free(request);
    builder_free(&builder);
}
END_TEST

START_TEST(test_request_headers_without_either_is_null)
{
    cel__request_t *request = calloc(1, sizeof *request);
    ck_assert_ptr_nonnull(request);
    ck_assert_ptr_null(cel__request_headers(request));
    cel__request_free(request);
}
END_TEST

START_TEST(test_request_headers_without_flag_is_null)
{
    cel__request_t *request = request_with_properties(NULL);
    ck_assert_ptr_null(cel__request_headers(request));
    cel__request_free(request);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

static Suite *amqp_table_suite(void)
{
    Suite *suite = suite_create("amqp_table");

    TCase *golden = tcase_create("golden");
    tcase_add_loop_test(golden, test_golden_paths_agree, 0, (int)golden_count);
    tcase_add_loop_test(golden, test_malformed_paths_agree, 0,
                        (int)malformed_count);
    tcase_add_test(golden, test_fast_path_lists_name_existing_messages);
    suite_add_tcase(suite, golden);

    TCase *kinds = tcase_create("kinds");
    tcase_add_loop_test(kinds, test_every_kind_in_each_header_agrees, 0,
                        (int)COUNT_OF(SWEEP_KEYS));
    tcase_add_loop_test(kinds, test_every_kind_as_timelimit_member_agrees, 0,
                        2);
    tcase_add_test(kinds, test_u64_retries_with_sign_bit_fail_both);
    tcase_add_test(kinds, test_u64_retries_in_range_are_read);
    tcase_add_test(kinds, test_timestamp_group_index_is_read);
    tcase_add_loop_test(kinds, test_timelimit_member_kinds_agree, 0,
                        (int)COUNT_OF(TIMELIMIT_CASES));
    tcase_add_loop_test(kinds, test_timelimit_of_wrong_size_fails_both, 0, 3);
    tcase_add_test(kinds, test_duplicate_keys_later_entry_wins);
    tcase_add_test(kinds, test_duplicate_timelimit_later_entry_wins);
    tcase_add_loop_test(kinds, test_empty_text_id_is_empty_string, 0, 2);
    tcase_add_test(kinds, test_origin_with_nul_is_truncated);
    tcase_add_test(kinds, test_eta_with_nul_is_parsed_up_to_nul);
    tcase_add_test(kinds, test_eta_not_iso8601_fails_both);
    tcase_add_loop_test(kinds, test_eta_not_text_fails_both, 0, 3);
    suite_add_tcase(suite, kinds);

    TCase *rejects = tcase_create("rejects");
    tcase_add_loop_test(rejects, test_read_fields_rejects_non_ascii_text, 0, 4);
    tcase_add_test(rejects, test_read_fields_rejects_non_ascii_key);
    tcase_add_loop_test(rejects, test_both_paths_reject_key_with_nul, 0, 2);
    tcase_add_loop_test(rejects, test_read_fields_rejects_compression_header, 0,
                        2);
    tcase_add_test(rejects, test_read_fields_rejects_missing_task);
    tcase_add_test(rejects, test_read_fields_rejects_task_not_text);
    tcase_add_loop_test(rejects, test_read_fields_rejects_more_than_max_headers,
                        0, 2);
    tcase_add_loop_test(rejects, test_read_fields_nesting_limit_matches_json, 0,
                        2);
    tcase_add_loop_test(rejects, test_read_fields_rejects_unknown_kind, 0, 3);
    suite_add_tcase(suite, rejects);

    /* Its own case, so CK_RUN_CASE=non_finite_reals runs it alone. */
    TCase *non_finite = tcase_create("non_finite_reals");
    tcase_add_loop_test(non_finite, test_read_fields_rejects_non_finite_reals,
                        0, (int)(2 * COUNT_OF(NON_FINITE_REALS)));
    suite_add_tcase(suite, non_finite);

    TCase *request_headers = tcase_create("request_headers");
    tcase_add_loop_test(request_headers,
                        test_request_headers_of_golden_match_table, 0,
                        (int)golden_count);
    tcase_add_test(request_headers,
                   test_request_headers_of_every_kind_match_table);
    tcase_add_test(request_headers, test_request_headers_returns_msg_headers);
    tcase_add_test(request_headers,
                   test_request_headers_without_either_is_null);
    tcase_add_test(request_headers, test_request_headers_without_flag_is_null);
    suite_add_tcase(suite, request_headers);

    return suite;
}

int main(void)
{
    golden_names = golden_names_list(&golden_count);
    if (golden_names == NULL || golden_count == 0) {
        fprintf(stderr, "no golden messages under %s/golden\n", CEL_TEST_DATA);
        return EXIT_FAILURE;
    }
    char error[256];
    if (golden_cases_load(&malformed_cases, &malformed_count, error,
                          sizeof error) != 0) {
        fprintf(stderr, "%s\n", error);
        golden_cases_free(malformed_cases, malformed_count);
        golden_names_free(golden_names, golden_count);
        return EXIT_FAILURE;
    }

    SRunner *runner = srunner_create(amqp_table_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    golden_cases_free(malformed_cases, malformed_count);
    golden_names_free(golden_names, golden_count);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
