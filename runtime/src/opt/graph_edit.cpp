// Graph edits shared by the optimizer passes.
#include "opt/graph_edit.hpp"

#include <algorithm>

namespace fkb::opt {

std::vector<int> use_counts(const Model& m) {
  std::vector<int> u(m.nodes.size(), 0);
  for (const Node& n : m.nodes)
    for (int i : n.inputs) ++u[static_cast<size_t>(i)];
  for (int o : m.outputs) ++u[static_cast<size_t>(o)];
  return u;
}

std::vector<std::vector<int>> readers(const Model& m) {
  std::vector<std::vector<int>> r(m.nodes.size());
  for (size_t i = 0; i < m.nodes.size(); ++i)
    for (int in : m.nodes[i].inputs) r[static_cast<size_t>(in)].push_back(static_cast<int>(i));
  return r;
}

bool is_model_output(const Model& m, int node) {
  return std::find(m.outputs.begin(), m.outputs.end(), node) != m.outputs.end();
}

void replace_uses(Model& m, int node, int replacement) {
  for (Node& n : m.nodes)
    for (int& i : n.inputs)
      if (i == node) i = replacement;
  for (int& o : m.outputs)
    if (o == node) o = replacement;
}

void erase_nodes(Model& m, const std::vector<bool>& dead) {
  std::vector<int> index(m.nodes.size(), -1);
  std::vector<Node> kept;
  kept.reserve(m.nodes.size());
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    if (dead[i]) continue;
    index[i] = static_cast<int>(kept.size());
    kept.push_back(std::move(m.nodes[i]));
  }
  // A shared layer whose first call was removed: its first call kept becomes the first call of the others.
  std::vector<int> first_kept(m.nodes.size(), -1);
  for (Node& n : kept) {
    for (int& i : n.inputs) i = index[static_cast<size_t>(i)];
    if (n.shared_from < 0) continue;
    const size_t old = static_cast<size_t>(n.shared_from);
    if (index[old] >= 0) {
      n.shared_from = index[old];
    } else if (first_kept[old] < 0) {
      first_kept[old] = static_cast<int>(&n - kept.data());
      n.shared_from = -1;
    } else {
      n.shared_from = first_kept[old];
    }
  }
  for (int& i : m.inputs) i = index[static_cast<size_t>(i)];
  for (int& o : m.outputs) o = index[static_cast<size_t>(o)];
  m.nodes = std::move(kept);
}

void bypass_node(Model& m, int node) {
  replace_uses(m, node, m.nodes[static_cast<size_t>(node)].inputs[0]);
  std::vector<bool> dead(m.nodes.size(), false);
  dead[static_cast<size_t>(node)] = true;
  erase_nodes(m, dead);
}

void move_activation(Node& to, Node& from) {
  to.activation = from.activation;
  for (auto* map : {&from.weights, &from.constants}) {
    auto it = map->find("alpha");
    if (it != map->end()) to.constants["alpha"] = std::move(it->second);
  }
}

std::vector<float>& bias_of(Node& g) {
  if (!g.use_bias || !g.find("bias")) {
    g.weights["bias"] = Array{{g.units}, std::vector<float>(static_cast<size_t>(g.units), 0.0f)};
    g.use_bias = true;
  }
  return g.weights.at("bias").data;
}

int producer_through_reshapes(const Model& m, const std::vector<int>& uses, int node) {
  int cur = node;
  while (m.nodes[static_cast<size_t>(cur)].op == OpKind::Reshape) {
    if (uses[static_cast<size_t>(cur)] != 1 || is_model_output(m, cur)) return -1;
    cur = m.nodes[static_cast<size_t>(cur)].inputs[0];
  }
  if (uses[static_cast<size_t>(cur)] != 1 || is_model_output(m, cur)) return -1;
  return cur;
}

}  // namespace fkb::opt
