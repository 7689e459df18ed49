// Workspace slots for a backend's buffers: a liveness allocator shared by the CPU program and the CUDA lowering.
// Buffers are placed in order of first write; a slot is free again once the last reader of its buffer ran before
// the new buffer's first write (a buffer never shares a slot with what the same op reads: ops work out of place).
// Among free slots the smallest that fits is taken, else the largest (grown to fit); none free: a new slot. A plain
// MLP needs two slots.
#pragma once

#include <cstdint>
#include <vector>

namespace fkb::opt {

struct BufferLife {
  int def = 0;        ///< index of the first op writing it (-1: written before the first op, e.g. an input)
  int last = 0;       ///< index of the last op reading it (INT_MAX: kept to the end, e.g. a model output)
  int64_t size = 0;   ///< per column, in the backend's unit (floats, bytes)
};

/// The slot of each buffer (in the order given); slot_size[s] becomes the largest size placed in slot s.
std::vector<int> assign_slots(const std::vector<BufferLife>& buffers, std::vector<int64_t>* slot_size);

}  // namespace fkb::opt
