/* test_core.c - status values, tensors and the arena. */
#include <string.h>

#include "core/arena.h"
#include "core/status.h"
#include "core/tensor.h"
#include "core/workspace.h"
#include "harness.h"

static lego_status fails_deep(void)
{
    return lego_error(LEGO_ERR_SHAPE, "kernel %dx%d does not match", 3, 5);
}

static lego_status fails_with_context(void)
{
    LEGO_TRY(lego_error_context(fails_deep(), "node '%s'", "Conv_1"));
    return lego_ok();
}

int main(void)
{
    lego_status st = fails_with_context();
    CHECK(st.code == LEGO_ERR_SHAPE);
    CHECK(strcmp(lego_status_msg(st), "node 'Conv_1': kernel 3x5 does not match") == 0);
    lego_status_free(&st);
    CHECK(st.msg == NULL);
    CHECK(strcmp(lego_status_msg(lego_ok()), "ok") == 0);

    lego_tensor t = {0};
    int64_t dims[4] = {2, 3, 4, 5};
    tensor_set_shape(&t, LEGO_F32, 4, dims);
    CHECK(lego_tensor_numel(&t) == 120);
    CHECK(lego_tensor_bytes(&t) == 480);
    CHECK_OK(tensor_alloc(&t));
    CHECK(((uintptr_t)t.data & 63) == 0);
    char buf[64];
    CHECK(strcmp(tensor_shape_str(&t, buf, sizeof buf), "2x3x4x5") == 0);
    int64_t strides[4];
    tensor_strides(&t, strides);
    CHECK(strides[0] == 60 && strides[1] == 20 && strides[2] == 5 && strides[3] == 1);
    lego_tensor c;
    ((float *)t.data)[7] = 3.5f;
    CHECK_OK(tensor_clone(&t, &c));
    CHECK(((float *)c.data)[7] == 3.5f && c.data != t.data);
    tensor_release(&c);
    tensor_release(&t);
    CHECK(t.data == NULL);

    arena a;
    arena_init(&a, 256);
    char *p = arena_alloc(&a, 100), *q = arena_alloc(&a, 1000);
    CHECK(p && q && ((uintptr_t)p & 63) == 0 && ((uintptr_t)q & 63) == 0);
    memset(q, 1, 1000);
    CHECK(a.used >= 1100);
    arena_reset(&a);
    CHECK(a.used == 0);
    arena_free(&a);

    /* a workspace grows to the largest request and is then reused */
    workspace w = {0};
    char *w1 = workspace_get(&w, 1000);
    CHECK(w1 && ((uintptr_t)w1 & 63) == 0 && w.bytes >= 1000);
    memset(w1, 1, 1000);
    CHECK(workspace_get(&w, 10) == w1 && w.bytes >= 1000);
    char *w2 = workspace_get(&w, 5000);
    CHECK(w2 && ((uintptr_t)w2 & 63) == 0 && w.bytes >= 5000);
    memset(w2, 2, 5000);
    workspace_free(&w);
    CHECK(w.data == NULL && w.bytes == 0);
    return harness_finish();
}
