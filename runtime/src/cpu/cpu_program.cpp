// Lowering of the optimized model IR (runtime/src/opt/: aliases, folding and fusion done there) to the CPU
// program: one step per node, then workspace slots.
#include "cpu/cpu_program.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/broadcast.hpp"
#include "custom_call.hpp"
#include "fkb/custom_layer.hpp"
#include "fkb/error.hpp"
#include "opt/optimize.hpp"
#include "opt/slot_alloc.hpp"

namespace fkb::cpu {

namespace {

using opt::required_weight;
using opt::unsupported;

/// The epilogue for a node's activation (fused by the optimizer or its own) over an output of shape `shape`.
Epilogue activation_epilogue(const Node& n, const Shape& shape) {
  Epilogue e;
  e.act = n.activation.kind;
  e.params = n.activation.params;
  if (e.act == ActKind::Softmax) {
    e.act = ActKind::Linear;
    e.softmax_len = shape.back();
  } else if (e.act == ActKind::PRelu) {
    e.alpha = required_weight(n, "alpha").data;  // one slope per element (optimizer pass `affine`)
  }
  return e;
}

/// Per output feature: the layer's bias (one per unit) repeated over the GEMM rows of a column.
std::vector<float> per_feature_bias(const Node& n, int64_t fout) {
  const Array& b = required_weight(n, "bias");
  std::vector<float> out(static_cast<size_t>(fout));
  for (int64_t f = 0; f < fout; ++f) out[static_cast<size_t>(f)] = b.data[static_cast<size_t>(f % n.units)];
  return out;
}

struct Lowering {
  const Model& m;  // optimized (runtime/src/opt/): no Dropout/Flatten/BatchNorm/...; activations already fused
  Program p;
  std::vector<int> node_value;

  int new_value(int64_t features) {
    p.values.push_back(Value{features, -1, -1});
    return static_cast<int>(p.values.size()) - 1;
  }

  void lower_nodes() {
    node_value.assign(m.nodes.size(), -1);
    for (size_t ni = 0; ni < m.nodes.size(); ++ni) {
      const Node& n = m.nodes[ni];
      if (n.op == OpKind::Input) {
        node_value[ni] = new_value(shape_size(n.shape));
        continue;
      }
      const Shape& in = m.nodes[n.inputs[0]].shape;
      const int64_t fout = shape_size(n.shape);
      Step s;
      s.name = n.name;
      switch (n.op) {
        case OpKind::Reshape: node_value[ni] = node_value[n.inputs[0]]; continue;  // same data, another shape
        case OpKind::Custom:
          s.kind = StepKind::Custom;
          s.custom = CustomCall::make(m, n);
          break;
        case OpKind::Activation: s.kind = StepKind::Act; break;
        case OpKind::Dense: {
          if (n.quantized_int8) {
            lower_int8_dense(n, in, s);
            break;
          }
          s.kind = StepKind::Gemm;
          s.k = in.back();
          s.n = n.units;
          s.rows_per_col = shape_size(in) / s.k;
          s.w = required_weight(n, "kernel").data;
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
          s.pad_left = opt::conv1d_pad_left(n, in);
          s.w = required_weight(n, "kernel").data;  // [ksize][cin][filters] == [ksize*cin][filters]
          p.scratch_per_col = std::max(p.scratch_per_col, s.steps_out * s.k);
          break;
        }
        case OpKind::Affine:
          s.kind = StepKind::Affine;
          s.scale = required_weight(n, "scale").data;
          s.shift = required_weight(n, "shift").data;
          s.subtract_first = n.subtract_first;
          break;
        case OpKind::Concatenate: {
          s.kind = StepKind::Concat;
          const int axis = n.axis < 0 ? n.axis + static_cast<int>(in.size()) : n.axis;
          s.outer = 1;
          for (int d = 0; d < axis; ++d) s.outer *= in[d];
          for (int i : n.inputs) s.inner.push_back(shape_size(m.nodes[i].shape) / s.outer);
          break;
        }
        default:
          if (!is_merge(n.op))
            unsupported(n, std::string("op ") + op_name(n.op) + " reached the CPU lowering (the graph optimizer removes it)");
          s.kind = StepKind::Merge;  // Add ... Minimum
          s.merge = n.op;
          lower_merge_broadcast(n, s);
      }
      if (s.kind != StepKind::Custom && s.kind != StepKind::Concat) {
        s.epi = activation_epilogue(n, n.shape);
        if ((n.op == OpKind::Dense || n.op == OpKind::Conv1D) && n.use_bias) s.epi.bias = per_feature_bias(n, fout);
      }
      for (int i : n.inputs) s.in.push_back(node_value[i]);
      s.out = new_value(fout);
      node_value[ni] = s.out;
      p.steps.push_back(std::move(s));
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
  void lower_int8_dense(const Node& n, const Shape& in, Step& s) {
    s.kind = StepKind::Int8Gemm;
    s.k = in.back();
    s.n = n.units;
    s.rows_per_col = shape_size(in) / s.k;
    const Array& kernel = required_weight(n, "kernel");  // checked by the optimizer (check_int8_dense)
    const Array& scale = required_weight(n, "kernel_scale");
    s.qw.resize(kernel.data.size());
    for (size_t i = 0; i < kernel.data.size(); ++i) s.qw[i] = static_cast<int32_t>(kernel.data[i]);
    s.kernel_scale = scale.data;
    // One row at a time: its quantized inputs and int32 sums (4 bytes each, counted in floats).
    p.scratch_per_col = std::max(p.scratch_per_col, s.k + s.n);
  }

  // Workspace slots for the values steps write (opt/slot_alloc.hpp); model outputs live to the end.
  void assign_slots() {
    std::vector<int> last(p.values.size(), -1);
    for (size_t i = 0; i < p.steps.size(); ++i)
      for (int v : p.steps[i].in) last[v] = static_cast<int>(i);
    for (int v : p.outputs) last[v] = std::numeric_limits<int>::max();
    std::vector<opt::BufferLife> lives;
    for (size_t i = 0; i < p.steps.size(); ++i) {
      const int v = p.steps[i].out;
      lives.push_back({static_cast<int>(i), last[v], p.values[v].features});
    }
    const std::vector<int> slot = opt::assign_slots(lives, &p.slot_features);
    for (size_t i = 0; i < p.steps.size(); ++i) p.values[p.steps[i].out].slot = slot[i];
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
  opt::Options oo;
  oo.fold_affine = options.fold_affine;
  oo.fuse_activations = options.fuse_activations;
  opt::Optimized o = opt::optimize(model, oo);
  Lowering l{o.model, {}, {}};
  l.lower_nodes();
  l.assign_slots();
  l.p.notes = std::move(o.notes);
  l.p.flops_per_col = model.flops_per_column();
  return std::move(l.p);
}

}  // namespace fkb::cpu
