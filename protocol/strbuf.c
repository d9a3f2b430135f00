#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(cel__strbuf_t *sb, size_t extra)
{
    if (sb->failed)
        return false;
    if (sb->len + extra + 1 <= sb->cap)
        return true;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + extra + 1)
        cap *= 2;
    char *grown = realloc(sb->data, cap);
    if (grown == NULL) {
        sb->failed = true;
        return false;
    }
    sb->data = grown;
    sb->cap = cap;
    return true;
}

void cel__strbuf_append(cel__strbuf_t *sb, const char *text, size_t len)
{
    if (!reserve(sb, len))
        return;
    memcpy(sb->data + sb->len, text, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
}

void cel__strbuf_puts(cel__strbuf_t *sb, const char *text)
{
    cel__strbuf_append(sb, text, strlen(text));
}

void cel__strbuf_printf(cel__strbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int needed = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (needed < 0 || !reserve(sb, (size_t)needed))
        return;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)needed + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)needed;
}

char *cel__strbuf_take(cel__strbuf_t *sb)
{
    if (sb->failed) {
        free(sb->data);
        sb->data = NULL;
        return NULL;
    }
    if (sb->data == NULL)
        return strdup("");
    char *text = sb->data;
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return text;
}
