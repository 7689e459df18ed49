// NumPy broadcasting of per-column shapes for the merge layers (Keras Add, Subtract, Multiply, Average,
// Maximum, Minimum), shared by the CPU and CUDA lowerings (pure host C++).
//
// Keras right-aligns the shapes (a lower-rank input gets size-1 axes in front: its merge layer calls
// expand_dims(x, axis=1) after the batch axis), and a size-1 axis stretches to the other's size. For an input
// of a merge whose output has per-column shape `out`, the output element with flat per-column index q reads
// the input element
//     sum_d ((q / inner_d) % dims[d]) * strides[d]         inner_d = product of dims after d
// where dims/strides come from collapsing adjacent axes that are contiguous in the input (or broadcast in
// both): (30, 8) read by (30, 1) is dims {30, 8}, strides {1, 0}; by (1, 8) dims {30, 8}, strides {0, 1}; a
// (1,) input is dims {n}, strides {0}. An input of the output's own layout collapses to one axis of stride 1.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fkb/model.hpp"

namespace fkb::cpu {

struct BroadcastRead {
  std::vector<int64_t> dims, strides;  ///< collapsed output axes and the input's stride along each (0: broadcast)
  /// The input has the output's layout (flat index q reads element q): no index arithmetic needed.
  bool identity() const { return dims.size() <= 1 && (strides.empty() || strides[0] == 1); }
  /// The input element read by output element q.
  int64_t index(int64_t q) const {
    int64_t off = 0;
    for (size_t d = dims.size(); d-- > 0;) {
      off += (q % dims[d]) * strides[d];
      q /= dims[d];
    }
    return off;
  }
};

/// How an input of per-column shape `in` is read by a merge with output shape `out`. Returns false (and a
/// reason in `why`) when `in` does not broadcast to `out`.
inline bool broadcast_read(const Shape& in, const Shape& out, BroadcastRead* r, std::string* why) {
  if (in.size() > out.size()) {
    // Leading size-1 axes beyond the output's rank change nothing; anything else cannot broadcast.
    for (size_t d = 0; d + out.size() < in.size(); ++d)
      if (in[d] != 1) {
        if (why) *why = "input shape " + shape_str(in) + " has more axes than the output shape " + shape_str(out);
        return false;
      }
  }
  const size_t rank = out.size();
  std::vector<int64_t> a(rank, 1);  // `in` right-aligned to the output's rank
  for (size_t d = 0; d < rank && d < in.size(); ++d) a[rank - 1 - d] = in[in.size() - 1 - d];
  std::vector<int64_t> instride(rank, 0);
  int64_t s = 1;
  for (size_t d = rank; d-- > 0;) {
    instride[d] = s;
    s *= a[d];
  }
  r->dims.clear();
  r->strides.clear();
  for (size_t d = 0; d < rank; ++d) {
    if (a[d] != out[d] && a[d] != 1) {
      if (why) *why = "input shape " + shape_str(in) + " does not broadcast to " + shape_str(out);
      return false;
    }
    if (out[d] == 1) continue;  // a size-1 output axis contributes nothing to the index
    const int64_t st = a[d] == 1 ? 0 : instride[d];
    if (!r->dims.empty() && r->strides.back() == st * out[d]) {
      // Contiguous with the previous axis (for broadcast axes: 0 == 0 * n): one longer axis.
      r->dims.back() *= out[d];
      r->strides.back() = st;
    } else {
      r->dims.push_back(out[d]);
      r->strides.push_back(st);
    }
  }
  return true;
}

/// The broadcast shape of two per-column shapes as Keras computes a merge's output (right-aligned), or false.
inline bool broadcast_shapes(const Shape& x, const Shape& y, Shape* out) {
  const Shape& lo = x.size() < y.size() ? x : y;
  const Shape& hi = x.size() < y.size() ? y : x;
  Shape o = hi;
  for (size_t d = 0; d < lo.size(); ++d) {
    int64_t& od = o[hi.size() - 1 - d];
    const int64_t l = lo[lo.size() - 1 - d];
    if (od == 1)
      od = l;
    else if (l != 1 && l != od)
      return false;
  }
  *out = o;
  return true;
}

}  // namespace fkb::cpu
