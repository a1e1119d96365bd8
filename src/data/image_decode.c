/* image_decode.c - PNG (libpng) and JPEG (libjpeg) decoding for image folders.
 *
 * Both libraries report fatal errors through a callback that must not
 * return; their defaults print and exit(). Here the callbacks record the
 * message and longjmp back to the decode function, which turns it into a
 * lego_status naming the file. All state that outlives a longjmp lives in a
 * context struct reached through a pointer, so no local is clobbered. */
#include "data/data_internal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

/* ---- PNG ---- */

typedef struct png_ctx {
    const char *path;
    FILE *fp;
    png_structp png;
    png_infop info;
    uint8_t *pixels;
    png_bytep *rows;
    char msg[200];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

/* Warnings (e.g. a bad ancillary chunk) leave a usable image: stay quiet. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static lego_status png_run(png_ctx *c, int channels, image_info *info)
{
    c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    if (c->png)
        c->info = png_create_info_struct(c->png);
    if (!c->png || !c->info)
        return lego_error(LEGO_ERR_NOMEM, "%s: out of memory starting libpng", c->path);
    if (setjmp(png_jmpbuf(c->png)))
        return lego_error(LEGO_ERR_FORMAT, "%s: corrupt PNG: %s", c->path, c->msg);
    png_init_io(c->png, c->fp);
    png_read_info(c->png, c->info);
    png_uint_32 w = png_get_image_width(c->png, c->info);
    png_uint_32 h = png_get_image_height(c->png, c->info);
    int type = png_get_color_type(c->png, c->info);
    info->w = (int)w;
    info->h = (int)h;
    info->gray = !(type & PNG_COLOR_MASK_COLOR);
    if ((int64_t)w * h > DATA_MAX_PIXELS)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: %ux%u pixels is too large", c->path, w, h);
    if (channels == 0)
        return lego_ok();

    /* Normalise every PNG flavour to 8-bit gray or RGB without alpha. */
    png_set_strip_16(c->png);
    png_set_strip_alpha(c->png);
    png_set_packing(c->png);
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(c->png);
    if (info->gray && png_get_bit_depth(c->png, c->info) < 8)
        png_set_expand_gray_1_2_4_to_8(c->png);
    if (info->gray && channels == 3)
        png_set_gray_to_rgb(c->png);
    if (!info->gray && channels == 1)
        png_set_rgb_to_gray_fixed(c->png, 1, -1, -1);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    if (png_get_channels(c->png, c->info) != channels || png_get_bit_depth(c->png, c->info) != 8)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: cannot convert this PNG to %d channels",
                          c->path, channels);
    c->pixels = malloc((size_t)w * h * (size_t)channels);
    c->rows = malloc(sizeof(png_bytep) * h);
    if (!c->pixels || !c->rows)
        return lego_error(LEGO_ERR_NOMEM, "%s: out of memory for %ux%u pixels", c->path, w, h);
    for (png_uint_32 y = 0; y < h; y++)
        c->rows[y] = c->pixels + (size_t)y * w * (size_t)channels;
    png_read_image(c->png, c->rows);
    png_read_end(c->png, NULL);
    return lego_ok();
}

static lego_status png_decode(const char *path, FILE *fp, int channels, uint8_t **pixels,
                              image_info *info)
{
    png_ctx c = {.path = path, .fp = fp};
    lego_status st = png_run(&c, channels, info);
    if (c.png)
        png_destroy_read_struct(&c.png, c.info ? &c.info : NULL, NULL);
    free(c.rows);
    if (st.code == LEGO_OK && pixels)
        *pixels = c.pixels;
    else
        free(c.pixels);
    return st;
}

/* ---- JPEG ---- */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr err; /* first: libjpeg hands callbacks a pointer to it */
    jmp_buf jump;
    struct jpeg_decompress_struct cinfo;
    const char *path;
    uint8_t *pixels;
    char msg[JMSG_LENGTH_MAX];
    int fatal_warning; /* a warning that means pixels are missing */
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr ci)
{
    jpeg_ctx *c = (jpeg_ctx *)ci->err;
    ci->err->format_message(ci, c->msg);
    longjmp(c->jump, 1);
}

/* Default: print to stderr. Truncated data only warns in libjpeg (it pads
 * with gray); like PIL, treat it as an error. Other warnings are benign. */
static void jpeg_on_message(j_common_ptr ci, int level)
{
    jpeg_ctx *c = (jpeg_ctx *)ci->err;
    if (level < 0 && !c->fatal_warning &&
        (ci->err->msg_code == JWRN_JPEG_EOF || ci->err->msg_code == JWRN_HIT_MARKER)) {
        ci->err->format_message(ci, c->msg);
        c->fatal_warning = 1;
    }
}

static lego_status jpeg_run(jpeg_ctx *c, FILE *fp, int channels, image_info *info)
{
    if (setjmp(c->jump))
        return lego_error(LEGO_ERR_FORMAT, "%s: corrupt JPEG: %s", c->path, c->msg);
    jpeg_create_decompress(&c->cinfo);
    jpeg_stdio_src(&c->cinfo, fp);
    jpeg_read_header(&c->cinfo, TRUE);
    info->w = (int)c->cinfo.image_width;
    info->h = (int)c->cinfo.image_height;
    info->gray = c->cinfo.jpeg_color_space == JCS_GRAYSCALE;
    if ((int64_t)info->w * info->h > DATA_MAX_PIXELS)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: %dx%d pixels is too large", c->path,
                          info->w, info->h);
    if (channels == 0)
        return lego_ok();
    c->cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&c->cinfo);
    if (c->cinfo.output_components != channels || (int)c->cinfo.output_width != info->w ||
        (int)c->cinfo.output_height != info->h)
        return lego_error(LEGO_ERR_UNSUPPORTED, "%s: cannot convert this JPEG to %d channels",
                          c->path, channels);
    size_t stride = (size_t)info->w * (size_t)channels;
    c->pixels = malloc(stride * (size_t)info->h);
    if (!c->pixels)
        return lego_error(LEGO_ERR_NOMEM, "%s: out of memory for %dx%d pixels", c->path, info->w,
                          info->h);
    while (c->cinfo.output_scanline < c->cinfo.output_height) {
        JSAMPROW row = c->pixels + stride * c->cinfo.output_scanline;
        jpeg_read_scanlines(&c->cinfo, &row, 1);
    }
    if (c->fatal_warning)
        return lego_error(LEGO_ERR_FORMAT, "%s: corrupt JPEG: %s", c->path, c->msg);
    jpeg_finish_decompress(&c->cinfo);
    return lego_ok();
}

static lego_status jpeg_decode(const char *path, FILE *fp, int channels, uint8_t **pixels,
                               image_info *info)
{
    jpeg_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return lego_error(LEGO_ERR_NOMEM, "%s: out of memory", path);
    c->path = path;
    c->cinfo.err = jpeg_std_error(&c->err);
    c->err.error_exit = jpeg_on_error;
    c->err.emit_message = jpeg_on_message;
    lego_status st = jpeg_run(c, fp, channels, info);
    jpeg_destroy_decompress(&c->cinfo);
    if (st.code == LEGO_OK && pixels)
        *pixels = c->pixels;
    else
        free(c->pixels);
    free(c);
    return st;
}

/* ---- dispatch on the file's first bytes ---- */

static lego_status decode(const char *path, int channels, uint8_t **pixels, image_info *info)
{
    if (pixels)
        *pixels = NULL;
    memset(info, 0, sizeof *info);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return lego_error(LEGO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, fp);
    rewind(fp);
    lego_status st;
    if (got == 8 && png_sig_cmp(sig, 0, 8) == 0)
        st = png_decode(path, fp, channels, pixels, info);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        st = jpeg_decode(path, fp, channels, pixels, info);
    else
        st = lego_error(LEGO_ERR_FORMAT, "%s: not a PNG or JPEG file (%zu bytes read)", path, got);
    fclose(fp);
    if (st.code == LEGO_OK && (info->w <= 0 || info->h <= 0))
        st = lego_error(LEGO_ERR_FORMAT, "%s: empty image (%dx%d)", path, info->w, info->h);
    if (st.code != LEGO_OK && pixels) {
        free(*pixels);
        *pixels = NULL;
    }
    return st;
}

lego_status image_probe(const char *path, image_info *info)
{
    return decode(path, 0, NULL, info);
}

lego_status image_decode(const char *path, int channels, uint8_t **pixels, image_info *info)
{
    if (channels != 1 && channels != 3)
        return lego_error(LEGO_ERR_ARG, "%s: can decode to 1 or 3 channels, not %d", path,
                          channels);
    return decode(path, channels, pixels, info);
}
