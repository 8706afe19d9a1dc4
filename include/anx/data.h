/* anx/data.h — the image pipeline of the tutorial, in C:
 *
 *   ImageFolder(root, transform=Compose([ToTensor(), Resize((227, 227))])) + DataLoader
 *
 * PNG decoding (libpng) to RGB the way PIL's Image.convert('RGB') does, ToTensor (float in
 * [0,1], CHW), then torchvision's tensor Resize (bilinear, align_corners=False, antialias off
 * as torchvision 0.14 does on tensors, or on as from 0.17), an ImageFolder scan and a batching
 * loader that decodes in a background thread.  docs/data.md says what each step matches.
 *
 * Errors are one line in err naming the file (and what is wrong); functions return 0 or 2.
 */
#ifndef ANX_DATA_H
#define ANX_DATA_H

#include <stddef.h>
#include <stdint.h>

/* ---- PNG ---------------------------------------------------------------------------- */

/* An 8-bit RGB picture, row-major interleaved: rgb[(y * w + x) * 3 + c]. */
typedef struct anx_image {
    int w, h;
    unsigned char *rgb; /* [h, w, 3] */
} anx_image;

/* Any PNG (1/2/4/8/16-bit; gray, gray+alpha, palette with or without tRNS, RGB, RGBA;
 * interlaced or not) to RGB8 as PIL's convert('RGB'): alpha and tRNS dropped, gray
 * replicated, palette expanded, low-bit gray scaled to 0..255, 16-bit samples reduced to their
 * high byte.  A corrupt or truncated file (libpng's error caught) gives 2 and err naming path. */
int anx_png_read(anx_image *img, const char *path, char *err, size_t errlen);
void anx_image_free(anx_image *img);

/* PNG colour types (the values of the PNG spec and libpng). */
enum { ANX_PNG_GRAY = 0, ANX_PNG_RGB = 2, ANX_PNG_PALETTE = 3, ANX_PNG_GRAY_ALPHA = 4, ANX_PNG_RGBA = 6 };

/* What to write.  samples: one uint16 per sample, [h, w, channels(color_type)], each below
 * 2^bit_depth (palette: the index); the writer packs them. */
typedef struct anx_png_spec {
    int w, h;
    int color_type;               /* ANX_PNG_* */
    int bit_depth;                /* 1, 2, 4, 8 or 16 as the PNG spec allows for color_type */
    int interlace;                /* 0 none, 1 Adam7 */
    const unsigned char *palette; /* [npalette, 3] for ANX_PNG_PALETTE */
    int npalette;
    const unsigned char *trns;    /* palette: alpha per entry [ntrns] */
    int ntrns;
    int trns_gray;                /* gray / RGB tRNS colour key when has_trns_key */
    int trns_rgb[3];
    int has_trns_key;
} anx_png_spec;

int anx_png_channels(int color_type);
/* Writes path atomically (path.tmp.XXXXXX then rename). 0, or 2 with err. */
int anx_png_write(const char *path, const anx_png_spec *spec, const uint16_t *samples, char *err,
                  size_t errlen);
/* Convenience: an RGB8 picture as an 8-bit RGB PNG. */
int anx_png_write_rgb8(const char *path, const anx_image *img, char *err, size_t errlen);

/* ---- ToTensor and Resize ------------------------------------------------------------- */

/* ToTensor: dst [3, h, w] = rgb / 255 (float32 division as PyTorch does it). */
void anx_image_to_tensor(float *dst, const anx_image *img);

/* torchvision.transforms.functional.resize on a float tensor (bilinear, align_corners=False):
 * dst [c, oh, ow] from src [c, ih, iw].  antialias = 0: torch's upsample_bilinear2d
 * (torchvision 0.14 default for tensors); 1: the PIL-style separable triangle filter of
 * torch's _upsample_bilinear2d_aa (the default from torchvision 0.17). */
int anx_f32_resize_bilinear__ref(float *dst, const float *src, int c, int ih, int iw, int oh, int ow,
                                 int antialias); /* 0, or -1 out of memory */

/* The whole per-image transform: decode, ToTensor, Resize to size x size.
 * dst [3, size, size]. 0, or 2 with err naming path. */
int anx_image_load(float *dst, const char *path, int size, int antialias, char *err, size_t errlen);

/* ---- ImageFolder ----------------------------------------------------------------------- */

/* root/<class>/ (any depth) PNG files: classes are the sub-directories sorted by name (byte order, as Python's
 * sorted()); their index is the label.  Files are collected recursively as torchvision's
 * make_dataset does (directories in sorted order, files sorted); files whose name does not end
 * in .png (any case) are not images to us and are skipped (counted in skipped_files).
 * A missing or empty root, or a class folder with no PNG, is an error naming it. */
typedef struct anx_dataset {
    char *root;
    int n_classes;
    char **classes; /* [n_classes] */
    int n;
    char **paths;   /* [n] full paths */
    int *labels;    /* [n] */
    int skipped_files;
} anx_dataset;

int anx_dataset_open(anx_dataset *d, const char *root, char *err, size_t errlen);
void anx_dataset_free(anx_dataset *d);

/* ---- DataLoader ------------------------------------------------------------------------ */

typedef struct anx_loader_config {
    int batch;      /* images per batch; the last partial batch is kept */
    int shuffle;    /* 1: order is a permutation drawn from (seed, epoch) */
    uint64_t seed;
    int size;       /* Resize target (227) */
    int antialias;
    int skip_bad;   /* 1: a file that fails to decode is skipped and counted; 0: it is an error */
    /* Data parallelism (docs/mpi.md): with ranks > 1 each batch is this rank's slice of the global
     * batch of `batch` images (anx_shard), possibly empty (count 0, still returned as a batch, so
     * every rank sees the same number of batches).  0 or 1: the whole batch. */
    int ranks, rank;
} anx_loader_config;

/* Rank's slice of a global batch of count images split over ranks as evenly as possible: the
 * first count % ranks ranks take one more.  *first = its first position, *mine = how many. */
void anx_shard(int count, int rank, int ranks, int *first, int *mine);

typedef struct anx_loader anx_loader;

/* NULL with err on bad config or no memory. The loader keeps a pointer to d. */
anx_loader *anx_loader_create(const anx_dataset *d, const anx_loader_config *cfg, char *err,
                              size_t errlen);
void anx_loader_destroy(anx_loader *l);
/* The order of epoch (0-based) into order[d->n]: identity, or the Fisher-Yates permutation
 * drawn from key(seed, "shuffle", epoch).  A pure function, so a resumed run sees the same. */
void anx_loader_order(int *order, int n, int shuffle, uint64_t seed, int epoch);
/* Starts decoding epoch's batches in the background thread (ends any epoch in progress). */
int anx_loader_start_epoch(anx_loader *l, int epoch, char *err, size_t errlen);
/* Next batch: x [batch, 3, size, size], y [batch]; *count images in it (< batch only for the
 * last).  Returns 1 with a batch, 0 at the end of the epoch, 2 on an error (err names the file). */
int anx_loader_next(anx_loader *l, float *x, int64_t *y, int *count, char *err, size_t errlen);
/* Files skipped as bad since the loader was created (skip_bad). */
int anx_loader_bad_count(const anx_loader *l);
/* Seconds the consumer spent waiting for the background thread since creation. */
double anx_loader_wait_seconds(const anx_loader *l);

/* ---- Synthetic flowers ------------------------------------------------------------------ */

#define ANX_FLOWER_CLASSES 5
extern const char *const anx_flower_classes[ANX_FLOWER_CLASSES]; /* daisy .. tulips */

/* Draws image number index of class cls: a w x h RGB8 picture (w, h drawn too) into img
 * (allocated here) and the PNG kind it should be stored as (spec fields color_type,
 * bit_depth, interlace).  Pure function of (seed, split, cls, index). */
int anx_flower_draw(anx_image *img, anx_png_spec *kind, uint64_t seed, int split, int cls, int index);
/* Writes out/train/<class>/NNNN.png (per_class each) and out/val/<class>/NNNN.png (val_per_class
 * each).  0, or 2 with err. */
int anx_flowers_write(const char *out, int per_class, int val_per_class, uint64_t seed, char *err,
                      size_t errlen);
/* Encodes an RGB8 picture as the kind chosen by anx_flower_draw (palette quantised, gray,
 * alpha added, 16-bit widened) and writes it. */
int anx_png_write_as(const char *path, const anx_image *img, const anx_png_spec *kind, char *err,
                     size_t errlen);

#endif
