/*
 * A JSON reader and writer for the hot path (task bodies, pool frames,
 * events). Both work on jansson values and match json_loadb and json_dumps
 * value for value. Where jansson calls a function for every character,
 * they scan strings eight bytes at a time, copy runs of plain bytes with
 * one memcpy and parse numbers inline.
 */
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

/* ---- the C locale ------------------------------------------------------- */

/* strtod and printf read and write the decimal point of the current
 * locale, which a task module may have changed with setlocale(). Numbers
 * are converted in the C locale instead. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_create(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* Returns the C locale, or (locale_t)0 when newlocale() failed. */
static locale_t c_locale_get(void)
{
    pthread_once(&c_locale_once, c_locale_create);
    return c_locale;
}

/* strtod() in the C locale. */
static double strtod_c(const char *text, char **end)
{
    locale_t locale = c_locale_get();
    return locale ? strtod_l(text, end, locale) : strtod(text, end);
}

/* ---- scanning strings --------------------------------------------------- */

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Bytes that a JSON string may contain unescaped: printable ASCII and DEL,
 * except '"' and '\\'. */
static const unsigned char PLAIN[256] = {
    [0x20] = 1,
    [0x21] = 1,
    [0x23 ... 0x5B] = 1,
    [0x5D ... 0x7F] = 1,
};

/*
 * Sets the high bit of each byte of `word` that is '"', '\\', a control
 * character (below 0x20) or not ASCII (0x80 and above). A borrow can also
 * flag bytes above a flagged one, so only the lowest flag is exact.
 */
static inline uint64_t flag_special_bytes(uint64_t word)
{
    uint64_t quote = word ^ (ONES * '"');
    uint64_t backslash = word ^ (ONES * '\\');
    uint64_t is_quote = (quote - ONES) & ~quote;
    uint64_t is_backslash = (backslash - ONES) & ~backslash;
    uint64_t is_control = (word - ONES * 0x20) & ~word;
    return (is_quote | is_backslash | is_control | word) & HIGHS;
}

/* Returns the first byte in [p, end) that is not PLAIN, or end. */
static const unsigned char *skip_plain_bytes(const unsigned char *p,
                                             const unsigned char *end)
{
#if defined(__SSE2__)
    /* 16 bytes per step. The signed compare with 0x20 flags control bytes
     * and bytes of 0x80 and above (negative as signed chars) at once. */
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i special =
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote),
                                      _mm_cmpeq_epi8(chunk, backslash)),
                         _mm_cmplt_epi8(chunk, space));
        int mask = _mm_movemask_epi8(special);
        if (mask != 0)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - p >= 8) {
        uint64_t word;
        memcpy(&word, p, sizeof word);
        uint64_t special = flag_special_bytes(word);
        if (special != 0)
            return p + (__builtin_ctzll(special) >> 3);
        p += 8;
    }
#endif
    while (p < end && PLAIN[*p])
        p++;
    return p;
}

/*
 * Returns the length of the well-formed UTF-8 sequence that starts at p
 * (whose first byte is 0x80 or above), or 0 when it is not one. Rejected
 * are stray continuation bytes, overlong forms, surrogates (U+D800 to
 * U+DFFF), code points above U+10FFFF and sequences cut off by `end`, as
 * in table 3-7 of the Unicode Standard.
 */
static size_t utf8_sequence_length(const unsigned char *p,
                                   const unsigned char *end)
{
    size_t available = (size_t)(end - p);
    unsigned char lead = p[0];
    if (lead >= 0xC2 && lead <= 0xDF)
        return available >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;

    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (lead >= 0xE0 && lead <= 0xEF) {
        if (lead == 0xE0)
            low = 0xA0;
        else if (lead == 0xED)
            high = 0x9F;
        if (available < 3 || p[1] < low || p[1] > high || (p[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (lead >= 0xF0 && lead <= 0xF4) {
        if (lead == 0xF0)
            low = 0x90;
        else if (lead == 0xF4)
            high = 0x8F;
        if (available < 4 || p[1] < low || p[1] > high ||
            (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* ---- the parser --------------------------------------------------------- */

typedef struct parser {
    const unsigned char *start;
    const unsigned char *pos;
    const unsigned char *end;
    int depth;
    int max_depth;
    int status; /* CEL_OK until the first error */
    char *why;
    size_t why_len;
    char *scratch; /* the decoded text of the last string with escapes */
    size_t scratch_len;
    size_t scratch_cap;
} parser_t;

/* A decoded string: borrowed from the input when it has no escapes, else
 * from the parser's scratch buffer until the next string is parsed. */
typedef struct string_span {
    const char *text;
    size_t len;
    bool has_nul;
} string_span_t;

static json_t *parse_value(parser_t *p);

/* Records the first error: its status, and its reason and byte offset in
 * p->why. Returns NULL, for the callers' convenience. */
static void *parse_fail(parser_t *p, int status, const unsigned char *at,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void *parse_fail(parser_t *p, int status, const unsigned char *at,
                        const char *fmt, ...)
{
    if (p->status != CEL_OK)
        return NULL;
    p->status = status;
    if (p->why == NULL || p->why_len == 0)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    int used = vsnprintf(p->why, p->why_len, fmt, ap);
    va_end(ap);
    if (used >= 0 && (size_t)used < p->why_len)
        snprintf(p->why + used, p->why_len - (size_t)used, " at byte %zu",
                 (size_t)(at - p->start));
    return NULL;
}

static void *fail_no_memory(parser_t *p)
{
    return parse_fail(p, CEL_ENOMEM, p->pos, "out of memory");
}

/* Reports the byte at `at`: its character when printable, else its value,
 * or the end of the input. */
static void *fail_unexpected(parser_t *p, const unsigned char *at,
                             const char *expected)
{
    if (at >= p->end)
        return parse_fail(p, CEL_EDECODE, at,
                          "unexpected end of input, expected %s", expected);
    if (*at >= 0x21 && *at <= 0x7E)
        return parse_fail(p, CEL_EDECODE, at,
                          "unexpected character '%c', expected %s", *at,
                          expected);
    return parse_fail(p, CEL_EDECODE, at, "unexpected byte 0x%02x, expected %s",
                      *at, expected);
}

static void skip_whitespace(parser_t *p)
{
    const unsigned char *q = p->pos;
    while (q < p->end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t'))
        q++;
    p->pos = q;
}

static bool scratch_grow(parser_t *p, size_t len)
{
    if (len > SIZE_MAX / 2 - p->scratch_len)
        return false;
    size_t cap = p->scratch_cap ? p->scratch_cap : 256;
    while (cap - p->scratch_len < len)
        cap *= 2;
    char *grown = realloc(p->scratch, cap);
    if (grown == NULL)
        return false;
    p->scratch = grown;
    p->scratch_cap = cap;
    return true;
}

static inline bool scratch_append(parser_t *p, const void *bytes, size_t len)
{
    if (len == 0)
        return true; /* memcpy may not take the NULL of an empty buffer */
    if (p->scratch_cap - p->scratch_len < len && !scratch_grow(p, len))
        return false;
    memcpy(p->scratch + p->scratch_len, bytes, len);
    p->scratch_len += len;
    return true;
}

/* Returns the value of four hex digits at p, or -1. The caller checks that
 * four bytes are there. */
static long read_hex4(const unsigned char *p)
{
    long value = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        long digit;
        if (c >= '0' && c <= '9')
            digit = c - '0';
        else if (c >= 'a' && c <= 'f')
            digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            digit = c - 'A' + 10;
        else
            return -1;
        value = value * 16 + digit;
    }
    return value;
}

static size_t utf8_encode(uint32_t code, unsigned char *out)
{
    if (code < 0x80) {
        out[0] = (unsigned char)code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (unsigned char)(0xC0 | (code >> 6));
        out[1] = (unsigned char)(0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (code >> 12));
        out[1] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (code & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (code >> 18));
    out[1] = (unsigned char)(0x80 | ((code >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (code & 0x3F));
    return 4;
}

/*
 * Decodes the \u escape at q (q[0] is '\\', q[1] is 'u'), with the low half
 * that must follow a high surrogate, into the scratch buffer. Returns the
 * byte after it, or NULL on an invalid escape or a lone surrogate.
 */
static const unsigned char *
decode_unicode_escape(parser_t *p, const unsigned char *q, string_span_t *out)
{
    const unsigned char *end = p->end;
    long code = end - q >= 6 ? read_hex4(q + 2) : -1;
    if (code < 0)
        return parse_fail(p, CEL_EDECODE, q,
                          "invalid \\u escape: expected four hex digits");
    const unsigned char *next = q + 6;

    if (code >= 0xDC00 && code <= 0xDFFF)
        return parse_fail(p, CEL_EDECODE, q,
                          "invalid \\u%04lX: a low surrogate without a high "
                          "one",
                          code);
    if (code >= 0xD800 && code <= 0xDBFF) {
        long low = -1;
        if (end - next >= 6 && next[0] == '\\' && next[1] == 'u')
            low = read_hex4(next + 2);
        if (low < 0xDC00 || low > 0xDFFF)
            return parse_fail(p, CEL_EDECODE, q,
                              "invalid \\u%04lX: a high surrogate without a "
                              "low one after it",
                              code);
        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        next += 6;
    }

    if (code == 0)
        out->has_nul = true;
    unsigned char utf8[4];
    size_t len = utf8_encode((uint32_t)code, utf8);
    if (!scratch_append(p, utf8, len))
        return fail_no_memory(p);
    return next;
}

/* Decodes the escape at q (q[0] is '\\') into the scratch buffer. Returns
 * the byte after it, or NULL. */
static const unsigned char *decode_escape(parser_t *p, const unsigned char *q,
                                          string_span_t *out)
{
    if (p->end - q < 2)
        return fail_unexpected(p, q + 1, "an escaped character");
    char decoded;
    switch (q[1]) {
    case '"':
    case '\\':
    case '/':
        decoded = (char)q[1];
        break;
    case 'b':
        decoded = '\b';
        break;
    case 'f':
        decoded = '\f';
        break;
    case 'n':
        decoded = '\n';
        break;
    case 'r':
        decoded = '\r';
        break;
    case 't':
        decoded = '\t';
        break;
    case 'u':
        return decode_unicode_escape(p, q, out);
    default:
        return fail_unexpected(p, q + 1, "an escape: one of \"\\/bfnrtu");
    }
    if (!scratch_append(p, &decoded, 1))
        return fail_no_memory(p);
    return q + 2;
}

/*
 * Parses the string at p->pos (which is '"'). Returns 0 and the decoded
 * text, or -1. Runs of plain bytes are found eight bytes at a time. Only a
 * string with escapes is copied, into the scratch buffer.
 */
static int parse_string(parser_t *p, string_span_t *out)
{
    const unsigned char *open = p->pos;
    const unsigned char *end = p->end;
    const unsigned char *q = open + 1;
    const unsigned char *run = q; /* plain bytes not yet in the scratch */
    bool escaped = false;
    out->has_nul = false;
    p->scratch_len = 0;

    for (;;) {
        q = skip_plain_bytes(q, end);
        if (q == end) {
            parse_fail(p, CEL_EDECODE, open, "unterminated string");
            return -1;
        }
        unsigned char c = *q;
        if (c == '"')
            break;
        if (c >= 0x80) {
            size_t n = utf8_sequence_length(q, end);
            if (n == 0) {
                parse_fail(p, CEL_EDECODE, q, "invalid UTF-8 byte 0x%02x", c);
                return -1;
            }
            q += n;
        } else if (c == '\\') {
            if (!scratch_append(p, run, (size_t)(q - run))) {
                fail_no_memory(p);
                return -1;
            }
            q = decode_escape(p, q, out);
            if (q == NULL)
                return -1;
            run = q;
            escaped = true;
        } else {
            parse_fail(p, CEL_EDECODE, q,
                       "control character 0x%02x in a string: it must be "
                       "escaped",
                       c);
            return -1;
        }
    }

    if (escaped) {
        if (!scratch_append(p, run, (size_t)(q - run))) {
            fail_no_memory(p);
            return -1;
        }
        out->text = p->scratch;
        out->len = p->scratch_len;
    } else {
        out->text = (const char *)(open + 1);
        out->len = (size_t)(q - open - 1);
    }
    p->pos = q + 1;
    return 0;
}

static json_t *parse_string_value(parser_t *p)
{
    string_span_t span;
    if (parse_string(p, &span) != 0)
        return NULL;
    /* The text is valid UTF-8 already, so jansson need not check it. */
    json_t *string = json_stringn_nocheck(span.text, span.len);
    return string ? string : fail_no_memory(p);
}

/* ---- numbers ------------------------------------------------------------ */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Powers of ten that a double represents exactly. */
static const double EXACT_POWERS_OF_TEN[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#define MAX_EXACT_POWER 22
#define MAX_EXACT_INT   (UINT64_C(1) << 53)

/*
 * Converts mantissa * 10^exponent to the nearest double when that takes
 * one correctly rounded IEEE operation: the mantissa and the power of ten
 * are both exact doubles (Clinger's fast path). Returns false when they
 * are not, or when the compiler evaluates doubles in a wider format, which
 * would round twice.
 */
static bool decimal_to_double_exact(uint64_t mantissa, long long exponent,
                                    double *out)
{
#if FLT_EVAL_METHOD == 0
    if (mantissa > MAX_EXACT_INT || exponent < -MAX_EXACT_POWER ||
        exponent > MAX_EXACT_POWER)
        return false;
    double value = (double)mantissa;
    if (exponent < 0)
        value /= EXACT_POWERS_OF_TEN[-exponent];
    else
        value *= EXACT_POWERS_OF_TEN[exponent];
    *out = value;
    return true;
#else
    (void)mantissa;
    (void)exponent;
    (void)out;
    return false;
#endif
}

/* The digits of a number token, split as the grammar splits them. */
typedef struct number_token {
    const unsigned char *start; /* the '-' or first digit */
    const unsigned char *end;
    bool negative;
    const unsigned char *int_digits;
    size_t int_len;
    const unsigned char *frac_digits; /* NULL without a fraction */
    size_t frac_len;
    long long exponent; /* clamped to +-EXPONENT_CLAMP */
    bool is_real;       /* has a fraction or an exponent */
} number_token_t;

/* Past this, an exponent only matters to strtod, which reads the text. */
#define EXPONENT_CLAMP 100000

/* Splits the number at p->pos by RFC 8259's grammar: -?(0|[1-9][0-9]*),
 * then an optional fraction and exponent. Returns false on a bad token. */
static bool scan_number(parser_t *p, number_token_t *token)
{
    const unsigned char *q = p->pos;
    const unsigned char *end = p->end;
    memset(token, 0, sizeof *token);
    token->start = q;
    if (*q == '-') {
        token->negative = true;
        q++;
    }
    if (q == end || !is_digit(*q)) {
        fail_unexpected(p, q, "a digit");
        return false;
    }
    token->int_digits = q;
    if (*q == '0')
        q++;
    else
        while (q < end && is_digit(*q))
            q++;
    token->int_len = (size_t)(q - token->int_digits);

    if (q < end && *q == '.') {
        q++;
        if (q == end || !is_digit(*q)) {
            fail_unexpected(p, q, "a digit after the decimal point");
            return false;
        }
        token->frac_digits = q;
        while (q < end && is_digit(*q))
            q++;
        token->frac_len = (size_t)(q - token->frac_digits);
        token->is_real = true;
    }

    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        bool negative_exponent = false;
        if (q < end && (*q == '+' || *q == '-'))
            negative_exponent = *q++ == '-';
        if (q == end || !is_digit(*q)) {
            fail_unexpected(p, q, "a digit in the exponent");
            return false;
        }
        long long exponent = 0;
        for (; q < end && is_digit(*q); q++)
            if (exponent < EXPONENT_CLAMP)
                exponent = exponent * 10 + (*q - '0');
        token->exponent = negative_exponent ? -exponent : exponent;
        token->is_real = true;
    }
    token->end = q;
    return true;
}

/* Builds the integer of a token without fraction or exponent. What int64_t
 * cannot hold is rejected, as jansson's strtoll() rejects it. */
static json_t *make_integer(parser_t *p, const number_token_t *token)
{
    const size_t max_digits = 19; /* INT64_MAX has 19 digits */
    uint64_t limit = token->negative ? (uint64_t)INT64_MAX + 1 : INT64_MAX;
    uint64_t magnitude = 0;
    bool in_range = token->int_len <= max_digits;
    for (size_t i = 0; in_range && i < token->int_len; i++)
        magnitude = magnitude * 10 + (uint64_t)(token->int_digits[i] - '0');
    if (!in_range || magnitude > limit)
        return parse_fail(p, CEL_EDECODE, token->start,
                          "integer %s%.*s%s is outside the 64-bit range",
                          token->negative ? "-" : "",
                          token->int_len > 40 ? 40 : (int)token->int_len,
                          (const char *)token->int_digits,
                          token->int_len > 40 ? "..." : "");

    json_int_t value =
        token->negative ? (json_int_t)(0 - magnitude) : (json_int_t)magnitude;
    json_t *integer = json_integer(value);
    return integer ? integer : fail_no_memory(p);
}

/* Reads the token with strtod in the C locale, from a NUL-terminated copy
 * because the input need not be terminated. */
static bool real_from_strtod(parser_t *p, const number_token_t *token,
                             double *out)
{
    size_t len = (size_t)(token->end - token->start);
    char local[64];
    char *text = len < sizeof local ? local : malloc(len + 1);
    if (text == NULL) {
        fail_no_memory(p);
        return false;
    }
    memcpy(text, token->start, len);
    text[len] = '\0';
    errno = 0;
    double value = strtod_c(text, NULL);
    bool overflow = errno == ERANGE && isinf(value);
    if (text != local)
        free(text);
    if (overflow) {
        parse_fail(p, CEL_EDECODE, token->start,
                   "number %.*s%s is outside the range of a double",
                   len > 40 ? 40 : (int)len, (const char *)token->start,
                   len > 40 ? "..." : "");
        return false;
    }
    *out = value;
    return true;
}

/* Returns the double strtod() reads from the token. Underflow is not an
 * error and gives 0 or a subnormal, as in jansson. */
static json_t *make_real(parser_t *p, const number_token_t *token)
{
    /* Gather up to 19 significant digits, which fit in a uint64_t. */
    uint64_t mantissa = 0;
    size_t significant = 0;
    size_t total = token->int_len + token->frac_len;
    for (size_t i = 0; i < total && significant <= 19; i++) {
        unsigned char c = i < token->int_len
                              ? token->int_digits[i]
                              : token->frac_digits[i - token->int_len];
        if (significant == 0 && c == '0')
            continue;
        significant++;
        mantissa = mantissa * 10 + (uint64_t)(c - '0');
    }

    double value = 0.0;
    long long exponent = token->exponent - (long long)token->frac_len;
    if (significant == 0 ||
        (significant <= 19 &&
         decimal_to_double_exact(mantissa, exponent, &value))) {
        if (token->negative)
            value = -value;
    } else if (!real_from_strtod(p, token, &value)) {
        return NULL;
    }
    json_t *real = json_real(value);
    return real ? real : fail_no_memory(p);
}

static json_t *parse_number(parser_t *p)
{
    number_token_t token;
    if (!scan_number(p, &token))
        return NULL;
    p->pos = token.end;
    return token.is_real ? make_real(p, &token) : make_integer(p, &token);
}

/* ---- containers --------------------------------------------------------- */

static bool enter_container(parser_t *p)
{
    if (++p->depth <= p->max_depth)
        return true;
    parse_fail(p, CEL_ETOODEEP, p->pos, "nesting deeper than %d levels",
               p->max_depth);
    return false;
}

static json_t *parse_array(parser_t *p)
{
    if (!enter_container(p))
        return NULL;
    json_t *array = json_array();
    if (array == NULL)
        return fail_no_memory(p);
    p->pos++;
    skip_whitespace(p);
    if (p->pos < p->end && *p->pos == ']') {
        p->pos++;
        p->depth--;
        return array;
    }

    for (;;) {
        json_t *item = parse_value(p);
        if (item == NULL)
            goto fail;
        if (json_array_append_new(array, item) != 0) {
            fail_no_memory(p);
            goto fail;
        }
        skip_whitespace(p);
        if (p->pos < p->end && *p->pos == ',') {
            p->pos++;
            continue;
        }
        if (p->pos < p->end && *p->pos == ']') {
            p->pos++;
            break;
        }
        fail_unexpected(p, p->pos, "',' or ']'");
        goto fail;
    }
    p->depth--;
    return array;

fail:
    json_decref(array);
    return NULL;
}

/*
 * Parses one "key": value member into `object`. A repeated key replaces
 * the earlier value and keeps its place in the key order, as jansson's
 * json_object_set does. Returns 0 or -1.
 */
static int parse_member(parser_t *p, json_t *object)
{
    const unsigned char *key_start = p->pos;
    string_span_t key;
    if (p->pos >= p->end || *p->pos != '"') {
        fail_unexpected(p, p->pos, "a string key");
        return -1;
    }
    if (parse_string(p, &key) != 0)
        return -1;
    if (key.has_nul) {
        parse_fail(p, CEL_EDECODE, key_start,
                   "object key contains \\u0000, which jansson does not "
                   "support in keys");
        return -1;
    }

    /* The scratch buffer is reused by the value, so an escaped key is
     * copied first. */
    char *key_copy = NULL;
    if (key.text == p->scratch) {
        key_copy = malloc(key.len ? key.len : 1);
        if (key_copy == NULL) {
            fail_no_memory(p);
            return -1;
        }
        memcpy(key_copy, key.text, key.len);
        key.text = key_copy;
    }

    int status = -1;
    skip_whitespace(p);
    if (p->pos >= p->end || *p->pos != ':') {
        fail_unexpected(p, p->pos, "':'");
        goto out;
    }
    p->pos++;
    json_t *value = parse_value(p);
    if (value == NULL)
        goto out;
    if (json_object_setn_new_nocheck(object, key.text, key.len, value) != 0) {
        fail_no_memory(p);
        goto out;
    }
    status = 0;

out:
    free(key_copy);
    return status;
}

static json_t *parse_object(parser_t *p)
{
    if (!enter_container(p))
        return NULL;
    json_t *object = json_object();
    if (object == NULL)
        return fail_no_memory(p);
    p->pos++;
    skip_whitespace(p);
    if (p->pos < p->end && *p->pos == '}') {
        p->pos++;
        p->depth--;
        return object;
    }

    for (;;) {
        if (parse_member(p, object) != 0)
            goto fail;
        skip_whitespace(p);
        if (p->pos < p->end && *p->pos == ',') {
            p->pos++;
            skip_whitespace(p);
            continue;
        }
        if (p->pos < p->end && *p->pos == '}') {
            p->pos++;
            break;
        }
        fail_unexpected(p, p->pos, "',' or '}'");
        goto fail;
    }
    p->depth--;
    return object;

fail:
    json_decref(object);
    return NULL;
}

static json_t *parse_literal(parser_t *p, const char *word, json_t *value)
{
    size_t len = strlen(word);
    if ((size_t)(p->end - p->pos) < len || memcmp(p->pos, word, len) != 0)
        return parse_fail(p, CEL_EDECODE, p->pos,
                          "invalid literal: expected %s", word);
    p->pos += len;
    return value;
}

static json_t *parse_value(parser_t *p)
{
    skip_whitespace(p);
    if (p->pos >= p->end)
        return fail_unexpected(p, p->pos, "a JSON value");
    switch (*p->pos) {
    case '{':
        return parse_object(p);
    case '[':
        return parse_array(p);
    case '"':
        return parse_string_value(p);
    case 't':
        return parse_literal(p, "true", json_true());
    case 'f':
        return parse_literal(p, "false", json_false());
    case 'n':
        return parse_literal(p, "null", json_null());
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        return parse_number(p);
    default:
        return fail_unexpected(p, p->pos, "a JSON value");
    }
}

int cel__json_parse(const char *text, size_t len, int max_depth, json_t **out,
                    char *why, size_t why_len)
{
    const unsigned char *bytes =
        (const unsigned char *)(text != NULL ? text : "");
    parser_t p = {
        .start = bytes,
        .pos = bytes,
        .end = bytes + (text != NULL ? len : 0),
        .max_depth =
            max_depth < CEL__JSON_MAX_DEPTH ? max_depth : CEL__JSON_MAX_DEPTH,
        .status = CEL_OK,
        .why = why,
        .why_len = why_len,
    };
    *out = NULL;
    if (why != NULL && why_len > 0)
        why[0] = '\0';

    json_t *value = parse_value(&p);
    if (value != NULL) {
        skip_whitespace(&p);
        if (p.pos < p.end) {
            fail_unexpected(&p, p.pos, "the end of the input");
            json_decref(value);
            value = NULL;
        }
    }
    free(p.scratch);
    if (value == NULL)
        return p.status != CEL_OK ? p.status : CEL_EDECODE;
    *out = value;
    return CEL_OK;
}

/* ---- the writer --------------------------------------------------------- */

typedef struct writer {
    char *data; /* NUL-terminated once the dump succeeds */
    size_t len;
    size_t cap;
} writer_t;

static bool writer_grow(writer_t *w, size_t extra)
{
    if (extra > SIZE_MAX / 2 - w->len)
        return false;
    size_t needed = w->len + extra + 1;
    /* 1 KiB is room for the pool frames or the rpc result of a small task,
     * so they need no second allocation. */
    size_t cap = w->cap ? w->cap * 2 : 1024;
    /* A jump past doubling (a long string) leaves room for what usually
     * follows it, such as closing brackets, so that the next byte does not
     * copy the whole text into a larger block. */
    if (cap < needed)
        cap = needed + needed / 8 + 64;
    char *grown = realloc(w->data, cap);
    if (grown == NULL)
        return false;
    w->data = grown;
    w->cap = cap;
    return true;
}

/* Makes room for `extra` bytes and the final NUL. */
static inline bool writer_reserve(writer_t *w, size_t extra)
{
    return w->cap - w->len > extra || writer_grow(w, extra);
}

static inline bool write_bytes(writer_t *w, const void *bytes, size_t len)
{
    if (!writer_reserve(w, len))
        return false;
    memcpy(w->data + w->len, bytes, len);
    w->len += len;
    return true;
}

static inline bool write_char(writer_t *w, char c)
{
    if (!writer_reserve(w, 1))
        return false;
    w->data[w->len++] = c;
    return true;
}

/* Writes the escape of a byte below 0x20, '"' or '\\': the short form
 * where JSON has one, else \u00XX with upper-case hex as jansson writes. */
static bool write_escape(writer_t *w, unsigned char c)
{
    char escape[6] = {'\\', 0};
    size_t len = 2;
    switch (c) {
    case '"':
    case '\\':
        escape[1] = (char)c;
        break;
    case '\b':
        escape[1] = 'b';
        break;
    case '\f':
        escape[1] = 'f';
        break;
    case '\n':
        escape[1] = 'n';
        break;
    case '\r':
        escape[1] = 'r';
        break;
    case '\t':
        escape[1] = 't';
        break;
    default:
        memcpy(escape + 1, "u00", 3);
        escape[4] = "0123456789ABCDEF"[c >> 4];
        escape[5] = "0123456789ABCDEF"[c & 0xF];
        len = 6;
    }
    return write_bytes(w, escape, len);
}

/* Writes a quoted string. UTF-8 goes out as it is, after a check, because
 * json_dumps fails on invalid UTF-8 too. Returns false on invalid UTF-8 or
 * when memory runs out. */
static bool write_string(writer_t *w, const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    const unsigned char *end = p + len;
    const unsigned char *run = p; /* plain bytes not yet written */
    if (!writer_reserve(w, len + 2))
        return false;
    w->data[w->len++] = '"';

    for (;;) {
        p = skip_plain_bytes(p, end);
        if (p == end)
            break;
        if (*p >= 0x80) {
            size_t n = utf8_sequence_length(p, end);
            if (n == 0)
                return false;
            p += n;
            continue;
        }
        if (!write_bytes(w, run, (size_t)(p - run)) || !write_escape(w, *p))
            return false;
        run = ++p;
    }
    return write_bytes(w, run, (size_t)(p - run)) && write_char(w, '"');
}

/* Formats an integer into buf (at least 21 bytes). Returns its length. */
static size_t format_integer(char *buf, json_int_t value)
{
    char digits[20];
    size_t count = 0;
    uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    do {
        digits[count++] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude != 0);

    size_t len = 0;
    if (value < 0)
        buf[len++] = '-';
    while (count > 0)
        buf[len++] = digits[--count];
    return len;
}

/* A double's shortest round-trip digits: value = 0.DIGITS * 10^(exponent
 * + 1), so exponent is the power of ten of the first digit. */
typedef struct shortest_digits {
    char digits[18]; /* no trailing zeros, not NUL-terminated */
    int count;
    int exponent;
} shortest_digits_t;

/* Reads the digits and exponent of printf's "%.*e" output, dropping the
 * sign, the decimal point (whatever the locale wrote) and trailing zeros. */
static void read_scientific(const char *text, shortest_digits_t *out)
{
    const char *e = strchr(text, 'e');
    out->count = 0;
    for (const char *c = text; c < e; c++)
        if (is_digit((unsigned char)*c))
            out->digits[out->count++] = *c;
    while (out->count > 1 && out->digits[out->count - 1] == '0')
        out->count--;
    out->exponent = atoi(e + 1);
}

/* Whether the digits read back as `value` (positive and finite). */
static bool digits_round_trip(const shortest_digits_t *digits,
                              const char *scientific, double value)
{
    uint64_t mantissa = 0;
    for (int i = 0; i < digits->count; i++)
        mantissa = mantissa * 10 + (uint64_t)(digits->digits[i] - '0');
    double back;
    if (!decimal_to_double_exact(mantissa,
                                 digits->exponent - (digits->count - 1), &back))
        back = strtod_c(scientific, NULL);
    return back == value;
}

/*
 * Finds the shortest digits that read back as `value` (positive, finite,
 * not 0), and of those the nearest, as Python's float repr does. printf
 * rounds correctly, so "%.*e" gives the nearest decimal of each length.
 * For a normal double, at most one 15-digit decimal lies within half an
 * ulp, so when some form of 15 digits or fewer reads back, "%.14e" prints
 * it (with trailing zeros), and the search can start at 15 digits. A
 * subnormal has fewer bits, so its search starts at 1.
 */
static void find_shortest_digits(double value, shortest_digits_t *out)
{
    char scientific[40];
    locale_t locale = c_locale_get();
    locale_t previous = locale ? uselocale(locale) : (locale_t)0;
    int shortest = value < DBL_MIN ? 1 : 15;
    for (int precision = shortest; precision <= 17; precision++) {
        snprintf(scientific, sizeof scientific, "%.*e", precision - 1, value);
        read_scientific(scientific, out);
        if (precision == 17 || digits_round_trip(out, scientific, value))
            break;
    }
    if (locale)
        uselocale(previous);
}

/*
 * Formats a finite double as Python's repr() does, so that it reads back as
 * the same double: the shortest digits, fixed notation for exponents from
 * -4 to 15 (1e-05, 0.0001, 1000000000000000.0, 1e+16) and ".0" on whole
 * numbers. buf needs 32 bytes. Returns the length.
 */
static size_t format_real(char *buf, double value)
{
    size_t len = 0;
    if (signbit(value)) {
        buf[len++] = '-';
        value = -value;
    }
    if (value == 0) {
        memcpy(buf + len, "0.0", 3);
        return len + 3;
    }
    if (value < 1e16 && value == floor(value)) {
        len += format_integer(buf + len, (json_int_t)value);
        memcpy(buf + len, ".0", 2);
        return len + 2;
    }

    shortest_digits_t d;
    find_shortest_digits(value, &d);
    if (d.exponent < -4 || d.exponent >= 16) {
        buf[len++] = d.digits[0];
        if (d.count > 1) {
            buf[len++] = '.';
            memcpy(buf + len, d.digits + 1, (size_t)d.count - 1);
            len += (size_t)d.count - 1;
        }
        int written = snprintf(buf + len, 8, "e%c%02d",
                               d.exponent < 0 ? '-' : '+', abs(d.exponent));
        return len + (size_t)written;
    }
    if (d.exponent < 0) {
        memcpy(buf + len, "0.", 2);
        len += 2;
        for (int i = -1; i > d.exponent; i--)
            buf[len++] = '0';
        memcpy(buf + len, d.digits, (size_t)d.count);
        return len + (size_t)d.count;
    }
    for (int i = 0; i <= d.exponent; i++)
        buf[len++] = i < d.count ? d.digits[i] : '0';
    buf[len++] = '.';
    if (d.count > d.exponent + 1) {
        memcpy(buf + len, d.digits + d.exponent + 1,
               (size_t)(d.count - d.exponent - 1));
        return len + (size_t)(d.count - d.exponent - 1);
    }
    buf[len++] = '0';
    return len;
}

static bool write_value(writer_t *w, json_t *value, int depth);

static bool write_array(writer_t *w, json_t *array, int depth)
{
    size_t size = json_array_size(array);
    if (!write_char(w, '['))
        return false;
    for (size_t i = 0; i < size; i++) {
        if (i > 0 && !write_char(w, ','))
            return false;
        if (!write_value(w, json_array_get(array, i), depth))
            return false;
    }
    return write_char(w, ']');
}

/* Keys go out in insertion order, as json_dumps writes them without
 * JSON_SORT_KEYS. */
static bool write_object(writer_t *w, json_t *object, int depth)
{
    if (!write_char(w, '{'))
        return false;
    bool first = true;
    for (void *iter = json_object_iter(object); iter != NULL;
         iter = json_object_iter_next(object, iter)) {
        if (!first && !write_char(w, ','))
            return false;
        first = false;
        if (!write_string(w, json_object_iter_key(iter),
                          json_object_iter_key_len(iter)) ||
            !write_char(w, ':') ||
            !write_value(w, json_object_iter_value(iter), depth))
            return false;
    }
    return write_char(w, '}');
}

/* `depth` counts the containers around `value`. Past CEL__JSON_MAX_DEPTH
 * the dump fails, which also ends a cycle of containers. */
static bool write_value(writer_t *w, json_t *value, int depth)
{
    char number[32];
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return depth < CEL__JSON_MAX_DEPTH && write_object(w, value, depth + 1);
    case JSON_ARRAY:
        return depth < CEL__JSON_MAX_DEPTH && write_array(w, value, depth + 1);
    case JSON_STRING:
        return write_string(w, json_string_value(value),
                            json_string_length(value));
    case JSON_INTEGER:
        return write_bytes(w, number,
                           format_integer(number, json_integer_value(value)));
    case JSON_REAL:
        return write_bytes(w, number,
                           format_real(number, json_real_value(value)));
    case JSON_TRUE:
        return write_bytes(w, "true", 4);
    case JSON_FALSE:
        return write_bytes(w, "false", 5);
    case JSON_NULL:
        return write_bytes(w, "null", 4);
    }
    return false;
}

char *cel__json_dump(json_t *value, size_t *len)
{
    writer_t w = {0};
    if (value == NULL || !write_value(&w, value, 0) || !writer_reserve(&w, 0)) {
        free(w.data);
        return NULL;
    }
    w.data[w.len] = '\0';
    if (len != NULL)
        *len = w.len;
    return w.data;
}

char *cel__json_dump_members(const cel__json_member_t *members, size_t count,
                             size_t *len)
{
    writer_t w = {0};
    bool ok = write_char(&w, '{');
    for (size_t i = 0; ok && i < count; i++) {
        const cel__json_member_t *m = &members[i];
        ok = (i == 0 || write_char(&w, ',')) &&
             write_string(&w, m->key, strlen(m->key)) && write_char(&w, ':');
        if (!ok)
            break;
        /* Depth 1, as for the members of a dumped object. */
        if (m->value != NULL)
            ok = write_value(&w, m->value, 1);
        else if (m->text != NULL)
            ok = write_string(&w, m->text, strlen(m->text));
        else if (m->raw != NULL)
            ok = write_bytes(&w, m->raw, strlen(m->raw));
        else
            ok = write_bytes(&w, "null", 4);
    }
    if (!ok || !write_char(&w, '}') || !writer_reserve(&w, 0)) {
        free(w.data);
        return NULL;
    }
    w.data[w.len] = '\0';
    if (len != NULL)
        *len = w.len;
    return w.data;
}

size_t cel__json_format_integer(char *buf, json_int_t value)
{
    size_t len = format_integer(buf, value);
    buf[len] = '\0';
    return len;
}

size_t cel__utf8_sequence_length(const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *)text;
    return utf8_sequence_length(p, p + len);
}
