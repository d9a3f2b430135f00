/* jansson values on the cached small-block allocator of json_alloc.c. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Check runs each test in a child process, so each one installs the
 * allocator for itself. */
static void install(void)
{
    cel__json_cache_allocations();
}

START_TEST(test_alloc_values_of_every_size)
{
    json_t *made_before = json_string("made with the default allocator");
    install();
    char text[600];
    memset(text, 'x', sizeof text);
    for (int round = 0; round < 3; round++) {
        json_t *list = json_array();
        /* Strings of 0 to 599 bytes cover every size class and larger. */
        for (size_t len = 0; len < sizeof text; len++)
            json_array_append_new(list, json_stringn(text, len));
        for (size_t len = 0; len < sizeof text; len++)
            ck_assert_uint_eq(
                json_string_length(json_array_get(list, len)), len);
        json_decref(list);
    }
    ck_assert_str_eq(json_string_value(made_before),
                     "made with the default allocator");
    json_decref(made_before);
}
END_TEST

START_TEST(test_alloc_dumps_freed_with_free)
{
    install();
    json_t *object = json_pack("{s: i, s: [s, n]}", "a", 1, "b", "c");
    for (int i = 0; i < 2000; i++) {
        char *text = json_dumps(object, JSON_COMPACT);
        ck_assert_str_eq(text, "{\"a\":1,\"b\":[\"c\",null]}");
        free(text);
    }
    json_decref(object);
}
END_TEST

START_TEST(test_alloc_keeps_a_bounded_number)
{
    install();
    /* More values than the lists keep, freed at once, then made again. */
    enum { COUNT = 5000 };
    json_t **values = malloc(COUNT * sizeof *values);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < COUNT; i++)
            values[i] = json_integer(i);
        for (int i = 0; i < COUNT; i++)
            ck_assert_int_eq(json_integer_value(values[i]), i);
        for (int i = 0; i < COUNT; i++)
            json_decref(values[i]);
    }
    free(values);
}
END_TEST

START_TEST(test_alloc_installs_twice)
{
    install();
    install();
    json_t *value = json_string("twice");
    ck_assert_str_eq(json_string_value(value), "twice");
    json_decref(value);
}
END_TEST

static Suite *json_alloc_suite(void)
{
    Suite *suite = suite_create("json_alloc");
    TCase *core = tcase_create("core");
    tcase_add_test(core, test_alloc_values_of_every_size);
    tcase_add_test(core, test_alloc_dumps_freed_with_free);
    tcase_add_test(core, test_alloc_keeps_a_bounded_number);
    tcase_add_test(core, test_alloc_installs_twice);
    suite_add_tcase(suite, core);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(json_alloc_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
