// The one definition of every activation's math, shared by the CPU backend and the CUDA kernels.
//
// Each formula mirrors Keras' own definition (keras/src/activations/activations.py for Keras 3,
// tf_keras/activations.py for Keras 2); where the two differ (hard_sigmoid), there are two kinds and the
// loader picks one from the Keras version that wrote the file. No fast-math approximations.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define FKB_HD __host__ __device__ __forceinline__
#else
#define FKB_HD inline
#endif

namespace fkb {

/// Element-wise activations (Softmax is row-wise and handled by the backends separately).
enum class ActKind : int32_t {
  Linear = 0,
  Relu,            ///< relu with Keras' optional negative_slope (alpha), max_value and threshold
  LeakyRelu,       ///< x >= 0 ? x : alpha * x
  Elu,             ///< x > 0 ? x : alpha * expm1(x)
  Selu,            ///< scale * elu(x, alpha) with Keras' fixed constants
  Gelu,            ///< exact: 0.5 x (1 + erf(x / sqrt(2)))
  GeluTanh,        ///< approximate: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  Sigmoid,         ///< 1 / (1 + exp(-x))
  HardSigmoidK2,   ///< Keras 2 / tf-keras: clip(0.2 x + 0.5, 0, 1)
  HardSigmoidK3,   ///< Keras 3: relu6(x + 3) / 6
  HardSilu,        ///< Keras 3 hard_silu / hard_swish: x * relu6(x + 3) / 6
  Tanh,
  Softplus,        ///< log(1 + exp(x)), computed stably
  Softsign,        ///< x / (1 + |x|)
  Swish,           ///< x * sigmoid(x) (Keras "swish" and "silu")
  Mish,            ///< x * tanh(softplus(x))
  Exponential,     ///< exp(x)
  Softmax,         ///< row-wise over the last axis: not element-wise, see softmax_row
  PRelu,           ///< per-channel slope from weights; element-wise given the slope
};

/// Parameters of an activation. Defaults give the plain Keras function.
struct ActParams {
  float alpha = 0.0f;                ///< negative slope (Relu/LeakyRelu/PRelu) or ELU alpha
  float max_value = INFINITY;        ///< Relu upper clip (relu6: 6)
  float threshold = 0.0f;            ///< Relu threshold
};

FKB_HD float act_sigmoid(float x) {
  // Split on sign so exp never overflows; matches 1/(1+exp(-x)) to rounding.
  if (x >= 0.0f) {
    float z = expf(-x);
    return 1.0f / (1.0f + z);
  }
  float z = expf(x);
  return z / (1.0f + z);
}

FKB_HD float act_softplus(float x) {
  // logaddexp(x, 0) = max(x, 0) + log1p(exp(-|x|)), as jax.nn.softplus / tf.math.softplus.
  return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}

/// Keras relu(x, negative_slope, max_value, threshold) (keras.activations.relu).
FKB_HD float act_relu(float x, const ActParams& p) {
  if (x != x) return x;  // NaN propagates, as in Keras (fmaxf/fminf would drop it)
  float y = x > p.threshold ? x : 0.0f;
  y = y < p.max_value ? y : p.max_value;
  if (p.alpha != 0.0f && x < p.threshold) y = p.alpha * (x - p.threshold);
  return y;
}

/// Apply an element-wise activation. `kind` must not be Softmax.
FKB_HD float activate(ActKind kind, float x, const ActParams& p) {
  switch (kind) {
    case ActKind::Linear: return x;
    case ActKind::Relu: return act_relu(x, p);
    case ActKind::LeakyRelu:
    case ActKind::PRelu: return x >= 0.0f ? x : p.alpha * x;
    case ActKind::Elu: return x > 0.0f ? x : p.alpha * expm1f(x);
    case ActKind::Selu: {
      const float alpha = 1.67326324235437728481704f;
      const float scale = 1.05070098735548049341933f;
      return x > 0.0f ? scale * x : scale * alpha * expm1f(x);
    }
    case ActKind::Gelu: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    case ActKind::GeluTanh: {
      const float c = 0.79788456080286535588f;  // sqrt(2/pi)
      return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
    }
    case ActKind::Sigmoid: return act_sigmoid(x);
    case ActKind::HardSigmoidK2: return fminf(fmaxf(0.2f * x + 0.5f, 0.0f), 1.0f);
    case ActKind::HardSigmoidK3: return fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    case ActKind::HardSilu: return x * (fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f);
    case ActKind::Tanh: return tanhf(x);
    case ActKind::Softplus: return act_softplus(x);
    case ActKind::Softsign: return x / (1.0f + fabsf(x));
    case ActKind::Swish: return x * act_sigmoid(x);
    case ActKind::Mish: return x * tanhf(act_softplus(x));
    case ActKind::Exponential: return expf(x);
    case ActKind::Softmax: return x;  // not element-wise; backends call softmax_row
  }
  return x;
}

/// Softmax over one row of n values, in place, with the max subtracted first (as Keras does).
FKB_HD void softmax_row(float* v, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = fmaxf(m, v[i]);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    v[i] = expf(v[i] - m);
    s += v[i];
  }
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) v[i] *= inv;
}

}  // namespace fkb
