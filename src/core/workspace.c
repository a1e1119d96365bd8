/* workspace.c - a reusable scratch buffer (see workspace.h). */
#include "workspace.h"

#include "tensor.h"

void *workspace_get(workspace *w, size_t bytes)
{
    if (w->data && w->bytes >= bytes)
        return w->data;
    /* what it held is scratch: free before allocating, never copy */
    workspace_free(w);
    w->data = lego_aligned_alloc(bytes ? bytes : 64);
    w->bytes = w->data ? bytes : 0;
    return w->data;
}

void workspace_free(workspace *w)
{
    lego_aligned_free(w->data);
    w->data = NULL;
    w->bytes = 0;
}
