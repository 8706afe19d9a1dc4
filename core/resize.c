/* torchvision's tensor Resize (bilinear, align_corners=False) as PyTorch 1.13 computes it on
 * float32 CPU tensors, with and without antialias.  Arithmetic is float32 where torch's is
 * (scale, source index, lambda, accumulation order) so results agree to a few ulps. */
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "anx/data.h"

/* ---- antialias off: aten upsample_bilinear2d (UpSampleKernel.cpp, compute_indices_weights_linear) */

typedef struct lin_tap {
    int i0, i1;     /* source indices */
    float l0, l1;   /* their weights */
} lin_tap;

static void linear_taps(lin_tap *t, int in, int out)
{
    const float scale = (float)in / (float)out; /* area_pixel_compute_scale */
    for (int o = 0; o < out; o++) {
        float src = scale * ((float)o + 0.5f) - 0.5f; /* area_pixel_compute_source_index */
        if (src < 0) src = 0;
        int i0 = (int)src;
        t[o].i0 = i0;
        t[o].i1 = i0 + (i0 < in - 1 ? 1 : 0);
        float l1 = src - (float)i0;
        l1 = l1 < 0 ? 0 : l1 > 1 ? 1 : l1;
        t[o].l1 = l1;
        t[o].l0 = 1.0f - l1;
    }
}

/* dst [c, oh, ow] <- src [c, ih, iw]; out = (a*w0 + b*w1)*h0 + (c*w0 + d*w1)*h1 as torch nests it */
static void resize_linear(float *dst, const float *src, int c, int ih, int iw, int oh, int ow,
                          const lin_tap *ty, const lin_tap *tx)
{
    for (int ch = 0; ch < c; ch++) {
        const float *s = src + (size_t)ch * ih * iw; /* [ih, iw] */
        float *d = dst + (size_t)ch * oh * ow;       /* [oh, ow] */
        for (int y = 0; y < oh; y++) {
            const float *r0 = s + (size_t)ty[y].i0 * iw, *r1 = s + (size_t)ty[y].i1 * iw;
            for (int x = 0; x < ow; x++) {
                float t0 = r0[tx[x].i0] * tx[x].l0;
                t0 += r0[tx[x].i1] * tx[x].l1;
                float t1 = r1[tx[x].i0] * tx[x].l0;
                t1 += r1[tx[x].i1] * tx[x].l1;
                float o = t0 * ty[y].l0;
                o += t1 * ty[y].l1;
                d[(size_t)y * ow + x] = o;
            }
        }
    }
}

/* ---- antialias on: aten _upsample_bilinear2d_aa (PIL's triangle filter, separable,
 *      width first then height, each output a normalised window of taps) */

typedef struct aa_taps {
    int support_max;   /* taps per output */
    int *xmin, *xsize; /* [out] */
    float *w;          /* [out, support_max] */
} aa_taps;

static float aa_filter(float x)
{
    if (x < 0) x = -x;
    return x < 1.0f ? 1.0f - x : 0.0f;
}

static int aa_make(aa_taps *t, int in, int out)
{
    const float scale = (float)in / (float)out;
    const float support = scale >= 1.0f ? 1.0f * scale : 1.0f; /* interp_size/2 * scale */
    const float invscale = scale >= 1.0f ? 1.0f / scale : 1.0f;
    t->support_max = (int)ceil(support) * 2 + 1;
    t->xmin = malloc(sizeof(int) * out);
    t->xsize = malloc(sizeof(int) * out);
    t->w = malloc(sizeof(float) * (size_t)out * t->support_max);
    if (!t->xmin || !t->xsize || !t->w) return -1;
    for (int i = 0; i < out; i++) {
        /* torch mixes float and double here exactly like this (i + 0.5 is a double) */
        const float center = (float)(scale * (i + 0.5));
        int64_t xmin = (int64_t)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmax > in) xmax = in;
        int xsize = (int)(xmax - xmin);
        if (xsize > t->support_max) xsize = t->support_max;
        float *w = t->w + (size_t)i * t->support_max, total = 0;
        for (int j = 0; j < xsize; j++) {
            w[j] = aa_filter((float)(((float)(j + xmin) - center + 0.5) * invscale));
            total += w[j];
        }
        for (int j = 0; j < xsize; j++)
            if (total != 0.0f) w[j] /= total;
        t->xmin[i] = (int)xmin;
        t->xsize[i] = xsize;
    }
    return 0;
}

static void aa_free(aa_taps *t)
{
    free(t->xmin);
    free(t->xsize);
    free(t->w);
}

/* One dimension: dst[outer, out, inner] from src[outer, in, inner] (inner = 1: along W). */
static void aa_pass(float *dst, const float *src, int outer, int in, int out, int inner, const aa_taps *t)
{
    for (int o = 0; o < outer; o++) {
        const float *s = src + (size_t)o * in * inner;
        float *d = dst + (size_t)o * out * inner;
        for (int i = 0; i < out; i++) {
            const float *w = t->w + (size_t)i * t->support_max;
            const float *sb = s + (size_t)t->xmin[i] * inner;
            for (int k = 0; k < inner; k++) {
                float acc = sb[k] * w[0];
                for (int j = 1; j < t->xsize[i]; j++) acc += sb[(size_t)j * inner + k] * w[j];
                d[(size_t)i * inner + k] = acc;
            }
        }
    }
}

static int resize_aa(float *dst, const float *src, int c, int ih, int iw, int oh, int ow)
{
    aa_taps tx = {0}, ty = {0};
    float *tmp = NULL;
    int rc = -1;
    if (aa_make(&tx, iw, ow) || aa_make(&ty, ih, oh)) goto done;
    if (iw == ow) { /* torch skips a dimension whose size does not change */
        aa_pass(dst, src, c, ih, oh, ow, &ty);
    } else if (ih == oh) {
        aa_pass(dst, src, c * ih, iw, ow, 1, &tx);
    } else {
        tmp = malloc(sizeof(float) * (size_t)c * ih * ow); /* [c, ih, ow] */
        if (!tmp) goto done;
        aa_pass(tmp, src, c * ih, iw, ow, 1, &tx);
        aa_pass(dst, tmp, c, ih, oh, ow, &ty);
    }
    rc = 0;
done:
    aa_free(&tx);
    aa_free(&ty);
    free(tmp);
    return rc;
}

int anx_f32_resize_bilinear__ref(float *dst, const float *src, int c, int ih, int iw, int oh, int ow,
                                 int antialias)
{
    if (ih == oh && iw == ow) { /* torchvision returns the tensor unchanged */
        memcpy(dst, src, sizeof(float) * (size_t)c * ih * iw);
        return 0;
    }
    if (antialias) return resize_aa(dst, src, c, ih, iw, oh, ow);
    lin_tap *tx = malloc(sizeof *tx * ow), *ty = malloc(sizeof *ty * oh);
    if (tx && ty) {
        linear_taps(tx, iw, ow);
        linear_taps(ty, ih, oh);
        resize_linear(dst, src, c, ih, iw, oh, ow, ty, tx);
    }
    int rc = tx && ty ? 0 : -1;
    free(tx);
    free(ty);
    return rc;
}

int anx_image_load(float *dst, const char *path, int size, int antialias, char *err, size_t errlen)
{
    anx_image img;
    int rc = anx_png_read(&img, path, err, errlen);
    if (rc) return rc;
    float *t = malloc(sizeof(float) * 3 * (size_t)img.w * img.h); /* [3, h, w] */
    if (!t) {
        anx_image_free(&img);
        snprintf(err, errlen, "%s: out of memory", path);
        return 2;
    }
    anx_image_to_tensor(t, &img);
    rc = anx_f32_resize_bilinear__ref(dst, t, 3, img.h, img.w, size, size, antialias);
    if (rc) snprintf(err, errlen, "%s: out of memory resizing %dx%d", path, img.w, img.h);
    free(t);
    anx_image_free(&img);
    return rc ? 2 : 0;
}
