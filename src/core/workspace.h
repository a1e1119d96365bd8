/* workspace.h - scratch memory that kernels reuse from call to call.
 *
 * A kernel whose calls need large transient buffers (oneDNN's training
 * convolutions: the batch reordered for the weight gradient, each thread's
 * block of dY) takes them from a workspace instead of malloc'ing and
 * freeing them on every call. glibc raises its mmap threshold past every
 * large block it frees and then keeps such blocks in its heap, so per-call
 * buffers stayed resident anyway, in several heaps and not reused across
 * them. A workspace holds one buffer that grows to the largest request and
 * stays until workspace_free.
 *
 * Not thread-safe: one caller at a time (a train plan's steps run one
 * after another; plans that never run at the same time may share one). */
#ifndef LEGO_CORE_WORKSPACE_H
#define LEGO_CORE_WORKSPACE_H

#include <stddef.h>

typedef struct workspace {
    void *data;   /* 64-byte aligned, or NULL */
    size_t bytes; /* its size */
} workspace;

/* At least `bytes` bytes, 64-byte aligned, contents undefined; valid until
 * the next workspace_get or workspace_free. NULL when out of memory (the
 * workspace is then empty). */
void *workspace_get(workspace *w, size_t bytes);

void workspace_free(workspace *w);

#endif
