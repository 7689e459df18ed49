// NVTX ranges (nvtx3, header-only) so Nsight Systems shows FKB's phases: compile/upload, and per predict
// call the H2D copies, the layers (graph launch; per-layer ranges while a graph is being captured) and D2H.
#pragma once

#include <nvtx3/nvToolsExt.h>

namespace fkb::cuda {

/// Push a named range for the lifetime of the object (one thread; ranges nest).
class NvtxRange {
 public:
  explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
  ~NvtxRange() { nvtxRangePop(); }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace fkb::cuda
