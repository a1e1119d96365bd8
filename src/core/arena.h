/* arena.h - a bump allocator for memory that dies all at once
 * (activation buffers of one execution plan, scratch space). */
#ifndef LEGO_CORE_ARENA_H
#define LEGO_CORE_ARENA_H

#include <stddef.h>

typedef struct arena_chunk arena_chunk;

typedef struct arena {
    arena_chunk *head;
    size_t chunk_size; /* default size of new chunks */
    size_t used;       /* bytes handed out, for statistics */
} arena;

void arena_init(arena *a, size_t chunk_size);
/* 64-byte aligned, zeroed; NULL when out of memory. */
void *arena_alloc(arena *a, size_t bytes);
void arena_reset(arena *a); /* forget all allocations, keep the first chunk */
void arena_free(arena *a);

#endif
