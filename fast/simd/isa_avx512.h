/* fast/simd/isa_avx512.h — the vector layer at AVX-512F width: 16 float lanes in a __m512,
 * compare results in __mmask16 registers.  Only AVX-512F instructions (no BW/VL/DQ): every op
 * used here is in F, so any AVX-512 CPU runs it.
 * With SV_PORTABLE defined: only the names, width and tiles (for backend_avx512.c). */
#ifndef ANX_ISA_AVX512_H
#define ANX_ISA_AVX512_H

#define SV_ISA avx512
#define SV_W 16
/* Register tiles, in the kernel names (see the kernel sources for what each means). */
#define SV_TILE_CONV 6x64  /* conv fwd / bwd_data: 6 pixels x 4 blocks of 16 output channels */
#define SV_TILE_PIXELS 6   /* pixels of the conv tile (32 registers: 24 accumulators; 3 at rows' edges) */
#define SV_TILE_BWW 32x8   /* conv bwd_weights: 2 blocks of 16 output channels x 8 taps (16 accumulators) */
#define SV_BWW_TAPS 8      /* taps of f per bwd_weights tile (16 accumulators) */
#define SV_BWW_ROW_TAPS 12 /* plain src (conv1): a whole kernel row of up to 12 taps a tile (24 accumulators) */
#define SV_CONV_CHUNK_KB 40 /* conv fwd weights per input-channel pass: L1 (fwd_icb_chunk) */
#define SV_TILE_LFWD 4x6   /* linear fwd: 4 samples x 6 outputs, 16-lane dot products (24 accumulators) */
#define SV_LFWD_NO 6       /* outputs of the linear fwd tile */
#define SV_TILE_GEMM 6x32  /* linear bwd: 6 rows x 2 vectors of 16 columns */
#define SV_LBWD_ROWS_MAX_N 4 /* linear bwd_data streams 16 whole weight rows a pass (rows16) up to this batch */
#define SV_TILE_POOL 16c   /* maxpool: 16 channels a vector */
#define SV_PEAK_ISA ANX_PEAK_AVX512 /* anx-bench's peak% ceiling */
#define SV_TRAIN_RANK 3 /* anx train: above avx2; ties with onednn, which the registry lists first */

#ifndef SV_PORTABLE
#if !defined(__AVX512F__)
#error "AVX-512 kernels must be compiled with -mavx512f (fast/avx512/CMakeLists.txt)"
#endif
#include <immintrin.h>
#endif

#include "fast/simd/simd.h"

#ifndef SV_PORTABLE
typedef __m512 sv_f32;
typedef __mmask16 sv_mask; /* lane predicate: tails and compare results */

#define sv_zero() _mm512_setzero_ps()
#define sv_set1(x) _mm512_set1_ps(x)
#define sv_load(p) _mm512_loadu_ps(p)
#define sv_store(p, v) _mm512_storeu_ps((p), (v))
#define sv_bcast(p) _mm512_set1_ps(*(p))
#define sv_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c)) /* a*b + c, one rounding */
#define sv_add(a, b) _mm512_add_ps((a), (b))
#define sv_mul(a, b) _mm512_mul_ps((a), (b))
#define sv_div(a, b) _mm512_div_ps((a), (b))
#define sv_sqrt(a) _mm512_sqrt_ps(a)
/* the first m (0..16) lanes; masked loads read nothing in the other lanes (no fault) */
#define sv_mask_first(m) ((__mmask16)((1u << (m)) - 1u))
#define sv_mask_all() ((__mmask16)0xffff)
#define sv_load_mask(p, m) _mm512_maskz_loadu_ps((m), (p))
#define sv_store_mask(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#define sv_gt(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_GT_OQ)
#define sv_le(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_LE_OQ)
#define sv_eq(a, b) _mm512_cmp_ps_mask((a), (b), _CMP_EQ_OQ)
#define sv_isnan(a) _mm512_cmp_ps_mask((a), (a), _CMP_UNORD_Q)
#define sv_or(m1, m2) ((__mmask16)((m1) | (m2)))
#define sv_blend(m, a, b) _mm512_mask_blend_ps((m), (a), (b)) /* m ? b : a, per lane */
#define sv_keep(m, v) _mm512_maskz_mov_ps((m), (v))           /* m ? v : +0 */
#define sv_drop(m, v) _mm512_maskz_mov_ps((__mmask16)~(m), (v)) /* m ? +0 : v */

/* Horizontal sum of the 16 lanes in a fixed order: halves, then quarters, then pairs. */
SV_INLINE float sv_hsum(sv_f32 v)
{
    const __m256 lo = _mm512_castps512_ps256(v);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    const __m256 h = _mm256_add_ps(lo, hi);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* dst[c*ldd + r] = src[r*lds + c] for r, c < 16: one 16x16 block transposed in registers (unpack
 * pairs, then quads, then two 128-bit lane shuffles), for conv bwd_data's flipped weights. */
SV_INLINE void sv_transpose(float *dst, size_t ldd, const float *src, size_t lds)
{
    __m512 t[16], u[16], v[16];
    for (int i = 0; i < 8; i++) {
        const __m512 a = _mm512_loadu_ps(src + 2 * i * lds), b = _mm512_loadu_ps(src + (2 * i + 1) * lds);
        t[2 * i] = _mm512_unpacklo_ps(a, b), t[2 * i + 1] = _mm512_unpackhi_ps(a, b);
    }
#define SV_PD(x) _mm512_castps_pd(x)
    for (int q = 0; q < 4; q++) { /* rows 4q..4q+3: columns c, c+4, c+8, c+12 (c < 4) in u[4q + c] */
        const __m512 *tq = t + 4 * q;
        u[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(SV_PD(tq[0]), SV_PD(tq[2])));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(SV_PD(tq[0]), SV_PD(tq[2])));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(SV_PD(tq[1]), SV_PD(tq[3])));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(SV_PD(tq[1]), SV_PD(tq[3])));
    }
#undef SV_PD
    for (int h = 0; h < 2; h++) /* rows 8h..8h+7: v[8h + 2c] columns c, c+8; v[8h + 2c + 1] c+4, c+12 */
        for (int c = 0; c < 4; c++) {
            v[8 * h + 2 * c] = _mm512_shuffle_f32x4(u[8 * h + c], u[8 * h + 4 + c], 0x88);
            v[8 * h + 2 * c + 1] = _mm512_shuffle_f32x4(u[8 * h + c], u[8 * h + 4 + c], 0xDD);
        }
    for (int c = 0; c < 4; c++) {
        _mm512_storeu_ps(dst + c * ldd, _mm512_shuffle_f32x4(v[2 * c], v[8 + 2 * c], 0x88));
        _mm512_storeu_ps(dst + (c + 8) * ldd, _mm512_shuffle_f32x4(v[2 * c], v[8 + 2 * c], 0xDD));
        _mm512_storeu_ps(dst + (c + 4) * ldd, _mm512_shuffle_f32x4(v[2 * c + 1], v[8 + 2 * c + 1], 0x88));
        _mm512_storeu_ps(dst + (c + 12) * ldd, _mm512_shuffle_f32x4(v[2 * c + 1], v[8 + 2 * c + 1], 0xDD));
    }
}
#endif

#endif
