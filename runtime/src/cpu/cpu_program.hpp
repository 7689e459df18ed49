// The CPU backend's compiled form of a model: a flat list of steps over numbered values.
//
// compile_program() runs the graph optimizer (runtime/src/opt/optimize.hpp: aliases, affine folding,
// activation fusion) and lowers its output once per plan: one step per remaining node (Reshape is a new view of
// the same data), each node's activation in the epilogue of its step, and a workspace slot for every value from
// the shared liveness allocator (runtime/src/opt/slot_alloc.hpp), so a plain MLP needs two buffers.
#pragma once

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "fkb/activations.hpp"
#include "fkb/backend.hpp"
#include "fkb/model.hpp"

namespace fkb {
class CustomCall;
}

namespace fkb::cpu {

/// Applied in one pass to each output tile after the main operation: y = act(y + bias), then an
/// optional softmax over rows of `softmax_len` values.
struct Epilogue {
  std::vector<float> bias;   ///< one per feature of the output value (empty: no bias)
  ActKind act = ActKind::Linear;
  ActParams params;
  std::vector<float> alpha;  ///< PReLU slope, one per feature of the output value
  int64_t softmax_len = 0;   ///< > 0: softmax over consecutive rows of this length
  bool is_identity() const { return bias.empty() && act == ActKind::Linear && softmax_len == 0; }
};

enum class StepKind {
  Gemm,    ///< out[r][n] = sum_k in[r][k] W[k][n] over rows r = columns x rows_per_col
  Conv1D,  ///< im2col into scratch, then a GEMM
  Affine,  ///< out[f] = in[f] * scale[f] + shift[f]  (BatchNorm, Rescaling; Normalization: see subtract_first)
  Act,     ///< element-wise activation / softmax only (the epilogue, out of place)
  Merge,   ///< Add, Subtract, Multiply, Average, Maximum, Minimum (inputs broadcast NumPy-style)
  Concat,  ///< concatenation along a per-column axis
  Custom,  ///< a registered custom layer: its cpu function on the block (fkb/custom_layer.hpp)
  Int8Gemm,  ///< Keras 3 int8-quantized Dense: per-row int8 inputs, int32 product, divided by both scales
};

struct Step {
  StepKind kind = StepKind::Act;
  std::string name;          ///< the Keras layer(s) it computes, for messages
  std::vector<int> in;       ///< value ids read
  int out = -1;              ///< value id written
  // Gemm / Conv1D
  int64_t rows_per_col = 1;  ///< GEMM rows per column (Dense on (steps, channels) inputs: steps)
  int64_t k = 0, n = 0;      ///< GEMM inner and output sizes; W is [k][n] row-major
  std::vector<float> w;
  // Conv1D geometry (channels_last): input (steps_in, cin), output (steps_out, n)
  int64_t steps_in = 0, cin = 0, ksize = 1, stride = 1, dilation = 1, pad_left = 0, steps_out = 0;
  // Affine
  std::vector<float> scale, shift;  ///< one per feature of the value
  bool subtract_first = false;      ///< out = (in - shift) * scale (Keras Normalization's form)
  // Merge
  OpKind merge = OpKind::Add;
  /// Per input: empty when it has the output's layout (the fast path), else the input element read by each
  /// output element of a column (NumPy broadcasting, broadcast.hpp). Empty vector: no input broadcasts.
  std::vector<std::vector<int32_t>> merge_index;
  std::vector<int64_t> merge_in_features;  ///< floats per column of each input (with merge_index)
  // Int8Gemm (k, n, rows_per_col as Gemm): the int8 kernel [k][n] and Keras' per-unit kernel_scale
  std::vector<int32_t> qw;
  std::vector<float> kernel_scale;
  // Concat: per column, `outer` repetitions of each input's `inner[i]` contiguous values
  int64_t outer = 1;
  std::vector<int64_t> inner;
  // Custom
  std::shared_ptr<const CustomCall> custom;

  Epilogue epi;
};

struct Value {
  int64_t features = 0;  ///< floats per column
  int input = -1;        ///< >= 0: model input number (data read from the caller's buffer)
  int slot = -1;         ///< workspace slot (for values produced by steps)
};

struct Program {
  std::vector<Value> values;
  std::vector<Step> steps;
  std::vector<int> inputs;   ///< value id of each model input
  std::vector<int> outputs;  ///< value id of each model output
  std::vector<int64_t> slot_features;  ///< floats per column of each workspace slot
  int64_t scratch_per_col = 0;         ///< Conv1D im2col floats per column
  int64_t flops_per_col = 0;
  std::vector<std::string> notes;      ///< what was folded/fused (for verbose output and tests)
};

/// Options of the lowering, handed to the graph optimizer (tests turn folding off to check folded == unfolded).
struct LowerOptions {
  bool fold_affine = true;    ///< fold BatchNorm/Normalization/Rescaling into an adjacent Dense/Conv1D
  bool fuse_activations = true;
};

/// Lower a model (shapes inferred) to a program. Throws Unsupported naming the layer for layers the CPU
/// backend cannot run (custom layers whose class is not registered).
Program compile_program(const Model& model, const LowerOptions& options = {});

/// Whether the CPU backend can run this node; `why` gets the reason when not.
bool cpu_supports(const Node& node, std::string* why);

/// A CPU plan for an already lowered program (make_cpu_backend()->compile() is lower + this). Tests use
/// it to run programs lowered with folding off.
std::unique_ptr<Plan> make_cpu_plan(Program program, const CompileOptions& options);

/// The memory one thread needs to run blocks of a CpuBlockPlan (activation slots, converted inputs, im2col
/// scratch). Opaque; made by the plan it belongs to.
class BlockWorker {
 public:
  virtual ~BlockWorker() = default;
};

/// A CPU plan that also runs single blocks of columns, for drivers that interleave several plans over one
/// loop of column blocks (fkb::Ensemble runs every member on a block before the next block).
class CpuBlockPlan : public Plan {
 public:
  /// Largest number of columns run_block takes.
  virtual int64_t block_size() const = 0;
  /// CPU threads the plan was compiled for (its `threads` option resolved).
  virtual int threads() const = 0;
  /// A new worker (allocates its workspace; throws OutOfMemory). A driver keeps one per thread per call.
  virtual std::unique_ptr<BlockWorker> make_worker() const = 0;
  /// Call once before a parallel loop of run_block calls (keeps OpenBLAS single-threaded inside it).
  virtual void begin_parallel_blocks() const = 0;
  /// Run `b` (1..block_size()) columns: x[i] points at the block's first column of input i, y[j] at the
  /// block's first column of output j (float32, [b][features] each). The plan is read-only: calls with
  /// different workers may run concurrently (the worker must come from this plan's make_worker()).
  /// Allocates nothing and never throws: the first error of a custom layer is returned (outputs undefined).
  virtual std::exception_ptr run_block(BlockWorker& worker, const float* const* x, float* const* y,
                                       int64_t b) const noexcept = 0;
};

/// Lower and compile a model for the CPU as a CpuBlockPlan (same checks and errors as the CPU backend).
std::unique_ptr<CpuBlockPlan> make_cpu_block_plan(const Model& model, const CompileOptions& options);

}  // namespace fkb::cpu
