// The liveness slot allocator shared by the backends.
#include "opt/slot_alloc.hpp"

#include <algorithm>
#include <numeric>

namespace fkb::opt {

std::vector<int> assign_slots(const std::vector<BufferLife>& buffers, std::vector<int64_t>* slot_size) {
  std::vector<int> order(buffers.size()), slot(buffers.size(), -1);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return buffers[a].def < buffers[b].def; });
  std::vector<int> holder;  // buffer held by each slot, -1 when free
  slot_size->clear();
  for (int r : order) {
    const BufferLife& b = buffers[static_cast<size_t>(r)];
    for (int& h : holder)
      if (h >= 0 && buffers[static_cast<size_t>(h)].last < b.def) h = -1;
    int best = -1;
    for (size_t sl = 0; sl < holder.size(); ++sl) {
      if (holder[sl] != -1) continue;
      if (best < 0) {
        best = static_cast<int>(sl);
        continue;
      }
      const int64_t have = (*slot_size)[sl], cur = (*slot_size)[static_cast<size_t>(best)];
      const bool fits = have >= b.size, cur_fits = cur >= b.size;
      if ((fits && (!cur_fits || have < cur)) || (!fits && !cur_fits && have > cur)) best = static_cast<int>(sl);
    }
    if (best < 0) {
      holder.push_back(-1);
      slot_size->push_back(0);
      best = static_cast<int>(holder.size()) - 1;
    }
    (*slot_size)[static_cast<size_t>(best)] = std::max((*slot_size)[static_cast<size_t>(best)], b.size);
    holder[static_cast<size_t>(best)] = r;
    slot[static_cast<size_t>(r)] = best;
  }
  return slot;
}

}  // namespace fkb::opt
