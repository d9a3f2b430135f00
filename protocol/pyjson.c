/* JSON text exactly as Python's json.dumps() writes it with its defaults,
 * which kombu's json serializer keeps: ", " and ": " separators,
 * ensure_ascii escapes and float repr. Redis stores these bytes, and a
 * sorted set compares members byte for byte, so entries written by a
 * Python worker and by celeriac must be identical. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "strbuf.h"

static void dump_value(cel__strbuf_t *sb, json_t *value);

/* Decodes one UTF-8 sequence at text[*i] and advances *i past it. jansson
 * strings contain only valid UTF-8, so no error path is needed. */
static uint32_t next_code_point(const unsigned char *text, size_t *i)
{
    unsigned char lead = text[*i];
    int extra;
    uint32_t code;
    if (lead < 0x80) {
        extra = 0;
        code = lead;
    } else if (lead < 0xE0) {
        extra = 1;
        code = lead & 0x1Fu;
    } else if (lead < 0xF0) {
        extra = 2;
        code = lead & 0x0Fu;
    } else {
        extra = 3;
        code = lead & 0x07u;
    }
    for (int k = 1; k <= extra; k++)
        code = (code << 6) | (text[*i + (size_t)k] & 0x3Fu);
    *i += (size_t)extra + 1;
    return code;
}

static void dump_escape(cel__strbuf_t *sb, uint32_t code)
{
    if (code < 0x10000) {
        cel__strbuf_printf(sb, "\\u%04x", code);
        return;
    }
    code -= 0x10000;
    cel__strbuf_printf(sb, "\\u%04x\\u%04x", 0xD800 + (code >> 10),
                       0xDC00 + (code & 0x3FF));
}

/* Python's ensure_ascii escaping: the short escapes for quote, backslash
 * and five control characters, \uXXXX (lower-case hex, surrogate pairs
 * above U+FFFF) for everything outside printable ASCII, DEL included. */
static void dump_string(cel__strbuf_t *sb, const char *text, size_t len)
{
    const unsigned char *bytes = (const unsigned char *)text;
    cel__strbuf_puts(sb, "\"");
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && bytes[i] >= 0x20 && bytes[i] <= 0x7E &&
               bytes[i] != '"' && bytes[i] != '\\')
            i++;
        cel__strbuf_append(sb, text + start, i - start);
        if (i == len)
            break;
        uint32_t code = next_code_point(bytes, &i);
        switch (code) {
        case '"':
            cel__strbuf_puts(sb, "\\\"");
            break;
        case '\\':
            cel__strbuf_puts(sb, "\\\\");
            break;
        case '\n':
            cel__strbuf_puts(sb, "\\n");
            break;
        case '\r':
            cel__strbuf_puts(sb, "\\r");
            break;
        case '\t':
            cel__strbuf_puts(sb, "\\t");
            break;
        case '\b':
            cel__strbuf_puts(sb, "\\b");
            break;
        case '\f':
            cel__strbuf_puts(sb, "\\f");
            break;
        default:
            dump_escape(sb, code);
        }
    }
    cel__strbuf_puts(sb, "\"");
}

static void dump_array(cel__strbuf_t *sb, json_t *array)
{
    size_t index;
    json_t *item;
    cel__strbuf_puts(sb, "[");
    json_array_foreach(array, index, item) {
        if (index > 0)
            cel__strbuf_puts(sb, ", ");
        dump_value(sb, item);
    }
    cel__strbuf_puts(sb, "]");
}

/* Keys come out in insertion order, as a Python dict keeps them. */
static void dump_object(cel__strbuf_t *sb, json_t *object)
{
    const char *key;
    json_t *item;
    bool first = true;
    cel__strbuf_puts(sb, "{");
    json_object_foreach(object, key, item) {
        if (!first)
            cel__strbuf_puts(sb, ", ");
        first = false;
        dump_string(sb, key, strlen(key));
        cel__strbuf_puts(sb, ": ");
        dump_value(sb, item);
    }
    cel__strbuf_puts(sb, "}");
}

/* json.dumps writes floats with float.__repr__, which cel__pyrepr
 * reproduces. A jansson real cannot be NaN or infinite, so Python's NaN
 * and Infinity spellings are not needed. */
static void dump_real(cel__strbuf_t *sb, json_t *real)
{
    char *repr = cel__pyrepr(real, 64, false);
    if (repr == NULL) {
        sb->failed = true;
        return;
    }
    cel__strbuf_puts(sb, repr);
    free(repr);
}

static void dump_value(cel__strbuf_t *sb, json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        dump_object(sb, value);
        break;
    case JSON_ARRAY:
        dump_array(sb, value);
        break;
    case JSON_STRING:
        dump_string(sb, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        cel__strbuf_printf(sb, "%" JSON_INTEGER_FORMAT,
                           json_integer_value(value));
        break;
    case JSON_REAL:
        dump_real(sb, value);
        break;
    case JSON_TRUE:
        cel__strbuf_puts(sb, "true");
        break;
    case JSON_FALSE:
        cel__strbuf_puts(sb, "false");
        break;
    case JSON_NULL:
        cel__strbuf_puts(sb, "null");
        break;
    }
}

char *cel__json_dumps_python(json_t *value)
{
    cel__strbuf_t sb = {0};
    if (value == NULL)
        cel__strbuf_puts(&sb, "null");
    else
        dump_value(&sb, value);
    return cel__strbuf_take(&sb);
}
