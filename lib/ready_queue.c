/* The FIFO of due requests waiting for an idle pool slot. */
#include <stdlib.h>

#include "worker_internal.h"

/* Makes room for one more request. */
static int reserve(cel__request_queue_t *queue)
{
    if (queue->count < queue->cap)
        return CEL_OK;
    size_t cap = queue->cap ? queue->cap * 2 : 64;
    cel__request_t **items = malloc(cap * sizeof *items);
    if (items == NULL)
        return CEL_ENOMEM;
    for (size_t i = 0; i < queue->count; i++)
        items[i] = queue->items[(queue->head + i) % queue->cap];
    free(queue->items);
    queue->items = items;
    queue->cap = cap;
    queue->head = 0;
    return CEL_OK;
}

int cel__ready_push(cel__request_queue_t *queue, cel__request_t *request)
{
    if (reserve(queue) != CEL_OK)
        return CEL_ENOMEM;
    queue->items[(queue->head + queue->count) % queue->cap] = request;
    queue->count++;
    return CEL_OK;
}

int cel__ready_push_front(cel__request_queue_t *queue, cel__request_t *request)
{
    if (reserve(queue) != CEL_OK)
        return CEL_ENOMEM;
    queue->head = (queue->head + queue->cap - 1) % queue->cap;
    queue->items[queue->head] = request;
    queue->count++;
    return CEL_OK;
}

cel__request_t *cel__ready_pop(cel__request_queue_t *queue)
{
    if (queue->count == 0)
        return NULL;
    cel__request_t *request = queue->items[queue->head];
    queue->head = (queue->head + 1) % queue->cap;
    queue->count--;
    return request;
}

void cel__ready_clear(cel__request_queue_t *queue)
{
    cel__request_t *request;
    while ((request = cel__ready_pop(queue)) != NULL)
        cel__request_free(request);
    free(queue->items);
    queue->items = NULL;
    queue->cap = 0;
    queue->head = 0;
}
