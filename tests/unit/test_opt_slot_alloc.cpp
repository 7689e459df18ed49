// The liveness slot allocator the CPU program and the CUDA lowering share (runtime/src/opt/slot_alloc.hpp).
#include <gtest/gtest.h>

#include <climits>

#include "opt/slot_alloc.hpp"

namespace fkb::opt {
namespace {

TEST(SlotAlloc, AChainNeedsTwoSlotsSizedForTheLargestBuffers) {
  // op i writes buffer i and reads buffer i - 1; the last buffer is a model output.
  const std::vector<BufferLife> chain = {{0, 1, 10}, {1, 2, 20}, {2, 3, 10}, {3, INT_MAX, 5}};
  std::vector<int64_t> size;
  const std::vector<int> slot = assign_slots(chain, &size);
  EXPECT_EQ(slot, (std::vector<int>{0, 1, 0, 1}));
  EXPECT_EQ(size, (std::vector<int64_t>{10, 20}));
}

TEST(SlotAlloc, ABufferNeverSharesASlotWithWhatItsOpReads) {
  // op 1 reads buffer 0 (last = 1) and writes buffer 1 (def = 1): out of place, two slots.
  std::vector<int64_t> size;
  const std::vector<int> slot = assign_slots({{0, 1, 8}, {1, INT_MAX, 8}}, &size);
  EXPECT_NE(slot[0], slot[1]);
}

TEST(SlotAlloc, TakesTheSmallestFreeSlotThatFitsElseGrowsTheLargest) {
  // Buffers 0 (size 100) and 1 (size 10) are both free when buffer 3 (size 8) is placed: it takes the 10 slot.
  // Buffer 2 holds a third slot meanwhile. Then buffer 4 (size 200) fits nowhere: the largest free slot grows.
  const std::vector<BufferLife> b = {{0, 2, 100}, {1, 2, 10}, {2, INT_MAX, 50}, {3, 4, 8}, {4, INT_MAX, 200}};
  std::vector<int64_t> size;
  const std::vector<int> slot = assign_slots(b, &size);
  EXPECT_EQ(slot[3], slot[1]);
  EXPECT_EQ(slot[4], slot[0]);
  EXPECT_EQ(size[static_cast<size_t>(slot[0])], 200);
  EXPECT_EQ(size.size(), 3u);
}

TEST(SlotAlloc, PlacesInOrderOfFirstWriteWhateverTheOrderGiven) {
  std::vector<int64_t> size;
  const std::vector<int> slot = assign_slots({{2, 3, 4}, {-1, 1, 4}, {1, 2, 4}}, &size);
  EXPECT_EQ(slot[1], 0);  // the input (def -1) is placed first
  EXPECT_EQ(slot[2], 1);
  EXPECT_EQ(slot[0], 0);  // the input's slot is free again at op 2
}

}  // namespace
}  // namespace fkb::opt
