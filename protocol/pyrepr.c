/* Celery's saferepr() of JSON values, for argsrepr, events and log lines. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "strbuf.h"

#define MAX_LEVELS 3

static void repr_value(cel__strbuf_t *sb, json_t *value, int depth);

/* Strings as Celery's saferepr prints them: single quotes, a quote inside
 * escaped as \', every other character kept as it is. */
static void repr_string(cel__strbuf_t *sb, const char *text, size_t len)
{
    cel__strbuf_puts(sb, "'");
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\'')
            cel__strbuf_puts(sb, "\\'");
        else
            cel__strbuf_append(sb, &text[i], 1);
    }
    cel__strbuf_puts(sb, "'");
}

/* Python's float repr: the shortest digits that read back the same, fixed
 * notation for exponents from -4 to 15, scientific otherwise. */
static void repr_real(cel__strbuf_t *sb, double value)
{
    if (isnan(value)) {
        cel__strbuf_puts(sb, "nan");
        return;
    }
    if (isinf(value)) {
        cel__strbuf_puts(sb, value < 0 ? "-inf" : "inf");
        return;
    }
    char sci[40];
    int precision;
    for (precision = 1; precision <= 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision - 1, value);
        if (strtod(sci, NULL) == value)
            break;
    }
    int exponent = atoi(strchr(sci, 'e') + 1);
    if (exponent >= -4 && exponent < 16) {
        int decimals = precision - 1 - exponent;
        char fixed[64];
        snprintf(fixed, sizeof fixed, "%.*f", decimals > 0 ? decimals : 0,
                 value);
        cel__strbuf_puts(sb, fixed);
        if (strchr(fixed, '.') == NULL)
            cel__strbuf_puts(sb, ".0");
        return;
    }
    char *e = strchr(sci, 'e');
    *e = '\0';
    char *mantissa_end = e - 1;
    if (strchr(sci, '.') != NULL) {
        while (*mantissa_end == '0')
            *mantissa_end-- = '\0';
        if (*mantissa_end == '.')
            *mantissa_end = '\0';
    }
    cel__strbuf_printf(sb, "%se%c%02d", sci, exponent < 0 ? '-' : '+',
                       abs(exponent));
}

static void repr_array(cel__strbuf_t *sb, json_t *array, int depth,
                       bool as_tuple)
{
    cel__strbuf_puts(sb, as_tuple ? "(" : "[");
    size_t index;
    json_t *item;
    json_array_foreach(array, index, item) {
        if (index > 0)
            cel__strbuf_puts(sb, ", ");
        repr_value(sb, item, depth + 1);
    }
    if (as_tuple && json_array_size(array) == 1)
        cel__strbuf_puts(sb, ",");
    cel__strbuf_puts(sb, as_tuple ? ")" : "]");
}

static void repr_object(cel__strbuf_t *sb, json_t *object, int depth)
{
    cel__strbuf_puts(sb, "{");
    const char *key;
    json_t *item;
    bool first = true;
    json_object_foreach(object, key, item) {
        if (!first)
            cel__strbuf_puts(sb, ", ");
        first = false;
        repr_string(sb, key, strlen(key));
        cel__strbuf_puts(sb, ": ");
        repr_value(sb, item, depth + 1);
    }
    cel__strbuf_puts(sb, "}");
}

static void repr_value(cel__strbuf_t *sb, json_t *value, int depth)
{
    /* saferepr's maxlevels=3: containers nested deeper print as {...}. */
    if (depth >= MAX_LEVELS && json_is_array(value)) {
        cel__strbuf_puts(sb, "[...]");
        return;
    }
    if (depth >= MAX_LEVELS && json_is_object(value)) {
        cel__strbuf_puts(sb, "{...}");
        return;
    }
    switch (json_typeof(value)) {
    case JSON_NULL:
        cel__strbuf_puts(sb, "None");
        break;
    case JSON_TRUE:
        cel__strbuf_puts(sb, "True");
        break;
    case JSON_FALSE:
        cel__strbuf_puts(sb, "False");
        break;
    case JSON_INTEGER:
        cel__strbuf_printf(sb, "%" JSON_INTEGER_FORMAT,
                           json_integer_value(value));
        break;
    case JSON_REAL:
        repr_real(sb, json_real_value(value));
        break;
    case JSON_STRING:
        repr_string(sb, json_string_value(value), json_string_length(value));
        break;
    case JSON_ARRAY:
        repr_array(sb, value, depth, false);
        break;
    case JSON_OBJECT:
        repr_object(sb, value, depth);
        break;
    }
}

char *cel__pyrepr(json_t *value, size_t max_len, bool as_tuple)
{
    cel__strbuf_t sb = {0};
    if (value == NULL)
        cel__strbuf_puts(&sb, "None");
    else if (as_tuple && json_is_array(value))
        repr_array(&sb, value, 0, true);
    else
        repr_value(&sb, value, 0);
    if (!sb.failed && max_len > 3 && sb.len > max_len) {
        sb.len = max_len - 3;
        /* Cut on a UTF-8 character boundary so the text stays valid. */
        while (sb.len > 0 && ((unsigned char)sb.data[sb.len] & 0xC0) == 0x80)
            sb.len--;
        sb.data[sb.len] = '\0';
        cel__strbuf_puts(&sb, "...");
    }
    return cel__strbuf_take(&sb);
}
