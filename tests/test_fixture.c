/* test_fixture.c - run one PyTorch fixture: PREFIX.onnx on PREFIX.in.bin must
 * reproduce PREFIX.out.bin (see tests/data/README.md for the format).
 * CTest runs it once per fixture. */
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/tensor.h"
#include "harness.h"

static unsigned char *read_or_die(const char *prefix, const char *ext, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s%s", prefix, ext);
    unsigned char *buf;
    lego_status st = file_read_all(path, &buf, len);
    if (st.code) {
        fprintf(stderr, "%s\n", lego_status_msg(st));
        lego_status_free(&st);
        return NULL;
    }
    return buf;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_fixture PATH_PREFIX\n");
        return 2;
    }
    const char *prefix = argv[1];
    char path[4096];
    snprintf(path, sizeof path, "%s.onnx", prefix);
    lego_model *m = NULL;
    CHECK_OK(lego_model_load(path, &m));
    size_t in_len, out_len;
    unsigned char *in_buf = read_or_die(prefix, ".in.bin", &in_len);
    unsigned char *out_buf = read_or_die(prefix, ".out.bin", &out_len);
    CHECK(in_buf && out_buf);
    if (!m || !in_buf || !out_buf) {
        free(in_buf), free(out_buf), lego_model_free(m);
        return harness_finish() | 1;
    }
    int n_in = lego_model_num_inputs(m), n_out = lego_model_num_outputs(m);
    const lego_tensor *x0 = lego_model_input(m, 0);
    size_t first = lego_tensor_bytes(x0);
    if (n_in == 1 && in_len != first && first && in_len % first == 0) {
        /* a dynamic batch axis: the file holds the batch to run */
        int64_t dims[LEGO_MAX_RANK];
        memcpy(dims, x0->dims, sizeof dims);
        dims[0] = (int64_t)(in_len / first) * x0->dims[0];
        CHECK_OK(lego_model_set_input_shape(m, 0, x0->rank, dims));
    }
    lego_tensor ins[64];
    const lego_tensor *in_ptrs[64];
    lego_tensor *outs[64] = {0};
    size_t pos = 0;
    for (int i = 0; i < n_in && i < 64; i++) {
        ins[i] = *lego_model_input(m, i);
        ins[i].data = in_buf + pos;
        ins[i].owns = 0;
        in_ptrs[i] = &ins[i];
        pos += lego_tensor_bytes(&ins[i]);
    }
    CHECK(pos == in_len);
    if (pos == in_len)
        CHECK_OK(lego_model_run(m, in_ptrs, outs));
    pos = 0;
    for (int o = 0; o < n_out && outs[0]; o++) {
        size_t bytes = lego_tensor_bytes(outs[o]);
        CHECK(outs[o]->dtype == LEGO_F32);
        if (pos + bytes > out_len) {
            CHECK(!"outputs are larger than the reference file");
            break;
        }
        char what[256];
        snprintf(what, sizeof what, "%s output %d ('%s')", prefix, o, lego_model_output_name(m, o));
        check_close(outs[o]->data, (const float *)(out_buf + pos), (long)lego_tensor_numel(outs[o]),
                    1e-4f, 1e-3f, what);
        pos += bytes;
    }
    CHECK(pos == out_len);
    for (int o = 0; o < n_out; o++)
        lego_tensor_free(outs[o]);
    free(in_buf);
    free(out_buf);
    lego_model_free(m);
    return harness_finish();
}
