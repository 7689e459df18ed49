// Helpers of the graph optimizer's unit tests (test_opt_*.cpp): find nodes of an optimized model by op or name.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "../backend/backend_test_util.hpp"
#include "opt/optimize.hpp"

namespace fkb::opttest {

using cudatest::Builder;

inline int count_op(const Model& m, OpKind op) {
  return static_cast<int>(std::count_if(m.nodes.begin(), m.nodes.end(), [&](const Node& n) { return n.op == op; }));
}

inline const Node* find_op(const Model& m, OpKind op) {
  for (const Node& n : m.nodes)
    if (n.op == op) return &n;
  return nullptr;
}

inline const Node* find_name(const Model& m, const std::string& name) {
  for (const Node& n : m.nodes)
    if (n.name == name) return &n;
  return nullptr;
}

inline bool has_note(const opt::Optimized& o, const std::string& note) {
  return std::find(o.notes.begin(), o.notes.end(), note) != o.notes.end();
}

inline opt::Options no_folding() {
  opt::Options o;
  o.fold_affine = false;
  o.fuse_activations = false;
  return o;
}

}  // namespace fkb::opttest
