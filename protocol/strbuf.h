/* A growable byte buffer used by the encoders. Internal. */
#ifndef CELERIAC_STRBUF_H
#define CELERIAC_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct cel__strbuf {
    char *data; /* always NUL-terminated when not NULL */
    size_t len;
    size_t cap;
    bool failed; /* set once an allocation fails; later appends are no-ops */
} cel__strbuf_t;

void cel__strbuf_append(cel__strbuf_t *sb, const char *text, size_t len);
void cel__strbuf_puts(cel__strbuf_t *sb, const char *text);
void cel__strbuf_printf(cel__strbuf_t *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hands over the text (caller frees) or NULL when an append failed. */
char *cel__strbuf_take(cel__strbuf_t *sb);

#endif
