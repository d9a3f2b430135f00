/*
 * A cache of small blocks for jansson. A task message becomes about a
 * hundred small jansson values that are freed a moment later. glibc's
 * per-thread cache keeps 7 free blocks per size by default, so most of
 * those calls took its slower paths: a fifth of the worker's instructions
 * in a callgrind profile. Here blocks of up to 256 bytes wait on
 * per-thread free lists instead, one list per size class.
 *
 * The cached blocks are ordinary malloc blocks, so free() may release
 * them, as code that follows jansson's documentation for json_dumps does.
 * malloc_usable_size gives a freed block's size class.
 */
#include <malloc.h>
#include <stdlib.h>

#include "internal.h"

#define CLASS_COUNT 8
/* Free blocks kept per class and thread: about 450 KiB per thread at most. */
#define KEEP_MAX 512

static const size_t CLASS_SIZE[CLASS_COUNT] = {16, 32,  48,  64,
                                               96, 128, 192, 256};

/* Size class by (size + 15) / 16, for sizes up to 256. */
static const unsigned char CLASS_BY_16[17] = {0, 0, 1, 2, 3, 4, 4, 5, 5,
                                              6, 6, 6, 6, 7, 7, 7, 7};

typedef struct free_block {
    struct free_block *next;
} free_block_t;

static __thread free_block_t *free_list[CLASS_COUNT];
static __thread unsigned free_count[CLASS_COUNT];

static void *cached_malloc(size_t size)
{
    if (size > 256)
        return malloc(size);
    unsigned size_class = CLASS_BY_16[(size + 15) >> 4];
    free_block_t *reused = free_list[size_class];
    if (reused == NULL)
        return malloc(CLASS_SIZE[size_class]);
    free_list[size_class] = reused->next;
    free_count[size_class]--;
    return reused;
}

static void cached_free(void *pointer)
{
    if (pointer == NULL)
        return;
    size_t usable = malloc_usable_size(pointer);
    if (usable < CLASS_SIZE[0] || usable >= CLASS_SIZE[CLASS_COUNT - 1] + 64) {
        free(pointer);
        return;
    }
    /* The largest class that fits in the block. */
    unsigned size_class = CLASS_COUNT - 1;
    while (CLASS_SIZE[size_class] > usable)
        size_class--;
    if (free_count[size_class] >= KEEP_MAX) {
        free(pointer);
        return;
    }
    free_block_t *block = pointer;
    block->next = free_list[size_class];
    free_list[size_class] = block;
    free_count[size_class]++;
}

void cel__json_cache_allocations(void)
{
#if defined(__SANITIZE_ADDRESS__)
    /* Blocks reused from a list would hide use-after-free from ASan. The
     * casts keep the unused functions from warning in this build. */
    (void)cached_malloc;
    (void)cached_free;
    return;
#else
    json_malloc_t current_malloc;
    json_free_t current_free;
    json_get_alloc_funcs(&current_malloc, &current_free);
    /* A program that set its own allocation functions keeps them. */
    if (current_malloc == malloc && current_free == free)
        json_set_alloc_funcs(cached_malloc, cached_free);
#endif
}
