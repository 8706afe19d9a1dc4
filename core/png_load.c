/* PNG reading (any kind, to RGB8 as PIL's convert('RGB')) and writing, with libpng.
 *
 * libpng reports errors by longjmp; every error is caught here and turned into one line
 * naming the file, so a corrupt or truncated PNG never crashes a run.  Everything a
 * longjmp can skip over lives in a heap context whose pointer is fixed before setjmp. */
#include "anx/data.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Larger pictures are refused rather than allocated (a corrupt IHDR must not ask for GBs). */
#define ANX_PNG_MAX_DIM 16384
#define ANX_PNG_MAX_PIXELS (64u << 20)

typedef struct png_ctx {
    const char *path;
    char msg[200];
    FILE *fp;
    png_structp png;
    png_infop info;
    unsigned char *pix;  /* decoded rows, [h, rowbytes] */
    png_bytep *rows;     /* [h] into pix */
    uint8_t *packed;     /* writer: one packed row */
} png_ctx;

static void on_error(png_structp png, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg; /* benign (bad ancillary chunk CRC, unknown chunk): PIL ignores them too */
}

void anx_image_free(anx_image *img)
{
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

int anx_png_channels(int color_type)
{
    switch (color_type) {
    case ANX_PNG_GRAY: return 1;
    case ANX_PNG_GRAY_ALPHA: return 2;
    case ANX_PNG_RGB: return 3;
    case ANX_PNG_PALETTE: return 1;
    case ANX_PNG_RGBA: return 4;
    default: return 0;
    }
}

/* Decoded rows with ch 8-bit channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) to RGB8:
 * gray replicated, alpha dropped (PIL's convert('RGB') of L, LA, RGB, RGBA). */
static void rows_to_rgb8(unsigned char *rgb, png_bytep const *rows, int w, int h, int ch)
{
    for (int y = 0; y < h; y++) {
        const unsigned char *s = rows[y];
        unsigned char *d = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, s += ch, d += 3) {
            if (ch <= 2) {
                d[0] = d[1] = d[2] = s[0];
            } else {
                d[0] = s[0], d[1] = s[1], d[2] = s[2];
            }
        }
    }
}

static int read_png(png_ctx *c, anx_image *img)
{
    png_uint_32 w, h;
    int depth, ctype, interlace;

    if (setjmp(png_jmpbuf(c->png))) return 2;
    png_set_user_limits(c->png, ANX_PNG_MAX_DIM, ANX_PNG_MAX_DIM);
    png_init_io(c->png, c->fp);
    png_read_info(c->png, c->info);
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if ((size_t)w * h > ANX_PNG_MAX_PIXELS) {
        snprintf(c->msg, sizeof c->msg, "%ux%u pixels is more than this reader takes", (unsigned)w,
                 (unsigned)h);
        return 2;
    }
    /* Palette -> RGB; 1/2/4-bit gray -> 8-bit scaled by 255/(2^d-1) (PIL's L;2 / L;4 / "1");
     * 16 -> 8 by the high byte (PIL's ;16B unpackers); alpha, incl. tRNS, dropped below. */
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
    if (depth == 16) png_set_strip_16(c->png);
    png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);

    int ch = png_get_channels(c->png, c->info);
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    if (ch < 1 || ch > 4 || rowbytes < (size_t)w * ch) {
        snprintf(c->msg, sizeof c->msg, "unexpected layout after expansion (%d channels)", ch);
        return 2;
    }
    c->pix = malloc(rowbytes * h);
    c->rows = malloc(sizeof *c->rows * h);
    img->rgb = malloc((size_t)w * h * 3);
    if (!c->pix || !c->rows || !img->rgb) {
        snprintf(c->msg, sizeof c->msg, "out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        return 2;
    }
    for (png_uint_32 y = 0; y < h; y++) c->rows[y] = c->pix + rowbytes * y;
    png_read_image(c->png, c->rows);
    /* No png_read_end: PIL does not need what follows the image data either. */
    rows_to_rgb8(img->rgb, c->rows, (int)w, (int)h, ch);
    img->w = (int)w;
    img->h = (int)h;
    return 0;
}

int anx_png_read(anx_image *img, const char *path, char *err, size_t errlen)
{
    img->w = img->h = 0;
    img->rgb = NULL;
    png_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    c->path = path;
    int rc = 2;
    unsigned char sig[8];
    c->fp = fopen(path, "rb");
    if (!c->fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    size_t got = fread(sig, 1, 8, c->fp);
    if (got != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        snprintf(err, errlen, "%s: not a PNG file (bad signature)", path);
        goto done;
    }
    c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning);
    c->info = c->png ? png_create_info_struct(c->png) : NULL;
    if (!c->info) {
        snprintf(err, errlen, "%s: cannot create the libpng reader", path);
        goto done;
    }
    png_set_sig_bytes(c->png, 8);
    rc = read_png(c, img);
    if (rc) snprintf(err, errlen, "%s: corrupt PNG: %s", path, c->msg[0] ? c->msg : "unknown libpng error");
done:
    if (c->png) png_destroy_read_struct(&c->png, c->info ? &c->info : NULL, NULL);
    if (c->fp) fclose(c->fp);
    free(c->pix);
    free(c->rows);
    free(c);
    if (rc) anx_image_free(img);
    return rc;
}

/* ---- writing ---- */

static int valid_depth(int ctype, int depth)
{
    switch (ctype) {
    case ANX_PNG_GRAY: return depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
    case ANX_PNG_PALETTE: return depth == 1 || depth == 2 || depth == 4 || depth == 8;
    case ANX_PNG_RGB:
    case ANX_PNG_GRAY_ALPHA:
    case ANX_PNG_RGBA: return depth == 8 || depth == 16;
    default: return 0;
    }
}

/* One row of w*ch samples packed as PNG stores them: MSB-first bits, big-endian 16-bit. */
static void pack_row(uint8_t *dst, const uint16_t *s, size_t nsamples, int depth)
{
    if (depth == 16) {
        for (size_t i = 0; i < nsamples; i++) dst[2 * i] = (uint8_t)(s[i] >> 8), dst[2 * i + 1] = (uint8_t)s[i];
    } else if (depth == 8) {
        for (size_t i = 0; i < nsamples; i++) dst[i] = (uint8_t)s[i];
    } else {
        size_t per = (size_t)(8 / depth), nbytes = (nsamples + per - 1) / per;
        memset(dst, 0, nbytes);
        for (size_t i = 0; i < nsamples; i++)
            dst[i / per] |= (uint8_t)((s[i] & ((1u << depth) - 1)) << (8 - depth * (int)(i % per + 1)));
    }
}

static int write_png(png_ctx *c, const anx_png_spec *s, const uint16_t *samples)
{
    if (setjmp(png_jmpbuf(c->png))) return 2;
    png_init_io(c->png, c->fp);
    png_set_IHDR(c->png, c->info, (png_uint_32)s->w, (png_uint_32)s->h, s->bit_depth, s->color_type,
                 s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (s->color_type == ANX_PNG_PALETTE) {
        png_color pal[256];
        for (int i = 0; i < s->npalette; i++)
            pal[i].red = s->palette[3 * i], pal[i].green = s->palette[3 * i + 1], pal[i].blue = s->palette[3 * i + 2];
        png_set_PLTE(c->png, c->info, pal, s->npalette);
        if (s->ntrns > 0) png_set_tRNS(c->png, c->info, s->trns, s->ntrns, NULL);
    } else if (s->has_trns_key) {
        png_color_16 key = {0, (png_uint_16)s->trns_rgb[0], (png_uint_16)s->trns_rgb[1],
                            (png_uint_16)s->trns_rgb[2], (png_uint_16)s->trns_gray};
        png_set_tRNS(c->png, c->info, NULL, 0, &key);
    }
    png_write_info(c->png, c->info);
    int passes = png_set_interlace_handling(c->png);
    size_t nsamp = (size_t)s->w * anx_png_channels(s->color_type);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < s->h; y++) {
            pack_row(c->packed, samples + nsamp * y, nsamp, s->bit_depth);
            png_write_row(c->png, c->packed);
        }
    png_write_end(c->png, c->info);
    return 0;
}

int anx_png_write(const char *path, const anx_png_spec *s, const uint16_t *samples, char *err, size_t errlen)
{
    if (s->w <= 0 || s->h <= 0 || s->w > ANX_PNG_MAX_DIM || s->h > ANX_PNG_MAX_DIM ||
        !valid_depth(s->color_type, s->bit_depth) ||
        (s->color_type == ANX_PNG_PALETTE && (s->npalette < 1 || s->npalette > 256 || s->ntrns > s->npalette))) {
        snprintf(err, errlen, "%s: invalid PNG spec (%dx%d, colour type %d, depth %d)", path, s->w, s->h,
                 s->color_type, s->bit_depth);
        return 2;
    }
    png_ctx *c = calloc(1, sizeof *c);
    size_t tlen = strlen(path) + 16;
    char *tmp = malloc(tlen);
    int rc = 2, fd = -1;
    if (!c || !tmp) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto done;
    }
    snprintf(tmp, tlen, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot create a temporary file: %s", path, strerror(errno));
        goto done;
    }
    c->fp = fdopen(fd, "wb");
    c->packed = malloc((size_t)s->w * 8 + 8);
    c->png = c->fp ? png_create_write_struct(PNG_LIBPNG_VER_STRING, c, on_error, on_warning) : NULL;
    c->info = c->png ? png_create_info_struct(c->png) : NULL;
    if (!c->info || !c->packed) {
        snprintf(err, errlen, "%s: cannot create the libpng writer", path);
        goto done;
    }
    if (write_png(c, s, samples)) {
        snprintf(err, errlen, "%s: libpng: %s", path, c->msg);
        goto done;
    }
    if (fflush(c->fp) != 0 || ferror(c->fp)) {
        snprintf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    if (c && c->png) png_destroy_write_struct(&c->png, c->info ? &c->info : NULL);
    if (c && c->fp) {
        if (fclose(c->fp) != 0 && rc == 0) {
            snprintf(err, errlen, "%s: close failed: %s", path, strerror(errno));
            rc = 2;
        }
    } else if (fd >= 0) {
        close(fd);
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        rc = 2;
    }
    if (rc && fd >= 0) remove(tmp);
    if (c) free(c->packed);
    free(c);
    free(tmp);
    return rc;
}

int anx_png_write_rgb8(const char *path, const anx_image *img, char *err, size_t errlen)
{
    size_t n = (size_t)img->w * img->h * 3;
    uint16_t *s = malloc(n * sizeof *s);
    if (!s) {
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    for (size_t i = 0; i < n; i++) s[i] = img->rgb[i];
    anx_png_spec spec = {.w = img->w, .h = img->h, .color_type = ANX_PNG_RGB, .bit_depth = 8};
    int rc = anx_png_write(path, &spec, s, err, errlen);
    free(s);
    return rc;
}

/* ---- ToTensor ---- */

void anx_image_to_tensor(float *dst, const anx_image *img)
{
    const size_t hw = (size_t)img->w * img->h;
    for (int ch = 0; ch < 3; ch++)
        for (size_t i = 0; i < hw; i++)
            dst[ch * hw + i] = (float)img->rgb[i * 3 + ch] / 255.0f; /* ToTensor: div(255) in float32 */
}
