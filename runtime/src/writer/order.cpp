// Keras' model.layers order for a written graph (keras/src/ops/function.py map_graph and _build_map; tf-keras'
// functional._map_graph_network is the same algorithm): a depth-first walk from the outputs over calls (nodes)
// numbers each layer at its first visit; node depths grow from the outputs, a shared layer takes the largest depth
// of its calls; layers are sorted by decreasing depth, ties by first visit.
#include <algorithm>
#include <functional>
#include <map>

#include "fkb/error.hpp"
#include "writer/graph.hpp"

namespace fkb::writer {

std::vector<int> keras_order(const Graph& g) {
  using NodeKey = std::pair<int, int>;  // (layer, call)
  std::map<NodeKey, char> state;        // 1: in progress, 2: finished
  std::vector<NodeKey> decreasing;      // nodes from inputs to outputs
  std::vector<int> visit(g.layers.size(), -1);
  int counter = 0;
  std::function<void(NodeKey)> walk = [&](NodeKey k) {
    auto it = state.find(k);
    if (it != state.end()) {
      if (it->second == 1) throw_error(Status::Internal, "the written graph has a cycle at '" + g.layers[k.first].name + "'");
      return;
    }
    if (visit[k.first] < 0) visit[k.first] = counter++;
    state[k] = 1;
    for (const TensorRef& t : g.layers[k.first].calls[k.second].inputs) walk({t.layer, t.node});
    state[k] = 2;
    decreasing.push_back(k);
  };
  for (const TensorRef& o : g.outputs) walk({o.layer, o.node});

  std::map<NodeKey, int> node_depth;
  std::vector<int> depth(g.layers.size(), -1);
  for (auto it = decreasing.rbegin(); it != decreasing.rend(); ++it) {
    int d = node_depth.emplace(*it, 0).first->second;
    d = std::max(d, std::max(depth[it->first], 0));
    depth[it->first] = d;
    node_depth[*it] = d;
    for (const TensorRef& t : g.layers[it->first].calls[it->second].inputs) {
      int& pd = node_depth.emplace(NodeKey{t.layer, t.node}, 0).first->second;
      pd = std::max(pd, d + 1);
    }
  }
  for (const TensorRef& in : g.inputs) {
    if (depth[in.layer] < 0) {  // an input no output depends on
      depth[in.layer] = 0;
      visit[in.layer] = -1;
    }
  }
  std::vector<int> ops;
  for (size_t l = 0; l < g.layers.size(); ++l)
    if (depth[l] >= 0) ops.push_back(static_cast<int>(l));
  std::stable_sort(ops.begin(), ops.end(), [&](int a, int b) {
    if (depth[a] != depth[b]) return depth[a] > depth[b];
    return visit[a] < visit[b];
  });
  return ops;
}

}  // namespace fkb::writer
