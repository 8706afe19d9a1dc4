/* anx/safetensors.h — reading and writing safetensors files.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON (parsed with cJSON):
 *   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string", ...}}
 * then the data; offsets are relative to the end of the header.
 * Every error is one line naming the file and what is wrong (and the tensor when there is one).
 */
#ifndef ANX_SAFETENSORS_H
#define ANX_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum anx_dtype { ANX_DTYPE_F32, ANX_DTYPE_F64, ANX_DTYPE_I64 } anx_dtype;

typedef struct anx_st_tensor {
    char *name;
    anx_dtype dtype;
    int ndim;             /* 0..8 */
    int64_t shape[8];
    size_t count;         /* product of shape (1 for ndim 0) */
    const void *data;     /* into the file's buffer; little-endian, may be unaligned */
} anx_st_tensor;

typedef struct anx_st_file {
    char *path;
    unsigned char *buf;
    size_t size;
    int count;
    anx_st_tensor *tensors;
    int meta_count;
    char **meta_keys, **meta_values; /* "__metadata__" */
} anx_st_file;

/* 0, or 2 (bad input) with err set.  The whole file is validated: header JSON, dtypes, shapes,
 * offsets within the data and consistent with dtype x shape, no overlaps. */
int anx_st_read(anx_st_file *f, const char *path, char *err, size_t errlen);
void anx_st_free(anx_st_file *f);
const anx_st_tensor *anx_st_find(const anx_st_file *f, const char *name);
const char *anx_st_meta(const anx_st_file *f, const char *key);

/* Copies tensor name as float32 (F32 as is, F64 rounded) into out, checking its shape against
 * shape[ndim] (ndim < 0: any shape with exactly count elements).  0, or 2 with err naming the
 * file, the tensor and the expected vs found shape or dtype. */
int anx_st_get_f32(const anx_st_file *f, const char *name, float *out, size_t count,
                   const int64_t *shape, int ndim, char *err, size_t errlen);
int anx_st_get_i64(const anx_st_file *f, const char *name, int64_t *out, size_t count,
                   char *err, size_t errlen);

/* Writer: collects tensors (data is copied), then commits to path by writing path.tmp.XXXXXX
 * and renaming, so a failed or interrupted write never leaves a half-written path. */
typedef struct anx_st_writer anx_st_writer;
anx_st_writer *anx_st_writer_new(void);
int anx_st_writer_add(anx_st_writer *w, const char *name, anx_dtype dtype, const int64_t *shape,
                      int ndim, const void *data);
int anx_st_writer_meta(anx_st_writer *w, const char *key, const char *value);
/* 0, or 2 with err naming path and the failing call (errno text). Frees nothing. */
int anx_st_writer_commit(anx_st_writer *w, const char *path, char *err, size_t errlen);
void anx_st_writer_free(anx_st_writer *w);

#endif
