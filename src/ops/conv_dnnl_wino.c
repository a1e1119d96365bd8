/* conv_dnnl_wino.c - weights transformed for oneDNN's Winograd inference
 * kernels (F(4x4,3x3) and F(2x2,3x3)), written by us rather than by
 * oneDNN's reorder.
 *
 * Why: oneDNN 2.6 makes these weights with a reorder ("wino_reorder") that
 * runs scalar loops reading 16 filters at strides of a whole filter each:
 * 23 ms for one 256x256 layer, 2.8 ms for a 64x256 block, on the 2-core dev
 * machine. Packing a block's weights is what loading a descendant into the
 * runtime costs (a block switch whose descendant is not in memory), and on
 * full-width ResNet18 blocks it was most of that time. Here each block of
 * output channels is transformed 16 filters at a time, in cache, vectorised
 * across the filters.
 *
 * What: U = G g G^T for every (output, input channel) pair, g its 3x3
 * filter and G the alpha x 3 matrix below (alpha = 6 for F(4x4,3x3), 4 for
 * F(2x2,3x3)), laid out as oneDNN's wino_desc says: format OBaaIBOIio
 * (F(4x4,3x3)) is [oc chunk][alpha][alpha][ic chunk][oc2 block][ic2 block]
 * [ic block][oc block], formats aaOBiOo and aaOio (F(2x2,3x3)) are
 * [alpha][alpha][oc chunk][ic block index][ic block][oc2 block][oc block],
 * with oc2 blocks of one block in aaOio; channels past the real ones are
 * zero. The values of G are oneDNN's (its kernels' input
 * and output transforms are scaled to pair with exactly these rows),
 * written here as the fractions they are. */
#include "conv_dnnl.h"

#ifdef LEGO_HAVE_DNNL

#include <string.h>

#include "conv_dnnl_impl.h"
#include "simd.h"

#define MAX_ALPHA 6
#define MAX_OC_BLOCK 64

/* F(4x4,3x3): tiles of 6 */
static const float G43[6][3] = {
    {256.0f / 225, 0.0f, 0.0f},
    {-2048.0f / 2975, -256.0f / 595, -32.0f / 119},
    {-2048.0f / 2975, 256.0f / 595, -32.0f / 119},
    {128.0f / 1071, 64.0f / 357, 32.0f / 119},
    {128.0f / 1071, -64.0f / 357, 32.0f / 119},
    {0.0f, 0.0f, 1.0f},
};

/* F(2x2,3x3): tiles of 4 */
static const float G23[4][3] = {
    {1.0f, 0.0f, 0.0f},
    {0.5f, 0.5f, 0.5f},
    {0.5f, -0.5f, 0.5f},
    {0.0f, 0.0f, 1.0f},
};

bool dnnl_wino_packs(const dnnl_memory_desc_t *md)
{
    if (md->format_kind != dnnl_format_kind_wino)
        return false;
    const dnnl_wino_desc_t *d = &md->format_desc.wino_desc;
    bool f43 = d->wino_format == dnnl_wino_wei_OBaaIBOIio && d->alpha == 6;
    bool f23 = (d->wino_format == dnnl_wino_wei_aaOBiOo || d->wino_format == dnnl_wino_wei_aaOio) &&
               d->alpha == 4;
    bool ic2_ok = f23 || (d->ic2_block > 0 && d->ic % (d->ic_block * d->ic2_block) == 0);
    return (f43 || f23) && d->r == 3 && d->oc_block > 0 && d->oc_block <= MAX_OC_BLOCK &&
           d->ic_block > 0 && d->oc2_block > 0 && d->oc % (d->oc_block * d->oc2_block) == 0 &&
           d->ic % d->ic_block == 0 && ic2_ok;
}

/* The alpha*alpha transformed values of filters [o0, o0 + nb) of input
 * channel c, as u[a*alpha+b][o - o0], G being alpha x 3; filters past oc
 * give zeros. */
SIMD_CLONES
static void transform_block(const float *w, int64_t oc, int64_t ic, int64_t c, int64_t o0, int nb,
                            const float (*G)[3], int alpha,
                            float u[MAX_ALPHA * MAX_ALPHA][MAX_OC_BLOCK])
{
    float g[9][MAX_OC_BLOCK];
    for (int o = 0; o < nb; o++) {
        const float *f = w + ((o0 + o) * ic + c) * 9;
        for (int k = 0; k < 9; k++)
            g[k][o] = o0 + o < oc ? f[k] : 0.0f;
    }
    /* t = g G^T (3 x alpha), then U = G t (alpha x alpha), across the
     * filters; each sum starts from +0 as oneDNN's does, so zeros (a padded
     * filter's) keep its sign */
    float t[3][MAX_ALPHA][MAX_OC_BLOCK];
    for (int r = 0; r < 3; r++)
        for (int b = 0; b < alpha; b++)
            for (int o = 0; o < nb; o++)
                t[r][b][o] = 0.0f + g[r * 3][o] * G[b][0] + g[r * 3 + 1][o] * G[b][1] +
                             g[r * 3 + 2][o] * G[b][2];
    for (int a = 0; a < alpha; a++)
        for (int b = 0; b < alpha; b++)
            for (int o = 0; o < nb; o++)
                u[a * alpha + b][o] =
                    0.0f + G[a][0] * t[0][b][o] + G[a][1] * t[1][b][o] + G[a][2] * t[2][b][o];
}

void dnnl_wino_pack(const dnnl_memory_desc_t *md, const float *w, int64_t oc, int64_t ic, void *out)
{
    const dnnl_wino_desc_t *d = &md->format_desc.wino_desc;
    bool f43 = d->wino_format == dnnl_wino_wei_OBaaIBOIio;
    int alpha = f43 ? 6 : 4, aa = alpha * alpha;
    const float(*G)[3] = f43 ? G43 : G23;
    /* aaOio is aaOBiOo with one block per oc2 block, whatever oc2_block says */
    int64_t ocb = d->oc_block, icb = d->ic_block, ic2 = f43 ? d->ic2_block : 1;
    int64_t oc2 = d->wino_format == dnnl_wino_wei_aaOio ? 1 : d->oc2_block;
    int64_t oc_chunks = d->oc / (ocb * oc2), nb_ic = d->ic / icb, ic_chunks = nb_ic / ic2;
    float *dst = out;
    memset(dst, 0, d->size);
    float u[MAX_ALPHA * MAX_ALPHA][MAX_OC_BLOCK];
    for (int64_t ob_all = 0; ob_all * ocb < oc; ob_all++) {
        int64_t occ = ob_all / oc2, ob = ob_all % oc2;
        for (int64_t c = 0; c < ic; c++) {
            transform_block(w, oc, ic, c, ob_all * ocb, (int)ocb, G, alpha, u);
            int64_t ib = c / icb, i = c % icb;
            for (int a = 0; a < aa; a++) {
                int64_t at; /* in blocks of ocb */
                if (f43) /* [occ][a][icc][ob][ib % ic2][i][o] */
                    at = ((((occ * aa + a) * ic_chunks + ib / ic2) * oc2 + ob) * ic2 + ib % ic2) * icb + i;
                else /* [a][occ][ib][i][ob][o] */
                    at = (((a * oc_chunks + occ) * nb_ic + ib) * icb + i) * oc2 + ob;
                memcpy(dst + at * ocb, u[a], sizeof(float) * (size_t)ocb);
            }
        }
    }
}

#endif
