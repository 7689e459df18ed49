// CPU element-wise kernels. The activation math is activations.hpp's (the single definition shared with
// CUDA); here it is only instantiated per activation kind so that each loop compiles to straight-line,
// vectorizable code (the switch in activate() folds away for a constant kind).
//
// Without FP-trap semantics, GCC may evaluate both arms of `x >= 0 ? x : alpha * x` and blend them, which
// is what vectorizes LeakyReLU/PReLU/ReLU; with them (the default -ftrapping-math) the multiply must stay
// behind a branch, and on random signs that branch mispredicts half the time (measured: the epilogue took
// as long as the GEMMs of cbrain). FKB never enables FP traps; results are unchanged.
#pragma GCC optimize("no-trapping-math")
#include "cpu/cpu_kernels.hpp"

#include <cmath>
#include <cstring>

namespace fkb::cpu {

namespace {

template <ActKind K>
void epilogue_rows(float* __restrict y, int64_t ncol, int64_t nf, const float* __restrict bias, const ActParams p,
                   const float* __restrict alpha) {
  for (int64_t c = 0; c < ncol; ++c) {
    float* __restrict row = y + c * nf;
    if (K == ActKind::PRelu) {
      for (int64_t f = 0; f < nf; ++f) {
        const float v = bias ? row[f] + bias[f] : row[f];
        row[f] = v >= 0.0f ? v : alpha[f] * v;
      }
    } else if (bias) {
      for (int64_t f = 0; f < nf; ++f) row[f] = activate(K, row[f] + bias[f], p);
    } else {
      for (int64_t f = 0; f < nf; ++f) row[f] = activate(K, row[f], p);
    }
  }
}

using EpilogueFn = void (*)(float*, int64_t, int64_t, const float*, ActParams, const float*);

EpilogueFn epilogue_fn(ActKind k) {
  switch (k) {
#define FKB_CASE(K) \
  case ActKind::K: return &epilogue_rows<ActKind::K>;
    FKB_CASE(Linear)
    FKB_CASE(Relu)
    FKB_CASE(LeakyRelu)
    FKB_CASE(Elu)
    FKB_CASE(Selu)
    FKB_CASE(Gelu)
    FKB_CASE(GeluTanh)
    FKB_CASE(Sigmoid)
    FKB_CASE(HardSigmoidK2)
    FKB_CASE(HardSigmoidK3)
    FKB_CASE(HardSilu)
    FKB_CASE(Tanh)
    FKB_CASE(Softplus)
    FKB_CASE(Softsign)
    FKB_CASE(Swish)
    FKB_CASE(Mish)
    FKB_CASE(Exponential)
    FKB_CASE(PRelu)
#undef FKB_CASE
    case ActKind::Softmax: return &epilogue_rows<ActKind::Linear>;
  }
  return &epilogue_rows<ActKind::Linear>;
}

}  // namespace

void apply_epilogue(const Epilogue& e, float* y, int64_t ncol, int64_t features) {
  const float* bias = e.bias.empty() ? nullptr : e.bias.data();
  if (bias || e.act != ActKind::Linear)
    epilogue_fn(e.act)(y, ncol, features, bias, e.params, e.alpha.empty() ? nullptr : e.alpha.data());
  if (e.softmax_len > 0) {
    const int64_t rows = ncol * features / e.softmax_len;
    for (int64_t r = 0; r < rows; ++r) softmax_row(y + r * e.softmax_len, e.softmax_len);
  }
}

void apply_affine(const Step& s, const float* __restrict in, float* __restrict out, int64_t ncol, int64_t nf) {
  const float* __restrict sc = s.scale.data();
  const float* __restrict sh = s.shift.data();
  for (int64_t c = 0; c < ncol; ++c) {
    const float* __restrict x = in + c * nf;
    float* __restrict y = out + c * nf;
    if (s.subtract_first)
      for (int64_t f = 0; f < nf; ++f) y[f] = (x[f] - sh[f]) * sc[f];
    else
      for (int64_t f = 0; f < nf; ++f) y[f] = x[f] * sc[f] + sh[f];
  }
  if (!s.epi.is_identity()) apply_epilogue(s.epi, out, ncol, nf);
}

void apply_activation(const Step& s, const float* in, float* out, int64_t ncol, int64_t nf) {
  std::memcpy(out, in, sizeof(float) * static_cast<size_t>(ncol * nf));
  apply_epilogue(s.epi, out, ncol, nf);
}

namespace {

// Keras' merge of two operands (ops.maximum/minimum: NaN in either operand gives NaN, as in TensorFlow).
inline float merge2(OpKind op, float a, float b) {
  switch (op) {
    case OpKind::Add:
    case OpKind::Average: return a + b;
    case OpKind::Subtract: return a - b;
    case OpKind::Multiply: return a * b;
    case OpKind::Maximum: return (a != a || b != b) ? NAN : std::fmax(a, b);
    case OpKind::Minimum: return (a != a || b != b) ? NAN : std::fmin(a, b);
    default: return a;
  }
}

template <OpKind K>
void merge_gather_rows(float* __restrict out, const float* __restrict x, const int32_t* __restrict idx, int64_t ncol,
                       int64_t nf, int64_t nx) {
  for (int64_t c = 0; c < ncol; ++c) {
    float* __restrict y = out + c * nf;
    const float* __restrict xc = x + c * nx;
    for (int64_t f = 0; f < nf; ++f) y[f] = merge2(K, y[f], xc[idx[f]]);
  }
}

// Merge with NumPy broadcasting: out starts as input 0 (gathered when it broadcasts), then each further input is
// merged in, element by element as Keras does (output = op(output, x) in input order).
void apply_merge_broadcast(const Step& s, const float* const* in, int nin, float* __restrict out, int64_t ncol,
                           int64_t nf) {
  for (int i = 0; i < nin; ++i) {
    const std::vector<int32_t>& idx = s.merge_index[static_cast<size_t>(i)];
    const int64_t nx = s.merge_in_features[static_cast<size_t>(i)];
    const float* __restrict x = in[i];
    if (i == 0) {
      if (idx.empty()) {
        std::memcpy(out, x, sizeof(float) * static_cast<size_t>(ncol * nf));
      } else {
        for (int64_t c = 0; c < ncol; ++c)
          for (int64_t f = 0; f < nf; ++f) out[c * nf + f] = x[c * nx + idx[f]];
      }
      continue;
    }
    if (idx.empty()) {
      const int64_t n = ncol * nf;
      for (int64_t j = 0; j < n; ++j) out[j] = merge2(s.merge, out[j], x[j]);
      continue;
    }
    switch (s.merge) {
#define FKB_MERGE(K) \
  case OpKind::K: merge_gather_rows<OpKind::K>(out, x, idx.data(), ncol, nf, nx); break;
      FKB_MERGE(Add)
      FKB_MERGE(Average)
      FKB_MERGE(Subtract)
      FKB_MERGE(Multiply)
      FKB_MERGE(Maximum)
      FKB_MERGE(Minimum)
#undef FKB_MERGE
      default: break;
    }
  }
}

}  // namespace

void apply_merge(const Step& s, const float* const* in, int nin, float* __restrict out, int64_t ncol, int64_t nf) {
  if (!s.merge_index.empty()) {
    apply_merge_broadcast(s, in, nin, out, ncol, nf);
    if (s.merge == OpKind::Average) {
      const float d = static_cast<float>(nin);
      for (int64_t j = 0; j < ncol * nf; ++j) out[j] /= d;
    }
    if (!s.epi.is_identity()) apply_epilogue(s.epi, out, ncol, nf);
    return;
  }
  const int64_t n = ncol * nf;
  std::memcpy(out, in[0], sizeof(float) * static_cast<size_t>(n));
  for (int i = 1; i < nin; ++i) {
    const float* __restrict x = in[i];
    switch (s.merge) {
      case OpKind::Add:
      case OpKind::Average:
        for (int64_t j = 0; j < n; ++j) out[j] += x[j];
        break;
      case OpKind::Subtract:
        for (int64_t j = 0; j < n; ++j) out[j] -= x[j];
        break;
      case OpKind::Multiply:
        for (int64_t j = 0; j < n; ++j) out[j] *= x[j];
        break;
      // Keras ops.maximum/minimum; NaN in either operand gives NaN as in TensorFlow.
      case OpKind::Maximum:
        for (int64_t j = 0; j < n; ++j) out[j] = (out[j] != out[j] || x[j] != x[j]) ? NAN : std::fmax(out[j], x[j]);
        break;
      case OpKind::Minimum:
        for (int64_t j = 0; j < n; ++j) out[j] = (out[j] != out[j] || x[j] != x[j]) ? NAN : std::fmin(out[j], x[j]);
        break;
      default: break;
    }
  }
  if (s.merge == OpKind::Average) {
    const float d = static_cast<float>(nin);  // Keras divides the sum by the number of inputs
    for (int64_t j = 0; j < n; ++j) out[j] /= d;
  }
  if (!s.epi.is_identity()) apply_epilogue(s.epi, out, ncol, nf);
}

void apply_int8_gemm(const Step& s, const float* in, float* out, int64_t ncol, void* scratch) {
  const int64_t k = s.k, n = s.n, rows = ncol * s.rows_per_col;
  int32_t* __restrict q = static_cast<int32_t*>(scratch);
  int32_t* __restrict acc = q + k;
  const int32_t* __restrict w = s.qw.data();
  const float* __restrict ks = s.kernel_scale.data();
  for (int64_t r = 0; r < rows; ++r) {
    const float* __restrict x = in + r * k;
    // Keras' AbsMaxQuantizer over the last axis (quantizers.py abs_max_quantize): scale = 127 / (max|x| + 1e-7)
    // in float32, q = clip(round_half_even(x * scale), -127, 127).
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i) amax = std::fmax(amax, std::fabs(x[i]));
    const float scale = 127.0f / (amax + 1e-7f);
    for (int64_t i = 0; i < k; ++i) {
      const float v = std::nearbyint(x[i] * scale);  // default rounding mode: to nearest, ties to even
      q[i] = static_cast<int32_t>(std::fmin(std::fmax(v, -127.0f), 127.0f));
    }
    // The integer product, exact in int32 (|sum| <= k * 127 * 128), as Keras' int8 x int8 -> int32 matmul.
    for (int64_t j = 0; j < n; ++j) acc[j] = 0;
    for (int64_t i = 0; i < k; ++i) {
      const int32_t qi = q[i];
      if (qi == 0) continue;
      const int32_t* __restrict wr = w + i * n;
      for (int64_t j = 0; j < n; ++j) acc[j] += qi * wr[j];
    }
    // Keras: cast(x, float32) / (kernel_scale * inputs_scale); bias and activation follow in the epilogue.
    float* __restrict y = out + r * n;
    for (int64_t j = 0; j < n; ++j) y[j] = static_cast<float>(acc[j]) / (ks[j] * scale);
  }
  if (!s.epi.is_identity()) apply_epilogue(s.epi, out, ncol, s.rows_per_col * n);
}

void apply_concat(const Step& s, const float* const* in, float* out, int64_t ncol) {
  int64_t total = 0;
  for (auto v : s.inner) total += v;
  for (int64_t c = 0; c < ncol; ++c) {
    float* y = out + c * total * s.outer;
    for (int64_t o = 0; o < s.outer; ++o) {
      for (size_t i = 0; i < s.inner.size(); ++i) {
        const int64_t w = s.inner[i];
        std::memcpy(y, in[i] + (c * s.outer + o) * w, sizeof(float) * static_cast<size_t>(w));
        y += w;
      }
    }
  }
}

void im2col_1d(const Step& s, const float* in, float* out, int64_t ncol) {
  const size_t row = sizeof(float) * static_cast<size_t>(s.cin);
  for (int64_t c = 0; c < ncol; ++c) {
    const float* x = in + c * s.steps_in * s.cin;
    float* y = out + c * s.steps_out * s.k;
    for (int64_t t = 0; t < s.steps_out; ++t) {
      for (int64_t j = 0; j < s.ksize; ++j) {
        const int64_t src = t * s.stride + j * s.dilation - s.pad_left;
        if (src >= 0 && src < s.steps_in)
          std::memcpy(y, x + src * s.cin, row);
        else
          std::memset(y, 0, row);
        y += s.cin;
      }
    }
  }
}

void convert_f64_to_f32(const double* __restrict in, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

void convert_f32_to_f64(const float* __restrict in, double* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(in[i]);
}

}  // namespace fkb::cpu
