/* The revoked set: lookups, refresh, expiry, eviction and the mingle
 * dump and merge. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "revoked.h"

#define MAXLEN  50000
#define EXPIRES 10800.0

static cel__revoked_t *set_new(size_t max_entries, double expires)
{
    cel__revoked_t *set = cel__revoked_new(max_entries, expires);
    ck_assert_ptr_nonnull(set);
    return set;
}

static void add_ok(cel__revoked_t *set, const char *id, double now)
{
    ck_assert_int_eq(cel__revoked_add(set, id, now), CEL_OK);
}

static void format_id(char *buf, size_t size, int serial)
{
    snprintf(buf, size, "3c7e4a52-1f0b-4d7e-9a61-%012d", serial);
}

/* Asserts that the ids, oldest first, are exactly `expected`. */
static void assert_ids(cel__revoked_t *set, double now, const char **expected,
                       size_t count)
{
    json_t *ids = cel__revoked_ids(set, now);
    ck_assert_ptr_nonnull(ids);
    ck_assert_uint_eq(json_array_size(ids), count);
    for (size_t i = 0; i < count; i++) {
        json_t *id = json_array_get(ids, i);
        ck_assert_msg(json_is_string(id), "ids[%zu] is not a string", i);
        ck_assert_str_eq(json_string_value(id), expected[i]);
    }
    json_decref(ids);
}

static json_t *load_json(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, JSON_DECODE_ANY, &error);
    ck_assert_msg(value != NULL, "invalid test JSON: %s", error.text);
    return value;
}

START_TEST(test_revoked_empty_set_contains_nothing)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    ck_assert(!cel__revoked_contains(set, "a", 1.0));
    ck_assert(!cel__revoked_contains(set, NULL, 1.0));
    ck_assert_uint_eq(cel__revoked_count(set, 1.0), 0);
    assert_ids(set, 1.0, NULL, 0);
    cel__revoked_free(set);
    cel__revoked_free(NULL);
}
END_TEST

START_TEST(test_revoked_add_then_contains)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    add_ok(set, "a", 10.0);
    add_ok(set, "b", 11.0);
    ck_assert(cel__revoked_contains(set, "a", 12.0));
    ck_assert(cel__revoked_contains(set, "b", 12.0));
    ck_assert(!cel__revoked_contains(set, "c", 12.0));
    ck_assert(!cel__revoked_contains(set, "", 12.0));
    ck_assert_uint_eq(cel__revoked_count(set, 12.0), 2);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_add_copies_the_id)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    char id[16];
    strcpy(id, "copied");
    add_ok(set, id, 1.0);
    memset(id, 'x', sizeof id - 1);
    ck_assert(cel__revoked_contains(set, "copied", 1.0));
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_add_null_id_is_rejected)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    ck_assert_int_eq(cel__revoked_add(set, NULL, 1.0), CEL_EINVAL);
    ck_assert_uint_eq(cel__revoked_count(set, 1.0), 0);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_readd_refreshes_time)
{
    cel__revoked_t *set = set_new(MAXLEN, 100.0);
    add_ok(set, "a", 0.0);
    add_ok(set, "b", 10.0);
    add_ok(set, "a", 50.0);
    ck_assert_uint_eq(cel__revoked_count(set, 50.0), 2);

    /* Re-adding moved "a" to the newest end. */
    const char *order[] = {"b", "a"};
    assert_ids(set, 50.0, order, 2);

    /* "b" expires at 110, "a" only at 150 since the re-add. */
    ck_assert(!cel__revoked_contains(set, "b", 120.0));
    ck_assert(cel__revoked_contains(set, "a", 120.0));
    ck_assert(!cel__revoked_contains(set, "a", 150.0));
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_expires_at_exact_boundary)
{
    cel__revoked_t *set = set_new(MAXLEN, 100.0);
    add_ok(set, "a", 5.0);
    ck_assert(cel__revoked_contains(set, "a", 104.999));
    /* As LimitedSet.purge: expired once added_at + expires <= now. */
    ck_assert(!cel__revoked_contains(set, "a", 105.0));
    ck_assert_uint_eq(cel__revoked_count(set, 105.0), 0);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_expired_id_is_dropped)
{
    cel__revoked_t *set = set_new(MAXLEN, 100.0);
    add_ok(set, "old", 0.0);
    add_ok(set, "new", 60.0);
    ck_assert(!cel__revoked_contains(set, "old", 130.0));
    ck_assert_uint_eq(cel__revoked_count(set, 130.0), 1);

    /* Dropped for good: an earlier `now` does not bring it back. */
    ck_assert(!cel__revoked_contains(set, "old", 10.0));
    const char *left[] = {"new"};
    assert_ids(set, 10.0, left, 1);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_zero_expiry_never_expires)
{
    cel__revoked_t *set = set_new(MAXLEN, 0);
    add_ok(set, "a", 0.0);
    ck_assert(cel__revoked_contains(set, "a", 1e12));
    cel__revoked_free(set);

    set = set_new(MAXLEN, -5.0);
    add_ok(set, "a", 0.0);
    ck_assert(cel__revoked_contains(set, "a", 1e12));
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_eviction_drops_oldest_first)
{
    cel__revoked_t *set = set_new(3, EXPIRES);
    add_ok(set, "a", 1.0);
    add_ok(set, "b", 2.0);
    add_ok(set, "c", 3.0);
    ck_assert_uint_eq(cel__revoked_count(set, 3.0), 3);

    add_ok(set, "d", 4.0);
    ck_assert_uint_eq(cel__revoked_count(set, 4.0), 3);
    ck_assert(!cel__revoked_contains(set, "a", 4.0));
    const char *after_d[] = {"b", "c", "d"};
    assert_ids(set, 4.0, after_d, 3);

    /* A refreshed id is newest again, so "c" goes before it. */
    add_ok(set, "b", 5.0);
    add_ok(set, "e", 6.0);
    ck_assert(!cel__revoked_contains(set, "c", 6.0));
    const char *after_e[] = {"d", "b", "e"};
    assert_ids(set, 6.0, after_e, 3);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_zero_max_entries_has_no_limit)
{
    cel__revoked_t *set = set_new(0, EXPIRES);
    char id[64];
    for (int i = 0; i < 1000; i++) {
        format_id(id, sizeof id, i);
        add_ok(set, id, i * 0.001);
    }
    ck_assert_uint_eq(cel__revoked_count(set, 1.0), 1000);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_many_ids_all_found)
{
    const int count = MAXLEN + 5000;
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    char id[64];
    for (int i = 0; i < count; i++) {
        format_id(id, sizeof id, i);
        add_ok(set, id, 1000.0 + i * 0.01);
    }
    double now = 1000.0 + count * 0.01;
    ck_assert_uint_eq(cel__revoked_count(set, now), MAXLEN);

    /* The first 5000 were evicted, the later 50000 all remain. */
    for (int i = 0; i < count; i++) {
        format_id(id, sizeof id, i);
        bool expected = i >= count - MAXLEN;
        ck_assert_msg(cel__revoked_contains(set, id, now) == expected,
                      "id %d: contains is %d, expected %d", i, !expected,
                      expected);
    }

    json_t *ids = cel__revoked_ids(set, now);
    ck_assert_ptr_nonnull(ids);
    ck_assert_uint_eq(json_array_size(ids), MAXLEN);
    format_id(id, sizeof id, count - MAXLEN);
    ck_assert_str_eq(json_string_value(json_array_get(ids, 0)), id);
    format_id(id, sizeof id, count - 1);
    ck_assert_str_eq(json_string_value(json_array_get(ids, MAXLEN - 1)), id);
    json_decref(ids);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_ids_are_oldest_first)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    add_ok(set, "first", 1.0);
    add_ok(set, "second", 2.0);
    add_ok(set, "third", 2.0);
    add_ok(set, "fourth", 3.5);
    const char *order[] = {"first", "second", "third", "fourth"};
    assert_ids(set, 4.0, order, 4);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_dump_writes_reals)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    add_ok(set, "a", 123.0);
    add_ok(set, "b", 124.25);
    json_t *dump = cel__revoked_dump(set, 200.0);
    ck_assert_ptr_nonnull(dump);
    ck_assert(json_is_object(dump));
    ck_assert_uint_eq(json_object_size(dump), 2);

    json_t *pair = json_object_get(dump, "a");
    ck_assert(json_is_array(pair));
    ck_assert_uint_eq(json_array_size(pair), 2);
    ck_assert(json_is_real(json_array_get(pair, 0)));
    ck_assert_double_eq(json_real_value(json_array_get(pair, 0)), 123.0);
    ck_assert_str_eq(json_string_value(json_array_get(pair, 1)), "a");

    pair = json_object_get(dump, "b");
    ck_assert(json_is_real(json_array_get(pair, 0)));
    ck_assert_double_eq(json_real_value(json_array_get(pair, 0)), 124.25);
    ck_assert_str_eq(json_string_value(json_array_get(pair, 1)), "b");

    /* A whole-number time keeps its ".0" in the encoded text. */
    char *text = json_dumps(dump, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, "{\"a\":[123.0,\"a\"],\"b\":[124.25,\"b\"]}");
    free(text);
    json_decref(dump);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_dump_leaves_out_expired)
{
    cel__revoked_t *set = set_new(MAXLEN, 100.0);
    add_ok(set, "old", 0.0);
    add_ok(set, "new", 50.0);
    json_t *dump = cel__revoked_dump(set, 120.0);
    ck_assert_ptr_nonnull(dump);
    ck_assert_uint_eq(json_object_size(dump), 1);
    ck_assert_ptr_null(json_object_get(dump, "old"));
    ck_assert_ptr_nonnull(json_object_get(dump, "new"));
    json_decref(dump);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_merge_python_limitedset_data)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    json_t *dump = load_json("{\"id-1\": [1733300000.5, \"id-1\"],"
                             " \"id-2\": [1733300001.25, \"id-2\"]}");
    ck_assert_int_eq(cel__revoked_merge(set, dump, 1733300002.0), CEL_OK);
    json_decref(dump);

    ck_assert_uint_eq(cel__revoked_count(set, 1733300002.0), 2);
    ck_assert(cel__revoked_contains(set, "id-1", 1733300002.0));
    ck_assert(cel__revoked_contains(set, "id-2", 1733300002.0));

    /* The merged times are kept, so each id expires on its own schedule. */
    ck_assert(!cel__revoked_contains(set, "id-1", 1733300000.5 + EXPIRES));
    ck_assert(cel__revoked_contains(set, "id-2", 1733300000.5 + EXPIRES));
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_merge_bare_real_value)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    json_t *dump = load_json("{\"bare\": 5.5}");
    ck_assert_int_eq(cel__revoked_merge(set, dump, 6.0), CEL_OK);
    json_decref(dump);
    ck_assert(cel__revoked_contains(set, "bare", 6.0));
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_merge_sorts_into_time_order)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    add_ok(set, "local-10", 10.0);
    add_ok(set, "local-30", 30.0);
    json_t *dump = load_json("{\"peer-40\": [40.0, \"peer-40\"],"
                             " \"peer-5\": [5.0, \"peer-5\"],"
                             " \"peer-20\": [20.0, \"peer-20\"]}");
    ck_assert_int_eq(cel__revoked_merge(set, dump, 50.0), CEL_OK);
    json_decref(dump);

    const char *order[] = {"peer-5", "local-10", "peer-20", "local-30",
                           "peer-40"};
    assert_ids(set, 50.0, order, 5);

    /* Adds after a merge still go in time order. */
    add_ok(set, "local-60", 60.0);
    const char *later[] = {"peer-5",   "local-10", "peer-20",
                           "local-30", "peer-40",  "local-60"};
    assert_ids(set, 60.0, later, 6);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_merge_keeps_later_time)
{
    cel__revoked_t *set = set_new(MAXLEN, 100.0);
    add_ok(set, "kept", 50.0);
    add_ok(set, "moved", 10.0);
    json_t *dump = load_json("{\"kept\": [20.0, \"kept\"],"
                             " \"moved\": [60.0, \"moved\"]}");
    ck_assert_int_eq(cel__revoked_merge(set, dump, 70.0), CEL_OK);
    json_decref(dump);

    ck_assert_uint_eq(cel__revoked_count(set, 70.0), 2);
    json_t *own = cel__revoked_dump(set, 70.0);
    ck_assert_ptr_nonnull(own);
    ck_assert_double_eq(
        json_real_value(json_array_get(json_object_get(own, "kept"), 0)), 50.0);
    ck_assert_double_eq(
        json_real_value(json_array_get(json_object_get(own, "moved"), 0)),
        60.0);
    json_decref(own);

    const char *order[] = {"kept", "moved"};
    assert_ids(set, 70.0, order, 2);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_merge_drops_expired_and_evicts)
{
    cel__revoked_t *set = set_new(2, 100.0);
    add_ok(set, "local", 150.0);
    json_t *dump = load_json("{\"expired\": [10.0, \"expired\"],"
                             " \"older\": [120.0, \"older\"],"
                             " \"newer\": [160.0, \"newer\"]}");
    ck_assert_int_eq(cel__revoked_merge(set, dump, 170.0), CEL_OK);
    json_decref(dump);

    /* "expired" is past its time and "older" falls past max_entries. */
    const char *order[] = {"local", "newer"};
    assert_ids(set, 170.0, order, 2);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_merge_skips_malformed_entries)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    json_t *dump = load_json("{"
                             "\"good\": [10.5, \"good\"],"
                             "\"int-time\": [10, \"int-time\"],"
                             "\"bare-int\": 10,"
                             "\"string-time\": [\"10.5\", \"string-time\"],"
                             "\"null-time\": [null, \"null-time\"],"
                             "\"empty-array\": [],"
                             "\"object\": {\"ts\": 10.5},"
                             "\"string\": \"10.5\","
                             "\"null\": null,"
                             "\"true\": true,"
                             "\"nested\": [[10.5], \"nested\"],"
                             "\"time-only\": [11.5]"
                             "}");
    ck_assert_int_eq(cel__revoked_merge(set, dump, 20.0), CEL_OK);
    json_decref(dump);

    /* Only a real first element counts, as LimitedSet.update reads it. */
    const char *order[] = {"good", "time-only"};
    assert_ids(set, 20.0, order, 2);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_merge_non_object_is_skipped)
{
    cel__revoked_t *set = set_new(MAXLEN, EXPIRES);
    add_ok(set, "a", 1.0);
    const char *texts[] = {"[[1.0, \"x\"]]", "\"x\"", "1.5", "null", "{}"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        json_t *dump = load_json(texts[i]);
        ck_assert_int_eq(cel__revoked_merge(set, dump, 2.0), CEL_OK);
        json_decref(dump);
    }
    ck_assert_int_eq(cel__revoked_merge(set, NULL, 2.0), CEL_OK);
    const char *order[] = {"a"};
    assert_ids(set, 2.0, order, 1);
    cel__revoked_free(set);
}
END_TEST

START_TEST(test_revoked_dump_round_trips_through_merge)
{
    cel__revoked_t *source = set_new(MAXLEN, EXPIRES);
    char id[64];
    for (int i = 0; i < 2000; i++) {
        format_id(id, sizeof id, i);
        add_ok(source, id, 100.0 + i);
    }
    json_t *dump = cel__revoked_dump(source, 3000.0);
    ck_assert_ptr_nonnull(dump);
    char *text = json_dumps(dump, JSON_COMPACT);
    ck_assert_ptr_nonnull(text);
    json_decref(dump);

    /* The receiver decodes the encoded text, as a hello reply carries it. */
    cel__revoked_t *target = set_new(MAXLEN, EXPIRES);
    dump = load_json(text);
    free(text);
    ck_assert_int_eq(cel__revoked_merge(target, dump, 3000.0), CEL_OK);
    json_decref(dump);

    json_t *expected = cel__revoked_ids(source, 3000.0);
    json_t *merged = cel__revoked_ids(target, 3000.0);
    ck_assert_ptr_nonnull(expected);
    ck_assert_ptr_nonnull(merged);
    ck_assert_uint_eq(json_array_size(merged), 2000);
    ck_assert(json_equal(expected, merged));
    json_decref(expected);
    json_decref(merged);
    cel__revoked_free(source);
    cel__revoked_free(target);
}
END_TEST

START_TEST(test_revoked_merge_full_dump_into_full_set)
{
    cel__revoked_t *source = set_new(MAXLEN, 0);
    cel__revoked_t *target = set_new(MAXLEN, 0);
    char id[64];
    /* The peer's ids interleave in time with the local ones, so the merge
     * has to order them and then evict the older half of the union. */
    for (int i = 0; i < MAXLEN; i++) {
        format_id(id, sizeof id, 2 * i);
        add_ok(source, id, 1.0 + 2 * i);
        format_id(id, sizeof id, 2 * i + 1);
        add_ok(target, id, 2.0 + 2 * i);
    }
    json_t *dump = cel__revoked_dump(source, 2.0 * MAXLEN);
    ck_assert_ptr_nonnull(dump);
    ck_assert_int_eq(cel__revoked_merge(target, dump, 2.0 * MAXLEN), CEL_OK);
    json_decref(dump);

    ck_assert_uint_eq(cel__revoked_count(target, 2.0 * MAXLEN), MAXLEN);
    json_t *ids = cel__revoked_ids(target, 2.0 * MAXLEN);
    ck_assert_ptr_nonnull(ids);
    ck_assert_uint_eq(json_array_size(ids), MAXLEN);
    for (int i = 0; i < MAXLEN; i++) {
        format_id(id, sizeof id, MAXLEN + i);
        ck_assert_str_eq(json_string_value(json_array_get(ids, i)), id);
    }
    json_decref(ids);
    cel__revoked_free(source);
    cel__revoked_free(target);
}
END_TEST

static Suite *revoked_suite(void)
{
    Suite *suite = suite_create("revoked");

    TCase *lookup = tcase_create("lookup");
    tcase_add_test(lookup, test_revoked_empty_set_contains_nothing);
    tcase_add_test(lookup, test_revoked_add_then_contains);
    tcase_add_test(lookup, test_revoked_add_copies_the_id);
    tcase_add_test(lookup, test_revoked_add_null_id_is_rejected);
    tcase_add_test(lookup, test_revoked_readd_refreshes_time);
    tcase_add_test(lookup, test_revoked_ids_are_oldest_first);
    suite_add_tcase(suite, lookup);

    TCase *limits = tcase_create("limits");
    tcase_add_test(limits, test_revoked_expires_at_exact_boundary);
    tcase_add_test(limits, test_revoked_expired_id_is_dropped);
    tcase_add_test(limits, test_revoked_zero_expiry_never_expires);
    tcase_add_test(limits, test_revoked_eviction_drops_oldest_first);
    tcase_add_test(limits, test_revoked_zero_max_entries_has_no_limit);
    tcase_add_test(limits, test_revoked_many_ids_all_found);
    /* The 50000-id cases run several times slower under the sanitizers,
     * so they get more than Check's default timeout of 4 s. */
    tcase_set_timeout(limits, 60);
    suite_add_tcase(suite, limits);

    TCase *mingle = tcase_create("mingle");
    tcase_add_test(mingle, test_revoked_dump_writes_reals);
    tcase_add_test(mingle, test_revoked_dump_leaves_out_expired);
    tcase_add_test(mingle, test_revoked_merge_python_limitedset_data);
    tcase_add_test(mingle, test_revoked_merge_bare_real_value);
    tcase_add_test(mingle, test_revoked_merge_sorts_into_time_order);
    tcase_add_test(mingle, test_revoked_merge_keeps_later_time);
    tcase_add_test(mingle, test_revoked_merge_drops_expired_and_evicts);
    tcase_add_test(mingle, test_revoked_merge_skips_malformed_entries);
    tcase_add_test(mingle, test_revoked_merge_non_object_is_skipped);
    tcase_add_test(mingle, test_revoked_dump_round_trips_through_merge);
    tcase_add_test(mingle, test_revoked_merge_full_dump_into_full_set);
    tcase_set_timeout(mingle, 60);
    suite_add_tcase(suite, mingle);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(revoked_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
