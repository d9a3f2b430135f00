#include "eta.h"

#include <stdlib.h>

static double due(const cel__eta_heap_t *heap, size_t index)
{
    return heap->items[index]->msg.eta_ts;
}

static void swap(cel__eta_heap_t *heap, size_t a, size_t b)
{
    cel__request_t *held = heap->items[a];
    heap->items[a] = heap->items[b];
    heap->items[b] = held;
}

int cel__eta_push(cel__eta_heap_t *heap, cel__request_t *request)
{
    if (heap->count == heap->cap) {
        size_t cap = heap->cap ? heap->cap * 2 : 16;
        cel__request_t **grown = realloc(heap->items, cap * sizeof *grown);
        if (grown == NULL)
            return CEL_ENOMEM;
        heap->items = grown;
        heap->cap = cap;
    }
    size_t index = heap->count++;
    heap->items[index] = request;
    while (index > 0 && due(heap, (index - 1) / 2) > due(heap, index)) {
        swap(heap, index, (index - 1) / 2);
        index = (index - 1) / 2;
    }
    return CEL_OK;
}

cel__request_t *cel__eta_peek(const cel__eta_heap_t *heap)
{
    return heap->count ? heap->items[0] : NULL;
}

cel__request_t *cel__eta_pop(cel__eta_heap_t *heap)
{
    if (heap->count == 0)
        return NULL;
    cel__request_t *top = heap->items[0];
    heap->items[0] = heap->items[--heap->count];
    size_t index = 0;
    for (;;) {
        size_t left = index * 2 + 1, right = left + 1, smallest = index;
        if (left < heap->count && due(heap, left) < due(heap, smallest))
            smallest = left;
        if (right < heap->count && due(heap, right) < due(heap, smallest))
            smallest = right;
        if (smallest == index)
            break;
        swap(heap, index, smallest);
        index = smallest;
    }
    return top;
}

void cel__eta_clear(cel__eta_heap_t *heap)
{
    for (size_t i = 0; i < heap->count; i++)
        cel__request_free(heap->items[i]);
    free(heap->items);
    heap->items = NULL;
    heap->count = heap->cap = 0;
}
