// Small graph edits the optimizer passes share: who reads a node, replacing a node by another, removing nodes.
#pragma once

#include <vector>

#include "fkb/model.hpp"

namespace fkb::opt {

/// Per node, how many times it is read: once per appearance in another node's inputs, once per model output.
std::vector<int> use_counts(const Model& m);

/// Per node, the nodes that read it (a node reading it twice appears twice).
std::vector<std::vector<int>> readers(const Model& m);

bool is_model_output(const Model& m, int node);

/// Every read of `node` (other nodes' inputs, model outputs) now reads `replacement` instead; `node` is left
/// unread (remove it with erase_unread or erase_nodes).
void replace_uses(Model& m, int node, int replacement);

/// Remove the nodes marked in `dead` (none may be read by a kept node or be a model input/output) and renumber
/// inputs, outputs and shared_from.
void erase_nodes(Model& m, const std::vector<bool>& dead);

/// Remove a one-input node whose output equals its input's (or has been made to): its readers read its input.
void bypass_node(Model& m, int node);

/// `to` takes over `from`'s activation, with its PReLU slopes ("alpha").
void move_activation(Node& to, Node& from);

/// The bias of a Dense/Conv1D; a layer without one gets zeros first (use_bias becomes true).
std::vector<float>& bias_of(Node& g);

/// Follow Reshape nodes up from `node` while each link is read once and is not a model output: the first
/// non-Reshape node (the producer whose data `node` aliases), or -1 when a link has another reader. `node` itself
/// must be read once and not be an output for the walk to continue past it.
int producer_through_reshapes(const Model& m, const std::vector<int>& uses, int node);

}  // namespace fkb::opt
