// The fused SIMT GEMM (gemm_fused.cuh): 64 x 64 output tiles, 16-deep k slices through shared memory,
// 256 threads with 4 x 4 outputs each.
#include "cuda_check.hpp"
#include "gemm_fused.cuh"

namespace fkb::cuda {

namespace {

constexpr int BM = 64;  // units (columns of A) per block
constexpr int BN = 64;  // rows of B per block
constexpr int BK = 16;
constexpr int kThreads = 256;

template <ActKind K>
__global__ void __launch_bounds__(kThreads) fused_gemm_kernel(const FusedGemmArgs a) {
  __shared__ float As[BK][BM + 1];
  __shared__ float Bs[BK][BN + 1];
  const int t = threadIdx.x;
  const int tx = t % 16, ty = t / 16;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * BN;
  const int64_t j0 = static_cast<int64_t>(blockIdx.y) * BM;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  for (int64_t k0 = 0; k0 < a.k; k0 += BK) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = t + i * kThreads;
      const int kk = idx / BM, jj = idx % BM;
      const int64_t gk = k0 + kk, gj = j0 + jj;
      As[kk][jj] = (gk < a.k && gj < a.m) ? load_elem(a.A, a.adt, gk * a.m + gj) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = t + i * kThreads;
      const int kk = idx % BK, rr = idx / BK;
      const int64_t gk = k0 + kk, gr = r0 + rr;
      Bs[kk][rr] = (gk < a.k && gr < a.rows) ? load_elem(a.B, a.bdt, gr * a.ldb + gk) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) av[i] = As[kk][tx + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bv[j] = Bs[kk][ty + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t r = r0 + ty + 16 * j;
    if (r >= a.rows) continue;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t u = j0 + tx + 16 * i;
      if (u >= a.m) continue;
      float v = acc[i][j];
      if (a.C) v += load_elem(a.C, a.cdt, r * a.ldc + u);
      if (a.bias) v += a.bias[u];
      if (K != ActKind::Linear) {
        ActParams p = a.params;
        if (a.alpha) p.alpha = a.alpha[(r % a.rpc) * a.m + u];
        v = activate(K, v, p);
      }
      store_elem(a.D, a.ddt, r * a.ldd + u, v);
    }
  }
}

}  // namespace

void launch_fused_gemm(const FusedGemmArgs& a, ActKind act, cudaStream_t stream) {
  if (a.rows <= 0 || a.m <= 0) return;
  const int64_t gx = (a.rows + BN - 1) / BN, gy = (a.m + BM - 1) / BM;
  if (gx > 0x7fffffffLL || gy > 65535)
    throw_error(Status::Unsupported, "fused GEMM: shape too large (" + std::to_string(a.rows) + " rows, " +
                                         std::to_string(a.m) + " units)");
  const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
  dispatch_act(act, [&](auto k) { fused_gemm_kernel<decltype(k)::value><<<grid, kThreads, 0, stream>>>(a); });
  FKB_CHECK_LAUNCH();
}

}  // namespace fkb::cuda
