// The graph optimizer: IR -> IR passes over fkb::Model, run once before any backend lowers a model.
//
// Every backend (the CPU program, runtime/src/cpu/cpu_program.cpp; the CUDA lowering, kernels/lowering.hpp)
// lowers the optimizer's output and keeps only what is device-specific (GEMM engines, operand types, in-place
// accumulation). A layer is therefore added once to the IR and once per backend kernel; folding and fusion live
// here, once. The passes, in order (each in its own file, each unit-tested on hand-made graphs in
// tests/unit/test_opt_*.cpp):
//
//   dead_nodes        nodes no model output depends on are removed (model inputs stay)
//   aliases           Dropout (and its inference-time twins) and linear Activation are removed; Flatten becomes
//                     Reshape (data never moves: a column is contiguous whatever its shape)
//   affine            BatchNormalization, Rescaling and Normalization become one Affine op with one scale and
//                     shift per element; PReLU slopes are expanded to one per element
//   fold_affine       an x*s+t Affine after a linear Dense/Conv1D that only it reads is folded into the kernel and
//                     bias; a BatchNormalization read only by a Dense is folded into that Dense
//   fuse_activations  an element-wise activation (or softmax) is fused into the op producing its input
//   merge_hints       Add: which operand a GEMM may accumulate; Concatenate: which inputs may be written in place
//
// The result keeps Keras' semantics exactly up to float rounding: the tests compare folded with unfolded runs
// and both with Keras' outputs. Notes say what was folded or fused ("folded bn into dense", "fused relu into
// dense"), for `fkb inspect --optimized`, verbose output and tests.
#pragma once

#include <string>
#include <vector>

#include "fkb/model.hpp"

namespace fkb::opt {

struct Options {
  bool fold_affine = true;       ///< run fold_affine (tests turn it off to check folded == unfolded)
  bool fuse_activations = true;  ///< run fuse_activations
};

/// A model after the passes, with what they did.
struct Optimized {
  Model model;
  std::vector<std::string> notes;
};

/// Run every pass on a copy of `model` (shapes inferred). Throws fkb::Error (Unsupported/ShapeMismatch) naming
/// the layer for weights that do not fit their layer. Running it on its own output changes nothing.
Optimized optimize(const Model& model, const Options& options = {});

/// The passes, in the order optimize() runs them. Each takes a model in the form the previous passes leave.
using Notes = std::vector<std::string>;
void remove_dead_nodes(Model& m, Notes& notes);
void resolve_aliases(Model& m, Notes& notes);
void canonicalize_affine(Model& m, Notes& notes);
void fold_affine(Model& m, Notes& notes);
void fuse_activations(Model& m, Notes& notes);
void merge_hints(Model& m, Notes& notes);

/// The names of the passes optimize() runs with these options, in order (for inspect and tests).
std::vector<std::string> pass_names(const Options& options = {});

// ---------------------------------------------------------------------------------------------------------------------
// Shared by the passes and the backends' lowerings.

/// A weight array expanded to one value per element of `shape` by NumPy broadcasting (right-aligned; leading
/// size-1 axes beyond the rank, such as a kept batch axis, are dropped). Throws Unsupported naming the layer and
/// the role when it does not broadcast.
std::vector<float> broadcast_to(const Node& n, const char* role, const Array& a, const Shape& shape);

/// Keras' padding at the start of a Conv1D input: 0 for 'valid', dilation * (kernel_size - 1) for 'causal', the
/// smaller half of the total for 'same' (TensorFlow's rule). `in` is the input's (steps, channels) shape.
int64_t conv1d_pad_left(const Node& n, const Shape& in);

/// The weight of a role (Node::find), or an error naming the layer when it is missing.
const Array& required_weight(const Node& n, const char* role);

[[noreturn]] void unsupported(const Node& n, const std::string& what);

/// Keras 3 int8-quantized Dense layers hold int8 values in `kernel` and one `kernel_scale` per unit; anything else is
/// refused naming the layer (optimize() checks every model before its passes).
void check_int8_dense(const Model& m);

}  // namespace fkb::opt
