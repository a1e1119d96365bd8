/* arena.c - chunked bump allocation. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor.h"

struct arena_chunk {
    arena_chunk *next;
    size_t size, pos;
    unsigned char *mem;
};

void arena_init(arena *a, size_t chunk_size)
{
    a->head = NULL;
    a->chunk_size = chunk_size ? chunk_size : (1u << 20);
    a->used = 0;
}

static arena_chunk *chunk_new(size_t size)
{
    arena_chunk *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    c->mem = lego_aligned_alloc(size);
    if (!c->mem) {
        free(c);
        return NULL;
    }
    c->size = size;
    c->pos = 0;
    c->next = NULL;
    return c;
}

void *arena_alloc(arena *a, size_t bytes)
{
    size_t need = (bytes + 63) & ~(size_t)63;
    if (need == 0)
        need = 64;
    if (!a->head || a->head->size - a->head->pos < need) {
        size_t size = need > a->chunk_size ? need : a->chunk_size;
        arena_chunk *c = chunk_new(size);
        if (!c)
            return NULL;
        c->next = a->head;
        a->head = c;
    }
    void *p = a->head->mem + a->head->pos;
    a->head->pos += need;
    a->used += need;
    memset(p, 0, bytes);
    return p;
}

void arena_reset(arena *a)
{
    /* Keep only the oldest chunk: a steady state then needs one allocation. */
    arena_chunk *c = a->head, *last = NULL;
    while (c) {
        arena_chunk *next = c->next;
        if (next) {
            lego_aligned_free(c->mem);
            free(c);
        } else {
            last = c;
        }
        c = next;
    }
    if (last)
        last->pos = 0;
    a->head = last;
    a->used = 0;
}

void arena_free(arena *a)
{
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        lego_aligned_free(c->mem);
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used = 0;
}
