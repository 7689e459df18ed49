// Element-wise, softmax and im2col kernels. The per-element math is elem.hpp's (shared with the host
// emulator) and activations.hpp's (shared with the CPU backend); one kernel instantiation per activation.
#include "cuda_check.hpp"
#include "ew_kernels.cuh"

namespace fkb::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 8192;  // grid-stride loops beyond this

int64_t blocks_for(int64_t work) {
  int64_t b = (work + kThreads - 1) / kThreads;
  return b < 1 ? 1 : (b > kMaxBlocks ? kMaxBlocks : b);
}

// I: the index type of the flattened (column, element) loop; 32-bit when it fits (integer division is the
// costliest part of the index math).
template <ActKind K, typename I>
__global__ void __launch_bounds__(kThreads) ew_kernel(const EwArgs a) {
  const I n = static_cast<I>(a.n);
  const I total = static_cast<I>(a.ncol) * n;
  for (I e = static_cast<I>(blockIdx.x) * kThreads + threadIdx.x; e < total; e += static_cast<I>(gridDim.x) * kThreads) {
    const I c = e / n;
    ew_element<K>(a, static_cast<int64_t>(c), static_cast<int64_t>(e - c * n));
  }
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One warp per row (a column's row of L values along the last axis). Three passes over the row (max, sum,
// write) so it works in place; the same formula as activations.hpp's softmax_row.
__global__ void __launch_bounds__(kThreads) softmax_kernel(const SoftmaxArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.ncol * a.rows_per_col;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kThreads / 32);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5); row < rows;
       row += warps) {
    const int64_t c = row / a.rows_per_col;
    const int64_t q0 = (row % a.rows_per_col) * a.L;
    float mx = -INFINITY;
    for (int64_t j = lane; j < a.L; j += 32) {
      const int64_t q = q0 + j;
      const float v = load_elem(a.in.p, a.in.dt, view_index(a.in, c, q)) + (a.bias ? a.bias[q] : 0.0f);
      mx = fmaxf(mx, v);
    }
    mx = warp_max(mx);
    float s = 0.0f;
    for (int64_t j = lane; j < a.L; j += 32) {
      const int64_t q = q0 + j;
      const float v = load_elem(a.in.p, a.in.dt, view_index(a.in, c, q)) + (a.bias ? a.bias[q] : 0.0f);
      s += expf(v - mx);
    }
    s = warp_sum(s);
    const float inv = 1.0f / s;
    for (int64_t j = lane; j < a.L; j += 32) {
      const int64_t q = q0 + j;
      const float v = load_elem(a.in.p, a.in.dt, view_index(a.in, c, q)) + (a.bias ? a.bias[q] : 0.0f);
      store_elem(a.out.p, a.out.dt, view_index(a.out, c, q), expf(v - mx) * inv);
    }
  }
}

// One warp per row of L inputs: max |x| over the row, then the quantized row and its scale (elem.hpp's formulas,
// shared with the host emulator and, in substance, the CPU backend).
__global__ void __launch_bounds__(kThreads) row_quant_kernel(const RowQuantArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t rows = a.ncol * a.rows_per_col;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (kThreads / 32);
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5); row < rows;
       row += warps) {
    const int64_t c = row / a.rows_per_col;
    const int64_t r = row % a.rows_per_col;
    const int64_t q0 = r * a.L;
    float mx = 0.0f;
    for (int64_t j = lane; j < a.L; j += 32) mx = fmaxf(mx, fabsf(load_elem(a.in.p, a.in.dt, view_index(a.in, c, q0 + j))));
    mx = warp_max(mx);
    const float scale = row_quant_scale(mx);
    for (int64_t j = lane; j < a.L; j += 32) {
      const float x = load_elem(a.in.p, a.in.dt, view_index(a.in, c, q0 + j));
      store_elem(a.q.p, a.q.dt, view_index(a.q, c, q0 + j), row_quant_value(x, scale));
    }
    if (lane == 0) store_elem(a.scale.p, a.scale.dt, view_index(a.scale, c, r), scale);
  }
}

__global__ void __launch_bounds__(kThreads) im2col_kernel(const Im2colArgs a, int64_t n) {
  const int64_t total = a.ncol * n;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t c = e / n;
    im2col_element(a, c, e - c * n);
  }
}

}  // namespace

void launch_ew(const EwArgs& a, ActKind act, cudaStream_t stream) {
  const int64_t total = a.ncol * a.n;
  if (total <= 0) return;
  const unsigned blocks = static_cast<unsigned>(blocks_for(total));
  const bool small = total < (int64_t(1) << 31) - int64_t(kThreads) * kMaxBlocks;
  dispatch_act(act, [&](auto k) {
    constexpr ActKind K = decltype(k)::value;
    if (small)
      ew_kernel<K, uint32_t><<<blocks, kThreads, 0, stream>>>(a);
    else
      ew_kernel<K, uint64_t><<<blocks, kThreads, 0, stream>>>(a);
  });
  FKB_CHECK_LAUNCH();
}

void launch_softmax(const SoftmaxArgs& a, cudaStream_t stream) {
  const int64_t rows = a.ncol * a.rows_per_col;
  if (rows <= 0) return;
  const unsigned blocks = static_cast<unsigned>(blocks_for(rows * 32));
  softmax_kernel<<<blocks, kThreads, 0, stream>>>(a);
  FKB_CHECK_LAUNCH();
}

void launch_row_quant(const RowQuantArgs& a, cudaStream_t stream) {
  const int64_t rows = a.ncol * a.rows_per_col;
  if (rows <= 0) return;
  row_quant_kernel<<<static_cast<unsigned>(blocks_for(rows * 32)), kThreads, 0, stream>>>(a);
  FKB_CHECK_LAUNCH();
}

void launch_im2col(const Im2colArgs& a, int64_t n_per_col, cudaStream_t stream) {
  const int64_t total = a.ncol * n_per_col;
  if (total <= 0) return;
  im2col_kernel<<<static_cast<unsigned>(blocks_for(total)), kThreads, 0, stream>>>(a, n_per_col);
  FKB_CHECK_LAUNCH();
}

}  // namespace fkb::cuda
