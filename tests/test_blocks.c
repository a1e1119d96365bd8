/* test_blocks.c - automatic block detection (blocks/detect.c).
 *
 * Pins the blocks of every model family in tests/data/models at LegoDNN's
 * default ratio 0.125, checks each result against invariants computed here
 * by counting (disjoint blocks, one input and one output tensor, 2 to max
 * convs, a prunable conv, kept convs met first walking back from the exit,
 * parameters and FLOPs that add up), checks that shuffling the graph's node
 * array changes nothing, and runs hand-made graphs through the rule's edge
 * cases and the errors. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blocks/detect.h"
#include "core/file.h"
#include "harness.h"
#include "onnx/onnx_import.h"
#include "train/zoo.h"

static bool runtime_value(const lego_graph *g, int v)
{
    return v >= 0 && (g->values[v].kind == VALUE_ACTIVATION || g->values[v].kind == VALUE_INPUT);
}

static bool is_conv(const gnode *n)
{
    return strcmp(n->op_type, "Conv") == 0 || strcmp(n->op_type, "ConvTranspose") == 0;
}

static bool reads(const gnode *n, int v)
{
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] == v)
            return true;
    return false;
}

/* The invariants, computed from the graph without the detector's help. */
static void check_invariants(const char *model, const lego_graph *g, const block_set *s)
{
    int nn = g->n_nodes, bad = harness_failed;
    int *owner = malloc(sizeof *owner * (size_t)(nn + 1));
    for (int k = 0; k < nn; k++)
        owner[k] = -1;
    int live = 0;
    for (int k = 0; k < nn; k++)
        live += !g->nodes[k].folded;
    int in_blocks = 0, covered = 0;
    int64_t params = 0, flops = 0;
    int64_t *per_node = calloc((size_t)nn + 1, sizeof *per_node);
    int64_t total_flops = graph_flops(g, per_node);
    for (int i = 0; i < s->n_blocks; i++) {
        const block *b = &s->blocks[i];
        for (int j = 0; j < b->n_nodes; j++) {
            CHECK(owner[b->nodes[j]] == -1); /* disjoint */
            CHECK(!g->nodes[b->nodes[j]].folded);
            owner[b->nodes[j]] = i;
        }
        in_blocks += b->n_nodes;
        covered += b->n_layers;
        params += b->params;
        flops += b->flops;
    }
    CHECK(in_blocks + s->n_outside == live);
    CHECK(covered == s->covered_convs);
    CHECK(params + s->outside_params == s->params);
    CHECK(s->params == graph_param_count(g, NULL));
    CHECK(flops + s->outside_flops == s->flops && s->flops == total_flops);
    for (int j = 0; j < s->n_outside; j++)
        CHECK(owner[s->outside[j]] == -1 && !g->nodes[s->outside[j]].folded);
    int convs_outside = 0;
    for (int j = 0; j < s->n_outside; j++)
        convs_outside += is_conv(&g->nodes[s->outside[j]]);
    CHECK(convs_outside == s->n_outside_convs);

    int *queue = malloc(sizeof *queue * (size_t)(nn + 1));
    char *seen = malloc((size_t)nn + 1);
    for (int i = 0; i < s->n_blocks; i++) {
        const block *b = &s->blocks[i];
        CHECK(b->n_layers >= 2 && b->n_layers <= s->max_convs);
        CHECK(b->n_prunable >= 1);
        CHECK(b->n_kept + b->n_prunable == b->n_convs);
        CHECK(g->values[b->entry].t.dtype == LEGO_F32 && g->values[b->exit].t.dtype == LEGO_F32);
        /* one input: the run-time values read in the block and made outside it */
        int n_in = 0, the_in = -1;
        for (int j = 0; j < b->n_nodes; j++) {
            const gnode *n = &g->nodes[b->nodes[j]];
            for (int a = 0; a < n->n_in; a++) {
                int v = n->in[a];
                if (!runtime_value(g, v))
                    continue;
                int p = g->values[v].producer;
                if (p >= 0 && owner[p] == i)
                    continue;
                if (v != the_in) {
                    n_in++;
                    the_in = v;
                }
            }
        }
        CHECK(n_in == 1 && the_in == b->entry);
        /* one output: values made in the block that a node outside reads or
         * that are graph outputs */
        int n_out = 0, the_out = -1, convs = 0;
        for (int j = 0; j < b->n_nodes; j++) {
            const gnode *n = &g->nodes[b->nodes[j]];
            convs += is_conv(n);
            for (int o = 0; o < n->n_out; o++) {
                int v = n->out[o];
                bool used = false;
                for (int q = 0; q < g->n_outputs; q++)
                    used |= g->outputs[q] == v;
                for (int k = 0; k < nn && !used; k++)
                    used = !g->nodes[k].folded && owner[k] != i && reads(&g->nodes[k], v);
                if (used) {
                    n_out++;
                    the_out = v;
                }
            }
        }
        CHECK(n_out == 1 && the_out == b->exit);
        CHECK(convs == b->n_convs);
        /* closed: every node is reached from the entry and reaches the exit */
        int exit_node = g->values[b->exit].producer, head = 0, tail = 0;
        memset(seen, 0, (size_t)nn + 1);
        for (int j = 0; j < b->n_nodes; j++)
            if (reads(&g->nodes[b->nodes[j]], b->entry))
                seen[b->nodes[j]] = 1, queue[tail++] = b->nodes[j];
        while (head < tail) {
            const gnode *n = &g->nodes[queue[head++]];
            for (int o = 0; o < n->n_out; o++)
                for (int j = 0; j < b->n_nodes; j++)
                    if (!seen[b->nodes[j]] && reads(&g->nodes[b->nodes[j]], n->out[o]))
                        seen[b->nodes[j]] = 1, queue[tail++] = b->nodes[j];
        }
        CHECK(tail == b->n_nodes);
        /* kept: the first convs walking back from the exit; the test graphs
         * share no conv weight, so these are exactly the kept nodes */
        memset(seen, 0, (size_t)nn + 1);
        head = tail = 0;
        queue[tail++] = exit_node;
        seen[exit_node] = 1;
        int n_kept = 0;
        while (head < tail) {
            int k = queue[head++];
            const gnode *n = &g->nodes[k];
            if (is_conv(n)) {
                bool listed = false;
                for (int j = 0; j < b->n_kept; j++)
                    listed |= b->kept[j] == k;
                CHECK(listed);
                n_kept++;
                continue;
            }
            for (int a = 0; a < n->n_in; a++) {
                int v = n->in[a];
                if (!runtime_value(g, v) || g->values[v].producer < 0)
                    continue;
                int p = g->values[v].producer;
                if (owner[p] == i && !seen[p])
                    seen[p] = 1, queue[tail++] = p;
            }
        }
        CHECK(n_kept == b->n_kept);
        int64_t fl = 0;
        for (int j = 0; j < b->n_nodes; j++)
            fl += per_node[b->nodes[j]];
        CHECK(fl == b->flops);
    }
    if (harness_failed != bad)
        fprintf(stderr, "  (invariants of %s)\n", model);
    free(queue);
    free(seen);
    free(owner);
    free(per_node);
}

/* ---- the model families ---------------------------------------------------- */

typedef struct family {
    const char *name;
    int convs, max_convs, covered;
    const char *const *blocks; /* "entry > exit", NULL-terminated */
} family;

/* CIFAR ResNet18 (width 8): N = 20 convs, so at most 2 per block. The 8
 * blocks of the original (legodnn-method.md 3.2), node for node: the stem
 * BN and ReLU join layer1.0; identity units run from the previous unit's
 * Add (taking its final ReLU) to their own Add; a projection unit gives
 * conv1..conv2 of its main branch. */
static const char *const resnet18_blocks[] = {
    "/conv1/Conv_output_0 > /layer1/layer1.0/Add_output_0",
    "/layer1/layer1.0/Add_output_0 > /layer1/layer1.1/Add_output_0",
    "/layer1/layer1.1/Relu_1_output_0 > /layer2/layer2.0/conv2/Conv_output_0",
    "/layer2/layer2.0/Add_output_0 > /layer2/layer2.1/Add_output_0",
    "/layer2/layer2.1/Relu_1_output_0 > /layer3/layer3.0/conv2/Conv_output_0",
    "/layer3/layer3.0/Add_output_0 > /layer3/layer3.1/Add_output_0",
    "/layer3/layer3.1/Relu_1_output_0 > /layer4/layer4.0/conv2/Conv_output_0",
    "/layer4/layer4.0/Add_output_0 > /layer4/layer4.1/Add_output_0",
    NULL};

/* The same network exported with a dynamic batch axis. */
#define resnet18_dynbatch_blocks resnet18_blocks

/* MobileNetV2 (26 convs, max 3): one block per inverted residual, the stem
 * BN/ReLU6 in the first. A unit without residual ends at its project conv,
 * so the next block takes that conv's BN. The last unit (3 convs) and the
 * final 1x1 conv (1) split 2 + 2, which covers all 4; only the stem conv
 * stays outside (with layers.0 it would make 4 convs). */
static const char *const mobilenetv2_blocks[] = {
    "/conv1/Conv_output_0 > /layers/layers.0/Add_output_0",
    "/layers/layers.0/Add_output_0 > /layers/layers.1/conv3/Conv_output_0",
    "/layers/layers.1/conv3/Conv_output_0 > /layers/layers.2/Add_output_0",
    "/layers/layers.2/Add_output_0 > /layers/layers.3/conv3/Conv_output_0",
    "/layers/layers.3/conv3/Conv_output_0 > /layers/layers.4/Add_output_0",
    "/layers/layers.4/Add_output_0 > /layers/layers.5/conv3/Conv_output_0",
    "/layers/layers.5/conv3/Conv_output_0 > /layers/layers.6/Add_output_0",
    "/layers/layers.6/Add_output_0 > /layers/layers.7/conv2/Conv_output_0",
    "/layers/layers.7/conv2/Conv_output_0 > /conv2/Conv_output_0",
    NULL};

/* ResNeXt-29 (13 convs, max 2): every unit has 4 convs (1x1, grouped 3x3,
 * 1x1, projection), and only the 1x1-3x3 start of the main branch fits. */
static const char *const resnext29_blocks[] = {
    "/Relu_output_0 > /layer1/layer1.0/conv2/Conv_output_0",
    "/layer1/layer1.0/Relu_2_output_0 > /layer2/layer2.0/conv2/Conv_output_0",
    "/layer2/layer2.0/Relu_2_output_0 > /layer3/layer3.0/conv2/Conv_output_0",
    NULL};

/* Inception-v3 (30 convs, max 3): a module (7 to 10 convs) is too large;
 * the multi-conv branches are blocks, from the module's input fork to the
 * branch's last conv, and the 5-conv 7x7dbl branch splits 3 + 2. The 1x1
 * and pool branches hold one conv and stay outside. */
static const char *const inceptionv3_blocks[] = {
    "input > /Conv2d_2a_3x3/conv/Conv_output_0",
    "/MaxPool_output_0 > /Mixed_5b/branch3x3dbl_3/conv/Conv_output_0",
    "/MaxPool_output_0 > /Mixed_5b/branch5x5_2/conv/Conv_output_0",
    "/Mixed_5b/Concat_output_0 > /Mixed_5c/branch3x3dbl_3/conv/Conv_output_0",
    "/Mixed_5b/Concat_output_0 > /Mixed_5c/branch5x5_2/conv/Conv_output_0",
    "/Mixed_5c/Concat_output_0 > /Mixed_6a/branch3x3dbl_3/conv/Conv_output_0",
    "/Mixed_6a/Concat_output_0 > /Mixed_6b/branch7x7_3/conv/Conv_output_0",
    "/Mixed_6a/Concat_output_0 > /Mixed_6b/branch7x7dbl_3/conv/Conv_output_0",
    "/Mixed_6b/branch7x7dbl_3/conv/Conv_output_0 > /Mixed_6b/branch7x7dbl_5/conv/Conv_output_0",
    NULL};

/* WideResNet-10-2 (10 convs, max 2): each stage is one pre-activation unit
 * with a 1x1 shortcut, 3 convs; its residual branch is the block. */
static const char *const wideresnet_blocks[] = {
    "/init_conv/Conv_output_0 > /conv2/conv2.0/residual/residual.6/Conv_output_0",
    "/conv2/conv2.0/Add_output_0 > /conv3/conv3.0/residual/residual.6/Conv_output_0",
    "/conv3/conv3.0/Add_output_0 > /conv4/conv4.0/residual/residual.6/Conv_output_0",
    NULL};

/* Residual attention network (41 convs, max 5): every bottleneck unit is a
 * block (the first together with the stem conv), the soft-mask 1x1 pair is
 * one; all 41 convs are covered. Identity units end at conv3: their Add
 * reads the entry directly and stays outside. */
static const char *const ran_blocks[] = {
    "input > /residual_block1/Add_output_0",
    "/residual_block1/Add_output_0 > /attention_module1/first_residual_blocks/conv3/Conv_output_0",
    "/attention_module1/first_residual_blocks/Add_output_0 > "
    "/attention_module1/trunk_branches/trunk_branches.0/conv3/Conv_output_0",
    "/attention_module1/first_residual_blocks/Add_output_0 > /attention_module1/down_residual_blocks1/Add_output_0",
    "/attention_module1/trunk_branches/trunk_branches.0/Add_output_0 > "
    "/attention_module1/trunk_branches/trunk_branches.1/conv3/Conv_output_0",
    "/attention_module1/down_residual_blocks1/Add_output_0 > "
    "/attention_module1/skip1_connection_residual_block/conv3/Conv_output_0",
    "/attention_module1/down_residual_blocks1/Add_output_0 > "
    "/attention_module1/middle_2r_blocks/middle_2r_blocks.0/Add_output_0",
    "/attention_module1/middle_2r_blocks/middle_2r_blocks.0/Add_output_0 > "
    "/attention_module1/middle_2r_blocks/middle_2r_blocks.1/conv3/Conv_output_0",
    "/attention_module1/Add_1_output_0 > /attention_module1/up_residual_blocks1/conv3/Conv_output_0",
    "/attention_module1/Add_2_output_0 > /attention_module1/conv1_1_blocks/conv1_1_blocks.5/Conv_output_0",
    "/attention_module1/Mul_output_0 > /attention_module1/last_blocks/conv3/Conv_output_0",
    "/attention_module1/last_blocks/Add_output_0 > /residual_block2/Add_output_0",
    "/residual_block2/Add_output_0 > /residual_block3/conv3/Conv_output_0",
    NULL};

/* CBAM-ResNet18 (28 convs, max 3): as ResNet18, each unit now holding its
 * spatial-gate conv; the shared channel-gate MLP (one Gemm pair called
 * twice) stays inside its block. Projection units end at the CBAM output. */
static const char *const cbam_resnet18_blocks[] = {
    "/conv1/Conv_output_0 > /layer1/layer1.0/Add_output_0",
    "/layer1/layer1.0/Add_output_0 > /layer1/layer1.1/Add_output_0",
    "/layer1/layer1.1/relu_1/Relu_output_0 > /layer2/layer2.0/cbam/SpatialGate/Mul_output_0",
    "/layer2/layer2.0/Add_output_0 > /layer2/layer2.1/Add_output_0",
    "/layer2/layer2.1/relu_1/Relu_output_0 > /layer3/layer3.0/cbam/SpatialGate/Mul_output_0",
    "/layer3/layer3.0/Add_output_0 > /layer3/layer3.1/Add_output_0",
    "/layer3/layer3.1/relu_1/Relu_output_0 > /layer4/layer4.0/cbam/SpatialGate/Mul_output_0",
    "/layer4/layer4.0/Add_output_0 > /layer4/layer4.1/Add_output_0",
    NULL};

/* SENet18 (36 convs, max 4): conv1, conv2 and the SE 1x1 convs fc1/fc2 of
 * each unit; pre-activation units end at the excitation Mul, since their Add
 * reads the unit input (or the projection shortcut) directly. */
static const char *const senet18_blocks[] = {
    "/conv1/Conv_output_0 > /layer1/layer1.0/Add_output_0",
    "/layer1/layer1.0/Add_output_0 > /layer1/layer1.1/Mul_output_0",
    "/layer2/layer2.0/Relu_output_0 > /layer2/layer2.0/Mul_output_0",
    "/layer2/layer2.0/Add_output_0 > /layer2/layer2.1/Mul_output_0",
    "/layer3/layer3.0/Relu_output_0 > /layer3/layer3.0/Mul_output_0",
    "/layer3/layer3.0/Add_output_0 > /layer3/layer3.1/Mul_output_0",
    "/layer4/layer4.0/Relu_output_0 > /layer4/layer4.0/Mul_output_0",
    "/layer4/layer4.0/Add_output_0 > /layer4/layer4.1/Mul_output_0",
    NULL};

/* VGG11-BN (8 convs, max 2): pairs of convs, each block taking the BN,
 * ReLU and MaxPool before it. */
static const char *const vgg11_bn_blocks[] = {
    "input > /features/features.4/Conv_output_0",
    "/features/features.4/Conv_output_0 > /features/features.11/Conv_output_0",
    "/features/features.11/Conv_output_0 > /features/features.18/Conv_output_0",
    "/features/features.18/Conv_output_0 > /features/features.25/Conv_output_0",
    NULL};

/* FCN on a dilated ResNetV1c-18 (26 convs, max 3): the deep stem, each
 * unit (downsample units whole), and the head as convs.0-convs.1 (to the
 * concat_input Concat) plus conv_cat-conv_seg: all 26 covered, one more
 * block than the original's 10 (which leaves conv_seg out). */
static const char *const fcn_blocks[] = {
    "input > /backbone/stem/stem.6/Conv_output_0",
    "/backbone/stem/stem.6/Conv_output_0 > /backbone/layer1/layer1.0/Add_output_0",
    "/backbone/layer1/layer1.0/Add_output_0 > /backbone/layer1/layer1.1/Add_output_0",
    "/backbone/layer1/layer1.1/Add_output_0 > /backbone/layer2/layer2.0/Add_output_0",
    "/backbone/layer2/layer2.0/Add_output_0 > /backbone/layer2/layer2.1/Add_output_0",
    "/backbone/layer2/layer2.1/Add_output_0 > /backbone/layer3/layer3.0/Add_output_0",
    "/backbone/layer3/layer3.0/Add_output_0 > /backbone/layer3/layer3.1/Add_output_0",
    "/backbone/layer3/layer3.1/Add_output_0 > /backbone/layer4/layer4.0/Add_output_0",
    "/backbone/layer4/layer4.0/Add_output_0 > /backbone/layer4/layer4.1/Add_output_0",
    "/backbone/layer4/layer4.1/Add_output_0 > /Concat_output_0",
    "/Concat_output_0 > /conv_seg/Conv_output_0",
    NULL};

/* DeepLabV3 (29 convs, max 3): backbone as FCN; the ASPP branches and the
 * image-pool branch hold one conv each and stay outside; the bottleneck
 * and conv_seg after the ASPP concat are the last block. */
static const char *const deeplabv3_blocks[] = {
    "input > /backbone/stem/stem.6/Conv_output_0",
    "/backbone/stem/stem.6/Conv_output_0 > /backbone/layer1/layer1.0/Add_output_0",
    "/backbone/layer1/layer1.0/Add_output_0 > /backbone/layer1/layer1.1/Add_output_0",
    "/backbone/layer1/layer1.1/Add_output_0 > /backbone/layer2/layer2.0/Add_output_0",
    "/backbone/layer2/layer2.0/Add_output_0 > /backbone/layer2/layer2.1/Add_output_0",
    "/backbone/layer2/layer2.1/Add_output_0 > /backbone/layer3/layer3.0/Add_output_0",
    "/backbone/layer3/layer3.0/Add_output_0 > /backbone/layer3/layer3.1/Add_output_0",
    "/backbone/layer3/layer3.1/Add_output_0 > /backbone/layer4/layer4.0/Add_output_0",
    "/backbone/layer4/layer4.0/Add_output_0 > /backbone/layer4/layer4.1/Add_output_0",
    "/Concat_2_output_0 > /conv_seg/Conv_output_0",
    NULL};

/* U-Net (18 convs, max 2): each encoder DoubleConv; in the decoder the
 * 1x1 reduce conv meets the skip at a Concat, so only the DoubleConv after
 * each Concat is a block; the reduce convs and conv_seg stay outside (each
 * run between forks holds 3 convs, of which one block of 2 fits). */
static const char *const unet_blocks[] = {
    "input > /enc1/enc1.1/enc1.1.0/Conv_output_0",
    "/enc1/enc1.1/enc1.1.2/Relu_output_0 > /enc2/enc2.1/enc2.1.0/Conv_output_0",
    "/enc2/enc2.1/enc2.1.2/Relu_output_0 > /enc3/enc3.1/enc3.1.0/Conv_output_0",
    "/enc3/enc3.1/enc3.1.2/Relu_output_0 > /enc4/enc4.1/enc4.1.0/Conv_output_0",
    "/up3/Concat_1_output_0 > /up3/conv/conv.1/conv.1.0/Conv_output_0",
    "/up2/Concat_1_output_0 > /up2/conv/conv.1/conv.1.0/Conv_output_0",
    "/up1/Concat_1_output_0 > /up1/conv/conv.1/conv.1.0/Conv_output_0",
    NULL};

/* YOLOv3 (36 convs, max 4): Darknet stages (the stem with the first),
 * the neck's detection blocks split 4+4 / 3+2 / 4+3, the bridge+pred heads
 * ending at the three graph outputs. The 1x1 convs before each upsample
 * stay outside: their Concat also reads a backbone stage. */
static const char *const yolov3_blocks[] = {
    "input > /backbone/stages.0/stages.0.1/Add_output_0",
    "/backbone/stages.0/stages.0.1/Add_output_0 > /backbone/stages.1/stages.1.1/Add_output_0",
    "/backbone/stages.1/stages.1.1/Add_output_0 > /backbone/stages.2/stages.2.1/Add_output_0",
    "/backbone/stages.2/stages.2.1/Add_output_0 > /detect1/detect1.0/detect1.0.0/Conv_output_0",
    "/detect1/detect1.0/detect1.0.0/Conv_output_0 > /detect1/detect1.4/detect1.4.0/Conv_output_0",
    "/detect1/detect1.4/detect1.4.2/LeakyRelu_output_0 > output0",
    "/Concat_1_output_0 > /detect2/detect2.2/detect2.2.0/Conv_output_0",
    "/detect2/detect2.2/detect2.2.0/Conv_output_0 > /detect2/detect2.4/detect2.4.0/Conv_output_0",
    "/detect2/detect2.4/detect2.4.2/LeakyRelu_output_0 > output1",
    "/Concat_3_output_0 > /detect3/detect3.3/detect3.3.0/Conv_output_0",
    "/detect3/detect3.3/detect3.3.0/Conv_output_0 > output2",
    NULL};

/* GANomaly (12 convs, max 2): encoder, decoder (ConvTranspose) and second
 * encoder, two blocks each; blocks may start or end at graph outputs
 * (latent_i, gen_imag, latent_o). */
static const char *const ganomaly_blocks[] = {
    "input > /encoder1/main/pyramid-8-conv/Conv_output_0",
    "/encoder1/main/pyramid-8-conv/Conv_output_0 > output1",
    "output1 > /decoder/main/pyramid-32-convt/ConvTranspose_output_0",
    "/decoder/main/pyramid-32-convt/ConvTranspose_output_0 > /decoder/main/final-convt/ConvTranspose_output_0",
    "output0 > /encoder2/main/pyramid-8-conv/Conv_output_0",
    "/encoder2/main/pyramid-8-conv/Conv_output_0 > output2",
    NULL};

/* ImageNet-style ResNet18 backbones (7x7 stem, max pool): 20 convs, max 2,
 * the ResNet18 pattern; the stem BN, ReLU and max pool join layer1.0. */
static const char *const backbone_blocks[] = {
    "/backbone/stem/stem.0/Conv_output_0 > /backbone/layer1/layer1.0/Add_output_0",
    "/backbone/layer1/layer1.0/Add_output_0 > /backbone/layer1/layer1.1/Add_output_0",
    "/backbone/layer1/layer1.1/relu_1/Relu_output_0 > /backbone/layer2/layer2.0/conv2/Conv_output_0",
    "/backbone/layer2/layer2.0/Add_output_0 > /backbone/layer2/layer2.1/Add_output_0",
    "/backbone/layer2/layer2.1/relu_1/Relu_output_0 > /backbone/layer3/layer3.0/conv2/Conv_output_0",
    "/backbone/layer3/layer3.0/Add_output_0 > /backbone/layer3/layer3.1/Add_output_0",
    "/backbone/layer3/layer3.1/relu_1/Relu_output_0 > /backbone/layer4/layer4.0/conv2/Conv_output_0",
    "/backbone/layer4/layer4.0/Add_output_0 > /backbone/layer4/layer4.1/Add_output_0",
    NULL};

/* SimpleBaselines (24 convs, max 3): with 3 per block the stem conv joins
 * layer1.0 and downsample units are whole; layer4.1 takes the first
 * ConvTranspose, and the other two with the 1x1 heatmap conv end at the
 * output. Nothing stays outside. */
static const char *const simplebaseline_blocks[] = {
    "input > /backbone/layer1/layer1.0/Add_output_0",
    "/backbone/layer1/layer1.0/Add_output_0 > /backbone/layer1/layer1.1/Add_output_0",
    "/backbone/layer1/layer1.1/Add_output_0 > /backbone/layer2/layer2.0/Add_output_0",
    "/backbone/layer2/layer2.0/Add_output_0 > /backbone/layer2/layer2.1/Add_output_0",
    "/backbone/layer2/layer2.1/Add_output_0 > /backbone/layer3/layer3.0/Add_output_0",
    "/backbone/layer3/layer3.0/Add_output_0 > /backbone/layer3/layer3.1/Add_output_0",
    "/backbone/layer3/layer3.1/Add_output_0 > /backbone/layer4/layer4.0/Add_output_0",
    "/backbone/layer4/layer4.0/Add_output_0 > /deconv_layers/deconv_layers.0/ConvTranspose_output_0",
    "/deconv_layers/deconv_layers.0/ConvTranspose_output_0 > output",
    NULL};

static const family families[] = {
    {"resnet18", 20, 2, 16, resnet18_blocks},
    {"resnet18_dynbatch", 20, 2, 16, resnet18_dynbatch_blocks},
    {"mobilenetv2", 26, 3, 25, mobilenetv2_blocks},
    {"resnext29", 13, 2, 6, resnext29_blocks},
    {"inceptionv3", 30, 3, 23, inceptionv3_blocks},
    {"wideresnet", 10, 2, 6, wideresnet_blocks},
    {"ran", 41, 5, 41, ran_blocks},
    {"cbam_resnet18", 28, 3, 24, cbam_resnet18_blocks},
    {"senet18", 36, 4, 32, senet18_blocks},
    {"vgg11_bn", 8, 2, 8, vgg11_bn_blocks},
    {"fcn", 26, 3, 26, fcn_blocks},
    {"deeplabv3", 29, 3, 24, deeplabv3_blocks},
    {"unet", 18, 2, 14, unet_blocks},
    {"yolov3", 36, 4, 34, yolov3_blocks},
    {"ganomaly", 12, 2, 12, ganomaly_blocks},
    {"deeppose", 20, 2, 16, backbone_blocks},
    {"simplebaseline", 24, 3, 24, simplebaseline_blocks},
    {"tsn", 20, 2, 16, backbone_blocks},
    {"trn", 20, 2, 16, backbone_blocks},
};

static int count_strings(const char *const *s)
{
    int n = 0;
    while (s[n])
        n++;
    return n;
}

static void check_pinned(const family *f, const lego_graph *g, const block_set *s)
{
    int bad = harness_failed;
    CHECK(s->total_convs == f->convs);
    CHECK(s->max_convs == f->max_convs);
    CHECK(s->covered_convs == f->covered);
    int want = count_strings(f->blocks);
    CHECK(s->n_blocks == want);
    for (int i = 0; i < s->n_blocks && i < want; i++) {
        char got[512];
        snprintf(got, sizeof got, "%s > %s", g->values[s->blocks[i].entry].name, g->values[s->blocks[i].exit].name);
        if (strcmp(got, f->blocks[i]) != 0) {
            fprintf(stderr, "  block %d: got  %s\n           want %s\n", i, got, f->blocks[i]);
            CHECK(!"block boundaries as pinned");
        }
    }
    if (harness_failed != bad) {
        fprintf(stderr, "  (%s: %d blocks covering %d of %d convs, max %d)\n", f->name, s->n_blocks,
                s->covered_convs, s->total_convs, s->max_convs);
        for (int i = 0; i < s->n_blocks; i++)
            fprintf(stderr, "    \"%s > %s\",\n", g->values[s->blocks[i].entry].name,
                    g->values[s->blocks[i].exit].name);
    }
}

/* ---- node order ---------------------------------------------------------- */

/* Everything a block set says, by names, one line each. */
static char *describe(const lego_graph *g, const block_set *s)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
#define PUT(...)                                                       \
    do {                                                               \
        int w_ = snprintf(out + len, cap - len, __VA_ARGS__);          \
        while (w_ >= 0 && (size_t)w_ >= cap - len) {                   \
            cap *= 2;                                                  \
            out = realloc(out, cap);                                   \
            w_ = snprintf(out + len, cap - len, __VA_ARGS__);          \
        }                                                              \
        len += (size_t)w_;                                             \
    } while (0)
    PUT("%d %d %d %d\n", s->n_blocks, s->covered_convs, s->n_candidates, s->n_regions);
    for (int i = 0; i < s->n_blocks; i++) {
        const block *b = &s->blocks[i];
        PUT("%s > %s %lld %lld:", g->values[b->entry].name, g->values[b->exit].name, (long long)b->params,
            (long long)b->flops);
        for (int j = 0; j < b->n_nodes; j++)
            PUT(" %s", g->values[g->nodes[b->nodes[j]].out[0]].name);
        PUT(" | kept");
        for (int j = 0; j < b->n_kept; j++)
            PUT(" %s", g->values[g->nodes[b->kept[j]].out[0]].name);
        PUT("\n");
    }
    PUT("outside:");
    for (int j = 0; j < s->n_outside; j++)
        PUT(" %s", g->values[g->nodes[s->outside[j]].out[0]].name);
    PUT("\n");
#undef PUT
    return out;
}

/* Permute the node array (values stay), then re-prepare: graph_infer sorts
 * the nodes again, so only the indices and the file order change. */
static void shuffle_nodes(lego_graph *g, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = g->n_nodes - 1; i > 0; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int j = (int)(x % (uint64_t)(i + 1));
        gnode t = g->nodes[i];
        g->nodes[i] = g->nodes[j];
        g->nodes[j] = t;
    }
    for (int v = 0; v < g->n_values; v++)
        g->values[v].producer = -1;
    for (int k = 0; k < g->n_nodes; k++)
        for (int o = 0; o < g->nodes[k].n_out; o++)
            g->values[g->nodes[k].out[o]].producer = k;
}

static void test_families(void)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        lego_graph g;
        lego_status st = harness_load_model(families[f].name, &g);
        CHECK_OK(st);
        if (st.code)
            continue;
        block_set s;
        st = blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &s);
        CHECK_OK(st);
        if (st.code) {
            graph_free(&g);
            continue;
        }
        check_pinned(&families[f], &g, &s);
        check_invariants(families[f].name, &g, &s);
        char *before = describe(&g, &s);
        block_set_free(&s);
        for (uint64_t seed = 1; seed <= 3; seed++) {
            shuffle_nodes(&g, seed);
            CHECK_OK(graph_infer(&g));
            CHECK_OK(blocks_detect(&g, BLOCKS_DEFAULT_RATIO, &s));
            char *after = describe(&g, &s);
            if (strcmp(before, after) != 0) {
                fprintf(stderr, "%s: blocks change with node order (seed %llu)\n--- before\n%s--- after\n%s",
                        families[f].name, (unsigned long long)seed, before, after);
                CHECK(!"independent of node order");
            }
            check_invariants(families[f].name, &g, &s);
            free(after);
            block_set_free(&s);
        }
        free(before);
        graph_free(&g);
    }
}

/* ---- ResNet18 in detail ------------------------------------------------------ */

static const char *name_of(const lego_graph *g, int node) { return blocks_node_name(g, node); }

static void test_resnet18_detail(void)
{
    lego_graph g;
    lego_status st = harness_load_model("resnet18", &g);
    CHECK_OK(st);
    if (st.code)
        return;
    block_set s;
    CHECK_OK(blocks_detect(&g, 0.125, &s));
    if (s.n_blocks != 8) {
        CHECK(s.n_blocks == 8);
        block_set_free(&s);
        graph_free(&g);
        return;
    }
    /* one block per residual unit: conv1 is pruned, conv2 keeps its output */
    static const char *const units[8] = {"layer1/layer1.0", "layer1/layer1.1", "layer2/layer2.0", "layer2/layer2.1",
                                         "layer3/layer3.0", "layer3/layer3.1", "layer4/layer4.0", "layer4/layer4.1"};
    static const int n_nodes[8] = {8, 7, 4, 7, 4, 7, 4, 7};
    for (int i = 0; i < 8; i++) {
        const block *b = &s.blocks[i];
        char c1[96], c2[96];
        snprintf(c1, sizeof c1, "/%s/conv1/Conv", units[i]);
        snprintf(c2, sizeof c2, "/%s/conv2/Conv", units[i]);
        CHECK(b->n_convs == 2 && b->n_layers == 2 && b->n_nodes == n_nodes[i]);
        if (b->n_convs != 2)
            continue;
        CHECK(strcmp(name_of(&g, b->convs[0]), c1) == 0 && strcmp(name_of(&g, b->convs[1]), c2) == 0);
        CHECK(b->n_prunable == 1 && strcmp(name_of(&g, b->prunable[0]), c1) == 0);
        CHECK(b->n_kept == 1 && strcmp(name_of(&g, b->kept[0]), c2) == 0);
        /* shapes: stride-2 units halve the map and double the channels */
        const lego_tensor *in = &g.values[b->entry].t, *out = &g.values[b->exit].t;
        int64_t w = 8 << (i / 2), hw = 32 >> (i / 2);
        CHECK(out->rank == 4 && out->dims[1] == w && out->dims[2] == hw);
        CHECK(in->rank == 4 && in->dims[1] == (i % 2 || i == 0 ? w : w / 2));
    }
    /* block 0 holds the stem BN and ReLU, as in the original */
    static const char *const first[] = {"/bn1/BatchNormalization", "/Relu", "/layer1/layer1.0/conv1/Conv",
                                        "/layer1/layer1.0/bn1/BatchNormalization", "/layer1/layer1.0/Relu",
                                        "/layer1/layer1.0/conv2/Conv", "/layer1/layer1.0/bn2/BatchNormalization",
                                        "/layer1/layer1.0/Add"};
    for (int j = 0; j < 8; j++)
        CHECK(strcmp(name_of(&g, s.blocks[0].nodes[j]), first[j]) == 0);
    /* block 1 starts with layer1.0's final ReLU */
    CHECK(strcmp(name_of(&g, s.blocks[1].nodes[0]), "/layer1/layer1.0/Relu_1") == 0);
    /* outside: the stem conv and the three projection shortcuts */
    static const char *const outside[] = {"/conv1/Conv", "/layer2/layer2.0/shortcut/shortcut.0/Conv",
                                          "/layer3/layer3.0/shortcut/shortcut.0/Conv",
                                          "/layer4/layer4.0/shortcut/shortcut.0/Conv"};
    CHECK(s.n_outside_convs == 4);
    for (int j = 0; j < s.n_outside_convs && j < 4; j++)
        CHECK(strcmp(name_of(&g, s.outside_convs[j]), outside[j]) == 0);
    /* original's split of the leftover (3.2): stem conv, projection bn2,
     * shortcut conv+BN and Add for 3 units, the last ReLU, pool, view, linear */
    CHECK(s.n_outside == 21);
    block_set_free(&s);

    /* the width-64 network of the paper has the same blocks */
    int64_t params = 0;
    graph_free(&g);
    CHECK_OK(zoo_resnet18(64, 100, 3, 32, 32, 1, &g));
    CHECK_OK(blocks_detect(&g, 0.125, &s));
    CHECK(s.n_blocks == 8 && s.covered_convs == 16);
    for (int i = 0; i < s.n_blocks; i++)
        params += s.blocks[i].params;
    /* PyTorch counts BN weight and bias (2 per channel); we also hold the
     * running mean and variance: the original's 74,112 for block 0 is
     * 2 x 36,864 conv weights + 3 BNs x 128, ours 73,728 + 3 x 256 */
    CHECK(s.n_blocks > 0 && s.blocks[0].params == 73728 + 3 * 256);
    CHECK(s.n_blocks > 0 && strcmp(name_of(&g, s.blocks[0].prunable[0]), "layer1.0.conv1") == 0);
    CHECK(params > 0);
    block_set_free(&s);
    graph_free(&g);
}

/* ---- hand-made graphs ---------------------------------------------------- */

typedef struct builder {
    lego_graph g;
    int x;
} builder;

static void b_init(builder *b, const char *name)
{
    CHECK_OK(graph_init(&b->g, name));
    b->g.opset = 13;
    CHECK_OK(graph_add_value(&b->g, "x", VALUE_INPUT, &b->x));
    int64_t d[4] = {1, 4, 6, 6};
    tensor_set_shape(&b->g.values[b->x].t, LEGO_F32, 4, d);
    b->g.inputs = malloc(sizeof *b->g.inputs);
    b->g.inputs[0] = b->x;
    b->g.n_inputs = 1;
}

static int b_node(builder *b, const char *name, const char *op, const int *in, int n_in)
{
    int y, k;
    attr_list none = {0, NULL};
    CHECK_OK(graph_add_value(&b->g, name, VALUE_ACTIVATION, &y));
    CHECK_OK(graph_add_node(&b->g, name, op, in, n_in, &y, 1, &none, &k));
    return y;
}

/* A 1x1 conv, 4 -> 4 channels; weight w, or a new one when w < 0. */
static int b_conv(builder *b, const char *name, int x, int w)
{
    if (w < 0) {
        char wn[64];
        snprintf(wn, sizeof wn, "%s.weight", name);
        CHECK_OK(graph_add_value(&b->g, wn, VALUE_INITIALIZER, &w));
        int64_t d[4] = {4, 4, 1, 1};
        tensor_set_shape(&b->g.values[w].t, LEGO_F32, 4, d);
        CHECK_OK(tensor_alloc(&b->g.values[w].t));
    }
    int in[2] = {x, w};
    return b_node(b, name, "Conv", in, 2);
}

static int b_relu(builder *b, const char *name, int x) { return b_node(b, name, "Relu", &x, 1); }

static void b_finish(builder *b, int y)
{
    b->g.outputs = malloc(sizeof *b->g.outputs);
    b->g.outputs[0] = y;
    b->g.n_outputs = 1;
    CHECK_OK(graph_infer(&b->g));
}

/* "entry > exit: conv conv ..." per block, ";" between blocks */
static void expect_blocks(const lego_graph *g, double ratio, const char *want)
{
    block_set s;
    lego_status st = blocks_detect(g, ratio, &s);
    CHECK_OK(st);
    if (st.code)
        return;
    check_invariants(g->name, g, &s);
    char got[1024] = "";
    size_t len = 0;
    for (int i = 0; i < s.n_blocks; i++) {
        const block *b = &s.blocks[i];
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s > %s:", i ? "; " : "", g->values[b->entry].name,
                                g->values[b->exit].name);
        for (int j = 0; j < b->n_convs; j++)
            len += (size_t)snprintf(got + len, sizeof got - len, " %s", blocks_node_name(g, b->convs[j]));
    }
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "%s at ratio %g:\n  got  %s\n  want %s\n", g->name, ratio, got, want);
        CHECK(!"hand-made graph blocks");
    }
    block_set_free(&s);
}

static void test_chain(void)
{
    /* x -> c1 -> r1 -> c2 -> r2 -> c3 -> r3 -> c4 -> r4 -> c5 */
    builder b;
    b_init(&b, "chain");
    int v = b.x;
    for (int i = 1; i <= 5; i++) {
        char cn[8], rn[8];
        snprintf(cn, sizeof cn, "c%d", i);
        snprintf(rn, sizeof rn, "r%d", i);
        v = b_conv(&b, cn, v, -1);
        if (i < 5)
            v = b_relu(&b, rn, v);
    }
    b_finish(&b, v);
    /* N = 5: r = 0.125 allows 2 per block; the left-most pairs win, each
     * block ends at its last conv and the next takes the ReLU after it */
    expect_blocks(&b.g, 0.125, "x > c2: c1 c2; c2 > c4: c3 c4");
    /* 3 per block covers all 5: the larger block first */
    expect_blocks(&b.g, 0.6, "x > c3: c1 c2 c3; c3 > c5: c4 c5");
    /* 5 per block: one block */
    expect_blocks(&b.g, 1.0, "x > c5: c1 c2 c3 c4 c5");
    block_set s;
    CHECK_OK(blocks_detect(&b.g, 0.125, &s));
    CHECK(s.n_outside == 2 && s.n_outside_convs == 1 && strcmp(blocks_node_name(&b.g, s.outside_convs[0]), "c5") == 0);
    CHECK(s.n_blocks == 2 && s.blocks[1].n_nodes == 4); /* r2 c3 r3 c4 */
    block_set_free(&s);
    graph_free(&b.g);
}

static void test_diamond(void)
{
    /* x -> a -> ra -> {b, c} -> add -> d: walking back from the Add meets
     * both b and c, so {b, c} alone has nothing to prune */
    builder b;
    b_init(&b, "diamond");
    int ra = b_relu(&b, "ra", b_conv(&b, "a", b.x, -1));
    int vb = b_conv(&b, "b", ra, -1), vc = b_conv(&b, "c", ra, -1);
    int in[2] = {vb, vc};
    int add = b_node(&b, "add", "Add", in, 2);
    int d = b_conv(&b, "d", add, -1);
    b_finish(&b, d);
    expect_blocks(&b.g, 1.0, "x > d: a b c d");
    /* 3 per block: {a,b,c} and {b,c,d} both cover 3; the earlier wins */
    expect_blocks(&b.g, 0.75, "x > add: a b c");
    block_set s;
    CHECK_OK(blocks_detect(&b.g, 0.75, &s));
    if (s.n_blocks == 1) {
        CHECK(s.blocks[0].n_kept == 2 && s.blocks[0].n_prunable == 1);
        CHECK(strcmp(blocks_node_name(&b.g, s.blocks[0].prunable[0]), "a") == 0);
    }
    block_set_free(&s);
    /* 2 per block: no single-entry single-exit pair of convs has a prunable one */
    CHECK_FAILS(blocks_detect(&b.g, 0.5, &s), LEGO_ERR_ARG, "no block found: no single-input single-output part");
    graph_free(&b.g);
}

static void test_shared_weight(void)
{
    /* a and c share one weight: one layer, so N = 2; a block must hold both
     * uses, and a's layer keeps its channels because c does */
    builder b;
    b_init(&b, "shared");
    int a = b_conv(&b, "a", b.x, -1);
    int w = b.g.nodes[b.g.values[a].producer].in[1];
    int r1 = b_relu(&b, "r1", a);
    int r2 = b_relu(&b, "r2", b_conv(&b, "b", r1, -1));
    int c = b_conv(&b, "c", r2, w);
    b_finish(&b, c);
    block_set s;
    CHECK_OK(blocks_detect(&b.g, 0.125, &s));
    CHECK(s.total_convs == 2 && s.n_blocks == 1);
    if (s.n_blocks == 1) {
        const block *bl = &s.blocks[0];
        CHECK(bl->n_convs == 3 && bl->n_layers == 2 && bl->n_kept == 2 && bl->n_prunable == 1);
        CHECK(strcmp(blocks_node_name(&b.g, bl->prunable[0]), "b") == 0);
        CHECK(bl->params == 2 * 16); /* the shared weight is counted once */
    }
    block_set_free(&s);
    graph_free(&b.g);
}

static void test_errors(void)
{
    builder b;
    b_init(&b, "one_conv");
    b_finish(&b, b_relu(&b, "r", b_conv(&b, "c", b.x, -1)));
    block_set s;
    CHECK_FAILS(blocks_detect(&b.g, 0.125, &s), LEGO_ERR_ARG,
                "one_conv: no block found: the model has 1 convolution; a block needs at least 2");
    CHECK(s.n_blocks == 0 && s.blocks == NULL);
    CHECK_FAILS(blocks_detect(&b.g, 0, &s), LEGO_ERR_ARG, "max ratio 0 is outside (0, 1]");
    CHECK_FAILS(blocks_detect(&b.g, -0.5, &s), LEGO_ERR_ARG, "outside (0, 1]");
    CHECK_FAILS(blocks_detect(&b.g, 1.5, &s), LEGO_ERR_ARG, "outside (0, 1]");
    CHECK_FAILS(blocks_detect(&b.g, NAN, &s), LEGO_ERR_ARG, "outside (0, 1]");
    graph_free(&b.g);

    /* two parallel convs joined by an Add: both keep their outputs */
    b_init(&b, "parallel");
    int in[2] = {b_conv(&b, "p", b.x, -1), b_conv(&b, "q", b.x, -1)};
    b_finish(&b, b_node(&b, "sum", "Add", in, 2));
    CHECK_FAILS(blocks_detect(&b.g, 1.0, &s), LEGO_ERR_ARG,
                "parallel: no block found: no single-input single-output part of the model holds 2 to 2 of its 2 "
                "convolutions with at least one that can be pruned (max ratio 1)");
    graph_free(&b.g);

    /* an ops fixture with no convolution at all */
    lego_graph g;
    unsigned char *buf;
    size_t len;
    CHECK_OK(file_read_all("data/ops/add_same_o11.onnx", &buf, &len));
    CHECK_OK(onnx_import(buf, len, "add_same_o11.onnx", &g));
    free(buf);
    CHECK_OK(graph_infer(&g));
    CHECK_FAILS(blocks_detect(&g, 0.125, &s), LEGO_ERR_ARG, "the model has 0 convolutions");
    graph_free(&g);
}

int main(void)
{
    test_families();
    test_resnet18_detail();
    test_chain();
    test_diamond();
    test_shared_weight();
    test_errors();
    return harness_finish();
}
