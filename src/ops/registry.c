/* registry.c - the one table of supported ops, and helpers shared by op files. */
#include "op.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPS(X)                                                                        \
    X(Add) X(Sub) X(Mul) X(Div) X(Pow) X(Sqrt) X(Equal) X(Where)                      \
    X(Relu) X(LeakyRelu) X(Clip) X(Sigmoid) X(Tanh) X(Softmax)                        \
    X(Conv) X(ConvTranspose)                                                          \
    X(AveragePool) X(MaxPool) X(GlobalAveragePool) X(GlobalMaxPool)                   \
    X(BatchNormalization) X(Gemm) X(MatMul)                                           \
    X(ReduceMean) X(ReduceMax) X(ReduceSum)                                                        \
    X(Reshape) X(Flatten) X(Squeeze) X(Unsqueeze) X(Transpose) X(Concat) X(Slice)     \
    X(Gather) X(Expand) X(Shape) X(Identity) X(Dropout) X(Constant) X(Cast)           \
    X(ConstantOfShape) X(Pad) X(Resize)

#define DECLARE(name) extern const op_desc op_desc_##name;
OPS(DECLARE)
#undef DECLARE

#define ENTRY(name) &op_desc_##name,
static const op_desc *const op_table[] = {OPS(ENTRY)};
#undef ENTRY

#define COUNT(name) +1
enum { OP_COUNT = 0 OPS(COUNT) };
#undef COUNT
_Static_assert(sizeof op_table / sizeof op_table[0] == OP_COUNT, "op table out of step");

const op_desc *op_find(const char *op_type)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(op_table[i]->name, op_type) == 0)
            return op_table[i];
    return NULL;
}

const op_desc *const *op_all(int *count)
{
    *count = OP_COUNT;
    return op_table;
}

lego_status op_error(const op_call *c, lego_code code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    (void)c; /* the graph layer adds the node name and op type */
    return lego_error(code, "%s", buf);
}

lego_status op_axis(const op_call *c, int64_t axis, int rank, int *out)
{
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank)
        return op_error(c, LEGO_ERR_SHAPE, "axis %lld is out of range for rank %d",
                        (long long)axis, rank);
    *out = (int)a;
    return lego_ok();
}

lego_status op_axis_once(const op_call *c, int64_t axis, int rank, bool *seen, int *out)
{
    LEGO_TRY(op_axis(c, axis, rank, out));
    if (seen[*out])
        return op_error(c, LEGO_ERR_SHAPE, "axis %lld is listed twice", (long long)axis);
    seen[*out] = true;
    return lego_ok();
}

lego_status op_broadcast_shape(const op_call *c, const lego_tensor *a, const lego_tensor *b,
                               lego_tensor *out)
{
    int rank = a->rank > b->rank ? a->rank : b->rank;
    int64_t dims[LEGO_MAX_RANK];
    for (int i = 0; i < rank; i++) {
        int ia = i - (rank - a->rank), ib = i - (rank - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1;
        int64_t db = ib >= 0 ? b->dims[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[96], sb[96];
            return op_error(c, LEGO_ERR_SHAPE, "shapes %s and %s do not broadcast",
                            tensor_shape_str(a, sa, sizeof sa),
                            tensor_shape_str(b, sb, sizeof sb));
        }
        dims[i] = da == 1 ? db : da;
    }
    tensor_set_shape(out, out->dtype, rank, dims);
    return lego_ok();
}

const lego_tensor *op_input(const op_call *c, int i)
{
    return i < c->n_in ? c->in[i] : NULL;
}

lego_status op_expect_dtype(const op_call *c, int i, lego_dtype dt)
{
    if (!op_input(c, i))
        return op_error(c, LEGO_ERR_FORMAT, "input %d is missing", i);
    if (c->in[i]->dtype != dt)
        return op_error(c, LEGO_ERR_SHAPE, "input %d is %s, expected %s", i,
                        dtype_name(c->in[i]->dtype), dtype_name(dt));
    return lego_ok();
}
