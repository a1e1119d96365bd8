/* fuzz_onnx_import.c - libFuzzer target: any byte string given to the
 * importer must give a model or a clean error, never a crash or a leak.
 * Models that load are also run once on zeros. */
#include <stdlib.h>

#include "legodnn.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    lego_model *m = NULL;
    lego_status st = lego_model_load_memory(data, size, "fuzz.onnx", &m);
    if (st.code) {
        lego_status_free(&st);
        return 0;
    }
    int n_in = lego_model_num_inputs(m), n_out = lego_model_num_outputs(m);
    lego_tensor ins[8];
    const lego_tensor *ptrs[8];
    lego_tensor *outs[64] = {0};
    int ok = n_in <= 8 && n_out <= 64;
    for (int i = 0; ok && i < n_in; i++) {
        ins[i] = *lego_model_input(m, i);
        size_t bytes = lego_tensor_bytes(&ins[i]);
        ins[i].data = bytes < (64u << 20) ? calloc(1, bytes + 1) : NULL;
        ins[i].owns = 0;
        ptrs[i] = &ins[i];
        if (!ins[i].data) {
            for (int j = 0; j < i; j++)
                free(ins[j].data);
            ok = 0;
        }
    }
    if (ok) {
        st = lego_model_run(m, ptrs, outs);
        lego_status_free(&st);
        for (int o = 0; o < n_out; o++)
            lego_tensor_free(outs[o]);
        for (int i = 0; i < n_in; i++)
            free(ins[i].data);
    }
    lego_model_free(m);
    return 0;
}
