/* ISO-8601 date-times: parsing what Celery sends, formatting as Python's
 * datetime.isoformat() prints an aware UTC time. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define TIME_TOLERANCE 1e-6

typedef struct parse_case {
    const char *text;
    double epoch; /* from Python's datetime.fromisoformat(), naive as UTC */
} parse_case_t;

static const parse_case_t VALID[] = {
    {"2026-01-02T03:04:05Z", 1767323045.0},
    {"2026-01-02T03:04:05+00:00", 1767323045.0},
    {"2026-01-02T03:04:05+02:00", 1767315845.0},
    {"2026-01-02T03:04:05-05:30", 1767342845.0},
    {"2026-01-02T03:04:05+0200", 1767315845.0},
    {"2026-01-02T03:04:05+02", 1767315845.0},
    {"2026-01-02T03:04:05", 1767323045.0},
    {"2026-01-02T03:04:05.5Z", 1767323045.5},
    {"2026-01-02T03:04:05.678901+00:00", 1767323045.678901},
    {"2026-01-02 03:04:05+00:00", 1767323045.0},
    {"2026-01-02 03:04:05.25", 1767323045.25},
    {"2026-01-02T03:04", 1767323040.0},
    {"2026-01-02", 1767312000.0},
    {"1970-01-01T00:00:00Z", 0.0},
    {"2000-02-29T23:59:59.999999Z", 951868799.999999},
    {"2026-12-04T10:24:55.402092+00:00", 1796379895.402092},
    {"2030-01-02T03:04:05.678901+00:00", 1893553445.678901},
};

#define VALID_COUNT (sizeof VALID / sizeof VALID[0])

START_TEST(test_parse_valid_text_gives_epoch)
{
    const parse_case_t *item = &VALID[_i];
    double epoch = -1;
    int status = cel__iso8601_parse(item->text, &epoch);
    ck_assert_msg(status == 0, "'%s': status %d", item->text, status);
    ck_assert_msg(fabs(epoch - item->epoch) < TIME_TOLERANCE,
                  "'%s': epoch %.6f, expected %.6f", item->text, epoch,
                  item->epoch);
}
END_TEST

static const char *const INVALID[] = {
    "",
    "not-a-date",
    "2026-13-02T03:04:05Z",
    "2026-00-02T03:04:05Z",
    "2026-01-00T03:04:05Z",
    "2026-01-32T03:04:05Z",
    "2026-01-02T24:00:00Z",
    "2026-01-02T03:60:00Z",
    "2026-01-02T03:04:05Zjunk",
    "2026-01-02T03:04:05+00:00 ",
    "2026-01-02T03:04:05 garbage",
    "2026-01-02T",
    "2026-01-02T03",
    "2026-01-02T03:04:05.",
    "2026-01-02T03:04:05+2:00",
    "2026-01-02T03:04:05+24:00",
    "2026-01-02T03:04:05+02:60",
    "2026-1-2",
    "26-01-02",
    "2026/01/02",
};

#define INVALID_COUNT (sizeof INVALID / sizeof INVALID[0])

START_TEST(test_parse_invalid_text_is_einval)
{
    const char *text = INVALID[_i];
    double epoch = 12345.0;
    int status = cel__iso8601_parse(text, &epoch);
    ck_assert_msg(status == CEL_EINVAL, "'%s': status %d, epoch %.6f", text,
                  status, epoch);
}
END_TEST

START_TEST(test_parse_null_is_einval)
{
    double epoch = 0;
    ck_assert_int_eq(cel__iso8601_parse(NULL, &epoch), CEL_EINVAL);
}
END_TEST

START_TEST(test_parse_day_past_month_end_is_einval)
{
    /* Python's datetime rejects these with "day is out of range for
     * month". Taking them would move the date into the next month. */
    static const char *const TEXTS[] = {
        "2026-02-29T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2100-02-29T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) {
        double epoch = 0;
        int status = cel__iso8601_parse(TEXTS[i], &epoch);
        ck_assert_msg(status == CEL_EINVAL, "'%s': status %d, epoch %.0f",
                      TEXTS[i], status, epoch);
    }
}
END_TEST

typedef struct format_case {
    double epoch;
    const char *text; /* from Python's datetime.isoformat() */
} format_case_t;

static const format_case_t FORMATS[] = {
    {0.0, "1970-01-01T00:00:00+00:00"},
    {1767225600.0, "2026-01-01T00:00:00+00:00"},
    {1767225600.5, "2026-01-01T00:00:00.500000+00:00"},
    {951868799.000001, "2000-02-29T23:59:59.000001+00:00"},
    {1893553445.678901, "2030-01-02T03:04:05.678901+00:00"},
    {1796379895.402092, "2026-12-04T10:24:55.402092+00:00"},
    {-1.0, "1969-12-31T23:59:59+00:00"},
    {0.9999996, "1970-01-01T00:00:01+00:00"},
};

#define FORMAT_COUNT (sizeof FORMATS / sizeof FORMATS[0])

START_TEST(test_format_prints_python_isoformat)
{
    const format_case_t *item = &FORMATS[_i];
    char buf[33];
    ck_assert_int_eq(cel__iso8601_format(item->epoch, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, item->text);
}
END_TEST

START_TEST(test_format_leaves_out_zero_microseconds)
{
    char buf[64];
    ck_assert_int_eq(cel__iso8601_format(1767323045.0, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "2026-01-02T03:04:05+00:00");
    ck_assert_ptr_null(strchr(buf, '.'));
}
END_TEST

START_TEST(test_format_prints_six_fraction_digits)
{
    char buf[64];
    ck_assert_int_eq(cel__iso8601_format(1767323045.25, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "2026-01-02T03:04:05.250000+00:00");
}
END_TEST

START_TEST(test_format_needs_33_bytes)
{
    char buf[33];
    ck_assert_int_eq(cel__iso8601_format(1767323045.25, buf, 32), CEL_EINVAL);
    ck_assert_int_eq(cel__iso8601_format(1767323045.25, buf, 33), 0);
    ck_assert_uint_eq(strlen(buf), 32);
}
END_TEST

START_TEST(test_format_non_finite_is_einval)
{
    char buf[64];
    ck_assert_int_eq(cel__iso8601_format(NAN, buf, sizeof buf), CEL_EINVAL);
    ck_assert_int_eq(cel__iso8601_format(INFINITY, buf, sizeof buf),
                     CEL_EINVAL);
}
END_TEST

START_TEST(test_format_then_parse_round_trips)
{
    srand(8601);
    for (int i = 0; i < 2000; i++) {
        /* Whole microseconds between 1970 and about 2096. */
        long long seconds = (long long)(rand() % 4000000) * 1000;
        long micros = rand() % 1000000;
        if (i % 4 == 0)
            micros = 0;
        double epoch = (double)seconds + (double)micros / 1e6;

        char text[33];
        ck_assert_int_eq(cel__iso8601_format(epoch, text, sizeof text), 0);
        double parsed = 0;
        ck_assert_msg(cel__iso8601_parse(text, &parsed) == 0, "'%s'", text);
        ck_assert_msg(fabs(parsed - epoch) < TIME_TOLERANCE,
                      "'%s': %.6f != %.6f", text, parsed, epoch);

        char again[33];
        ck_assert_int_eq(cel__iso8601_format(parsed, again, sizeof again), 0);
        ck_assert_str_eq(again, text);
    }
}
END_TEST

START_TEST(test_parse_then_format_keeps_celery_text)
{
    static const char *const TEXTS[] = {
        "2026-12-04T10:24:55.402092+00:00", "2026-12-04T10:25:45.563644+00:00",
        "2026-12-04T10:24:55.893210+00:00", "2026-12-04T10:24:46.124228+00:00",
        "2030-01-02T03:04:05+00:00",
    };
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) {
        double epoch = 0;
        ck_assert_int_eq(cel__iso8601_parse(TEXTS[i], &epoch), 0);
        char text[33];
        ck_assert_int_eq(cel__iso8601_format(epoch, text, sizeof text), 0);
        ck_assert_str_eq(text, TEXTS[i]);
    }
}
END_TEST

static Suite *iso8601_suite(void)
{
    Suite *suite = suite_create("iso8601");

    TCase *parse = tcase_create("parse");
    tcase_add_loop_test(parse, test_parse_valid_text_gives_epoch, 0,
                        (int)VALID_COUNT);
    tcase_add_loop_test(parse, test_parse_invalid_text_is_einval, 0,
                        (int)INVALID_COUNT);
    tcase_add_test(parse, test_parse_null_is_einval);
    suite_add_tcase(suite, parse);

    TCase *format = tcase_create("format");
    tcase_add_loop_test(format, test_format_prints_python_isoformat, 0,
                        (int)FORMAT_COUNT);
    tcase_add_test(format, test_format_leaves_out_zero_microseconds);
    tcase_add_test(format, test_format_prints_six_fraction_digits);
    tcase_add_test(format, test_format_needs_33_bytes);
    tcase_add_test(format, test_format_non_finite_is_einval);
    suite_add_tcase(suite, format);

    TCase *round_trip = tcase_create("round_trip");
    tcase_add_test(round_trip, test_format_then_parse_round_trips);
    tcase_add_test(round_trip, test_parse_then_format_keeps_celery_text);
    suite_add_tcase(suite, round_trip);

    /* Tests that pin a bug still open in the code under test. */
    TCase *regressions = tcase_create("regressions");
    tcase_add_test(regressions, test_parse_day_past_month_end_is_einval);
    suite_add_tcase(suite, regressions);

    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(iso8601_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
