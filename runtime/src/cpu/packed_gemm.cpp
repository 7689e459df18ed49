// Micro-kernel GEMMs over prepacked weights (see packed_gemm.hpp), for AVX-512 and for AVX2+FMA. Compiled
// for those instruction sets through function target attributes only, and called only after a run-time
// CPU check.
#include "cpu/packed_gemm.hpp"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "fkb/error.hpp"

namespace fkb::cpu {

namespace {

constexpr int kNR = 32;  // columns per panel: two 16-float vectors
constexpr int kMR = 12;  // rows per micro-tile: 24 accumulators of the 32 vector registers

// One MR x 32 tile over the whole inner dimension. The loops over r are unrolled for a constant MR, so
// the accumulators stay in registers.
template <int MR>
__attribute__((target("avx512f"))) inline void tile(const float* __restrict a, int64_t lda, int64_t k,
                                                    const float* __restrict bp, const float* __restrict bias,
                                                    PackedEpilogue epi, float alpha, float* __restrict c,
                                                    int64_t ldc, __mmask16 m0, __mmask16 m1) {
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    acc0[r] = _mm512_setzero_ps();
    acc1[r] = _mm512_setzero_ps();
  }
  for (int64_t kk = 0; kk < k; ++kk) {
    const __m512 b0 = _mm512_load_ps(bp + kk * kNR);
    const __m512 b1 = _mm512_load_ps(bp + kk * kNR + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * lda + kk]);
      acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
    }
  }
  const __m512 bb0 = _mm512_load_ps(bias), bb1 = _mm512_load_ps(bias + 16);
  const __m512 zero = _mm512_setzero_ps(), va = _mm512_set1_ps(alpha);
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    __m512 x0 = acc0[r], x1 = acc1[r];
    if (epi != PackedEpilogue::None) {
      x0 = _mm512_add_ps(x0, bb0);
      x1 = _mm512_add_ps(x1, bb1);
    }
    if (epi == PackedEpilogue::BiasLeaky) {
      // x >= 0 ? x : alpha * x; an unordered compare (NaN) takes alpha * x, which stays NaN.
      x0 = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x0, zero, _CMP_GE_OQ), _mm512_mul_ps(va, x0), x0);
      x1 = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x1, zero, _CMP_GE_OQ), _mm512_mul_ps(va, x1), x1);
    }
    _mm512_mask_storeu_ps(c + r * ldc, m0, x0);
    if (m1) _mm512_mask_storeu_ps(c + r * ldc + 16, m1, x1);
  }
}

template <int MR>
__attribute__((target("avx512f"))) void tile_fn(const float* a, int64_t lda, int64_t k, const float* bp,
                                                const float* bias, PackedEpilogue epi, float alpha, float* c,
                                                int64_t ldc, __mmask16 m0, __mmask16 m1) {
  tile<MR>(a, lda, k, bp, bias, epi, alpha, c, ldc, m0, m1);
}

using TileFn = void (*)(const float*, int64_t, int64_t, const float*, const float*, PackedEpilogue, float, float*,
                        int64_t, __mmask16, __mmask16);

const TileFn kTiles[kMR + 1] = {nullptr,     tile_fn<1>, tile_fn<2>, tile_fn<3>,  tile_fn<4>,  tile_fn<5>, tile_fn<6>,
                                tile_fn<7>,  tile_fn<8>, tile_fn<9>, tile_fn<10>, tile_fn<11>, tile_fn<12>};

// AVX2: a 3 x 32 tile (12 accumulators of the 16 vector registers) over the same 32-column panels.
constexpr int kMR2 = 3;

template <int MR>
__attribute__((target("avx2,fma"))) inline void tile2(const float* __restrict a, int64_t lda, int64_t k,
                                                      const float* __restrict bp, const float* __restrict bias,
                                                      PackedEpilogue epi, float alpha, float* __restrict c,
                                                      int64_t ldc, int64_t cols) {
  __m256 acc[MR][4];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    const float* b = bp + kk * kNR;
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), b2 = _mm256_load_ps(b + 16),
                 b3 = _mm256_load_ps(b + 24);
#pragma GCC unroll 4
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + kk);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
      acc[r][2] = _mm256_fmadd_ps(av, b2, acc[r][2]);
      acc[r][3] = _mm256_fmadd_ps(av, b3, acc[r][3]);
    }
  }
  const __m256 zero = _mm256_setzero_ps(), va = _mm256_set1_ps(alpha);
  alignas(32) float tmp[kNR];
#pragma GCC unroll 4
  for (int r = 0; r < MR; ++r) {
    float* dst = cols == kNR ? c + r * ldc : tmp;
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      __m256 x = acc[r][j];
      if (epi != PackedEpilogue::None) x = _mm256_add_ps(x, _mm256_load_ps(bias + 8 * j));
      if (epi == PackedEpilogue::BiasLeaky)  // x >= 0 ? x : alpha * x (NaN: alpha * x)
        x = _mm256_blendv_ps(_mm256_mul_ps(va, x), x, _mm256_cmp_ps(x, zero, _CMP_GE_OQ));
      _mm256_storeu_ps(dst + 8 * j, x);
    }
    if (cols != kNR) std::memcpy(c + r * ldc, tmp, sizeof(float) * static_cast<size_t>(cols));
  }
}

__attribute__((target("avx2,fma"))) void packed_gemm_avx2(const float* a, int64_t lda, int64_t m,
                                                          const PackedWeights& w, PackedEpilogue epi, float alpha,
                                                          float* c, int64_t ldc) {
  for (int64_t pn = 0; pn < w.panels; ++pn) {
    const float* bp = w.data.get() + pn * w.k * kNR;
    const float* bias = w.bias.get() + pn * kNR;
    const int64_t c0 = pn * kNR, cols = std::min<int64_t>(kNR, w.n - c0);
    int64_t i = 0;
    for (; i + kMR2 <= m; i += kMR2) tile2<kMR2>(a + i * lda, lda, w.k, bp, bias, epi, alpha, c + i * ldc + c0, ldc, cols);
    if (m - i == 2) tile2<2>(a + i * lda, lda, w.k, bp, bias, epi, alpha, c + i * ldc + c0, ldc, cols);
    if (m - i == 1) tile2<1>(a + i * lda, lda, w.k, bp, bias, epi, alpha, c + i * ldc + c0, ldc, cols);
  }
}

__mmask16 mask_of(int64_t cols) {
  if (cols <= 0) return 0;
  if (cols >= 16) return 0xFFFF;
  return static_cast<__mmask16>((1u << cols) - 1);
}

}  // namespace

AlignedFloats alloc_aligned_floats(int64_t n) {
  const size_t bytes = ((static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw_error(Status::OutOfMemory, "CPU backend: cannot allocate " + std::to_string(bytes) + " bytes");
  return AlignedFloats(static_cast<float*>(p));
}

namespace {
PackedIsa cpu_isa() {
  static const PackedIsa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return PackedIsa::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return PackedIsa::Avx2;
    return PackedIsa::None;
  }();
  return isa;
}
std::atomic<int>& limit_flag() {
  static std::atomic<int> flag{[] {
    const char* env = std::getenv("FKB_CPU_GEMM");
    const std::string v = env ? env : "";
    if (v == "openblas") return static_cast<int>(PackedIsa::None);
    if (v == "avx2") return static_cast<int>(PackedIsa::Avx2);
    return static_cast<int>(PackedIsa::Avx512);
  }()};
  return flag;
}
}  // namespace

PackedIsa packed_gemm_isa() {
  return static_cast<PackedIsa>(std::min(static_cast<int>(cpu_isa()), limit_flag().load()));
}

bool packed_gemm_available() { return packed_gemm_isa() != PackedIsa::None; }

void set_packed_gemm_isa_limit(PackedIsa limit) { limit_flag().store(static_cast<int>(limit)); }

void set_packed_gemm_enabled(bool enabled) { set_packed_gemm_isa_limit(enabled ? PackedIsa::Avx512 : PackedIsa::None); }

PackedWeights pack_weights(const float* w, int64_t k, int64_t n, const float* bias) {
  PackedWeights p;
  p.isa = packed_gemm_isa();
  p.k = k;
  p.n = n;
  p.panels = (n + kNR - 1) / kNR;
  p.data = alloc_aligned_floats(p.panels * k * kNR);
  p.bias = alloc_aligned_floats(p.panels * kNR);
  std::memset(p.data.get(), 0, sizeof(float) * static_cast<size_t>(p.panels * k * kNR));
  std::memset(p.bias.get(), 0, sizeof(float) * static_cast<size_t>(p.panels * kNR));
  for (int64_t pn = 0; pn < p.panels; ++pn) {
    float* dst = p.data.get() + pn * k * kNR;
    const int64_t c0 = pn * kNR, cols = std::min<int64_t>(kNR, n - c0);
    for (int64_t kk = 0; kk < k; ++kk) std::memcpy(dst + kk * kNR, w + kk * n + c0, sizeof(float) * cols);
  }
  if (bias) std::memcpy(p.bias.get(), bias, sizeof(float) * static_cast<size_t>(n));
  return p;
}

namespace {
__attribute__((target("avx512f"))) void packed_gemm_avx512(const float* a, int64_t lda, int64_t m,
                                                           const PackedWeights& w, PackedEpilogue epi, float alpha,
                                                           float* c, int64_t ldc) {
  // Panel-outer: one 32-column panel of W (k x 128 bytes) stays in L1/L2 while the rows of A stream by.
  for (int64_t pn = 0; pn < w.panels; ++pn) {
    const float* bp = w.data.get() + pn * w.k * kNR;
    const float* bias = w.bias.get() + pn * kNR;
    const int64_t c0 = pn * kNR, cols = std::min<int64_t>(kNR, w.n - c0);
    const __mmask16 m0 = mask_of(cols), m1 = mask_of(cols - 16);
    int64_t i = 0;
    for (; i + kMR <= m; i += kMR) tile<kMR>(a + i * lda, lda, w.k, bp, bias, epi, alpha, c + i * ldc + c0, ldc, m0, m1);
    if (i < m) kTiles[m - i](a + i * lda, lda, w.k, bp, bias, epi, alpha, c + i * ldc + c0, ldc, m0, m1);
  }
}
}  // namespace

void packed_gemm(const float* a, int64_t lda, int64_t m, const PackedWeights& w, PackedEpilogue epi, float alpha,
                 float* c, int64_t ldc) {
  switch (w.isa) {
    case PackedIsa::Avx512: packed_gemm_avx512(a, lda, m, w, epi, alpha, c, ldc); return;
    case PackedIsa::Avx2: packed_gemm_avx2(a, lda, m, w, epi, alpha, c, ldc); return;
    case PackedIsa::None: break;
  }
  throw_error(Status::Internal, "packed_gemm called for weights packed without a kernel");
}

}  // namespace fkb::cpu
