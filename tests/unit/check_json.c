/* The JSON reader and writer, checked case by case and against jansson. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "support_golden.h"

#define WHY_LEN 256

/* The flags the call sites pass to json_loadb and json_dumps. */
#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define DUMP_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY)

/* Golden file stems, listed once in main() and read by the loop tests. */
static char **golden_names;
static size_t golden_count;

/* ---- helpers ------------------------------------------------------------ */

/* Parses a copy of text[0..len) in a buffer of exactly len bytes, so that
 * AddressSanitizer reports any read past the end. */
static int parse_exact(const char *text, size_t len, int max_depth,
                       json_t **out, char *why)
{
    char *copy = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, text, len);
    int status = cel__json_parse(copy, len, max_depth, out, why, WHY_LEN);
    free(copy);
    return status;
}

/* Parses a NUL-terminated text that must be valid. Returns a new value. */
static json_t *parse_ok(const char *text)
{
    json_t *value;
    char why[WHY_LEN];
    int status =
        parse_exact(text, strlen(text), CEL__DEFAULT_MAX_DEPTH, &value, why);
    ck_assert_msg(status == CEL_OK, "parse of '%s' failed: %d (%s)", text,
                  status, why);
    ck_assert_ptr_nonnull(value);
    return value;
}

/* Dumps `value` (which it steals) and checks the text and its length. */
static void assert_dump(json_t *value, const char *expected)
{
    ck_assert_ptr_nonnull(value);
    size_t len = 0;
    char *text = cel__json_dump(value, &len);
    json_decref(value);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, expected);
    ck_assert_uint_eq(len, strlen(expected));
    free(text);
}

/* Whether a value contains a real anywhere, where the two writers format
 * numbers differently. */
static bool contains_real(json_t *value)
{
    size_t index;
    const char *key;
    json_t *item;
    if (json_is_real(value))
        return true;
    if (json_is_array(value)) {
        json_array_foreach(value, index, item) {
            if (contains_real(item))
                return true;
        }
    }
    if (json_is_object(value)) {
        json_object_foreach(value, key, item) {
            if (contains_real(item))
                return true;
        }
    }
    return false;
}

/* Returns the nesting depth of arrays and objects in a value. */
static int value_depth(json_t *value)
{
    size_t index;
    const char *key;
    json_t *item;
    int deepest = 0;
    if (json_is_array(value)) {
        json_array_foreach(value, index, item) {
            int depth = value_depth(item);
            deepest = depth > deepest ? depth : deepest;
        }
        return deepest + 1;
    }
    if (json_is_object(value)) {
        json_object_foreach(value, key, item) {
            int depth = value_depth(item);
            deepest = depth > deepest ? depth : deepest;
        }
        return deepest + 1;
    }
    return 0;
}

/*
 * Checks that cel__json_dump writes `value` as json_dumps does: the same
 * bytes when no real is inside, and text jansson reads back as an equal
 * value in any case.
 */
static void assert_dump_matches_jansson(json_t *value, const char *context)
{
    size_t len = 0;
    char *mine = cel__json_dump(value, &len);
    char *theirs = json_dumps(value, DUMP_FLAGS);
    ck_assert_msg(theirs != NULL, "%s: json_dumps failed", context);
    ck_assert_msg(mine != NULL, "%s: cel__json_dump failed", context);
    ck_assert_uint_eq(len, strlen(mine));
    if (!contains_real(value))
        ck_assert_msg(strcmp(mine, theirs) == 0,
                      "%s: dump differs from json_dumps:\n%.300s\n%.300s",
                      context, mine, theirs);

    json_error_t error;
    json_t *back = json_loadb(mine, len, LOAD_FLAGS, &error);
    ck_assert_msg(back != NULL, "%s: jansson cannot read the dump: %s", context,
                  error.text);
    ck_assert_msg(json_equal(back, value),
                  "%s: the dump reads back as another value", context);
    json_decref(back);
    free(mine);
    free(theirs);
}

/*
 * Parses text[0..len) with both parsers and checks that they agree: both
 * reject it, or both accept it and build equal values, which then dump as
 * json_dumps writes them. Returns whether the text was valid.
 */
static bool assert_parse_matches_jansson(const char *text, size_t len,
                                         const char *context)
{
    json_error_t error;
    json_t *theirs = json_loadb(text, len, LOAD_FLAGS, &error);
    json_t *mine;
    char why[WHY_LEN];
    int status = parse_exact(text, len, CEL__JSON_MAX_DEPTH, &mine, why);

    if (theirs == NULL) {
        ck_assert_msg(status != CEL_OK,
                      "%s: jansson rejects it (%s) but cel__json_parse "
                      "accepts it",
                      context, error.text);
        ck_assert_ptr_null(mine);
        ck_assert_msg(why[0] != '\0', "%s: no reason given", context);
        return false;
    }
    ck_assert_msg(status == CEL_OK,
                  "%s: jansson accepts it but cel__json_parse rejects it: "
                  "%d (%s)",
                  context, status, why);
    ck_assert_msg(json_equal(mine, theirs), "%s: the values differ", context);
    assert_dump_matches_jansson(mine, context);
    json_decref(mine);
    json_decref(theirs);
    return true;
}

/* A small deterministic generator (xorshift64*), so failures repeat. */
static uint64_t random_state;

static uint64_t random_next(void)
{
    random_state ^= random_state >> 12;
    random_state ^= random_state << 25;
    random_state ^= random_state >> 27;
    return random_state * 0x2545F4914F6CDD1DULL;
}

static size_t random_below(size_t bound)
{
    return (size_t)(random_next() % bound);
}

/* Pieces that strings are built from: plain text, every class of byte the
 * scanners treat specially, and UTF-8 of each length. */
static const char *const STRING_PIECES[] = {
    "a",
    "plain text ",
    "0123456789abcdef",
    "\"",
    "\\",
    "/",
    "\n",
    "\t",
    "\r",
    "\b",
    "\f",
    "\x01",
    "\x1f",
    "\x7f",
    "\xc3\xa9",
    "\xe6\x97\xa5",
    "\xef\xbf\xbf",
    "\xf0\x9f\x98\x80",
    "\xf4\x8f\xbf\xbf",
    " ",
};

#define STRING_PIECE_COUNT (sizeof STRING_PIECES / sizeof STRING_PIECES[0])

static json_t *random_string(void)
{
    char text[512];
    size_t len = 0;
    size_t pieces = random_below(24);
    for (size_t i = 0; i < pieces; i++) {
        const char *piece = STRING_PIECES[random_below(STRING_PIECE_COUNT)];
        size_t piece_len = strlen(piece);
        if (len + piece_len >= sizeof text)
            break;
        memcpy(text + len, piece, piece_len);
        len += piece_len;
    }
    if (random_below(8) == 0 && len + 1 < sizeof text)
        text[len++] = '\0'; /* a NUL inside, as \u0000 sends it */
    return json_stringn(text, len);
}

/* Returns a finite double: random bits, or a short decimal. */
static double random_real(void)
{
    if (random_below(2) == 0) {
        double value;
        do {
            uint64_t bits = random_next();
            memcpy(&value, &bits, sizeof value);
        } while (!isfinite(value));
        return value;
    }
    double value = (double)((int64_t)random_below(2000001) - 1000000);
    return value / pow(10, (double)random_below(12));
}

static json_int_t random_integer(void)
{
    static const json_int_t EDGES[] = {0, 1, -1, INT64_MAX, INT64_MIN, 10, -10};
    if (random_below(4) == 0)
        return EDGES[random_below(sizeof EDGES / sizeof EDGES[0])];
    return (json_int_t)random_next() >> random_below(64);
}

static json_t *random_value(int depth);

static json_t *random_container(int depth)
{
    size_t count = random_below(6);
    if (random_below(2) == 0) {
        json_t *array = json_array();
        for (size_t i = 0; i < count; i++)
            json_array_append_new(array, random_value(depth + 1));
        return array;
    }
    json_t *object = json_object();
    for (size_t i = 0; i < count; i++) {
        json_t *key = random_string();
        /* Keys may not contain NUL: cut them there. */
        const char *key_text = json_string_value(key);
        json_object_set_new(object, key_text, random_value(depth + 1));
        json_decref(key);
    }
    return object;
}

static json_t *random_value(int depth)
{
    size_t kind = random_below(depth < 5 ? 9 : 7);
    switch (kind) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(random_below(2));
    case 2:
        return json_integer(random_integer());
    case 3:
        return json_real(random_real());
    case 4:
    case 5:
    case 6:
        return random_string();
    default:
        return random_container(depth);
    }
}

/* ---- parse: scalars ----------------------------------------------------- */

START_TEST(test_parse_literals)
{
    json_t *value = parse_ok("null");
    ck_assert(json_is_null(value));
    json_decref(value);

    value = parse_ok("true");
    ck_assert(json_is_true(value));
    json_decref(value);

    value = parse_ok("false");
    ck_assert(json_is_false(value));
    json_decref(value);
}
END_TEST

typedef struct integer_case {
    const char *text;
    json_int_t value;
} integer_case_t;

static const integer_case_t INTEGERS[] = {
    {"0", 0},
    {"-0", 0},
    {"7", 7},
    {"-42", -42},
    {"1099511627776", 1099511627776LL},
    {"9223372036854775807", INT64_MAX},
    {"-9223372036854775808", INT64_MIN},
    {"1000000000000000000", 1000000000000000000LL},
};

#define INTEGER_COUNT (sizeof INTEGERS / sizeof INTEGERS[0])

START_TEST(test_parse_integer_value)
{
    const integer_case_t *item = &INTEGERS[_i];
    json_t *value = parse_ok(item->text);
    ck_assert_msg(json_is_integer(value), "%s is not an integer", item->text);
    ck_assert_msg(json_integer_value(value) == item->value, "%s read as %lld",
                  item->text, (long long)json_integer_value(value));
    json_decref(value);
}
END_TEST

/* Texts strtod() reads, each checked against strtod's own double. */
static const char *const REALS[] = {
    "0.0",
    "-0.0",
    "1.5",
    "1e5",
    "1E+2",
    "1e-2",
    "0.1",
    "0.3",
    "-123.456e-7",
    "3.141592653589793",
    "1712345678.123456",
    "1712345678.1234567",
    "9007199254740993e0",
    "9007199254740993.0",
    "123456789012345678901234567890.0",
    "0.1000000000000000055511151231257827",
    "2.2250738585072014e-308",
    "4.9406564584124654e-324",
    "1e-400",
    "1.7976931348623157e308",
    "0e999999",
    "0.000000000000000000000000000000000000001",
    "1e22",
    "1e23",
    "123e-22",
    "8.98846567431158e307",
};

#define REAL_COUNT (sizeof REALS / sizeof REALS[0])

START_TEST(test_parse_real_matches_strtod)
{
    const char *text = REALS[_i];
    json_t *value;
    char why[WHY_LEN];
    int status = parse_exact(text, strlen(text), 8, &value, why);
    ck_assert_msg(status == CEL_OK, "%s: %s", text, why);
    ck_assert_msg(json_is_real(value), "%s is not a real", text);
    double expected = strtod(text, NULL);
    double got = json_real_value(value);
    ck_assert_msg(memcmp(&got, &expected, sizeof got) == 0,
                  "%s read as %.17g, strtod reads %.17g", text, got, expected);
    json_decref(value);
}
END_TEST

START_TEST(test_parse_number_kinds_follow_jansson)
{
    /* A fraction or an exponent makes a real, even for whole numbers. */
    json_t *value = parse_ok("1.0");
    ck_assert(json_is_real(value));
    json_decref(value);

    value = parse_ok("1e0");
    ck_assert(json_is_real(value));
    ck_assert(json_real_value(value) == 1.0);
    json_decref(value);

    value = parse_ok("-0.0");
    ck_assert(json_is_real(value));
    ck_assert(signbit(json_real_value(value)));
    json_decref(value);

    value = parse_ok("-0");
    ck_assert(json_is_integer(value));
    json_decref(value);
}
END_TEST

START_TEST(test_parse_long_mantissa_uses_strtod)
{
    /* 400 significant digits take the strtod path, from a copy. */
    char text[512];
    size_t len = 0;
    text[len++] = '0';
    text[len++] = '.';
    for (int i = 0; i < 400; i++)
        text[len++] = (char)('1' + i % 9);
    text[len] = '\0';
    json_t *value = parse_ok(text);
    double expected = strtod(text, NULL);
    ck_assert(json_real_value(value) == expected);
    json_decref(value);
}
END_TEST

/* ---- parse: strings ----------------------------------------------------- */

typedef struct string_case {
    const char *json;
    const char *text; /* the decoded bytes */
    size_t len;
} string_case_t;

static const string_case_t STRINGS[] = {
    {"\"\"", "", 0},
    {"\"abc\"", "abc", 3},
    {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
    {"\"\\u0041\\u00e9\\u00E9\"", "A\xc3\xa9\xc3\xa9", 5},
    {"\"\\u65e5\"", "\xe6\x97\xa5", 3},
    {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},
    {"\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4},
    {"\"a\\u0000b\"", "a\0b", 3},
    {"\"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80\"",
     "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80", 14},
    {"\"\x7f\"", "\x7f", 1},
    {"\"\xef\xbf\xbf\"", "\xef\xbf\xbf", 3},
    {"\"0123456789abcdef\\n0123456789abcdef\"",
     "0123456789abcdef\n0123456789abcdef", 33},
};

#define STRING_COUNT (sizeof STRINGS / sizeof STRINGS[0])

START_TEST(test_parse_string_decodes)
{
    const string_case_t *item = &STRINGS[_i];
    json_t *value = parse_ok(item->json);
    ck_assert_msg(json_is_string(value), "%s is not a string", item->json);
    ck_assert_uint_eq(json_string_length(value), item->len);
    ck_assert_msg(memcmp(json_string_value(value), item->text, item->len) == 0,
                  "%s decoded wrongly", item->json);
    ck_assert_msg(json_string_value(value)[item->len] == '\0',
                  "%s: the text is not NUL-terminated", item->json);
    json_decref(value);
}
END_TEST

/* ---- parse: containers -------------------------------------------------- */

START_TEST(test_parse_empty_containers)
{
    json_t *value = parse_ok("[]");
    ck_assert(json_is_array(value));
    ck_assert_uint_eq(json_array_size(value), 0);
    json_decref(value);

    value = parse_ok("{}");
    ck_assert(json_is_object(value));
    ck_assert_uint_eq(json_object_size(value), 0);
    json_decref(value);

    value = parse_ok(" [ ] ");
    ck_assert(json_is_array(value));
    json_decref(value);

    value = parse_ok("{ }");
    ck_assert(json_is_object(value));
    json_decref(value);
}
END_TEST

START_TEST(test_parse_nested_task_body)
{
    json_t *value = parse_ok("[[2, 3], {\"x\": \"y\"}, {\"callbacks\": null, "
                             "\"chain\": [{\"task\": \"t\"}]}]");
    ck_assert_uint_eq(json_array_size(value), 3);
    json_t *args = json_array_get(value, 0);
    ck_assert_int_eq(json_integer_value(json_array_get(args, 1)), 3);
    json_t *kwargs = json_array_get(value, 1);
    ck_assert_str_eq(json_string_value(json_object_get(kwargs, "x")), "y");
    json_t *embed = json_array_get(value, 2);
    ck_assert(json_is_null(json_object_get(embed, "callbacks")));
    json_t *chain = json_object_get(embed, "chain");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_array_get(chain, 0), "task")),
        "t");
    json_decref(value);
}
END_TEST

START_TEST(test_parse_duplicate_key_last_wins)
{
    json_t *value = parse_ok("{\"a\": 1, \"b\": 2, \"a\": 3}");
    ck_assert_uint_eq(json_object_size(value), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(value, "a")), 3);

    /* The key keeps its first place, as in jansson. */
    void *iter = json_object_iter(value);
    ck_assert_str_eq(json_object_iter_key(iter), "a");
    iter = json_object_iter_next(value, iter);
    ck_assert_str_eq(json_object_iter_key(iter), "b");
    json_decref(value);
}
END_TEST

START_TEST(test_parse_keys_keep_order_and_escapes)
{
    json_t *value =
        parse_ok("{\"z\":1,\"a\\nb\":2,\"\\u00e9\":3,\"\":4,\"m\":{\"k\":5}}");
    const char *expected[] = {"z", "a\nb", "\xc3\xa9", "", "m"};
    size_t i = 0;
    for (void *iter = json_object_iter(value); iter != NULL;
         iter = json_object_iter_next(value, iter), i++) {
        ck_assert_uint_lt(i, 5);
        ck_assert_str_eq(json_object_iter_key(iter), expected[i]);
    }
    ck_assert_uint_eq(i, 5);
    ck_assert_int_eq(json_integer_value(json_object_get(value, "a\nb")), 2);
    json_decref(value);
}
END_TEST

START_TEST(test_parse_whitespace_around_tokens)
{
    json_t *value =
        parse_ok(" \t\r\n{ \"a\" :\n[ 1 ,\t2 ] , \"b\"\r: null }\n ");
    ck_assert_uint_eq(json_array_size(json_object_get(value, "a")), 2);
    ck_assert(json_is_null(json_object_get(value, "b")));
    json_decref(value);
}
END_TEST

/* ---- parse: errors ------------------------------------------------------ */

typedef struct error_case {
    const char *text;
    size_t len;      /* 0: strlen(text) */
    const char *why; /* the expected reason */
} error_case_t;

static const error_case_t ERRORS[] = {
    {"", 0, "unexpected end of input, expected a JSON value at byte 0"},
    {"   ", 0, "unexpected end of input, expected a JSON value at byte 3"},
    {"[1] x", 0,
     "unexpected character 'x', expected the end of the input at byte 4"},
    {"1 2", 0,
     "unexpected character '2', expected the end of the input at byte 2"},
    {"[1,]", 0, "unexpected character ']', expected a JSON value at byte 3"},
    {"[1 2]", 0, "unexpected character '2', expected ',' or ']' at byte 3"},
    {"[", 0, "unexpected end of input, expected a JSON value at byte 1"},
    {"[1", 0, "unexpected end of input, expected ',' or ']' at byte 2"},
    {"{", 0, "unexpected end of input, expected a string key at byte 1"},
    {"{\"a\":1,}", 0,
     "unexpected character '}', expected a string key at "
     "byte 7"},
    {"{\"a\" 1}", 0, "unexpected character '1', expected ':' at byte 5"},
    {"{1:2}", 0, "unexpected character '1', expected a string key at byte 1"},
    {"{\"a\":1 \"b\":2}", 0,
     "unexpected character '\"', expected ',' or '}' at byte 7"},
    {"{\"a\":}", 0,
     "unexpected character '}', expected a JSON value at byte "
     "5"},
    {"tru", 0, "invalid literal: expected true at byte 0"},
    {"nul", 0, "invalid literal: expected null at byte 0"},
    {"falsy", 0, "invalid literal: expected false at byte 0"},
    {"True", 0, "unexpected character 'T', expected a JSON value at byte 0"},
    {"NaN", 0, "unexpected character 'N', expected a JSON value at byte 0"},
    {"Infinity", 0,
     "unexpected character 'I', expected a JSON value at byte 0"},
    {"'a'", 0, "unexpected character ''', expected a JSON value at byte 0"},
    {"\x01", 1, "unexpected byte 0x01, expected a JSON value at byte 0"},
    {"01", 0,
     "unexpected character '1', expected the end of the input at byte 1"},
    {"-01", 0,
     "unexpected character '1', expected the end of the input at byte 2"},
    {"-", 0, "unexpected end of input, expected a digit at byte 1"},
    {"-a", 0, "unexpected character 'a', expected a digit at byte 1"},
    {"+1", 0, "unexpected character '+', expected a JSON value at byte 0"},
    {".5", 0, "unexpected character '.', expected a JSON value at byte 0"},
    {"1.", 0,
     "unexpected end of input, expected a digit after the decimal "
     "point at byte 2"},
    {"1.e5", 0,
     "unexpected character 'e', expected a digit after the "
     "decimal point at byte 2"},
    {"1e", 0,
     "unexpected end of input, expected a digit in the exponent at "
     "byte 2"},
    {"1e+", 0,
     "unexpected end of input, expected a digit in the exponent "
     "at byte 3"},
    {"0x10", 0,
     "unexpected character 'x', expected the end of the input at byte 1"},
    {"9223372036854775808", 0,
     "integer 9223372036854775808 is outside the 64-bit range at byte 0"},
    {"-9223372036854775809", 0,
     "integer -9223372036854775809 is outside the 64-bit range at byte 0"},
    {"[123456789012345678901]", 0,
     "integer 123456789012345678901 is outside the 64-bit range at byte 1"},
    {"1e400", 0, "number 1e400 is outside the range of a double at byte 0"},
    {"-1.8e308", 0,
     "number -1.8e308 is outside the range of a double at byte 0"},
    {"\"abc", 0, "unterminated string at byte 0"},
    {"[\"abc\\\"]", 0, "unterminated string at byte 1"},
    {"\"a\nb\"", 0,
     "control character 0x0a in a string: it must be escaped at byte 2"},
    {"\"\t\"", 0,
     "control character 0x09 in a string: it must be escaped at byte 1"},
    {"\"a\0b\"", 5,
     "control character 0x00 in a string: it must be escaped at byte 2"},
    {"\"\\x\"", 0,
     "unexpected character 'x', expected an escape: one of "
     "\"\\/bfnrtu at byte 2"},
    {"\"\\", 0,
     "unexpected end of input, expected an escaped character at "
     "byte 2"},
    {"\"\\u12\"", 0, "invalid \\u escape: expected four hex digits at byte 1"},
    {"\"\\u12g4\"", 0,
     "invalid \\u escape: expected four hex digits at byte 1"},
    {"\"\\ud800\"", 0,
     "invalid \\uD800: a high surrogate without a low one "
     "after it at byte 1"},
    {"\"\\ud800\\u0041\"", 0,
     "invalid \\uD800: a high surrogate without a "
     "low one after it at byte 1"},
    {"\"\\udbff\\n\"", 0,
     "invalid \\uDBFF: a high surrogate without a low "
     "one after it at byte 1"},
    {"\"\\udc00\"", 0,
     "invalid \\uDC00: a low surrogate without a high one at byte 1"},
    {"\"\\ud800\\ud800\"", 0,
     "invalid \\uD800: a high surrogate without a "
     "low one after it at byte 1"},
    {"\"\x80\"", 0, "invalid UTF-8 byte 0x80 at byte 1"},
    {"\"\xc0\x80\"", 0, "invalid UTF-8 byte 0xc0 at byte 1"},
    {"\"\xc1\xbf\"", 0, "invalid UTF-8 byte 0xc1 at byte 1"},
    {"\"\xc3\"", 0, "invalid UTF-8 byte 0xc3 at byte 1"},
    {"\"\xc3\x28\"", 0, "invalid UTF-8 byte 0xc3 at byte 1"},
    {"\"\xe0\x80\x80\"", 0, "invalid UTF-8 byte 0xe0 at byte 1"},
    {"\"\xe0\x9f\xbf\"", 0, "invalid UTF-8 byte 0xe0 at byte 1"},
    {"\"\xed\xa0\x80\"", 0, "invalid UTF-8 byte 0xed at byte 1"},
    {"\"\xed\xbf\xbf\"", 0, "invalid UTF-8 byte 0xed at byte 1"},
    {"\"\xe6\x97\"", 0, "invalid UTF-8 byte 0xe6 at byte 1"},
    {"\"\xf0\x80\x80\x80\"", 0, "invalid UTF-8 byte 0xf0 at byte 1"},
    {"\"\xf0\x8f\xbf\xbf\"", 0, "invalid UTF-8 byte 0xf0 at byte 1"},
    {"\"\xf4\x90\x80\x80\"", 0, "invalid UTF-8 byte 0xf4 at byte 1"},
    {"\"\xf5\x80\x80\x80\"", 0, "invalid UTF-8 byte 0xf5 at byte 1"},
    {"\"\xff\"", 0, "invalid UTF-8 byte 0xff at byte 1"},
    {"\"\xf0\x9f\x98\"", 0, "invalid UTF-8 byte 0xf0 at byte 1"},
    {"\xc3\xa9", 0, "unexpected byte 0xc3, expected a JSON value at byte 0"},
    {"{\"a\\u0000\":1}", 0,
     "object key contains \\u0000, which jansson does "
     "not support in keys at byte 1"},
};

#define ERROR_COUNT (sizeof ERRORS / sizeof ERRORS[0])

START_TEST(test_parse_error_is_reported)
{
    const error_case_t *item = &ERRORS[_i];
    size_t len = item->len ? item->len : strlen(item->text);
    json_t *value = (json_t *)1;
    char why[WHY_LEN];
    int status = parse_exact(item->text, len, 8, &value, why);
    ck_assert_msg(status == CEL_EDECODE, "case %d ('%s'): status %d (%s)", _i,
                  item->text, status, why);
    ck_assert_ptr_null(value);
    ck_assert_str_eq(why, item->why);
}
END_TEST

START_TEST(test_parse_errors_agree_with_jansson)
{
    const error_case_t *item = &ERRORS[_i];
    size_t len = item->len ? item->len : strlen(item->text);
    json_error_t error;
    json_t *theirs = json_loadb(item->text, len, LOAD_FLAGS, &error);
    ck_assert_msg(theirs == NULL, "case %d ('%s'): jansson accepts it", _i,
                  item->text);
}
END_TEST

START_TEST(test_parse_why_is_optional_and_truncated)
{
    json_t *value;
    ck_assert_int_eq(cel__json_parse("[1,", 3, 8, &value, NULL, 0),
                     CEL_EDECODE);
    ck_assert_ptr_null(value);

    char why[12];
    memset(why, 'x', sizeof why);
    ck_assert_int_eq(cel__json_parse("[1,", 3, 8, &value, why, sizeof why),
                     CEL_EDECODE);
    ck_assert_str_eq(why, "unexpected ");

    /* A success leaves an empty reason. */
    char full[WHY_LEN] = "stale";
    ck_assert_int_eq(cel__json_parse("1", 1, 8, &value, full, sizeof full),
                     CEL_OK);
    ck_assert_str_eq(full, "");
    json_decref(value);
}
END_TEST

START_TEST(test_parse_only_reads_len_bytes)
{
    json_t *value;
    char why[WHY_LEN];
    ck_assert_int_eq(cel__json_parse("[1]garbage", 3, 8, &value, why, WHY_LEN),
                     CEL_OK);
    ck_assert_uint_eq(json_array_size(value), 1);
    json_decref(value);

    ck_assert_int_eq(cel__json_parse("12345", 2, 8, &value, why, WHY_LEN),
                     CEL_OK);
    ck_assert_int_eq(json_integer_value(value), 12);
    json_decref(value);

    ck_assert_int_eq(cel__json_parse("true", 3, 8, &value, why, WHY_LEN),
                     CEL_EDECODE);
    ck_assert_int_eq(cel__json_parse(NULL, 0, 8, &value, why, WHY_LEN),
                     CEL_EDECODE);
    ck_assert_ptr_null(value);
}
END_TEST

/* jansson 2.14 skips a NUL byte right after a number or a literal, which
 * RFC 8259 does not allow outside strings. */
START_TEST(test_parse_rejects_nul_after_number)
{
    json_t *value;
    char why[WHY_LEN];
    ck_assert_int_eq(parse_exact("[3\0]", 4, 8, &value, why), CEL_EDECODE);
    ck_assert_str_eq(why,
                     "unexpected byte 0x00, expected ',' or ']' at byte 2");
    ck_assert_int_eq(parse_exact("true\0", 5, 8, &value, why), CEL_EDECODE);
    ck_assert_str_eq(why,
                     "unexpected byte 0x00, expected the end of the input at "
                     "byte 4");
}
END_TEST

/* Every token cut short at the end of an exact-size buffer. */
START_TEST(test_parse_truncated_input_is_rejected)
{
    const char *text = "{\"key\\u00e9\":[-1.5e+3,\"caf\xc3\xa9\\ud83d\\ude00"
                       "\",true,false,null,12345678901,{\"a\":[]}]}";
    size_t len = strlen(text);
    for (size_t cut = 0; cut < len; cut++) {
        json_t *value;
        char why[WHY_LEN];
        int status = parse_exact(text, cut, 8, &value, why);
        ck_assert_msg(status == CEL_EDECODE, "cut at %zu: status %d", cut,
                      status);
        ck_assert_ptr_null(value);
    }
    json_t *value;
    char why[WHY_LEN];
    ck_assert_int_eq(parse_exact(text, len, 8, &value, why), CEL_OK);
    json_decref(value);
}
END_TEST

/* ---- parse: depth ------------------------------------------------------- */

/* Returns `depth` nested arrays or objects around `inner`. Malloc'd. */
static char *nested_text(size_t depth, bool objects, const char *inner,
                         size_t *len)
{
    size_t inner_len = strlen(inner);
    char *text = malloc(depth * 6 + inner_len + 1);
    ck_assert_ptr_nonnull(text);
    size_t at = 0;
    for (size_t i = 0; i < depth; i++) {
        if (objects) {
            memcpy(text + at, "{\"k\":", 5);
            at += 5;
        } else {
            text[at++] = '[';
        }
    }
    memcpy(text + at, inner, inner_len);
    at += inner_len;
    for (size_t i = 0; i < depth; i++)
        text[at++] = objects ? '}' : ']';
    text[at] = '\0';
    *len = at;
    return text;
}

START_TEST(test_parse_depth_cap_is_inclusive)
{
    for (int objects = 0; objects <= 1; objects++) {
        size_t len;
        char *text = nested_text(5, objects, objects ? "1" : "", &len);
        json_t *value;
        char why[WHY_LEN];
        ck_assert_int_eq(parse_exact(text, len, 5, &value, why), CEL_OK);
        ck_assert_int_eq(value_depth(value), 5);
        json_decref(value);

        ck_assert_int_eq(parse_exact(text, len, 4, &value, why), CEL_ETOODEEP);
        ck_assert_ptr_null(value);
        ck_assert_str_eq(why, objects ? "nesting deeper than 4 levels at "
                                        "byte 20"
                                      : "nesting deeper than 4 levels at "
                                        "byte 4");
        free(text);
    }
}
END_TEST

START_TEST(test_parse_depth_zero_allows_scalars_only)
{
    json_t *value;
    char why[WHY_LEN];
    ck_assert_int_eq(parse_exact("\"s\"", 3, 0, &value, why), CEL_OK);
    json_decref(value);
    ck_assert_int_eq(parse_exact("[]", 2, 0, &value, why), CEL_ETOODEEP);
    ck_assert_int_eq(parse_exact("{}", 2, -1, &value, why), CEL_ETOODEEP);
}
END_TEST

START_TEST(test_parse_default_depth_counts_containers)
{
    size_t len;
    char *text = nested_text(CEL__DEFAULT_MAX_DEPTH, false, "[]", &len);
    json_t *value;
    char why[WHY_LEN];
    ck_assert_int_eq(
        parse_exact(text, len, CEL__DEFAULT_MAX_DEPTH, &value, why),
        CEL_ETOODEEP);
    ck_assert_str_eq(why, "nesting deeper than 128 levels at byte 128");
    free(text);

    text = nested_text(CEL__DEFAULT_MAX_DEPTH, false, "", &len);
    ck_assert_int_eq(
        parse_exact(text, len, CEL__DEFAULT_MAX_DEPTH, &value, why), CEL_OK);
    json_decref(value);
    free(text);
}
END_TEST

/* A huge max_depth is capped, so 100000 levels fail without a deep
 * recursion. */
START_TEST(test_parse_depth_is_capped_for_any_max)
{
    size_t len;
    char *text = nested_text(100000, false, "", &len);
    json_t *value;
    char why[WHY_LEN];
    ck_assert_int_eq(parse_exact(text, len, INT32_MAX, &value, why),
                     CEL_ETOODEEP);
    ck_assert_str_eq(why, "nesting deeper than 2048 levels at byte 2048");
    free(text);

    text = nested_text(CEL__JSON_MAX_DEPTH, true, "null", &len);
    ck_assert_int_eq(parse_exact(text, len, INT32_MAX, &value, why), CEL_OK);
    json_decref(value);
    free(text);
}
END_TEST

/* Brackets inside strings are text, and unbalanced ones there do not
 * count toward the depth. */
START_TEST(test_parse_depth_ignores_brackets_in_strings)
{
    json_t *value;
    char why[WHY_LEN];
    const char *text = "[\"[[[[{{{{\\\"]]\"]";
    ck_assert_int_eq(parse_exact(text, strlen(text), 1, &value, why), CEL_OK);
    ck_assert_str_eq(json_string_value(json_array_get(value, 0)),
                     "[[[[{{{{\"]]");
    json_decref(value);
}
END_TEST

/* ---- dump --------------------------------------------------------------- */

START_TEST(test_dump_scalars)
{
    assert_dump(json_null(), "null");
    assert_dump(json_true(), "true");
    assert_dump(json_false(), "false");
    assert_dump(json_integer(0), "0");
    assert_dump(json_integer(-42), "-42");
    assert_dump(json_integer(INT64_MAX), "9223372036854775807");
    assert_dump(json_integer(INT64_MIN), "-9223372036854775808");
    assert_dump(json_string(""), "\"\"");
    assert_dump(json_string("abc"), "\"abc\"");
}
END_TEST

START_TEST(test_dump_containers_compact)
{
    assert_dump(json_array(), "[]");
    assert_dump(json_object(), "{}");
    assert_dump(json_pack("[i, s, n, [], {}]", 1, "a"), "[1,\"a\",null,[],{}]");
    assert_dump(json_pack("{s:i, s:[b, b]}", "x", 1, "y", 1, 0),
                "{\"x\":1,\"y\":[true,false]}");
}
END_TEST

START_TEST(test_dump_keys_in_insertion_order)
{
    json_t *object = json_object();
    const char *keys[] = {"zeta", "alpha", "mid", "b", "a"};
    for (size_t i = 0; i < 5; i++)
        json_object_set_new(object, keys[i], json_integer((json_int_t)i));
    /* Replacing a value keeps the key's place. */
    json_object_set_new(object, "alpha", json_string("again"));
    assert_dump(object,
                "{\"zeta\":0,\"alpha\":\"again\",\"mid\":2,\"b\":3,\"a\":4}");
}
END_TEST

START_TEST(test_dump_members_matches_object)
{
    json_t *list = json_pack("[i, s, {s: b}]", 1, "two", "three", 1);
    json_t *real = json_real(0.5);
    const cel__json_member_t members[] = {
        {.key = "list", .value = list},
        {.key = "text", .text = "caf\xc3\xa9 \"q\""},
        {.key = "raw", .raw = "[]"},
        {.key = "none"},
        {.key = "real", .value = real},
    };
    json_t *object = json_pack("{s: O, s: s, s: [], s: n, s: O}", "list", list,
                               "text", "caf\xc3\xa9 \"q\"", "raw", "none",
                               "real", real);
    size_t len = 0;
    char *text = cel__json_dump_members(members, 5, &len);
    char *expected = cel__json_dump(object, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_str_eq(text, expected);
    ck_assert_uint_eq(len, strlen(expected));
    free(text);
    free(expected);
    json_decref(object);
    json_decref(list);
    json_decref(real);
}
END_TEST

START_TEST(test_dump_members_rejects_invalid_utf8)
{
    const cel__json_member_t bad_text[] = {{.key = "id", .text = "\xff"}};
    const cel__json_member_t bad_key[] = {{.key = "\xc3", .raw = "1"}};
    ck_assert_ptr_null(cel__json_dump_members(bad_text, 1, NULL));
    ck_assert_ptr_null(cel__json_dump_members(bad_key, 1, NULL));
}
END_TEST

START_TEST(test_dump_members_empty_object)
{
    char *text = cel__json_dump_members(NULL, 0, NULL);
    ck_assert_str_eq(text, "{}");
    free(text);
}
END_TEST

START_TEST(test_dump_string_escapes)
{
    assert_dump(json_string("\"\\/\b\f\n\r\t"), "\"\\\"\\\\/\\b\\f\\n\\r\\t\"");
    assert_dump(json_string("\x01\x1f\x7f"), "\"\\u0001\\u001F\x7f\"");
    assert_dump(json_stringn("a\0b", 3), "\"a\\u0000b\"");
    assert_dump(json_string("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80"),
                "\"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80\"");

    json_t *object = json_object();
    json_object_set_new(object, "k\"\n\xc3\xa9", json_integer(1));
    assert_dump(object, "{\"k\\\"\\n\xc3\xa9\":1}");
}
END_TEST

START_TEST(test_dump_rejects_invalid_utf8)
{
    const char *invalid[] = {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf",
                             "0123456789\x80"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        json_t *string = json_stringn_nocheck(invalid[i], strlen(invalid[i]));
        ck_assert_msg(cel__json_dump(string, NULL) == NULL,
                      "case %zu was dumped", i);
        ck_assert_ptr_null(json_dumps(string, DUMP_FLAGS));
        json_t *array = json_pack("[o]", string);
        ck_assert_ptr_null(cel__json_dump(array, NULL));
        json_decref(array);
    }
}
END_TEST

START_TEST(test_dump_null_value_fails)
{
    size_t len = 99;
    ck_assert_ptr_null(cel__json_dump(NULL, &len));
    ck_assert_uint_eq(len, 99);
}
END_TEST

START_TEST(test_dump_depth_is_capped)
{
    json_t *root = json_array();
    json_t *inner = root;
    for (int i = 1; i < CEL__JSON_MAX_DEPTH; i++) {
        json_t *next = json_array();
        json_array_append_new(inner, next);
        inner = next;
    }
    size_t len = 0;
    char *text = cel__json_dump(root, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, 2 * CEL__JSON_MAX_DEPTH);
    free(text);

    json_array_append_new(inner, json_array());
    ck_assert_ptr_null(cel__json_dump(root, NULL));
    json_decref(root);
}
END_TEST

START_TEST(test_dump_cycle_fails)
{
    json_t *outer = json_array();
    json_t *inner = json_object();
    json_array_append(outer, inner);
    json_object_set(inner, "loop", outer);
    ck_assert_ptr_null(cel__json_dump(outer, NULL));
    json_object_clear(inner); /* breaks the cycle so both are freed */
    json_decref(inner);
    json_decref(outer);
}
END_TEST

typedef struct real_case {
    double value;
    const char *repr; /* repr() in Python 3.11 */
} real_case_t;

static const real_case_t REAL_REPRS[] = {
    {1.0, "1.0"},
    {0.1, "0.1"},
    {-0.0, "-0.0"},
    {0.0, "0.0"},
    {2.5, "2.5"},
    {-2.5, "-2.5"},
    {1e-5, "1e-05"},
    {0.0001, "0.0001"},
    {0.000123, "0.000123"},
    {1e15, "1000000000000000.0"},
    {1e16, "1e+16"},
    {1.5e-7, "1.5e-07"},
    {123.456, "123.456"},
    {1712345678.123456, "1712345678.123456"},
    {1712345678.1234567, "1712345678.1234567"},
    {3.141592653589793, "3.141592653589793"},
    {0.3, "0.3"},
    {1.0 / 3, "0.3333333333333333"},
    {2.2250738585072014e-308, "2.2250738585072014e-308"},
    {4.9406564584124654e-324, "5e-324"},
    {1.5e-323, "1.5e-323"},
    {DBL_MAX, "1.7976931348623157e+308"},
    {9007199254740993.0, "9007199254740992.0"},
    {9999999999999998.0, "9999999999999998.0"},
    {123456789012345678.0, "1.2345678901234568e+17"},
    {-1e100, "-1e+100"},
    {1e22, "1e+22"},
    {1e23, "1e+23"},
    {123456780000000.0, "123456780000000.0"},
    {0.5, "0.5"},
    {100.0, "100.0"},
    {1.25e-5, "1.25e-05"},
};

#define REAL_REPR_COUNT (sizeof REAL_REPRS / sizeof REAL_REPRS[0])

START_TEST(test_dump_real_as_python_repr)
{
    const real_case_t *item = &REAL_REPRS[_i];
    assert_dump(json_real(item->value), item->repr);
}
END_TEST

/* Each real reads back as the same double, through strtod. */
START_TEST(test_dump_real_round_trips)
{
    random_state = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 20000; i++) {
        double value = random_real();
        json_t *real = json_real(value);
        char *text = cel__json_dump(real, NULL);
        ck_assert_ptr_nonnull(text);
        double back = strtod(text, NULL);
        ck_assert_msg(memcmp(&back, &value, sizeof back) == 0,
                      "%.17g dumped as %s", value, text);
        ck_assert_msg(strchr(text, '.') || strchr(text, 'e'),
                      "%s would read back as an integer", text);
        free(text);
        json_decref(real);
    }
}
END_TEST

/* ---- against jansson ---------------------------------------------------- */

/* The golden bodies, and the golden files themselves, which are indented
 * JSON with every kind of value. */
START_TEST(test_golden_matches_jansson)
{
    const char *name = golden_names[_i];
    golden_message_t golden;
    char error[256];
    ck_assert_msg(golden_message_load(name, &golden, error, sizeof error) == 0,
                  "%s: %s", name, error);

    if (json_object_get(golden.headers, "compression") == NULL)
        ck_assert(assert_parse_matches_jansson((const char *)golden.body,
                                               golden.body_len, name));
    json_t *body = golden_body_json(&golden);
    ck_assert_ptr_nonnull(body);
    assert_dump_matches_jansson(body, name);
    json_decref(body);

    char path[512];
    snprintf(path, sizeof path, "%s/golden/%s.json", CEL_TEST_DATA, name);
    FILE *file = fopen(path, "rb");
    ck_assert_msg(file != NULL, "cannot open %s", path);
    char *text = malloc(1 << 20);
    ck_assert_ptr_nonnull(text);
    size_t len = fread(text, 1, 1 << 20, file);
    fclose(file);
    ck_assert(assert_parse_matches_jansson(text, len, path));
    free(text);
    golden_message_free(&golden);
}
END_TEST

START_TEST(test_malformed_bodies_match_jansson)
{
    golden_message_t *cases;
    size_t count;
    char error[256];
    ck_assert_msg(golden_cases_load(&cases, &count, error, sizeof error) == 0,
                  "%s", error);
    size_t valid = 0;
    for (size_t i = 0; i < count; i++) {
        const golden_message_t *item = &cases[i];
        if (json_object_get(item->headers, "compression") != NULL)
            continue;
        if (assert_parse_matches_jansson((const char *)item->body,
                                         item->body_len, item->name))
            valid++;
    }
    ck_assert_uint_gt(valid, 0);
    ck_assert_uint_lt(valid, count);
    golden_cases_free(cases, count);
}
END_TEST

/* Random values: jansson's text parses back equal, and cel__json_dump
 * writes json_dumps' bytes (when no real is inside). */
START_TEST(test_random_values_match_jansson)
{
    random_state = 0x243F6A8885A308D3ULL + (uint64_t)_i;
    for (int i = 0; i < 500; i++) {
        json_t *value = random_value(0);
        ck_assert_ptr_nonnull(value);
        char *text = json_dumps(value, DUMP_FLAGS);
        ck_assert_ptr_nonnull(text);
        char context[64];
        snprintf(context, sizeof context, "round %d, value %d", _i, i);
        ck_assert(assert_parse_matches_jansson(text, strlen(text), context));

        json_t *parsed;
        char why[WHY_LEN];
        ck_assert_int_eq(
            parse_exact(text, strlen(text), CEL__JSON_MAX_DEPTH, &parsed, why),
            CEL_OK);
        ck_assert_msg(json_equal(parsed, value), "%s: differs from the source",
                      context);
        json_decref(parsed);
        free(text);
        json_decref(value);
    }
}
END_TEST

/* Bytes that make good mutations: structure, escapes and UTF-8 parts. */
static const char MUTATION_BYTES[] = "[]{}:,\"\\u0eE.-+ \n\x01\x80\xc3\xed\xf0"
                                     "\xbf";

/* Random edits of valid texts: both parsers accept or reject each alike. */
START_TEST(test_mutated_texts_match_jansson)
{
    random_state = 0xB7E151628AED2A6BULL + (uint64_t)_i;
    int rejected = 0;
    for (int i = 0; i < 400; i++) {
        json_t *value = random_value(0);
        char *source = json_dumps(value, DUMP_FLAGS);
        json_decref(value);
        size_t len = strlen(source);
        char *text = malloc(len + 8);
        ck_assert_ptr_nonnull(text);
        memcpy(text, source, len);
        free(source);

        int edits = 1 + (int)random_below(3);
        for (int edit = 0; edit < edits && len > 0; edit++) {
            size_t at = random_below(len);
            char byte = MUTATION_BYTES[random_below(sizeof MUTATION_BYTES - 1)];
            switch (random_below(3)) {
            case 0:
                text[at] = byte;
                break;
            case 1:
                memmove(text + at + 1, text + at, len - at);
                text[at] = byte;
                len++;
                break;
            default:
                memmove(text + at, text + at + 1, len - at - 1);
                len--;
            }
        }
        char context[64];
        snprintf(context, sizeof context, "round %d, text %d", _i, i);
        if (!assert_parse_matches_jansson(text, len, context))
            rejected++;
        free(text);
    }
    ck_assert_int_gt(rejected, 100);
}
END_TEST

/* Items placed at every offset from a word boundary, where the 8-byte
 * scans of the reader and the writer hand over to byte-wise code. */
static const char *const BOUNDARY_ITEMS[] = {
    "\\n",
    "\\\"",
    "\\u00e9",
    "\\ud83d\\ude00",
    "\xc3\xa9",
    "\xe6\x97\xa5",
    "\xf0\x9f\x98\x80",
    "\\u0000",
    "\x7f",
    "\x01",
    "\xff",
    "\xf0\x9f\x98",
    "\xed\xa0\x80",
    "\\",
    "\"",
    "",
};

#define BOUNDARY_ITEM_COUNT (sizeof BOUNDARY_ITEMS / sizeof BOUNDARY_ITEMS[0])

START_TEST(test_string_items_at_word_boundaries)
{
    const char *item = BOUNDARY_ITEMS[_i];
    size_t item_len = strlen(item);
    char text[128];
    for (size_t before = 0; before <= 17; before++) {
        for (size_t after = 0; after <= 9; after++) {
            size_t len = 0;
            text[len++] = '"';
            memset(text + len, 'a', before);
            len += before;
            memcpy(text + len, item, item_len);
            len += item_len;
            memset(text + len, 'b', after);
            len += after;
            text[len++] = '"';
            char context[64];
            snprintf(context, sizeof context, "item %d, %zu before, %zu after",
                     _i, before, after);
            assert_parse_matches_jansson(text, len, context);
            /* The same string cut off before its closing quote. */
            assert_parse_matches_jansson(text, len - 1, context);
        }
    }
}
END_TEST

/* A 1 MiB string of plain runs with escapes and UTF-8 every few hundred
 * bytes, through both readers and both writers. */
START_TEST(test_long_string_matches_jansson)
{
    size_t cap = (1 << 20) + 64;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    size_t len = 0;
    text[len++] = '[';
    text[len++] = '"';
    random_state = 0x452821E638D01377ULL;
    while (len < (1 << 20)) {
        size_t run = random_below(700);
        for (size_t i = 0; i < run && len < (1 << 20); i++)
            text[len++] = (char)('a' + i % 26);
        const char *item = BOUNDARY_ITEMS[random_below(8)];
        memcpy(text + len, item, strlen(item));
        len += strlen(item);
    }
    memcpy(text + len, "\",1]", 4);
    len += 4;
    ck_assert(assert_parse_matches_jansson(text, len, "1 MiB string"));

    /* Plain ASCII alone takes the 8-byte path from end to end. */
    memset(text + 2, 'x', len - 6);
    ck_assert(assert_parse_matches_jansson(text, len, "1 MiB plain string"));
    free(text);
}
END_TEST

static Suite *json_suite(void)
{
    Suite *suite = suite_create("json");

    TCase *scalars = tcase_create("scalars");
    tcase_add_test(scalars, test_parse_literals);
    tcase_add_loop_test(scalars, test_parse_integer_value, 0,
                        (int)INTEGER_COUNT);
    tcase_add_loop_test(scalars, test_parse_real_matches_strtod, 0,
                        (int)REAL_COUNT);
    tcase_add_test(scalars, test_parse_number_kinds_follow_jansson);
    tcase_add_test(scalars, test_parse_long_mantissa_uses_strtod);
    tcase_add_loop_test(scalars, test_parse_string_decodes, 0,
                        (int)STRING_COUNT);
    suite_add_tcase(suite, scalars);

    TCase *containers = tcase_create("containers");
    tcase_add_test(containers, test_parse_empty_containers);
    tcase_add_test(containers, test_parse_nested_task_body);
    tcase_add_test(containers, test_parse_duplicate_key_last_wins);
    tcase_add_test(containers, test_parse_keys_keep_order_and_escapes);
    tcase_add_test(containers, test_parse_whitespace_around_tokens);
    suite_add_tcase(suite, containers);

    TCase *errors = tcase_create("errors");
    tcase_add_loop_test(errors, test_parse_error_is_reported, 0,
                        (int)ERROR_COUNT);
    tcase_add_loop_test(errors, test_parse_errors_agree_with_jansson, 0,
                        (int)ERROR_COUNT);
    tcase_add_test(errors, test_parse_why_is_optional_and_truncated);
    tcase_add_test(errors, test_parse_only_reads_len_bytes);
    tcase_add_test(errors, test_parse_truncated_input_is_rejected);
    tcase_add_test(errors, test_parse_rejects_nul_after_number);
    suite_add_tcase(suite, errors);

    TCase *depth = tcase_create("depth");
    tcase_add_test(depth, test_parse_depth_cap_is_inclusive);
    tcase_add_test(depth, test_parse_depth_zero_allows_scalars_only);
    tcase_add_test(depth, test_parse_default_depth_counts_containers);
    tcase_add_test(depth, test_parse_depth_is_capped_for_any_max);
    tcase_add_test(depth, test_parse_depth_ignores_brackets_in_strings);
    suite_add_tcase(suite, depth);

    TCase *dump = tcase_create("dump");
    tcase_add_test(dump, test_dump_scalars);
    tcase_add_test(dump, test_dump_containers_compact);
    tcase_add_test(dump, test_dump_keys_in_insertion_order);
    tcase_add_test(dump, test_dump_members_matches_object);
    tcase_add_test(dump, test_dump_members_rejects_invalid_utf8);
    tcase_add_test(dump, test_dump_members_empty_object);
    tcase_add_test(dump, test_dump_string_escapes);
    tcase_add_test(dump, test_dump_rejects_invalid_utf8);
    tcase_add_test(dump, test_dump_null_value_fails);
    tcase_add_test(dump, test_dump_depth_is_capped);
    tcase_add_test(dump, test_dump_cycle_fails);
    tcase_add_loop_test(dump, test_dump_real_as_python_repr, 0,
                        (int)REAL_REPR_COUNT);
    tcase_add_test(dump, test_dump_real_round_trips);
    suite_add_tcase(suite, dump);

    TCase *jansson = tcase_create("jansson");
    tcase_set_timeout(jansson, 60);
    tcase_add_loop_test(jansson, test_golden_matches_jansson, 0,
                        (int)golden_count);
    tcase_add_test(jansson, test_malformed_bodies_match_jansson);
    tcase_add_loop_test(jansson, test_random_values_match_jansson, 0, 8);
    tcase_add_loop_test(jansson, test_mutated_texts_match_jansson, 0, 8);
    tcase_add_loop_test(jansson, test_string_items_at_word_boundaries, 0,
                        (int)BOUNDARY_ITEM_COUNT);
    tcase_add_test(jansson, test_long_string_matches_jansson);
    suite_add_tcase(suite, jansson);

    return suite;
}

int main(void)
{
    golden_names = golden_names_list(&golden_count);
    if (golden_names == NULL || golden_count == 0) {
        fprintf(stderr, "no golden messages under %s/golden\n", CEL_TEST_DATA);
        return EXIT_FAILURE;
    }
    SRunner *runner = srunner_create(json_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    golden_names_free(golden_names, golden_count);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
