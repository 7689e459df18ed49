// Model IR: shapes, validation, parameter and FLOP counts, summary.
#include "fkb/model.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "fkb/custom_layer.hpp"
#include "fkb/error.hpp"

namespace fkb {

int64_t shape_size(const Shape& s) {
  int64_t n = 1;
  for (auto v : s) n *= v;
  return n;
}

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  if (s.size() == 1) out += ",";
  return out + ")";
}

const char* op_name(OpKind op) {
  switch (op) {
    case OpKind::Input: return "Input";
    case OpKind::Dense: return "Dense";
    case OpKind::Activation: return "Activation";
    case OpKind::Dropout: return "Dropout";
    case OpKind::BatchNorm: return "BatchNorm";
    case OpKind::Normalization: return "Normalization";
    case OpKind::Rescaling: return "Rescaling";
    case OpKind::Add: return "Add";
    case OpKind::Subtract: return "Subtract";
    case OpKind::Multiply: return "Multiply";
    case OpKind::Average: return "Average";
    case OpKind::Maximum: return "Maximum";
    case OpKind::Minimum: return "Minimum";
    case OpKind::Concatenate: return "Concatenate";
    case OpKind::Flatten: return "Flatten";
    case OpKind::Reshape: return "Reshape";
    case OpKind::Conv1D: return "Conv1D";
    case OpKind::Custom: return "Custom";
    case OpKind::Affine: return "Affine";
  }
  return "?";
}

const Array* Node::find(const std::string& role) const {
  auto it = weights.find(role);
  if (it != weights.end()) return &it->second;
  auto c = constants.find(role);
  return c != constants.end() ? &c->second : nullptr;
}

int64_t Node::param_count() const {
  int64_t n = 0;
  for (const auto& kv : weights) n += kv.second.size();
  return n;
}

int64_t Model::input_size(int i) const { return shape_size(input_shape(i)); }
int64_t Model::output_size(int i) const { return shape_size(output_shape(i)); }

const Shape& Model::input_shape(int i) const {
  if (i < 0 || i >= num_inputs())
    throw_error(Status::InvalidArgument, "input index " + std::to_string(i) + " out of range: the model has " +
                                             std::to_string(num_inputs()) + " input(s)");
  return nodes[inputs[i]].shape;
}

const Shape& Model::output_shape(int i) const {
  if (i < 0 || i >= num_outputs())
    throw_error(Status::InvalidArgument, "output index " + std::to_string(i) + " out of range: the model has " +
                                             std::to_string(num_outputs()) + " output(s)");
  return nodes[outputs[i]].shape;
}

int64_t Model::param_count() const {
  int64_t n = 0;
  for (const auto& node : nodes)
    if (node.shared_from < 0) n += node.param_count();  // a shared layer's weights count once, as in Keras
  return n;
}

int64_t node_flops(const Model& m, const Node& n) {
  const int64_t out = shape_size(n.shape);
  switch (n.op) {
    case OpKind::Input:
    case OpKind::Dropout:
    case OpKind::Flatten:
    case OpKind::Reshape: return 0;
    case OpKind::Dense: {
      const Shape& in = m.nodes[n.inputs[0]].shape;
      return 2 * shape_size(in) * n.units + (n.use_bias ? out : 0) + (n.activation.kind != ActKind::Linear ? out : 0);
    }
    case OpKind::Conv1D: {
      const Shape& in = m.nodes[n.inputs[0]].shape;
      return 2 * out * n.kernel_size * in.back() + (n.use_bias ? out : 0) +
             (n.activation.kind != ActKind::Linear ? out : 0);
    }
    case OpKind::BatchNorm:
    case OpKind::Normalization:
    case OpKind::Rescaling:
    case OpKind::Affine: return 2 * out + (n.activation.kind != ActKind::Linear ? out : 0);
    case OpKind::Add:
    case OpKind::Subtract:
    case OpKind::Multiply:
    case OpKind::Average:
    case OpKind::Maximum:
    case OpKind::Minimum: return out * static_cast<int64_t>(n.inputs.size() - 1) + (n.op == OpKind::Average ? out : 0);
    default: return out;
  }
}

int64_t Model::flops_per_column() const {
  int64_t f = 0;
  for (const auto& n : nodes) f += node_flops(*this, n);
  return f;
}

void Model::validate() const {
  if (inputs.empty()) throw_error(Status::FormatError, "model has no inputs");
  if (outputs.empty()) throw_error(Status::FormatError, "model has no outputs");
  for (size_t i = 0; i < nodes.size(); ++i) {
    for (int in : nodes[i].inputs)
      if (in < 0 || in >= static_cast<int>(i))
        throw_error(Status::FormatError, "layer '" + nodes[i].name + "' has an input that is not computed before it");
    if (nodes[i].op == OpKind::Input && !nodes[i].inputs.empty()) throw_error(Status::Internal, "input node with inputs");
    if (nodes[i].op != OpKind::Input && nodes[i].inputs.empty())
      throw_error(Status::FormatError, "layer '" + nodes[i].name + "' has no inputs");
  }
  for (int i : inputs)
    if (i < 0 || i >= static_cast<int>(nodes.size()) || nodes[i].op != OpKind::Input)
      throw_error(Status::Internal, "model input is not an Input node");
  for (int o : outputs)
    if (o < 0 || o >= static_cast<int>(nodes.size())) throw_error(Status::Internal, "model output out of range");
}

namespace {

[[noreturn]] void shape_error(const Node& n, const std::string& what) {
  throw_error(Status::ShapeMismatch, "layer '" + n.name + "' (" + n.keras_class + "): " + what);
}

// Normalize a (possibly negative, possibly batch-inclusive) Keras axis to a per-column axis.
// Keras axes count the batch dimension as 0; a config axis of 1 means per-column axis 0.
int per_column_axis(const Node& n, int axis, size_t rank) {
  int r = static_cast<int>(rank);
  int a = axis < 0 ? axis + r : axis - 1;
  if (a < 0 || a >= r)
    shape_error(n, "axis " + std::to_string(axis) + " is out of range for an input of per-column rank " +
                       std::to_string(r));
  return a;
}

void check_weight(const Node& n, const char* role, const Shape& expected) {
  const Array* found = n.find(role);
  if (!found) return;
  const Array& a = *found;
  if (shape_size(a.shape) != shape_size(expected) || (a.shape.size() == expected.size() && a.shape != expected))
    shape_error(n, std::string("weight '") + role + "' has shape " + shape_str(a.shape) + " but the config implies " +
                       shape_str(expected));
  if (a.size() != shape_size(a.shape)) throw_error(Status::Internal, "weight data size disagrees with its shape");
}

void require_weight(const Node& n, const char* role) {
  if (!n.find(role)) shape_error(n, std::string("weight '") + role + "' is missing from the file");
}

// NumPy broadcasting of two per-column shapes: right-aligned, an axis of 1 stretches to the other's size.
Shape broadcast_shapes(const Node& n, const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()), 1);
  for (size_t k = 0; k < out.size(); ++k) {
    const int64_t da = k < a.size() ? a[a.size() - 1 - k] : 1;
    const int64_t db = k < b.size() ? b[b.size() - 1 - k] : 1;
    if (da != db && da != 1 && db != 1)
      shape_error(n, "inputs of shapes " + shape_str(a) + " and " + shape_str(b) +
                         " do not broadcast (per-column shapes are aligned on the right; each axis must be equal or 1 "
                         "in one of them, as in Keras and NumPy)");
    out[out.size() - 1 - k] = std::max(da, db);
  }
  return out;
}

// Normalization's mean/variance: Keras keeps one value per element of the normalized axis (`axis`, already a
// negative per-column axis) and broadcasts over the others (normalization.py build: _broadcast_shape). A 1-D array
// of the axis' size is placed on that axis ({levels} -> {levels, 1} for axis -2); one value stays a scalar; an array
// that already broadcasts against the input is kept (leading size-1 axes beyond the input's rank dropped). Anything
// else is refused naming both shapes.
void normalization_stat_shape(Node& n, const char* role, const Shape& in) {
  auto it = n.weights.find(role);
  Array& a = it != n.weights.end() ? it->second : n.constants.at(role);
  const int rank = static_cast<int>(in.size());
  const int axis = n.axis + rank;
  // Older tf.keras (2.x experimental.preprocessing) kept the batch axis: (1, features).
  while (a.shape.size() > in.size() && a.shape.front() == 1) a.shape.erase(a.shape.begin());
  if (a.size() == 1) return;
  if (a.shape.size() == 1 && a.shape[0] == in[axis]) {
    if (axis != rank - 1) {
      a.shape.assign(in.size(), 1);
      a.shape[axis] = in[axis];
    }
    return;
  }
  bool ok = a.shape.size() <= in.size() && shape_size(a.shape) == a.size();
  for (size_t k = 0; ok && k < a.shape.size(); ++k) {
    const int64_t d = a.shape[a.shape.size() - 1 - k];
    ok = d == 1 || d == in[in.size() - 1 - k];
  }
  if (!ok)
    shape_error(n, std::string(role) + " has shape " + shape_str(a.shape) + ", which does not broadcast against the " +
                       "input shape " + shape_str(in) + " with axis " + std::to_string(n.axis) +
                       "; Keras keeps one value per element of the normalized axis (or one value for axis=None)");
}

}  // namespace

void Model::infer_shapes() {
  validate();
  for (auto& n : nodes) {
    if (n.op == OpKind::Input) {
      if (n.shape.empty()) shape_error(n, "input has no shape");
      for (auto d : n.shape)
        if (d <= 0) shape_error(n, "input shape " + shape_str(n.shape) + " has an unknown or zero dimension; FKB needs "
                                                                          "fixed per-column shapes");
      continue;
    }
    const Shape in = nodes[n.inputs[0]].shape;
    switch (n.op) {
      case OpKind::Input: break;
      case OpKind::Dense: {
        require_weight(n, "kernel");
        n.shape = in;
        n.shape.back() = n.units;
        check_weight(n, "kernel", {in.back(), n.units});
        if (n.use_bias) require_weight(n, "bias");
        check_weight(n, "bias", {n.units});
        break;
      }
      case OpKind::Conv1D: {
        if (in.size() != 2) shape_error(n, "Conv1D needs a (steps, channels) input, got " + shape_str(in));
        require_weight(n, "kernel");
        check_weight(n, "kernel", {n.kernel_size, in[1], n.units});
        if (n.use_bias) require_weight(n, "bias");
        check_weight(n, "bias", {n.units});
        const int64_t span = n.dilation * (n.kernel_size - 1) + 1;
        int64_t steps;
        if (n.padding == Padding::Valid) {
          if (in[0] < span) shape_error(n, "input of " + std::to_string(in[0]) + " steps is shorter than the kernel span");
          steps = (in[0] - span) / n.stride + 1;
        } else {
          steps = (in[0] + n.stride - 1) / n.stride;
          if (n.padding == Padding::Causal) steps = (in[0] + span - 1 - span) / n.stride + 1;
        }
        n.shape = {steps, n.units};
        break;
      }
      case OpKind::Custom: {
        // The registered implementation's output_shape (fkb/custom_layer.hpp) gives the shape.
        auto impl = find_custom_layer(n.keras_class);
        if (!impl)
          throw_error(Status::Unsupported, "layer '" + n.name + "' has class '" + n.keras_class +
                                               "', which is not a registered custom layer");
        std::vector<Shape> ins;
        for (int i : n.inputs) ins.push_back(nodes[i].shape);
        Shape out;
        try {
          out = impl->output_shape(ins, n.config_json);
        } catch (const Error& e) {
          shape_error(n, std::string("the registered output_shape failed: ") + e.what());
        } catch (const std::exception& e) {
          shape_error(n, std::string("the registered output_shape failed: ") + e.what());
        }
        bool ok = !out.empty();
        for (auto d : out) ok = ok && d >= 1;
        if (!ok) {
          std::string given;
          for (const auto& s : ins) given += (given.empty() ? "" : ", ") + shape_str(s);
          shape_error(n, "the registered output_shape returned " + shape_str(out) + " for input shape(s) " + given +
                             "; a custom layer's per-column output shape needs at least one dimension, each >= 1");
        }
        n.shape = out;
        break;
      }
      case OpKind::Activation:
      case OpKind::Dropout: {
        n.shape = in;
        if (n.activation.kind == ActKind::Softmax && n.axis != -1 && per_column_axis(n, n.axis, in.size()) != (int)in.size() - 1)
          throw_error(Status::Unsupported, "layer '" + n.name + "': softmax over axis " + std::to_string(n.axis) +
                                               " is not supported; FKB supports softmax over the last axis");
        if (n.activation.kind == ActKind::PRelu) {
          require_weight(n, "alpha");
          const int64_t na = n.find("alpha")->size();
          if (na != shape_size(in) && na != in.back() && na != 1)
            shape_error(n, "PReLU alpha has " + std::to_string(na) + " values for an input of shape " + shape_str(in));
        }
        break;
      }
      case OpKind::BatchNorm: {
        n.shape = in;
        n.axis = per_column_axis(n, n.axis, in.size()) - static_cast<int>(in.size());  // store as negative
        const int64_t c = in[in.size() + n.axis];
        for (const char* r : {"gamma", "beta", "moving_mean", "moving_variance"}) check_weight(n, r, {c});
        require_weight(n, "moving_mean");
        require_weight(n, "moving_variance");
        break;
      }
      case OpKind::Normalization: {
        n.shape = in;
        require_weight(n, "mean");
        require_weight(n, "variance");
        n.axis = per_column_axis(n, n.axis, in.size()) - static_cast<int>(in.size());  // store as negative
        for (const char* r : {"mean", "variance"}) normalization_stat_shape(n, r, in);
        break;
      }
      case OpKind::Rescaling: {
        n.shape = in;
        for (const char* r : {"scale", "offset"}) {
          const Array* a = n.find(r);
          if (a && a->size() != 1 && a->size() != in.back())
            shape_error(n, std::string(r) + " has " + std::to_string(a->size()) + " values for an input of shape " +
                               shape_str(in) + "; FKB supports a scalar or one value per last-axis feature");
        }
        break;
      }
      case OpKind::Add:
      case OpKind::Subtract:
      case OpKind::Multiply:
      case OpKind::Average:
      case OpKind::Maximum:
      case OpKind::Minimum: {
        if (n.op == OpKind::Subtract && n.inputs.size() != 2) shape_error(n, "Subtract needs exactly 2 inputs");
        // Keras broadcasts the inputs (merging.base_merge expands lower ranks at axis 1, i.e. per column on the
        // left, then broadcasts): NumPy's rules on the per-column shapes.
        Shape out = in;
        for (int i : n.inputs) out = broadcast_shapes(n, out, nodes[i].shape);
        n.shape = out;
        break;
      }
      case OpKind::Concatenate: {
        const int a = per_column_axis(n, n.axis, in.size());
        n.axis = a - static_cast<int>(in.size());
        n.shape = in;
        n.shape[a] = 0;
        for (int i : n.inputs) {
          const Shape& s = nodes[i].shape;
          if (s.size() != in.size()) shape_error(n, "inputs of different rank");
          for (size_t d = 0; d < s.size(); ++d)
            if (static_cast<int>(d) != a && s[d] != in[d])
              shape_error(n, "inputs " + shape_str(in) + " and " + shape_str(s) + " differ outside the concatenation axis");
          n.shape[a] += s[a];
        }
        break;
      }
      case OpKind::Flatten: n.shape = {shape_size(in)}; break;
      case OpKind::Affine: {
        n.shape = in;
        for (const char* r : {"scale", "shift"}) {
          const Array* a = n.find(r);
          if (!a || a->size() != shape_size(in))
            shape_error(n, std::string("Affine needs one '") + r + "' value per element of " + shape_str(in));
        }
        break;
      }
      case OpKind::Reshape: {
        Shape t = n.target_shape;
        int64_t known = 1;
        int unknown = -1;
        for (size_t d = 0; d < t.size(); ++d) {
          if (t[d] == -1) {
            if (unknown >= 0) shape_error(n, "target shape has more than one -1");
            unknown = static_cast<int>(d);
          } else {
            known *= t[d];
          }
        }
        if (unknown >= 0 && known > 0) t[unknown] = shape_size(in) / known;
        if (shape_size(t) != shape_size(in))
          shape_error(n, "cannot reshape " + shape_str(in) + " to " + shape_str(n.target_shape));
        n.shape = t;
        break;
      }
    }
  }
}

std::string Model::summary() const {
  std::ostringstream os;
  os << "Model \"" << info.name << "\" (" << info.model_class << ", " << info.format << ", Keras "
     << (info.keras_version.empty() ? "unknown" : info.keras_version) << ")\n";
  char line[512];
  std::snprintf(line, sizeof line, "%-32s %-20s %-16s %-14s %12s\n", "layer", "class", "output shape", "activation",
                "params");
  os << line << std::string(98, '-') << "\n";
  for (const auto& n : nodes) {
    std::string act = (n.op == OpKind::Dense || n.op == OpKind::Conv1D || n.op == OpKind::Activation)
                          ? n.activation.keras_name
                          : "";
    // A shared layer's later calls hold copies of its weights; Keras (and param_count) count them once.
    const std::string params = n.shared_from >= 0 ? "shared" : std::to_string(n.param_count());
    std::snprintf(line, sizeof line, "%-32s %-20s %-16s %-14s %12s\n", n.name.c_str(), n.keras_class.c_str(),
                  shape_str(n.shape).c_str(), act.c_str(), params.c_str());
    os << line;
  }
  os << std::string(98, '-') << "\n";
  // Dict models: each input/output with its key, in Keras' flat order (sorted keys).
  auto keyed = [](const std::vector<std::string>& keys, int i) {
    return i < static_cast<int>(keys.size()) ? "'" + keys[i] + "' " : std::string();
  };
  os << "inputs: ";
  for (int i = 0; i < num_inputs(); ++i) os << (i ? ", " : "") << keyed(info.input_keys, i) << shape_str(input_shape(i));
  os << "  outputs: ";
  for (int i = 0; i < num_outputs(); ++i)
    os << (i ? ", " : "") << keyed(info.output_keys, i) << shape_str(output_shape(i));
  os << "\ntotal params: " << param_count() << "  FLOPs per column: " << flops_per_column() << "\n";
  return os.str();
}

}  // namespace fkb
