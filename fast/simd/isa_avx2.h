/* fast/simd/isa_avx2.h — the vector layer at AVX2+FMA width: 8 float lanes in a __m256,
 * compare results as all-ones/all-zero lanes in a __m256, tails through maskload/maskstore.
 * With SV_PORTABLE defined: only the names, width and tiles. */
#ifndef ANX_ISA_AVX2_H
#define ANX_ISA_AVX2_H

/* The name in symbols and kernel names; tests/simd builds a second AVX2 instance under another
 * name (avx2s) to compare it with fast/avx2's hand-written kernels in one binary. */
#ifndef SV_ISA
#define SV_ISA avx2
#endif
#define SV_W 8
#define SV_TILE_CONV 3x32  /* conv fwd / bwd_data: 3 pixels x 4 blocks of 8 output channels */
#define SV_TILE_PIXELS 3   /* pixels of the conv tile (16 registers: 12 accumulators) */
#define SV_TILE_BWW 16x4   /* conv bwd_weights: 2 blocks of 8 output channels x 4 taps */
#define SV_BWW_TAPS 4     /* taps of f per bwd_weights tile (8 accumulators) */
#define SV_BWW_ROW_TAPS 4 /* plain src (conv1): no wider tile fits 16 registers */
#define SV_CONV_CHUNK_KB 128 /* conv fwd weights per input-channel pass: L2 (fwd_icb_chunk) */
#define SV_TILE_LFWD 4x3   /* linear fwd: 4 samples x 3 outputs, 8-lane dot products */
#define SV_LFWD_NO 3       /* outputs of the linear fwd tile */
#define SV_TILE_GEMM 6x16  /* linear bwd: 6 rows x 2 vectors of 8 columns */
#define SV_LBWD_ROWS_MAX_N 4 /* linear bwd_data streams 16 whole weight rows a pass (rows16) up to this batch */
#define SV_TILE_POOL 8c    /* maxpool: 8 channels a vector */
#define SV_PEAK_ISA ANX_PEAK_AVX2 /* anx-bench's peak% ceiling */
#define SV_TRAIN_RANK 2 /* anx train: above ref, below onednn */

#ifndef SV_PORTABLE
#if !defined(__AVX2__) || !defined(__FMA__)
#error "AVX2 kernels must be compiled with -mavx2 -mfma"
#endif
#include <immintrin.h>
#endif

#include "fast/simd/simd.h"

#ifndef SV_PORTABLE
typedef __m256 sv_f32;
typedef __m256 sv_mask; /* lane predicate as all-ones / all-zero lanes */

#define sv_zero() _mm256_setzero_ps()
#define sv_set1(x) _mm256_set1_ps(x)
#define sv_load(p) _mm256_loadu_ps(p)
#define sv_store(p, v) _mm256_storeu_ps((p), (v))
#define sv_bcast(p) _mm256_broadcast_ss(p)
#define sv_fma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define sv_add(a, b) _mm256_add_ps((a), (b))
#define sv_mul(a, b) _mm256_mul_ps((a), (b))
#define sv_div(a, b) _mm256_div_ps((a), (b))
#define sv_sqrt(a) _mm256_sqrt_ps(a)
SV_INLINE sv_mask sv_mask_first(int m)
{
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(m), idx));
}
#define sv_mask_all() _mm256_castsi256_ps(_mm256_set1_epi32(-1))
#define sv_load_mask(p, m) _mm256_maskload_ps((p), _mm256_castps_si256(m))
#define sv_store_mask(p, m, v) _mm256_maskstore_ps((p), _mm256_castps_si256(m), (v))
#define sv_gt(a, b) _mm256_cmp_ps((a), (b), _CMP_GT_OQ)
#define sv_le(a, b) _mm256_cmp_ps((a), (b), _CMP_LE_OQ)
#define sv_eq(a, b) _mm256_cmp_ps((a), (b), _CMP_EQ_OQ)
#define sv_isnan(a) _mm256_cmp_ps((a), (a), _CMP_UNORD_Q)
#define sv_or(m1, m2) _mm256_or_ps((m1), (m2))
#define sv_blend(m, a, b) _mm256_blendv_ps((a), (b), (m))
#define sv_keep(m, v) _mm256_and_ps((m), (v))
#define sv_drop(m, v) _mm256_andnot_ps((m), (v))

/* Horizontal sum of the 8 lanes in a fixed order. */
SV_INLINE float sv_hsum(sv_f32 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* dst[c*ldd + r] = src[r*lds + c] for r, c < 8: one 8x8 block transposed in registers (unpack
 * pairs, then quads, then 128-bit halves), for conv bwd_data's flipped weights. */
SV_INLINE void sv_transpose(float *dst, size_t ldd, const float *src, size_t lds)
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        const __m256 a = _mm256_loadu_ps(src + 2 * i * lds), b = _mm256_loadu_ps(src + (2 * i + 1) * lds);
        t[2 * i] = _mm256_unpacklo_ps(a, b), t[2 * i + 1] = _mm256_unpackhi_ps(a, b);
    }
    for (int q = 0; q < 2; q++) { /* rows 4q..4q+3: columns c and c+4 of each in one vector */
        const __m256 *tq = t + 4 * q;
        u[4 * q] = _mm256_shuffle_ps(tq[0], tq[2], 0x44), u[4 * q + 1] = _mm256_shuffle_ps(tq[0], tq[2], 0xEE);
        u[4 * q + 2] = _mm256_shuffle_ps(tq[1], tq[3], 0x44), u[4 * q + 3] = _mm256_shuffle_ps(tq[1], tq[3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        _mm256_storeu_ps(dst + c * ldd, _mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
        _mm256_storeu_ps(dst + (c + 4) * ldd, _mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
    }
}
#endif

#endif
