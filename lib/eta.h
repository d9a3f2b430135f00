/* A min-heap of requests ordered by their ETA. Internal. */
#ifndef CELERIAC_LIB_ETA_H
#define CELERIAC_LIB_ETA_H

#include <stddef.h>

#include "internal.h"

typedef struct cel__eta_heap {
    cel__request_t **items;
    size_t count;
    size_t cap;
} cel__eta_heap_t;

/* Adds a request (the heap takes ownership). Returns 0 or CEL_ENOMEM. */
int cel__eta_push(cel__eta_heap_t *heap, cel__request_t *request);

/* The earliest request, still in the heap, or NULL when empty. */
cel__request_t *cel__eta_peek(const cel__eta_heap_t *heap);

/* Removes and returns the earliest request (ownership passes back). */
cel__request_t *cel__eta_pop(cel__eta_heap_t *heap);

/* Frees every request left and the heap's storage. */
void cel__eta_clear(cel__eta_heap_t *heap);

#endif
