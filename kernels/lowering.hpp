// Lowering of the model IR to the CUDA backend's program: a flat list of kernel-level operations over
// values, with every value placed in a storage root and every root in a slot of one device arena.
//
// Pure host C++ (no CUDA headers), so the same lowering is unit-tested without a GPU by executing the
// program on the host (emulator.hpp) and comparing with the CPU backend and Keras' outputs.
//
// The graph-level work is done before, once for every backend, by the graph optimizer (runtime/src/opt/:
// aliases, affine folding, activation fusion, merge hints); this lowering takes its output and adds only what is
// GPU-specific:
//  * Reshape is a view of the same buffer (a value read through one must stay dense).
//  * Add with an `accumulate_input` hint: the GEMM producing that operand accumulates into the Add's output
//    (cuBLASLt beta = 1 with C = the other operand): no separate add kernel, no intermediate buffer.
//  * Concatenate along the last axis: inputs with a `concat_in_place` hint are written directly into their
//    column-offset slice of the output (GEMM ldc = concatenated width); only the remaining inputs are copied.
//  * bf16/fp16: a value read only by GEMMs is stored in the half type (its producer converts when it
//    writes); a GEMM operand stored in fp32 gets one conversion kernel. GEMMs accumulate in fp32 and
//    write fp32; element-wise math is fp32.
//  * Merge inputs whose shape differs from the output's are read through a broadcast map (Bcast, elem.hpp).
//  * Keras 3 int8 Dense: RowQuant (inputs quantized per row) -> integer GEMM (exact in f32) -> de-scaling Ew.
// Every root then gets a slot from the shared liveness allocator (runtime/src/opt/slot_alloc.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "cpu/broadcast.hpp"
#include "custom_call.hpp"
#include "elem.hpp"
#include "fkb/backend.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "opt/optimize.hpp"
#include "opt/slot_alloc.hpp"

namespace fkb::cuda {

/// Which GEMM implementation a plan uses.
enum class GemmEngine {
  Lt,     ///< cuBLASLt (bias in its epilogue where possible; other activations in a fused post-kernel)
  Fused,  ///< FKB's own SIMT GEMM with bias + activation in its epilogue: fixed summation order per column
          ///< (used for `reproducible`), and the fallback when cuBLASLt has no algorithm for a shape
};

struct LowerOptions {
  Precision precision = Precision::FP32;
  GemmEngine engine = GemmEngine::Lt;
  bool fold_affine = true;
  bool fuse_activations = true;
  bool fuse_add = true;
  bool alias_concat = true;
  /// Use cuBLASLt's RELU_BIAS epilogue for plain relu. Off by default: it maps NaN to 0, which breaks the
  /// `propagate` non-finite policy (Keras' relu and activations.hpp propagate NaN).
  bool relu_epilogue = false;
};

// ---------------------------------------------------------------------------------------------------------------------
// The program

/// A block of constant data uploaded once: a GEMM kernel in the operand type, or per-feature vectors (f32).
struct Blob {
  std::vector<float> data;
  DT dt = DT::F32;
};

/// A storage root: one buffer of `col_elems` elements per column; values live in roots (several values share
/// one root when they are aliases or slices of a Concatenate output).
struct Root {
  int64_t col_elems = 0;
  DT dt = DT::F32;
  int slot = -1;
  int def = std::numeric_limits<int>::max();  ///< first op writing it (-1: a model input)
  int last = -1;                              ///< last op reading it (INT_MAX: a model output)
};

struct Value {
  int64_t n = 0;      ///< elements per column
  int64_t last = 1;   ///< last dimension of its per-column shape
  int root = -1;
  int64_t off = 0;    ///< element offset of the value inside one row of its root (slices)
  int64_t ld = 0;     ///< row pitch in elements; == n for dense values (one row per column)
  int input = -1;     ///< model input number, or -1
  bool reshaped = false;  ///< read through a Flatten/Reshape (such a value must stay dense)
  bool slice() const { return ld != n || off != 0; }
};

enum class OpType { GemmLt, GemmFused, Ew, Softmax, Im2col, Custom, RowQuant };
enum class LtEpilogue { None, Bias, Relu, ReluBias };

/// One kernel-level operation. Value ids refer to Program::values; blob ids to Program::blobs.
struct Op {
  OpType type = OpType::Ew;
  std::string name;  ///< Keras layer(s) it computes
  // GEMM: D[r][j] = act(sum_k B[r][kk] A[kk][j] + bias[j] + C[r][j]), rows r = ncol * rpc, j < m.
  int a = -1;      ///< blob: the kernel [k][m] row-major (column-major m x k, lda = m) in the operand type
  int b = -1, c = -1, d = -1;
  int64_t m = 0, k = 0, rpc = 1;
  int bias = -1;   ///< blob: bias per unit (m) for GEMMs; per feature (n) for Ew/Softmax
  LtEpilogue lt_epilogue = LtEpilogue::None;
  // Ew (and the fused GEMM's activation)
  std::vector<int> ins;
  std::vector<Bcast> bcast;  ///< Ew: how each of `ins` is read when it broadcasts (empty: none does)
  int out = -1;
  Merge merge = Merge::Copy;
  float avg_div = 0.0f;
  int scale = -1, shift = -1;
  bool subtract_first = false;
  int dequant = -1;  ///< blob: int8 Dense kernel_scale per feature (EwArgs::dequant)
  ActKind act = ActKind::Linear;
  ActParams params;
  int alpha = -1;  ///< blob: PReLU slope per feature
  int64_t n = 0;   ///< Ew: elements per column iterated
  int64_t remap_w = 0, remap_total = 0, remap_start = 0;
  // Softmax; RowQuant: rows of L values, rpc rows per column, quantized into `out`, one scale per row into out2
  int64_t L = 1;
  int out2 = -1;
  // Im2col
  int64_t steps_in = 0, cin = 0, ksize = 1, stride = 1, dilation = 1, pad_left = 0, steps_out = 0;
  // Custom: Program::customs[custom] on dense float32 `ins`, writing dense float32 `out` (n per column)
  int custom = -1;

  std::vector<int> reads() const {
    std::vector<int> r;
    if (type == OpType::GemmLt || type == OpType::GemmFused) {
      r.push_back(b);
      if (c >= 0) r.push_back(c);
    } else {
      r = ins;
    }
    return r;
  }
  int writes() const { return (type == OpType::GemmLt || type == OpType::GemmFused) ? d : out; }
};

struct Program {
  std::vector<Value> values;
  std::vector<Root> roots;
  std::vector<Op> ops;
  std::vector<Blob> blobs;
  std::vector<int> inputs;   ///< value of each model input
  std::vector<int> outputs;  ///< value of each model output
  std::vector<int64_t> slot_bytes_per_col;
  Precision precision = Precision::FP32;
  DT operand_dt = DT::F32;   ///< GEMM operand type (weights and B)
  GemmEngine engine = GemmEngine::Lt;
  std::vector<std::string> notes;  ///< what was folded/fused/aliased (verbose output, tests)
  std::vector<std::shared_ptr<const CustomCall>> customs;  ///< registered custom layers (OpType::Custom)

  /// Device bytes per column of the maximum batch (all slots, 256-byte alignment ignored).
  int64_t activation_bytes_per_col() const {
    int64_t s = 0;
    for (auto v : slot_bytes_per_col) s += v;
    return s;
  }
  int count_ops(OpType t) const {
    int n = 0;
    for (const auto& o : ops) n += o.type == t;
    return n;
  }
  bool has_note(const std::string& prefix) const {
    for (const auto& s : notes)
      if (s.compare(0, prefix.size(), prefix) == 0) return true;
    return false;
  }
};

/// A blob's bytes in its element type (what is uploaded).
inline std::vector<uint8_t> blob_to_bytes(const Blob& b) {
  std::vector<uint8_t> out(b.data.size() * static_cast<size_t>(dt_size(b.dt)));
  for (size_t i = 0; i < b.data.size(); ++i) store_elem(out.data(), b.dt, static_cast<int64_t>(i), b.data[i]);
  return out;
}

/// Byte offsets of the slots in an arena sized for `max_batch` columns (each slot 256-byte aligned); the last
/// element is the arena size.
inline std::vector<int64_t> slot_offsets(const Program& p, int64_t max_batch) {
  std::vector<int64_t> off;
  int64_t cur = 0;
  for (auto b : p.slot_bytes_per_col) {
    off.push_back(cur);
    cur += (b * max_batch + 255) / 256 * 256;
  }
  off.push_back(cur);
  return off;
}

/// The view of a value for columns starting at `col0`; `root_base[r]` is root r's buffer.
inline View view_of(const Program& p, int v, char* const* root_base, int64_t col0) {
  const Value& val = p.values[v];
  const Root& r = p.roots[val.root];
  View w;
  w.dt = r.dt;
  w.col_stride = r.col_elems;
  w.p = root_base[val.root] + (col0 * r.col_elems + val.off) * dt_size(r.dt);
  if (val.slice()) {
    w.L = val.last;
    w.ld = val.ld;
    w.dense = 0;
  } else {
    w.L = val.n;
    w.ld = val.n;
    w.dense = 1;
  }
  return w;
}

/// Row pitch of a value read or written as a GEMM matrix with rows of `width` elements.
inline int64_t gemm_ld(const Program& p, int v, int64_t width) {
  const Value& val = p.values[v];
  return val.slice() ? val.ld : width;
}

// ---------------------------------------------------------------------------------------------------------------------
// Lowering

namespace detail {

/// Whether the CUDA backend runs a Keras 3 int8 Dense exactly: its GEMM sums the integer products in f32, exact
/// while every partial sum stays below 2^24, i.e. inputs * 127 * 127 <= 2^24 (1040 inputs). Wider layers would
/// round where Keras' int32 matmul does not.
inline bool int8_dense_fits(const Node& n, std::string* why) {
  const Array* kernel = n.find("kernel");
  const int64_t k = kernel && !kernel->shape.empty() ? kernel->shape.front() : 0;
  if (k * 127 * 127 <= (int64_t(1) << 24)) return true;
  if (why)
    *why = "int8-quantized Dense with " + std::to_string(k) +
           " inputs: the CUDA backend sums int8 products exactly only up to 1040 inputs; run it on the CPU backend "
           "(device cpu), which multiplies in int32 as Keras does";
  return false;
}

using opt::unsupported;

struct Epi {
  ActKind act = ActKind::Linear;
  ActParams params;
  std::vector<float> alpha;  ///< PReLU slope per feature
  bool softmax = false;
  bool linear() const { return act == ActKind::Linear && !softmax; }
};

enum class SK { Gemm, Affine, Act, Merge, Concat, Cast, Custom };

struct Step {
  SK kind = SK::Act;
  std::string name;
  std::vector<int> in;
  int out = -1;
  // Gemm
  int64_t m = 0, k = 0, rpc = 1;
  std::vector<float> w;      ///< [k][m] row-major
  std::vector<float> ubias;  ///< per unit, empty: none
  int acc = -1;              ///< value added to the GEMM result (Add fusion)
  bool conv = false;
  bool int8 = false;               ///< Keras 3 int8 Dense: w holds integers, kscale the per-unit kernel_scale
  std::vector<float> kscale;
  int64_t steps_in = 0, cin = 0, ksize = 1, stride = 1, dilation = 1, pad_left = 0, steps_out = 0;
  // Affine
  std::vector<float> scale, shift;
  bool subtract_first = false;
  // Merge
  Merge merge = Merge::Add;
  std::vector<Bcast> bcast;  ///< per input (nd == 0: the output's layout); empty when no input broadcasts
  // Concat: per column, `outer` repetitions of each input's inner[i] values
  int64_t outer = 1;
  std::vector<int64_t> inner;
  std::vector<int64_t> starts;  ///< offset of each input inside one output row of sum(inner) values
  bool concat_last_axis = false;
  std::vector<uint8_t> in_place;  ///< per input: the optimizer's concat_in_place hint
  int accumulate_input = -1;      ///< Merge (Add): the optimizer's accumulate_input hint
  // Custom
  std::shared_ptr<const CustomCall> custom;

  Epi epi;
};

inline Epi activation_epi(const Node& n, const Shape& shape) {
  Epi e;
  e.act = n.activation.kind;
  e.params = n.activation.params;
  if (e.act == ActKind::Softmax) {
    e.act = ActKind::Linear;
    e.softmax = true;
  } else if (e.act == ActKind::PRelu) {
    e.alpha = opt::required_weight(n, "alpha").data;  // one slope per element (optimizer pass `affine`)
  }
  (void)shape;
  return e;
}

inline Merge merge_of(OpKind op) {
  switch (op) {
    case OpKind::Add: return Merge::Add;
    case OpKind::Subtract: return Merge::Subtract;
    case OpKind::Multiply: return Merge::Multiply;
    case OpKind::Average: return Merge::Average;
    case OpKind::Maximum: return Merge::Maximum;
    case OpKind::Minimum: return Merge::Minimum;
    default: return Merge::Copy;
  }
}

class Lowerer {
 public:
  Lowerer(const Model& m, const LowerOptions& o) : opt_(o) {
    opt::Options oo;
    oo.fold_affine = o.fold_affine;
    oo.fuse_activations = o.fuse_activations;
    optimized_ = opt::optimize(m, oo);
    p_.notes = optimized_.notes;
    p_.precision = o.precision;
    p_.engine = o.engine;
    p_.operand_dt = o.precision == Precision::BF16 ? DT::BF16 : (o.precision == Precision::FP16 ? DT::F16 : DT::F32);
  }

  Program run() {
    lower_nodes();
    if (opt_.fuse_add)
      while (fuse_add()) {
      }
    make_roots();
    if (opt_.alias_concat) alias_concat();
    assign_dtypes();
    insert_casts();
    emit_ops();
    allocate();
    return std::move(p_);
  }

 private:
  opt::Optimized optimized_;  // the model after the graph optimizer: what is lowered
  const Model& m_ = optimized_.model;
  const LowerOptions& opt_;
  Program p_;
  std::vector<Step> steps_;

  bool half() const { return p_.operand_dt != DT::F32; }

  int new_value(int64_t n, int64_t last) {
    Value v;
    v.n = n;
    v.last = last;
    v.ld = n;
    p_.values.push_back(v);
    return static_cast<int>(p_.values.size()) - 1;
  }

  int new_blob(std::vector<float> data, DT dt = DT::F32) {
    p_.blobs.push_back(Blob{std::move(data), dt});
    return static_cast<int>(p_.blobs.size()) - 1;
  }

  void lower_nodes() {
    std::vector<int> node_value(m_.nodes.size(), -1);
    for (size_t ni = 0; ni < m_.nodes.size(); ++ni) {
      const Node& n = m_.nodes[ni];
      if (n.op == OpKind::Input) {
        node_value[ni] = new_value(shape_size(n.shape), n.shape.empty() ? 1 : n.shape.back());
        continue;
      }
      const Shape& in = m_.nodes[n.inputs[0]].shape;
      const int vin = node_value[n.inputs[0]];
      const int64_t fout = shape_size(n.shape);
      Step s;
      s.name = n.name;
      switch (n.op) {
        case OpKind::Reshape:  // Flatten too (optimizer pass `aliases`): a view of the same buffer
          p_.values[vin].reshaped = true;
          node_value[ni] = vin;
          continue;
        case OpKind::Custom:
          // A registered custom layer: its cuda function on the plan's stream, or its cpu function through
          // pinned host staging (cuda_plan.cu). Dense float32 in and out.
          s.kind = SK::Custom;
          s.custom = CustomCall::make(m_, n);
          break;
        case OpKind::Activation:
          s.kind = SK::Act;
          s.epi = activation_epi(n, n.shape);
          break;
        case OpKind::Dense: {
          const Array* kernel = n.find("kernel");
          if (!kernel) unsupported(n, "Dense without a kernel");
          s.kind = SK::Gemm;
          s.k = in.back();
          s.m = n.units;
          s.rpc = shape_size(in) / s.k;
          s.w = kernel->data;
          s.epi = activation_epi(n, n.shape);
          if (n.use_bias) {
            const Array* b = n.find("bias");
            if (!b) unsupported(n, "Dense with use_bias but no bias");
            s.ubias = b->data;
          }
          if (n.quantized_int8) lower_int8(n, s);
          break;
        }
        case OpKind::Conv1D: {
          const Array* kernel = n.find("kernel");
          if (!kernel) unsupported(n, "Conv1D without a kernel");
          s.kind = SK::Gemm;
          s.m = n.units;
          s.steps_in = in[0];
          s.cin = in[1];
          s.ksize = n.kernel_size;
          s.stride = n.stride;
          s.dilation = n.dilation;
          s.steps_out = n.shape[0];
          s.k = s.ksize * s.cin;
          s.rpc = s.steps_out;
          s.pad_left = opt::conv1d_pad_left(n, in);
          // A 1-wide, stride-1 convolution is a Dense over the steps: no im2col.
          s.conv = !(s.ksize == 1 && s.stride == 1 && s.pad_left == 0 && s.steps_out == s.steps_in);
          s.w = kernel->data;  // [ksize][cin][filters] == [ksize*cin][filters]
          s.epi = activation_epi(n, n.shape);
          if (n.use_bias) {
            const Array* b = n.find("bias");
            if (!b) unsupported(n, "Conv1D with use_bias but no bias");
            s.ubias = b->data;
          }
          break;
        }
        case OpKind::Affine:
          // BatchNormalization, Rescaling, Normalization (optimizer pass `affine`): one scale/shift per element.
          s.kind = SK::Affine;
          s.scale = opt::required_weight(n, "scale").data;
          s.shift = opt::required_weight(n, "shift").data;
          s.subtract_first = n.subtract_first;
          s.epi = activation_epi(n, n.shape);
          break;
        case OpKind::Concatenate: {
          s.kind = SK::Concat;
          const int axis = n.axis < 0 ? n.axis + static_cast<int>(in.size()) : n.axis;
          s.outer = 1;
          for (int d = 0; d < axis; ++d) s.outer *= in[static_cast<size_t>(d)];
          int64_t start = 0;
          for (int i : n.inputs) {
            s.inner.push_back(shape_size(m_.nodes[static_cast<size_t>(i)].shape) / s.outer);
            s.starts.push_back(start);
            start += s.inner.back();
          }
          s.concat_last_axis = axis == static_cast<int>(in.size()) - 1;
          s.in_place = n.concat_in_place;
          break;
        }
        default:
          if (!is_merge(n.op))
            unsupported(n, std::string("op ") + op_name(n.op) + " reached the CUDA lowering (the graph optimizer removes it)");
          s.kind = SK::Merge;  // Add ... Minimum
          s.merge = merge_of(n.op);
          s.bcast = merge_broadcast(n);
          s.epi = activation_epi(n, n.shape);
          s.accumulate_input = n.accumulate_input;
      }
      for (int i : n.inputs) s.in.push_back(node_value[static_cast<size_t>(i)]);
      s.out = new_value(fout, n.shape.empty() ? 1 : n.shape.back());
      node_value[ni] = s.out;
      steps_.push_back(std::move(s));
    }
    for (int i = 0; i < m_.num_inputs(); ++i) {
      const int v = node_value[static_cast<size_t>(m_.inputs[static_cast<size_t>(i)])];
      if (p_.values[v].input >= 0)
        throw_error(Status::Unsupported, "the same tensor is given as two model inputs");
      p_.inputs.push_back(v);
      p_.values[v].input = i;
    }
    for (int o : m_.outputs) p_.outputs.push_back(node_value[static_cast<size_t>(o)]);
  }

  // Keras 3 int8 Dense (dense.py _int8_call): the inputs are quantized per row (RowQuant), multiplied by the int8
  // kernel in the GEMM's operand type with f32 accumulation (exact: integers, every partial sum below 2^24), then
  // divided by kernel_scale * the row's scale; bias and activation follow as Keras applies them.
  void lower_int8(const Node& n, Step& s) {
    std::string why;
    if (!int8_dense_fits(n, &why)) unsupported(n, why);
    s.int8 = true;  // kernel and kernel_scale checked by the optimizer (opt::check_int8_dense)
    s.kscale = opt::required_weight(n, "kernel_scale").data;
  }

  // How each merge input is read against the merge's output shape (NumPy broadcasting); empty when every
  // input has the output's shape (the plain element-wise path).
  std::vector<Bcast> merge_broadcast(const Node& n) const {
    std::vector<Bcast> out(n.inputs.size());
    bool any = false;
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const Shape& is = m_.nodes[static_cast<size_t>(n.inputs[i])].shape;
      cpu::BroadcastRead r;
      std::string why;
      if (!cpu::broadcast_read(is, n.shape, &r, &why)) unsupported(n, why);
      if (r.identity() && shape_size(is) == shape_size(n.shape)) continue;
      if (r.dims.size() > static_cast<size_t>(kMaxBcastDims))
        unsupported(n, "input shape " + shape_str(is) + " broadcasts to " + shape_str(n.shape) + " over " +
                           std::to_string(r.dims.size()) + " alternating axes; the CUDA backend handles at most " +
                           std::to_string(kMaxBcastDims));
      Bcast& b = out[i];
      b.nd = static_cast<int32_t>(r.dims.size());
      for (size_t d = 0; d < r.dims.size(); ++d) {
        b.dims[d] = r.dims[d];
        b.stride[d] = r.strides[d];
      }
      any = true;
    }
    if (!any) out.clear();
    return out;
  }

  int producer(int v) const {
    for (size_t i = 0; i < steps_.size(); ++i)
      if (steps_[i].out == v) return static_cast<int>(i);
    return -1;
  }


  // Add(x.., Dense(y)) with the optimizer's accumulate_input hint (a linear Dense read only by the Add): the GEMM
  // accumulates onto the other operand.
  bool fuse_add() {
    for (size_t si = 0; si < steps_.size(); ++si) {
      Step& s = steps_[si];
      if (s.kind != SK::Merge || s.merge != Merge::Add || s.accumulate_input < 0) continue;
      const size_t j = static_cast<size_t>(s.accumulate_input);
      s.accumulate_input = -1;
      const int pi = producer(s.in[j]);
      if (pi < 0 || steps_[pi].kind != SK::Gemm) continue;  // the hint names a Dense/Conv1D operand
      Step g = steps_[pi];
      std::vector<int> rest = s.in;
      rest.erase(rest.begin() + static_cast<long>(j));
      const std::string note = "fused " + s.name + " into " + g.name + " (GEMM accumulates)";
      g.name += "+" + s.name;
      g.epi = s.epi;
      g.out = s.out;
      if (rest.size() == 1) {
        g.acc = rest[0];
        // The GEMM now reads rest[0], which may be computed after it: move it to the Add's place.
        steps_.erase(steps_.begin() + static_cast<long>(si));
        steps_.insert(steps_.begin() + static_cast<long>(si), g);
        steps_.erase(steps_.begin() + pi);
      } else {
        g.acc = s.out;  // the Add of the other operands runs first, then the GEMM accumulates in place
        s.in = rest;
        s.epi = Epi{};
        steps_.insert(steps_.begin() + static_cast<long>(si) + 1, g);
        steps_.erase(steps_.begin() + pi);
      }
      p_.notes.push_back(note);
      return true;
    }
    return false;
  }

  void make_roots() {
    // Every value starts as its own dense root; aliases share their source's value id already.
    for (size_t v = 0; v < p_.values.size(); ++v) {
      Root r;
      r.col_elems = p_.values[v].n;
      p_.roots.push_back(r);
      p_.values[v].root = static_cast<int>(v);
    }
  }

  // Concatenate along the last axis: inputs written in place into their slice of the output.
  void alias_concat() {
    for (auto& s : steps_) {
      if (s.kind != SK::Concat || !s.concat_last_axis) continue;
      const Value& outv = p_.values[s.out];
      std::vector<int> keep_in;
      std::vector<int64_t> keep_inner, keep_start;
      for (size_t i = 0; i < s.in.size(); ++i) {
        const int v = s.in[i];
        const int64_t w = s.inner[i];
        // The optimizer's concat_in_place hint (merge_hints): the producer may write a strided slice.
        const int pi = i < s.in_place.size() && s.in_place[i] ? producer(v) : -1;
        const bool ok = pi >= 0 && p_.values[v].last == w && !p_.values[v].slice();
        if (ok) {
          Value& val = p_.values[v];
          val.root = outv.root;
          val.off = s.starts[i];
          val.ld = outv.last;
          p_.notes.push_back("aliased " + steps_[pi].name + " into a slice of " + s.name);
        } else {
          keep_in.push_back(v);
          keep_inner.push_back(w);
          keep_start.push_back(s.starts[i]);
        }
      }
      s.in = keep_in;
      s.inner = keep_inner;
      s.starts = keep_start;
    }
    // Concatenates whose inputs are all written in place have nothing left to do.
    steps_.erase(std::remove_if(steps_.begin(), steps_.end(),
                                [](const Step& s) { return s.kind == SK::Concat && s.in.empty(); }),
                 steps_.end());
  }

  // Which reads of a root accept the half operand type: only a plain (non-im2col) GEMM's B operand.
  void assign_dtypes() {
    if (!half()) return;
    std::vector<int> gemm_reads(p_.roots.size(), 0), other_reads(p_.roots.size(), 0);
    for (const auto& s : steps_) {
      for (size_t i = 0; i < s.in.size(); ++i) {
        const int r = p_.values[s.in[i]].root;
        if (s.kind == SK::Gemm && !s.conv && !s.int8 && i == 0)  // int8: quantized from f32, as Keras does
          ++gemm_reads[r];
        else
          ++other_reads[r];
      }
      if (s.acc >= 0) ++other_reads[p_.values[s.acc].root];
      if (s.kind == SK::Custom) ++other_reads[p_.values[s.out].root];  // custom layers write float32
    }
    for (int v : p_.outputs) ++other_reads[p_.values[v].root];
    for (size_t r = 0; r < p_.roots.size(); ++r)
      if (gemm_reads[r] > 0 && other_reads[r] == 0) p_.roots[r].dt = p_.operand_dt;
  }

  // A GEMM operand stored in f32 in a half mode: convert it once (shared by all GEMMs reading it).
  void insert_casts() {
    // The fused GEMM reads any operand type itself; cuBLASLt needs both operands in the half type.
    if (!half() || p_.engine == GemmEngine::Fused) return;
    std::map<int, int> cast_of;
    for (size_t si = 0; si < steps_.size(); ++si) {
      Step& s = steps_[si];
      if (s.kind != SK::Gemm || s.conv || s.int8) continue;
      const int v = s.in[0];
      if (p_.roots[p_.values[v].root].dt != DT::F32) continue;
      auto it = cast_of.find(v);
      if (it != cast_of.end()) {
        s.in[0] = it->second;
        continue;
      }
      const Value src = p_.values[v];
      const int cv = new_value(src.n, src.last);
      Root r;
      r.col_elems = src.n;
      r.dt = p_.operand_dt;
      p_.roots.push_back(r);
      p_.values[cv].root = static_cast<int>(p_.roots.size()) - 1;
      Step c;
      c.kind = SK::Cast;
      c.name = s.name + "/cast";
      c.in = {v};
      c.out = cv;
      cast_of[v] = cv;
      s.in[0] = cv;
      steps_.insert(steps_.begin() + static_cast<long>(si), c);
      ++si;
    }
  }

  int new_scratch(int64_t n, DT dt) {
    const int v = new_value(n, n);
    Root r;
    r.col_elems = n;
    r.dt = dt;
    p_.roots.push_back(r);
    p_.values[v].root = static_cast<int>(p_.roots.size()) - 1;
    return v;
  }

  DT dt_of(int v) const { return p_.roots[p_.values[v].root].dt; }

  std::vector<float> per_feature_bias(const Step& s) const {
    std::vector<float> b(static_cast<size_t>(s.rpc * s.m));
    for (size_t f = 0; f < b.size(); ++f) b[f] = s.ubias[f % static_cast<size_t>(s.m)];
    return b;
  }

  void emit_int8_gemm(const Step& s) {
    const int64_t nout = s.rpc * s.m;
    Op rq;
    rq.type = OpType::RowQuant;
    rq.name = s.name + "/quantize_inputs";
    rq.ins = {s.in[0]};
    rq.out = new_scratch(s.rpc * s.k, p_.operand_dt);
    rq.out2 = new_scratch(s.rpc, DT::F32);
    rq.L = s.k;
    rq.rpc = s.rpc;
    rq.n = s.rpc * s.k;
    p_.ops.push_back(rq);
    Op g;
    g.type = p_.engine == GemmEngine::Fused ? OpType::GemmFused : OpType::GemmLt;
    g.name = s.name;
    g.a = new_blob(s.w, p_.operand_dt);
    g.b = rq.out;
    g.d = new_scratch(nout, DT::F32);
    g.m = s.m;
    g.k = s.k;
    g.rpc = s.rpc;
    p_.ops.push_back(g);
    Op e;
    e.type = OpType::Ew;
    e.name = s.name + "/dequantize";
    e.ins = {g.d, rq.out2};
    Bcast row;  // output element q of a column reads the scale of its row q / m
    row.nd = s.rpc > 1 ? 2 : 1;
    row.dims[0] = s.rpc > 1 ? s.rpc : s.m;
    row.stride[0] = s.rpc > 1 ? 1 : 0;
    row.dims[1] = s.m;
    row.stride[1] = 0;
    e.bcast = {Bcast{}, row};
    std::vector<float> ks(static_cast<size_t>(nout));
    for (size_t f = 0; f < ks.size(); ++f) ks[f] = s.kscale[f % static_cast<size_t>(s.m)];
    e.dequant = new_blob(std::move(ks));
    e.bias = s.ubias.empty() ? -1 : new_blob(per_feature_bias(s));
    e.out = s.out;
    e.n = nout;
    emit_ew(e, s.epi, p_.values[s.out].last);
  }

  void emit_gemm(const Step& s) {
    if (s.int8) return emit_int8_gemm(s);
    const int a = new_blob(s.w, p_.operand_dt);
    int b = s.in[0];
    if (s.conv) {
      const int col = new_scratch(s.steps_out * s.k, p_.operand_dt);
      Op im;
      im.type = OpType::Im2col;
      im.name = s.name + "/im2col";
      im.ins = {s.in[0]};
      im.out = col;
      im.steps_in = s.steps_in;
      im.cin = s.cin;
      im.ksize = s.ksize;
      im.stride = s.stride;
      im.dilation = s.dilation;
      im.pad_left = s.pad_left;
      im.steps_out = s.steps_out;
      im.n = s.steps_out * s.k;
      p_.ops.push_back(im);
      b = col;
    }
    const int ubias = s.ubias.empty() ? -1 : new_blob(s.ubias);
    const int alpha = s.epi.alpha.empty() ? -1 : new_blob(s.epi.alpha);
    const DT dout = dt_of(s.out);
    Op g;
    g.name = s.name;
    g.a = a;
    g.b = b;
    g.m = s.m;
    g.k = s.k;
    g.rpc = s.rpc;
    const int64_t nout = s.rpc * s.m;

    if (p_.engine == GemmEngine::Fused) {
      g.type = OpType::GemmFused;
      g.c = s.acc;
      g.bias = ubias;
      if (!s.epi.softmax) {
        g.d = s.out;
        g.act = s.epi.act;
        g.params = s.epi.params;
        g.alpha = alpha;
        p_.ops.push_back(g);
        return;
      }
      g.d = dout == DT::F32 ? s.out : new_scratch(nout, DT::F32);
      p_.ops.push_back(g);
      emit_softmax(s.name + "/softmax", g.d, s.out, -1, s.m, s.rpc);
      return;
    }

    g.type = OpType::GemmLt;
    const bool plain_relu = s.epi.act == ActKind::Relu && s.epi.params.alpha == 0.0f &&
                            std::isinf(s.epi.params.max_value) && s.epi.params.max_value > 0 &&
                            s.epi.params.threshold == 0.0f;
    const bool epi_ok = !s.epi.softmax && s.epi.alpha.empty() &&
                        (s.epi.act == ActKind::Linear || (opt_.relu_epilogue && plain_relu));
    const bool acc_f32 = s.acc >= 0 && dt_of(s.acc) == DT::F32;
    if (epi_ok && dout == DT::F32 && (s.acc < 0 || acc_f32)) {
      g.d = s.out;
      g.c = s.acc;
      g.bias = ubias;
      if (s.epi.act == ActKind::Relu)
        g.lt_epilogue = ubias >= 0 ? LtEpilogue::ReluBias : LtEpilogue::Relu;
      else
        g.lt_epilogue = ubias >= 0 ? LtEpilogue::Bias : LtEpilogue::None;
      p_.ops.push_back(g);
      return;
    }
    // GEMM into an f32 buffer (the output itself when it is f32), then one post-kernel: bias + the
    // activation (+ the accumulated operand when cuBLASLt cannot read it) + conversion to the output type.
    g.d = dout == DT::F32 ? s.out : new_scratch(nout, DT::F32);
    g.c = acc_f32 ? s.acc : -1;  // D is f32 here, so cuBLASLt can read an f32 C (in place when C is the output)
    const bool acc_in_post = s.acc >= 0 && !acc_f32;
    p_.ops.push_back(g);
    const int pbias = s.ubias.empty() ? -1 : new_blob(per_feature_bias(s));
    if (s.epi.softmax) {
      emit_softmax(s.name + "/softmax", g.d, s.out, pbias, s.m, s.rpc);
      return;
    }
    Op e;
    e.type = OpType::Ew;
    e.name = s.name + "/epilogue";
    e.ins = {g.d};
    if (acc_in_post) e.ins.push_back(s.acc);
    e.merge = acc_in_post ? Merge::Add : Merge::Copy;
    e.out = s.out;
    e.bias = pbias;
    e.act = s.epi.act;
    e.params = s.epi.params;
    e.alpha = alpha;
    e.n = nout;
    p_.ops.push_back(e);
  }

  void emit_softmax(const std::string& name, int in, int out, int bias, int64_t L, int64_t rpc) {
    Op o;
    o.type = OpType::Softmax;
    o.name = name;
    o.ins = {in};
    o.out = out;
    o.bias = bias;
    o.L = L;
    o.rpc = rpc;
    p_.ops.push_back(o);
  }

  // The fused activation of an element-wise step, written as a separate softmax when it is one.
  void emit_ew(Op e, const Epi& epi, int64_t last) {
    e.act = epi.act;
    e.params = epi.params;
    e.alpha = epi.alpha.empty() ? -1 : new_blob(epi.alpha);
    if (!epi.softmax) {
      p_.ops.push_back(e);
      return;
    }
    // Element-wise in f32 (into the output when it is f32, else a scratch buffer), then the softmax.
    const int out = e.out;
    if (dt_of(out) != DT::F32) e.out = new_scratch(e.n, DT::F32);
    p_.ops.push_back(e);
    emit_softmax(e.name + "/softmax", e.out, out, -1, last, e.n / last);
  }

  void emit_ops() {
    for (size_t si = 0; si < steps_.size(); ++si) {
      const Step& s = steps_[si];
      const int64_t nout = p_.values[s.out].n;
      switch (s.kind) {
        case SK::Gemm: emit_gemm(s); break;
        case SK::Affine: {
          Op e;
          e.type = OpType::Ew;
          e.name = s.name;
          e.ins = {s.in[0]};
          e.out = s.out;
          e.scale = new_blob(s.scale);
          e.shift = new_blob(s.shift);
          e.subtract_first = s.subtract_first;
          e.n = nout;
          emit_ew(e, s.epi, p_.values[s.out].last);
          break;
        }
        case SK::Act:
        case SK::Cast: {
          Op e;
          e.type = OpType::Ew;
          e.name = s.name;
          e.ins = {s.in[0]};
          e.out = s.out;
          e.n = nout;
          if (s.kind == SK::Act && s.epi.softmax) {
            emit_softmax(s.name, s.in[0], s.out, -1, p_.values[s.out].last, nout / p_.values[s.out].last);
            break;
          }
          emit_ew(e, s.epi, p_.values[s.out].last);
          break;
        }
        case SK::Merge: {
          // At most kMaxEwInputs operands per kernel: longer merges accumulate into the output.
          const int nin = static_cast<int>(s.in.size());
          int done = 0;
          while (done < nin) {
            Op e;
            e.type = OpType::Ew;
            e.name = s.name;
            e.out = s.out;
            e.n = nout;
            e.merge = s.merge;
            if (done > 0) e.ins.push_back(s.out);
            const int take = std::min(nin - done, kMaxEwInputs - static_cast<int>(e.ins.size()));
            if (!s.bcast.empty()) e.bcast.assign(e.ins.size(), Bcast{});  // the accumulated output: its own layout
            for (int i = 0; i < take; ++i) {
              e.ins.push_back(s.in[done + i]);
              if (!s.bcast.empty()) e.bcast.push_back(s.bcast[static_cast<size_t>(done + i)]);
            }
            done += take;
            const bool last_chunk = done == nin;
            if (e.ins.size() == 1) e.merge = Merge::Copy;
            if (s.merge == Merge::Average && last_chunk) e.avg_div = static_cast<float>(nin);
            if (last_chunk)
              emit_ew(e, s.epi, p_.values[s.out].last);
            else
              p_.ops.push_back(e);
          }
          break;
        }
        case SK::Custom: {
          Op c;
          c.type = OpType::Custom;
          c.name = s.name;
          for (int v : s.in) {
            if (!p_.values[v].slice() && dt_of(v) == DT::F32) {
              c.ins.push_back(v);
              continue;
            }
            // A slice of a Concatenate output (or a non-f32 value): copied to a dense f32 buffer first.
            Op e;
            e.type = OpType::Ew;
            e.name = s.name + "/dense_input";
            e.ins = {v};
            e.out = new_scratch(p_.values[v].n, DT::F32);
            e.n = p_.values[v].n;
            p_.ops.push_back(e);
            c.ins.push_back(e.out);
          }
          c.out = s.out;
          c.n = nout;
          c.custom = static_cast<int>(p_.customs.size());
          p_.customs.push_back(s.custom);
          p_.ops.push_back(c);
          break;
        }
        case SK::Concat: {
          const int64_t row_total = p_.values[s.out].n / s.outer;  // one output row per outer index
          for (size_t i = 0; i < s.in.size(); ++i) {
            Op e;
            e.type = OpType::Ew;
            e.name = s.name;
            e.ins = {s.in[i]};
            e.out = s.out;
            e.n = p_.values[s.in[i]].n;
            e.remap_w = s.inner[i];
            e.remap_total = row_total;
            e.remap_start = s.starts[i];
            p_.ops.push_back(e);
          }
          break;
        }
      }
    }
  }

  // Liveness over ops, then slots (opt/slot_alloc.hpp: best fit, else the largest free slot grown).
  void allocate() {
    const int inf = std::numeric_limits<int>::max();
    for (size_t i = 0; i < p_.ops.size(); ++i) {
      const Op& o = p_.ops[i];
      for (int v : o.reads()) {
        Root& r = p_.roots[p_.values[v].root];
        r.last = std::max(r.last, static_cast<int>(i));
      }
      Root& w = p_.roots[p_.values[o.writes()].root];
      w.def = std::min(w.def, static_cast<int>(i));
      if (o.out2 >= 0) {
        Root& w2 = p_.roots[p_.values[o.out2].root];
        w2.def = std::min(w2.def, static_cast<int>(i));
      }
    }
    for (int v : p_.inputs) p_.roots[p_.values[v].root].def = -1;
    for (int v : p_.outputs) p_.roots[p_.values[v].root].last = inf;
    // Roots never written are unused; the others get slots from the shared liveness allocator.
    std::vector<int> used;
    std::vector<opt::BufferLife> lives;
    for (size_t r = 0; r < p_.roots.size(); ++r) {
      const Root& root = p_.roots[r];
      if (root.def == inf) continue;
      used.push_back(static_cast<int>(r));
      lives.push_back({root.def, root.last, root.col_elems * dt_size(root.dt)});
    }
    const std::vector<int> slot = opt::assign_slots(lives, &p_.slot_bytes_per_col);
    for (size_t i = 0; i < used.size(); ++i) p_.roots[static_cast<size_t>(used[i])].slot = slot[i];
    // Keep each slot a multiple of 16 bytes per column, so column offsets keep 16-byte alignment.
    for (auto& b : p_.slot_bytes_per_col) b = (b + 15) / 16 * 16;
  }
};

}  // namespace detail

/// Lower a model (shapes inferred) for the CUDA backend. Throws Unsupported naming the layer for layers it
/// cannot run (custom layers whose class is not registered).
inline Program lower_model(const Model& model, const LowerOptions& options = {}) {
  return detail::Lowerer(model, options).run();
}

/// Whether the CUDA backend runs this node (every built-in op, Keras 3 int8 Dense up to 1040 inputs; custom
/// layers whose class is registered).
inline bool cuda_supports(const Node& node, std::string* why) {
  if (node.op == OpKind::Dense && node.quantized_int8 && !detail::int8_dense_fits(node, why)) return false;
  if (node.op == OpKind::Custom && !find_custom_layer(node.keras_class)) {
    if (why)
      *why = "custom layer class '" + node.keras_class +
             "' is not registered (fkb::register_custom_layer / fkb_register_layer)";
    return false;
  }
  return true;
}

}  // namespace fkb::cuda
