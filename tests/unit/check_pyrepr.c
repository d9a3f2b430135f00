/* Python repr() of JSON values, as used for argsrepr and kwargsrepr. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "support_golden.h"

/* Golden file stems, listed once in main() and read by the loop tests. */
static char **golden_names;
static size_t golden_count;

/* Returns the repr of `value` (which it steals) as a test-owned string. */
static char *repr_new(json_t *value, size_t max_len, bool as_tuple)
{
    ck_assert_ptr_nonnull(value);
    char *text = cel__pyrepr(value, max_len, as_tuple);
    json_decref(value);
    ck_assert_ptr_nonnull(text);
    return text;
}

static void assert_repr(json_t *value, bool as_tuple, const char *expected)
{
    char *text = repr_new(value, 0, as_tuple);
    ck_assert_str_eq(text, expected);
    free(text);
}

static json_t *parse(const char *json_text)
{
    json_error_t error;
    json_t *value = json_loads(json_text, JSON_DECODE_ANY, &error);
    ck_assert_msg(value != NULL, "bad JSON in test: %s", json_text);
    return value;
}

START_TEST(test_pyrepr_constants)
{
    assert_repr(json_null(), false, "None");
    assert_repr(json_true(), false, "True");
    assert_repr(json_false(), false, "False");

    char *text = cel__pyrepr(NULL, 0, false);
    ck_assert_str_eq(text, "None");
    free(text);
}
END_TEST

START_TEST(test_pyrepr_integers)
{
    assert_repr(json_integer(0), false, "0");
    assert_repr(json_integer(-5), false, "-5");
    assert_repr(json_integer(1099511627776LL), false, "1099511627776");
    assert_repr(json_integer(INT64_MAX), false, "9223372036854775807");
    assert_repr(json_integer(INT64_MIN), false, "-9223372036854775808");
}
END_TEST

typedef struct float_case {
    double value;
    const char *repr; /* as repr() of Python 3.11 prints it */
} float_case_t;

static const float_case_t FLOATS[] = {
    {1.0, "1.0"},
    {0.1, "0.1"},
    {1e16, "1e+16"},
    {1.5e-7, "1.5e-07"},
    {100.0, "100.0"},
    {-0.0, "-0.0"},
    {0.0, "0.0"},
    {2.5, "2.5"},
    {1e-5, "1e-05"},
    {0.0001, "0.0001"},
    {1e15, "1000000000000000.0"},
    {9007199254740992.0, "9007199254740992.0"},
    {123.456, "123.456"},
    {1.0 / 3.0, "0.3333333333333333"},
    {0.1 + 0.2, "0.30000000000000004"},
    {1e22, "1e+22"},
    {-1.5e-10, "-1.5e-10"},
    {1.7976931348623157e308, "1.7976931348623157e+308"},
    {5e-324, "5e-324"},
};

#define FLOAT_COUNT (sizeof FLOATS / sizeof FLOATS[0])

START_TEST(test_pyrepr_float_matches_python)
{
    const float_case_t *item = &FLOATS[_i];
    char *text = repr_new(json_real(item->value), 0, false);
    ck_assert_msg(strcmp(text, item->repr) == 0,
                  "%.17g printed as '%s', "
                  "expected '%s'",
                  item->value, text, item->repr);
    free(text);
}
END_TEST

START_TEST(test_pyrepr_strings_quote_like_saferepr)
{
    /* Celery's saferepr always uses single quotes and escapes only them. */
    assert_repr(json_string("abc"), false, "'abc'");
    assert_repr(json_string(""), false, "''");
    assert_repr(json_string("it's"), false, "'it\\'s'");
    assert_repr(json_string("say \"hi\""), false, "'say \"hi\"'");
    assert_repr(json_string("both ' and \""), false, "'both \\' and \"'");
}
END_TEST

START_TEST(test_pyrepr_strings_keep_control_characters)
{
    assert_repr(json_string("a\nb\tc"), false, "'a\nb\tc'");
    assert_repr(json_string("back\\slash"), false, "'back\\slash'");
}
END_TEST

START_TEST(test_pyrepr_strings_keep_unicode)
{
    const char *text =
        "h\xc3\xa9llo \xe2\x98\x83 \xe6\x97\xa5 \xf0\x9f\x98\x80";
    char expected[64];
    snprintf(expected, sizeof expected, "'%s'", text);
    assert_repr(json_string(text), false, expected);
}
END_TEST

START_TEST(test_pyrepr_tuples)
{
    assert_repr(parse("[1]"), true, "(1,)");
    assert_repr(parse("[1, 2]"), true, "(1, 2)");
    assert_repr(parse("[]"), true, "()");
    assert_repr(parse("[[1], [2, 3], []]"), true, "([1], [2, 3], [])");
    assert_repr(parse("[\"boom\"]"), true, "('boom',)");
}
END_TEST

START_TEST(test_pyrepr_lists_without_tuple_flag)
{
    assert_repr(parse("[1]"), false, "[1]");
    assert_repr(parse("[]"), false, "[]");
    assert_repr(parse("[1, \"a\", null, true, 1.5]"), false,
                "[1, 'a', None, True, 1.5]");
}
END_TEST

START_TEST(test_pyrepr_dicts)
{
    assert_repr(parse("{}"), false, "{}");
    assert_repr(parse("{\"x\": 2, \"y\": 3}"), false, "{'x': 2, 'y': 3}");
    assert_repr(parse("{\"a\": [true, null], \"b\": {\"c\": \"d\"}}"), false,
                "{'a': [True, None], 'b': {'c': 'd'}}");
    assert_repr(parse("{\"it's\": 1}"), false, "{'it\\'s': 1}");
    /* With as_tuple only an array changes. */
    assert_repr(parse("{\"x\": [1]}"), true, "{'x': [1]}");
}
END_TEST

START_TEST(test_pyrepr_truncates_long_text_with_ellipsis)
{
    json_t *numbers = json_array();
    for (int i = 0; i < 1000; i++)
        json_array_append_new(numbers, json_integer(i));
    char *full = cel__pyrepr(numbers, 0, true);
    char *cut = cel__pyrepr(numbers, 1024, true);
    json_decref(numbers);

    ck_assert_uint_gt(strlen(full), 1024);
    ck_assert_uint_eq(strlen(cut), 1024);
    ck_assert_int_eq(strncmp(cut, full, 1021), 0);
    ck_assert_str_eq(cut + 1021, "...");

    free(full);
    free(cut);
}
END_TEST

START_TEST(test_pyrepr_short_text_is_not_truncated)
{
    char *text = repr_new(parse("[2, 3]"), 6, true);
    ck_assert_str_eq(text, "(2, 3)");
    free(text);
}
END_TEST

START_TEST(test_pyrepr_truncation_keeps_utf8_characters_whole)
{
    /* 600 two-byte characters. A cut at byte 98 would split the 49th. */
    char text[1201];
    for (int i = 0; i < 600; i++)
        memcpy(text + i * 2, "\xc3\xa9", 2);
    text[1200] = '\0';
    char *cut = repr_new(json_string(text), 101, false);

    char expected[128] = "'";
    for (int i = 0; i < 48; i++)
        strcat(expected, "\xc3\xa9");
    strcat(expected, "...");
    ck_assert_str_eq(cut, expected);
    free(cut);

    /* Four-byte characters: a cut at byte 10 would split the third. */
    char emoji[4 * 20 + 1] = "";
    for (int i = 0; i < 20; i++)
        strcat(emoji, "\xf0\x9f\x98\x80");
    cut = repr_new(json_string(emoji), 13, false);
    ck_assert_str_eq(cut, "'\xf0\x9f\x98\x80\xf0\x9f\x98\x80...");
    free(cut);
}
END_TEST

START_TEST(test_pyrepr_matches_golden_argsrepr)
{
    const char *name = golden_names[_i];
    golden_message_t golden;
    char error[256];
    ck_assert_msg(golden_message_load(name, &golden, error, sizeof error) == 0,
                  "%s", error);
    const char *argsrepr =
        json_string_value(json_object_get(golden.headers, "argsrepr"));
    const char *kwargsrepr =
        json_string_value(json_object_get(golden.headers, "kwargsrepr"));
    /* v1 messages carry no reprs, and nested_args is pinned apart below. */
    if (argsrepr == NULL || strcmp(name, "nested_args") == 0) {
        golden_message_free(&golden);
        return;
    }

    json_t *body = golden_body_json(&golden);
    ck_assert_ptr_nonnull(body);
    char *args = cel__pyrepr(json_array_get(body, 0), 1024, true);
    char *kwargs = cel__pyrepr(json_array_get(body, 1), 1024, false);
    ck_assert_str_eq(args, argsrepr);
    ck_assert_str_eq(kwargs, kwargsrepr);

    free(args);
    free(kwargs);
    json_decref(body);
    golden_message_free(&golden);
}
END_TEST

/* Celery's saferepr() stops at three levels of nesting and prints the
 * deeper containers as {...} or [...]. The golden argsrepr shows it. */
START_TEST(test_pyrepr_deep_nesting_prints_ellipsis_as_saferepr)
{
    json_t *args = parse("[{\"a\": [1, 2, {\"b\": null, \"c\": [true, false]}],"
                         " \"d\": {\"e\": {\"f\": \"\"}}, \"g\": []}]");
    char *text = repr_new(args, 1024, true);
    ck_assert_str_eq(text,
                     "({'a': [1, 2, {...}], 'd': {'e': {...}}, 'g': []},)");
    free(text);
}
END_TEST

static Suite *pyrepr_suite(void)
{
    Suite *suite = suite_create("pyrepr");

    TCase *scalars = tcase_create("scalars");
    tcase_add_test(scalars, test_pyrepr_constants);
    tcase_add_test(scalars, test_pyrepr_integers);
    tcase_add_loop_test(scalars, test_pyrepr_float_matches_python, 0,
                        (int)FLOAT_COUNT);
    tcase_add_test(scalars, test_pyrepr_strings_quote_like_saferepr);
    tcase_add_test(scalars, test_pyrepr_strings_keep_control_characters);
    tcase_add_test(scalars, test_pyrepr_strings_keep_unicode);
    suite_add_tcase(suite, scalars);

    TCase *containers = tcase_create("containers");
    tcase_add_test(containers, test_pyrepr_tuples);
    tcase_add_test(containers, test_pyrepr_lists_without_tuple_flag);
    tcase_add_test(containers, test_pyrepr_dicts);
    suite_add_tcase(suite, containers);

    TCase *truncation = tcase_create("truncation");
    tcase_add_test(truncation, test_pyrepr_truncates_long_text_with_ellipsis);
    tcase_add_test(truncation, test_pyrepr_short_text_is_not_truncated);
    tcase_add_test(truncation,
                   test_pyrepr_truncation_keeps_utf8_characters_whole);
    suite_add_tcase(suite, truncation);

    TCase *golden = tcase_create("golden");
    tcase_add_loop_test(golden, test_pyrepr_matches_golden_argsrepr, 0,
                        (int)golden_count);
    suite_add_tcase(suite, golden);

    /* Tests that pin a bug still open in the code under test. */
    TCase *regressions = tcase_create("regressions");
    tcase_add_test(regressions,
                   test_pyrepr_deep_nesting_prints_ellipsis_as_saferepr);
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
    SRunner *runner = srunner_create(pyrepr_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    golden_names_free(golden_names, golden_count);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
