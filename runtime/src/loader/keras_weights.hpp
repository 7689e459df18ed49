// Fill a LayerSpec tree's leaf weights from a Keras file (both layouts). See keras_weights.cpp.
#pragma once

#include <hdf5.h>

#include <string>

#include "fkb/model.hpp"
#include "loader/keras_config.hpp"
#include "loader/limits.hpp"

namespace fkb::keras {

/// Legacy layout: `group` is model_weights (full model) or the root (weights-only file).
/// Every weight is counted against `budget` before it is allocated.
void read_legacy_weights(hid_t group, const std::string& where, LayerSpec& model, int keras_major,
                         loader::WeightBudget& budget);

/// Where the variables of a Keras 3 layout live: one HDF5 file (.keras's model.weights.h5, x.weights.h5), or the
/// shard files a sharded x.weights.json names (loader/keras_shards.cpp).
class VarStore {
 public:
  virtual ~VarStore() = default;
  struct Found {
    hid_t file = -1;     ///< -1: no file holds the dataset
    std::string where;  ///< `where`, plus the shard's name when there are several files
  };
  /// The file holding the dataset `vars_group`/`index` (vars_group: "layers/dense/vars"), checked link by link with
  /// the loading policy (h5::exists); messages name `where`.
  virtual Found find(const std::string& vars_group, size_t index, const std::string& where) = 0;
};

/// A VarStore over one open HDF5 file.
class SingleFileStore : public VarStore {
 public:
  explicit SingleFileStore(hid_t file) : file_(file) {}
  Found find(const std::string& vars_group, size_t index, const std::string& where) override;

 private:
  hid_t file_;
};

/// Keras 3 layout: `base` is "" for the top-level model.
void read_keras3_weights(VarStore& store, const std::string& base, const std::string& where, LayerSpec& model,
                         int keras_major, loader::WeightBudget& budget);
/// The same over one HDF5 file.
void read_keras3_weights(hid_t file, const std::string& base, const std::string& where, LayerSpec& model,
                         int keras_major, loader::WeightBudget& budget);

// ---- dtype policies (loader/keras_dtype_policy.cpp) ----------------------------------------------------------------
/// The layer's dtype policy name ("float32", "bfloat16", "mixed_float16", "int8_from_float32"), "" when none.
std::string dtype_policy_name(const LayerSpec& layer);
/// The Keras 3 quantization mode of the layer's policy ("int8", "int4", "float8", "gptq", "awq"), "" when none.
std::string quantization_mode(const LayerSpec& layer);
/// Whether the layer's variables are stored as bfloat16 (policy "bfloat16" or "<mode>_from_bfloat16").
bool variables_bfloat16(const LayerSpec& layer);
/// Why FKB cannot run this quantized layer ("layer 'd' (EinsumDense) is quantized by Keras ..."), or "" when it can
/// (not quantized, or an int8 Dense with Keras' default input quantizer).
std::string quantization_refusal(const LayerSpec& layer);
/// Throws Unsupported "<where>: <quantization_refusal>" for the first such layer of the tree.
void check_quantized_tree(const LayerSpec& model, const std::string& where);
/// Set Node::quantized_int8 on the Dense nodes that hold a kernel_scale (int8 Dense, see own_variables).
void mark_quantized_nodes(Model& model);

}  // namespace fkb::keras
