// Pass `dead_nodes`: nodes no model output depends on are removed. Model inputs stay (the caller still passes
// them), even when nothing reads them.
#include "opt/graph_edit.hpp"
#include "opt/optimize.hpp"

namespace fkb::opt {

void remove_dead_nodes(Model& m, Notes& notes) {
  std::vector<bool> live(m.nodes.size(), false);
  for (int o : m.outputs) live[static_cast<size_t>(o)] = true;
  for (size_t i = m.nodes.size(); i-- > 0;)  // topological order: readers come after what they read
    if (live[i])
      for (int in : m.nodes[i].inputs) live[static_cast<size_t>(in)] = true;
  for (int in : m.inputs) live[static_cast<size_t>(in)] = true;
  std::vector<bool> dead(m.nodes.size(), false);
  bool any = false;
  for (size_t i = 0; i < m.nodes.size(); ++i) {
    if (live[i]) continue;
    dead[i] = any = true;
    notes.push_back("removed " + m.nodes[i].name + " (no model output depends on it)");
  }
  if (any) erase_nodes(m, dead);
}

}  // namespace fkb::opt
