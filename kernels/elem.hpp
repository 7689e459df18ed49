// Element access and per-element math shared by the CUDA kernels and the host emulator of a lowered CUDA
// program (emulator.hpp, used by the tests on machines without a GPU). Compiled by nvcc as
// __host__ __device__ code and by the host compiler as plain inline C++.
//
// A View addresses one value of the program: per column c, the element with flat per-column index q
// (row-major over the value's per-column shape) is at
//     p[c * col_stride + (q / L) * ld + q % L]
// where L is the value's last dimension and ld >= L its row pitch. A dense value has ld == L and
// col_stride == its number of elements per column, so the address is c * col_stride + q. A value that is
// a slice of a Concatenate output along the last axis (written in place by its producer) has ld = the
// concatenated width: the same formula with p pointing at the slice's first column.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fkb/activations.hpp"

#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace fkb::cuda {

/// Element types of device buffers. F64 occurs only for the caller's buffers (conversion in/out).
enum class DT : int32_t { F32 = 0, BF16 = 1, F16 = 2, F64 = 3 };

FKB_HD int64_t dt_size(DT t) { return t == DT::F64 ? 8 : (t == DT::F32 ? 4 : 2); }

FKB_HD float bits_to_f32(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  memcpy(&f, &u, 4);
  return f;
#endif
}

FKB_HD uint32_t f32_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
#endif
}

/// bfloat16 <-> float, round to nearest even (what __float2bfloat16_rn does).
FKB_HD float bf16_to_f32(uint16_t b) { return bits_to_f32(static_cast<uint32_t>(b) << 16); }

FKB_HD uint16_t f32_to_bf16(float f) {
#if defined(__CUDA_ARCH__)
  return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
#endif
}

/// IEEE half <-> float, round to nearest even (what __float2half_rn does), with subnormals and overflow.
FKB_HD float f16_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0) {
    const float v = static_cast<float>(m) * 5.9604644775390625e-8f;  // m * 2^-24
    return sign ? -v : v;
  }
  if (e == 31) return bits_to_f32(sign | 0x7f800000u | (m << 13));
  return bits_to_f32(sign | ((e - 15u + 127u) << 23) | (m << 13));
#endif
}

FKB_HD uint16_t f32_to_f16(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  const uint32_t x = f32_to_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to infinity
  if (ax < 0x38800000u) {                                                 // below 2^-14: subnormal or zero
    const float scaled = bits_to_f32(ax) * 16777216.0f;                   // exact: times 2^24
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(rintf(scaled)));  // rint: ties to even
  }
  const uint32_t e = (ax >> 23) - 127u + 15u;
  const uint32_t mant = ax & 0x7fffffu;
  uint32_t h = (e << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1u;  // a carry into the exponent is correct
  return static_cast<uint16_t>(sign | h);
#endif
}

FKB_HD float load_elem(const void* p, DT t, int64_t i) {
  switch (t) {
    case DT::F32: return static_cast<const float*>(p)[i];
    case DT::BF16: return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DT::F16: return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
    case DT::F64: return static_cast<float>(static_cast<const double*>(p)[i]);
  }
  return 0.0f;
}

FKB_HD void store_elem(void* p, DT t, int64_t i, float v) {
  switch (t) {
    case DT::F32: static_cast<float*>(p)[i] = v; return;
    case DT::BF16: static_cast<uint16_t*>(p)[i] = f32_to_bf16(v); return;
    case DT::F16: static_cast<uint16_t*>(p)[i] = f32_to_f16(v); return;
    case DT::F64: static_cast<double*>(p)[i] = static_cast<double>(v); return;
  }
}

/// A value's buffer as a kernel sees it (see the header comment). `p` already includes the chunk's column
/// offset and the slice offset.
struct View {
  void* p = nullptr;
  int64_t L = 1;           ///< last dimension of the value's per-column shape
  int64_t ld = 1;          ///< row pitch (elements), >= L
  int64_t col_stride = 1;  ///< elements between consecutive columns
  DT dt = DT::F32;
  int32_t dense = 1;       ///< ld == L and col_stride == elements per column: address = c * col_stride + q
};

FKB_HD int64_t view_index(const View& v, int64_t c, int64_t q) {
  return v.dense ? c * v.col_stride + q : c * v.col_stride + (q / v.L) * v.ld + q % v.L;
}

/// Merge operations of the element-wise kernel (Keras merge layers). Copy reads the first input only.
enum class Merge : int32_t { Copy = 0, Add, Subtract, Multiply, Average, Maximum, Minimum };

FKB_HD float merge2(Merge m, float a, float b) {
  switch (m) {
    case Merge::Copy: return a;
    case Merge::Add:
    case Merge::Average: return a + b;
    case Merge::Subtract: return a - b;
    case Merge::Multiply: return a * b;
    // Keras ops.maximum/minimum: NaN in either operand gives NaN (as TensorFlow, and the CPU backend).
    case Merge::Maximum: return (a != a || b != b) ? NAN : fmaxf(a, b);
    case Merge::Minimum: return (a != a || b != b) ? NAN : fminf(a, b);
  }
  return a;
}

constexpr int kMaxEwInputs = 8;
constexpr int kMaxBcastDims = 4;

/// How an element-wise input that broadcasts against the output (merge layers, NumPy rules) is read: output
/// element q of a column reads the input's element sum_d ((q / inner_d) % dims[d]) * stride[d] (inner_d: the
/// product of the dims after d). nd == 0: the input has the output's layout (element q). Built from
/// runtime/src/cpu/broadcast.hpp's collapsed axes.
struct Bcast {
  int32_t nd = 0;
  int64_t dims[kMaxBcastDims] = {1, 1, 1, 1};
  int64_t stride[kMaxBcastDims] = {0, 0, 0, 0};
};

FKB_HD int64_t bcast_index(const Bcast& b, int64_t q) {
  if (b.nd == 0) return q;
  int64_t off = 0;
  for (int d = b.nd - 1; d >= 0; --d) {
    off += (q % b.dims[d]) * b.stride[d];
    q /= b.dims[d];
  }
  return off;
}

/// One element-wise step, applied to every (column, q) with q < n:
///   v = merge(in[0..nin)) [/ avg_div]            (Copy: v = in[0]; input i read at bcast_index(bc[i], q))
///   v = subtract_first ? (v - shift[q]) * scale[q] : v * scale[q] + shift[q]     (when scale != null)
///   v = v + bias[q]                                                               (when bias != null)
///   v = act(v) with alpha = alpha_vec[q] when given (PReLU)
///   out[remap(q)] = v, remap(q) = (q / remap_w) * remap_total + remap_start + q % remap_w (when remap_w > 0)
/// Per-feature vectors have one value per element of a column (n), already broadcast.
struct EwArgs {
  View in[kMaxEwInputs];
  Bcast bc[kMaxEwInputs];  ///< per input; nd == 0 (the default) for inputs of the output's layout
  View out;
  int32_t nin = 1;
  Merge merge = Merge::Copy;
  float avg_div = 0.0f;  ///< > 0: divide the merged value (Keras Average divides the sum by the count)
  int32_t subtract_first = 0;
  const float* scale = nullptr;
  const float* shift = nullptr;
  const float* bias = nullptr;
  const float* alpha = nullptr;
  /// Keras 3 int8 Dense de-scaling (dense.py _int8_call): v = in[0] / (dequant[q] * in[1]) with in[0] the integer
  /// GEMM result, dequant the kernel_scale per feature and in[1] the row's input scale (read through bc[1]).
  const float* dequant = nullptr;
  ActParams params;
  int64_t n = 0;     ///< elements per column
  int64_t ncol = 0;  ///< columns
  int64_t remap_w = 0, remap_total = 0, remap_start = 0;
};

template <ActKind K>
FKB_HD void ew_element(const EwArgs& a, int64_t c, int64_t q) {
  float v = load_elem(a.in[0].p, a.in[0].dt, view_index(a.in[0], c, bcast_index(a.bc[0], q)));
  if (a.dequant) {
    v = v / (a.dequant[q] * load_elem(a.in[1].p, a.in[1].dt, view_index(a.in[1], c, bcast_index(a.bc[1], q))));
  } else {
    for (int i = 1; i < a.nin; ++i)
      v = merge2(a.merge, v, load_elem(a.in[i].p, a.in[i].dt, view_index(a.in[i], c, bcast_index(a.bc[i], q))));
  }
  if (a.avg_div > 0.0f) v = v / a.avg_div;
  if (a.scale) v = a.subtract_first ? (v - a.shift[q]) * a.scale[q] : v * a.scale[q] + a.shift[q];
  if (a.bias) v = v + a.bias[q];
  if (K != ActKind::Linear) {
    ActParams p = a.params;
    if (a.alpha) p.alpha = a.alpha[q];
    v = activate(K, v, p);
  }
  const int64_t qo = a.remap_w > 0 ? (q / a.remap_w) * a.remap_total + a.remap_start + q % a.remap_w : q;
  store_elem(a.out.p, a.out.dt, view_index(a.out, c, qo), v);
}

/// Row-wise softmax over rows of L values (a value's last axis) with an optional per-feature bias added
/// first: rows = ncol * rows_per_col. The same formula as softmax_row (max subtracted, exp, divide by the
/// sum); the GPU sums in a warp-tree order.
struct SoftmaxArgs {
  View in, out;
  const float* bias = nullptr;  ///< per feature of a column (rows_per_col * L values) or null
  int64_t L = 1, rows_per_col = 1, ncol = 0;
};

/// Keras' AbsMaxQuantizer over the last axis (quantizers.py abs_max_quantize) on rows of L values, rows =
/// ncol * rows_per_col: scale = 127 / (max|x| + 1e-7) in float32, q = clip(round_half_even(x * scale), -127, 127).
/// q is written in the GEMM operand type (integers up to 127 are exact in f32, tf32, bf16 and f16), the scale
/// (one per row, f32) to `scale`.
struct RowQuantArgs {
  View in, q, scale;
  int64_t L = 1, rows_per_col = 1, ncol = 0;
};

FKB_HD float row_quant_scale(float amax) { return 127.0f / (amax + 1e-7f); }

FKB_HD float row_quant_value(float x, float scale) {
  const float v = rintf(x * scale);  // round to nearest, ties to even (jnp.round)
  return fminf(fmaxf(v, -127.0f), 127.0f);
}

/// 1-D im2col for Conv1D (channels_last): out is dense [col][t][j * cin + ch] with k = ksize * cin values
/// per output step; positions outside the input (padding) are zero.
struct Im2colArgs {
  View in, out;
  int64_t steps_in = 0, cin = 0, ksize = 1, stride = 1, dilation = 1, pad_left = 0, steps_out = 0, ncol = 0;
};

FKB_HD void im2col_element(const Im2colArgs& a, int64_t c, int64_t e) {
  // e indexes the dense output of one column: e = t * (ksize * cin) + j * cin + ch
  const int64_t k = a.ksize * a.cin;
  const int64_t t = e / k, r = e % k, j = r / a.cin, ch = r % a.cin;
  const int64_t src = t * a.stride + j * a.dilation - a.pad_left;
  float v = 0.0f;
  if (src >= 0 && src < a.steps_in) v = load_elem(a.in.p, a.in.dt, view_index(a.in, c, src * a.cin + ch));
  store_elem(a.out.p, a.out.dt, view_index(a.out, c, e), v);
}

/// Call f(std::integral_constant<ActKind, K>{}) for the runtime kind k: one instantiation per activation, so
/// the switch in activate() folds away inside each (tiny-cuda-nn's pattern). Host code only.
template <class F>
inline void dispatch_act(ActKind k, F&& f) {
#define FKB_ACT_CASE(K)                             \
  case ActKind::K:                                  \
    f(std::integral_constant<ActKind, ActKind::K>{}); \
    return;
  switch (k) {
    FKB_ACT_CASE(Linear)
    FKB_ACT_CASE(Relu)
    FKB_ACT_CASE(LeakyRelu)
    FKB_ACT_CASE(Elu)
    FKB_ACT_CASE(Selu)
    FKB_ACT_CASE(Gelu)
    FKB_ACT_CASE(GeluTanh)
    FKB_ACT_CASE(Sigmoid)
    FKB_ACT_CASE(HardSigmoidK2)
    FKB_ACT_CASE(HardSigmoidK3)
    FKB_ACT_CASE(HardSilu)
    FKB_ACT_CASE(Tanh)
    FKB_ACT_CASE(Softplus)
    FKB_ACT_CASE(Softsign)
    FKB_ACT_CASE(Swish)
    FKB_ACT_CASE(Mish)
    FKB_ACT_CASE(Exponential)
    FKB_ACT_CASE(PRelu)
    case ActKind::Softmax:  // row-wise: handled by the softmax op; never an element-wise kind
      f(std::integral_constant<ActKind, ActKind::Linear>{});
      return;
  }
#undef FKB_ACT_CASE
  f(std::integral_constant<ActKind, ActKind::Linear>{});
}

}  // namespace fkb::cuda
