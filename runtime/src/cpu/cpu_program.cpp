// Lowering of the model IR to the CPU program: aliases, folding, fusion, slot allocation.
#include "cpu/cpu_program.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/broadcast.hpp"
#include "custom_call.hpp"
#include "fkb/custom_layer.hpp"
#include "fkb/error.hpp"

namespace fkb::cpu {

namespace {

[[noreturn]] void unsupported(const Node& n, const std::string& what) {
  throw_error(Status::Unsupported, "layer '" + n.name + "' (" + n.keras_class + "): " + what);
}

/// Expand a weight array to one value per element of `shape` by NumPy broadcasting (right-aligned; leading
/// size-1 axes beyond the rank, such as a kept batch axis, are dropped).
std::vector<float> broadcast_to(const Node& n, const char* role, const Array& a, const Shape& shape) {
  const int64_t total = shape_size(shape);
  if (a.size() == 1) return std::vector<float>(total, a.data[0]);
  if (a.size() == total) return a.data;
  Shape as = a.shape;
  while (as.size() > shape.size() && as.front() == 1) as.erase(as.begin());
  if (shape_size(as) != a.size() || as.size() > shape.size())
    unsupported(n, std::string("weight '") + role + "' of shape " + shape_str(a.shape) +
                       " does not broadcast to the input shape " + shape_str(shape));
  while (as.size() < shape.size()) as.insert(as.begin(), 1);
  for (size_t d = 0; d < shape.size(); ++d)
    if (as[d] != 1 && as[d] != shape[d])
      unsupported(n, std::string("weight '") + role + "' of shape " + shape_str(a.shape) +
                         " does not broadcast to the input shape " + shape_str(shape));
  std::vector<float> out(total);
  // Strides of `a` in the broadcast index space (0 on broadcast axes).
  std::vector<int64_t> stride(shape.size(), 0);
  int64_t s = 1;
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    stride[d] = as[d] == 1 ? 0 : s;
    s *= as[d];
  }
  std::vector<int64_t> idx(shape.size(), 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < shape.size(); ++d) off += idx[d] * stride[d];
    out[i] = a.data[off];
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

// A weight or config constant (Node::find); `required` ones missing are a loader bug or a bad file.
const Array* weight(const Node& n, const char* role) { return n.find(role); }

const Array& required(const Node& n, const char* role) {
  const Array* a = n.find(role);
  if (!a) throw_error(Status::ShapeMismatch, "layer '" + n.name + "' (" + n.keras_class + "): weight '" + role +
                                                 "' is missing");
  return *a;
}

/// The epilogue for a node's own activation over an output of shape `shape`.
Epilogue activation_epilogue(const Node& n, const Shape& shape) {
  Epilogue e;
  e.act = n.activation.kind;
  e.params = n.activation.params;
  if (e.act == ActKind::Softmax) {
    e.act = ActKind::Linear;
    e.softmax_len = shape.back();
  } else if (e.act == ActKind::PRelu) {
    const Array* a = weight(n, "alpha");
    if (!a) unsupported(n, "PReLU without an 'alpha' weight");
    e.alpha = broadcast_to(n, "alpha", *a, shape);
  }
  return e;
}

bool is_periodic(const std::vector<float>& v, int64_t period) {
  for (size_t i = static_cast<size_t>(period); i < v.size(); ++i)
    if (v[i] != v[i % period]) return false;
  return true;
}

bool linear_epilogue(const Epilogue& e) { return e.act == ActKind::Linear && e.softmax_len == 0; }

struct Lowering {
  const Model& m;
  const LowerOptions& opt;
  Program p;
  std::vector<int> node_value;
  // Per step: where an Affine came from (BatchNorm/Rescaling use x*s+t like Keras; Normalization (x-m)/d).
  std::vector<OpKind> step_source;

  int new_value(int64_t features) {
    p.values.push_back(Value{features, -1, -1});
    return static_cast<int>(p.values.size()) - 1;
  }

  void add_step(Step s, OpKind source) {
    p.steps.push_back(std::move(s));
    step_source.push_back(source);
  }

  void lower_nodes() {
    node_value.assign(m.nodes.size(), -1);
    for (size_t ni = 0; ni < m.nodes.size(); ++ni) {
      const Node& n = m.nodes[ni];
      if (n.op == OpKind::Input) {
        const int v = new_value(shape_size(n.shape));
        node_value[ni] = v;
        continue;
      }
      const Shape& in = m.nodes[n.inputs[0]].shape;
      const int vin = node_value[n.inputs[0]];
      const int64_t fout = shape_size(n.shape);
      Step s;
      s.name = n.name;
      switch (n.op) {
        case OpKind::Input: break;
        case OpKind::Dropout:
        case OpKind::Flatten:
        case OpKind::Reshape: node_value[ni] = vin; continue;
        case OpKind::Custom:
          s.kind = StepKind::Custom;
          s.custom = CustomCall::make(m, n);
          break;
        case OpKind::Activation:
          if (n.activation.kind == ActKind::Linear) {
            node_value[ni] = vin;
            continue;
          }
          s.kind = StepKind::Act;
          s.epi = activation_epilogue(n, n.shape);
          break;
        case OpKind::Dense: {
          if (n.quantized_int8) {
            lower_int8_dense(n, in, fout, s);
            break;
          }
          s.kind = StepKind::Gemm;
          s.k = in.back();
          s.n = n.units;
          s.rows_per_col = shape_size(in) / s.k;
          s.w = required(n, "kernel").data;
          s.epi = activation_epilogue(n, n.shape);
          if (n.use_bias) {
            const Array& b = required(n, "bias");
            s.epi.bias.resize(fout);
            for (int64_t f = 0; f < fout; ++f) s.epi.bias[f] = b.data[f % s.n];
          }
          break;
        }
        case OpKind::Conv1D: {
          s.kind = StepKind::Conv1D;
          s.steps_in = in[0];
          s.cin = in[1];
          s.ksize = n.kernel_size;
          s.stride = n.stride;
          s.dilation = n.dilation;
          s.n = n.units;
          s.k = s.ksize * s.cin;
          s.steps_out = n.shape[0];
          s.rows_per_col = s.steps_out;
          const int64_t span = s.dilation * (s.ksize - 1) + 1;
          if (n.padding == Padding::Valid) {
            s.pad_left = 0;
          } else if (n.padding == Padding::Causal) {
            s.pad_left = span - 1;  // Keras pads the start by dilation * (kernel_size - 1)
          } else {
            // 'same': TensorFlow puts the smaller half of the padding at the start.
            const int64_t total = std::max<int64_t>((s.steps_out - 1) * s.stride + span - s.steps_in, 0);
            s.pad_left = total / 2;
          }
          s.w = required(n, "kernel").data;  // [ksize][cin][filters] == [ksize*cin][filters]
          s.epi = activation_epilogue(n, n.shape);
          if (n.use_bias) {
            const Array& b = required(n, "bias");
            s.epi.bias.resize(fout);
            for (int64_t f = 0; f < fout; ++f) s.epi.bias[f] = b.data[f % s.n];
          }
          p.scratch_per_col = std::max(p.scratch_per_col, s.steps_out * s.k);
          break;
        }
        case OpKind::BatchNorm: {
          // Keras (tf.nn.batch_normalization and Keras 3 alike): inv = gamma * rsqrt(var + eps);
          // y = x * inv + (beta - mean * inv).
          s.kind = StepKind::Affine;
          const int axis = n.axis < 0 ? n.axis + static_cast<int>(in.size()) : n.axis;
          const int64_t c = in[axis];
          const Array& mean = required(n, "moving_mean");
          const Array& var = required(n, "moving_variance");
          const Array* gamma = weight(n, "gamma");
          const Array* beta = weight(n, "beta");
          std::vector<float> inv(c), shift(c);
          for (int64_t i = 0; i < c; ++i) {
            const float g = gamma ? gamma->data[i] : 1.0f;
            inv[i] = g / std::sqrt(var.data[i] + n.epsilon);
            shift[i] = (beta ? beta->data[i] : 0.0f) - mean.data[i] * inv[i];
          }
          Shape bshape(in.size(), 1);
          bshape[axis] = c;
          s.scale = broadcast_to(n, "gamma", Array{bshape, inv}, in);
          s.shift = broadcast_to(n, "beta", Array{bshape, shift}, in);
          break;
        }
        case OpKind::Normalization: {
          // Keras: (x - mean) / maximum(sqrt(variance), epsilon()) with the backend epsilon 1e-7; invert=True:
          // mean + x * maximum(sqrt(variance), epsilon()) (Keras 3 and tf-keras alike). mean/variance broadcast
          // NumPy-style against the input (axis=None: one value; other axes: size-1 axes).
          s.kind = StepKind::Affine;
          std::vector<float> mean = broadcast_to(n, "mean", required(n, "mean"), in);
          std::vector<float> var = broadcast_to(n, "variance", required(n, "variance"), in);
          s.scale.resize(mean.size());
          for (size_t i = 0; i < mean.size(); ++i) {
            const float d = std::max(std::sqrt(var[i]), 1e-7f);
            s.scale[i] = n.invert ? d : 1.0f / d;
          }
          s.shift = std::move(mean);
          s.subtract_first = !n.invert;
          break;
        }
        case OpKind::Rescaling: {
          s.kind = StepKind::Affine;
          const Array* sc = weight(n, "scale");
          const Array* of = weight(n, "offset");
          s.scale = sc ? broadcast_to(n, "scale", *sc, in) : std::vector<float>(fout, 1.0f);
          s.shift = of ? broadcast_to(n, "offset", *of, in) : std::vector<float>(fout, 0.0f);
          break;
        }
        case OpKind::Add:
        case OpKind::Subtract:
        case OpKind::Multiply:
        case OpKind::Average:
        case OpKind::Maximum:
        case OpKind::Minimum:
          s.kind = StepKind::Merge;
          s.merge = n.op;
          lower_merge_broadcast(n, s);
          break;
        case OpKind::Concatenate: {
          s.kind = StepKind::Concat;
          const int axis = n.axis < 0 ? n.axis + static_cast<int>(in.size()) : n.axis;
          s.outer = 1;
          for (int d = 0; d < axis; ++d) s.outer *= in[d];
          for (int i : n.inputs) s.inner.push_back(shape_size(m.nodes[i].shape) / s.outer);
          break;
        }
      }
      for (int i : n.inputs) s.in.push_back(node_value[i]);
      s.out = new_value(fout);
      node_value[ni] = s.out;
      // An inverted Normalization is x * d + mean, the form BatchNorm/Rescaling have: it folds like them.
      add_step(std::move(s), n.op == OpKind::Normalization && n.invert ? OpKind::Rescaling : n.op);
    }
    for (int i = 0; i < m.num_inputs(); ++i) {
      const int v = node_value[m.inputs[i]];
      p.inputs.push_back(v);
      p.values[v].input = i;
    }
    for (int o : m.outputs) p.outputs.push_back(node_value[o]);
  }

  // Merge inputs whose shape differs from the output's read through an index table (NumPy broadcasting);
  // inputs of the output's own layout keep the plain element-wise loops.
  void lower_merge_broadcast(const Node& n, Step& s) {
    std::vector<std::vector<int32_t>> index(n.inputs.size());
    std::vector<int64_t> features(n.inputs.size());
    bool any = false;
    const int64_t fout = shape_size(n.shape);
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const Shape& is = m.nodes[n.inputs[i]].shape;
      features[i] = shape_size(is);
      BroadcastRead r;
      std::string why;
      if (!broadcast_read(is, n.shape, &r, &why)) unsupported(n, why);
      if (r.identity() && features[i] == fout) continue;
      if (fout > std::numeric_limits<int32_t>::max()) unsupported(n, "broadcast output too large");
      any = true;
      index[i].resize(static_cast<size_t>(fout));
      for (int64_t q = 0; q < fout; ++q) index[i][q] = static_cast<int32_t>(r.index(q));
    }
    if (!any) return;
    s.merge_index = std::move(index);
    s.merge_in_features = std::move(features);
  }

  // Keras 3 int8 Dense (dense.py _int8_call with the default AbsMaxQuantizer on the inputs): the kernel holds
  // int8 values, kernel_scale one float per unit.
  void lower_int8_dense(const Node& n, const Shape& in, int64_t fout, Step& s) {
    s.kind = StepKind::Int8Gemm;
    s.k = in.back();
    s.n = n.units;
    s.rows_per_col = shape_size(in) / s.k;
    const Array& kernel = required(n, "kernel");
    const Array& scale = required(n, "kernel_scale");
    if (kernel.size() != s.k * s.n || scale.size() != s.n)
      unsupported(n, "int8 kernel " + shape_str(kernel.shape) + " or kernel_scale " + shape_str(scale.shape) +
                         " does not match " + std::to_string(s.k) + " inputs and " + std::to_string(s.n) + " units");
    s.qw.resize(kernel.data.size());
    for (size_t i = 0; i < kernel.data.size(); ++i) {
      const float v = kernel.data[i];
      if (!(v >= -128.0f && v <= 127.0f) || v != std::nearbyint(v))
        unsupported(n, "int8 kernel holds " + std::to_string(v) + ", not an int8 value");
      s.qw[i] = static_cast<int32_t>(v);
    }
    s.kernel_scale = scale.data;
    s.epi = activation_epilogue(n, n.shape);
    if (n.use_bias) {
      const Array& b = required(n, "bias");
      s.epi.bias.resize(fout);
      for (int64_t f = 0; f < fout; ++f) s.epi.bias[f] = b.data[f % s.n];
    }
    // One row at a time: its quantized inputs and int32 sums (4 bytes each, counted in floats).
    p.scratch_per_col = std::max(p.scratch_per_col, s.k + s.n);
  }

  // Number of readers of each value (steps and model outputs).
  std::vector<int> uses() const {
    std::vector<int> u(p.values.size(), 0);
    for (const auto& s : p.steps)
      for (int v : s.in) ++u[v];
    for (int v : p.outputs) ++u[v];
    return u;
  }

  int producer(int v) const {
    for (size_t i = 0; i < p.steps.size(); ++i)
      if (p.steps[i].out == v) return static_cast<int>(i);
    return -1;
  }

  void erase_step(size_t i) {
    p.steps.erase(p.steps.begin() + static_cast<long>(i));
    step_source.erase(step_source.begin() + static_cast<long>(i));
  }

  // BatchNorm/Rescaling after a Dense/Conv1D with a linear activation whose output only they read:
  // (x W + b) * s + t == x (W s) + (b s + t).
  bool fold_affine_into_producer() {
    auto u = uses();
    for (size_t i = 0; i < p.steps.size(); ++i) {
      Step& a = p.steps[i];
      if (a.kind != StepKind::Affine || step_source[i] == OpKind::Normalization) continue;
      const int pi = producer(a.in[0]);
      if (pi < 0 || u[a.in[0]] != 1) continue;
      Step& g = p.steps[pi];
      if ((g.kind != StepKind::Gemm && g.kind != StepKind::Conv1D) || !linear_epilogue(g.epi)) continue;
      if (!is_periodic(a.scale, g.n) || !is_periodic(a.shift, g.n)) continue;
      for (int64_t kk = 0; kk < g.k; ++kk)
        for (int64_t j = 0; j < g.n; ++j) g.w[kk * g.n + j] *= a.scale[j];
      const int64_t f = static_cast<int64_t>(a.scale.size());
      if (g.epi.bias.empty()) g.epi.bias.assign(f, 0.0f);
      for (int64_t j = 0; j < f; ++j) g.epi.bias[j] = g.epi.bias[j] * a.scale[j] + a.shift[j];
      g.epi.act = a.epi.act;
      g.epi.params = a.epi.params;
      g.epi.alpha = a.epi.alpha;
      g.epi.softmax_len = a.epi.softmax_len;
      g.out = a.out;
      p.notes.push_back("folded " + a.name + " into " + g.name);
      g.name += "+" + a.name;
      erase_step(i);
      return true;
    }
    return false;
  }

  // BatchNorm read only by a Dense: (x s + t) W + b == x (s W) + (t W + b). Not done for Normalization,
  // whose (x - mean) / d form Keras keeps to avoid cancellation on inputs with large offsets.
  bool fold_affine_into_consumer() {
    auto u = uses();
    for (size_t i = 0; i < p.steps.size(); ++i) {
      Step& a = p.steps[i];
      if (a.kind != StepKind::Affine || step_source[i] != OpKind::BatchNorm || !linear_epilogue(a.epi) ||
          !a.epi.bias.empty() || u[a.out] != 1)
        continue;
      for (size_t ci = i + 1; ci < p.steps.size(); ++ci) {
        Step& g = p.steps[ci];
        if (g.kind != StepKind::Gemm || g.in[0] != a.out) continue;
        if (!is_periodic(a.scale, g.k) || !is_periodic(a.shift, g.k)) break;
        const int64_t fout = g.rows_per_col * g.n;
        std::vector<double> extra(g.n, 0.0);
        for (int64_t kk = 0; kk < g.k; ++kk)
          for (int64_t j = 0; j < g.n; ++j) extra[j] += static_cast<double>(a.shift[kk]) * g.w[kk * g.n + j];
        for (int64_t kk = 0; kk < g.k; ++kk)
          for (int64_t j = 0; j < g.n; ++j) g.w[kk * g.n + j] *= a.scale[kk];
        if (g.epi.bias.empty()) g.epi.bias.assign(fout, 0.0f);
        for (int64_t f = 0; f < fout; ++f)
          g.epi.bias[f] = static_cast<float>(g.epi.bias[f] + extra[f % g.n]);
        g.in[0] = a.in[0];
        p.notes.push_back("folded " + a.name + " into " + g.name);
        g.name = a.name + "+" + g.name;
        erase_step(i);
        return true;
      }
    }
    return false;
  }

  // An activation step whose input is produced by a step with a linear epilogue and read by nothing else
  // becomes that step's epilogue.
  bool fuse_activation() {
    auto u = uses();
    for (size_t i = 0; i < p.steps.size(); ++i) {
      Step& a = p.steps[i];
      if (a.kind != StepKind::Act) continue;
      const int pi = producer(a.in[0]);
      if (pi < 0 || u[a.in[0]] != 1) continue;
      Step& g = p.steps[pi];
      if (g.kind == StepKind::Concat || g.kind == StepKind::Act || g.kind == StepKind::Custom ||
          !linear_epilogue(g.epi))
        continue;
      g.epi.act = a.epi.act;
      g.epi.params = a.epi.params;
      g.epi.alpha = a.epi.alpha;
      g.epi.softmax_len = a.epi.softmax_len;
      g.out = a.out;
      p.notes.push_back("fused " + a.name + " into " + g.name);
      g.name += "+" + a.name;
      erase_step(i);
      return true;
    }
    return false;
  }

  void remove_dead_steps() {
    bool changed = true;
    while (changed) {
      changed = false;
      auto u = uses();
      for (size_t i = p.steps.size(); i-- > 0;) {
        if (u[p.steps[i].out] == 0) {
          erase_step(i);
          changed = true;
          break;
        }
      }
    }
  }

  // Liveness-based slot assignment: a slot is reused once the last reader of its value has run. The output
  // of a step never shares a slot with its inputs (every step works out of place).
  void assign_slots() {
    const int inf = std::numeric_limits<int>::max();
    std::vector<int> last(p.values.size(), -1);
    for (size_t i = 0; i < p.steps.size(); ++i)
      for (int v : p.steps[i].in) last[v] = static_cast<int>(i);
    for (int v : p.outputs) last[v] = inf;
    std::vector<int> holder;  // value held by each slot, -1 when free
    for (size_t i = 0; i < p.steps.size(); ++i) {
      const int v = p.steps[i].out;
      const int64_t need = p.values[v].features;
      int best = -1;
      for (size_t sl = 0; sl < holder.size(); ++sl) {
        if (holder[sl] != -1) continue;
        if (best < 0) {
          best = static_cast<int>(sl);
          continue;
        }
        const int64_t have = p.slot_features[sl], cur = p.slot_features[best];
        // Prefer the smallest slot that fits, else the largest one (grown to fit).
        const bool fits = have >= need, cur_fits = cur >= need;
        if ((fits && (!cur_fits || have < cur)) || (!fits && !cur_fits && have > cur)) best = static_cast<int>(sl);
      }
      if (best < 0) {
        holder.push_back(-1);
        p.slot_features.push_back(0);
        best = static_cast<int>(holder.size()) - 1;
      }
      p.slot_features[best] = std::max(p.slot_features[best], need);
      holder[best] = v;
      p.values[v].slot = best;
      for (size_t sl = 0; sl < holder.size(); ++sl)
        if (holder[sl] != -1 && last[holder[sl]] <= static_cast<int>(i)) holder[sl] = -1;
    }
  }
};

}  // namespace

bool cpu_supports(const Node& node, std::string* why) {
  if (node.op == OpKind::Custom && !find_custom_layer(node.keras_class)) {
    if (why)
      *why = "custom layer class '" + node.keras_class +
             "' is not registered (fkb::register_custom_layer / fkb_register_layer)";
    return false;
  }
  return true;
}

Program compile_program(const Model& model, const LowerOptions& options) {
  Lowering l{model, options, {}, {}, {}};
  l.lower_nodes();
  if (options.fold_affine) {
    while (l.fold_affine_into_producer()) {
    }
    while (l.fold_affine_into_consumer()) {
    }
  }
  if (options.fuse_activations) {
    while (l.fuse_activation()) {
    }
  }
  l.remove_dead_steps();
  l.assign_slots();
  l.p.flops_per_col = model.flops_per_column();
  return std::move(l.p);
}

}  // namespace fkb::cpu
