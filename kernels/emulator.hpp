// Host execution of a lowered CUDA program: the same ops, views, slots, arena layout, chunk offsets and
// per-element functions (elem.hpp) as the GPU, with plain loops where the GPU launches kernels or calls
// cuBLASLt. It exists so the lowering (folding, fusion, in-place concatenation, buffer reuse, dtype choices)
// is tested on machines without a GPU; tests compare it with the CPU backend and with Keras' outputs.
// The arena starts filled with NaN bytes, so a read of memory no op wrote shows up as NaN in the outputs.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "elem.hpp"
#include "lowering.hpp"
#include "plan_math.hpp"

namespace fkb::cuda {

namespace emu {

/// A float rounded to TF32 (10 explicit mantissa bits, nearest, ties away: PTX cvt.rna.tf32.f32), what
/// cuBLASLt's CUBLAS_COMPUTE_32F_FAST_TF32 does to GEMM operands (used to estimate the tf32 error on the host).
inline float round_tf32(float x) {
  uint32_t u = f32_to_bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u) return x;  // inf, NaN
  u = (u + 0x1000u) & ~0x1fffu;
  return bits_to_f32(u);
}

/// The GEMM of both engines: D[r][j] = act(sum_k B[r][kk] A[kk][j] + C[r][j] + bias[j]); the sum in k order
/// with fused multiply-adds (what the fused kernel does; cuBLASLt differs only by rounding).
inline void gemm(const Program& p, const Op& o, const std::vector<std::vector<uint8_t>>& blobs,
                 char* const* roots, int64_t c0, int64_t nc) {
  const View B = view_of(p, o.b, roots, c0);
  const View D = view_of(p, o.d, roots, c0);
  const int64_t ldb = gemm_ld(p, o.b, o.k), ldd = gemm_ld(p, o.d, o.m);
  View C;
  int64_t ldc = 0;
  if (o.c >= 0) {
    C = view_of(p, o.c, roots, c0);
    ldc = gemm_ld(p, o.c, o.m);
  }
  const void* A = blobs[o.a].data();
  const DT adt = p.blobs[o.a].dt;
  const float* bias = o.bias >= 0 ? reinterpret_cast<const float*>(blobs[o.bias].data()) : nullptr;
  const float* alpha = o.alpha >= 0 ? reinterpret_cast<const float*>(blobs[o.alpha].data()) : nullptr;
  const int64_t rows = nc * o.rpc;
  ActKind act = o.act;
  ActParams params = o.params;
  if (o.type == OpType::GemmLt) {
    act = (o.lt_epilogue == LtEpilogue::Relu || o.lt_epilogue == LtEpilogue::ReluBias) ? ActKind::Relu : ActKind::Linear;
    params = ActParams{};
  }
  const bool tf32 = p.precision == Precision::TF32 && o.type == OpType::GemmLt;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < o.m; ++j) {
      float acc = 0.0f;
      for (int64_t kk = 0; kk < o.k; ++kk) {
        float av = load_elem(A, adt, kk * o.m + j), bv = load_elem(B.p, B.dt, r * ldb + kk);
        if (tf32) av = round_tf32(av), bv = round_tf32(bv);
        acc = std::fma(av, bv, acc);
      }
      float v = acc;
      if (o.c >= 0) v += load_elem(C.p, C.dt, r * ldc + j);
      if (bias) v += bias[j];
      ActParams pp = params;
      if (alpha) pp.alpha = alpha[(r % o.rpc) * o.m + j];
      v = activate(act, v, pp);
      store_elem(D.p, D.dt, r * ldd + j, v);
    }
  }
}

inline void ew(const Program& p, const Op& o, const std::vector<std::vector<uint8_t>>& blobs, char* const* roots,
               int64_t c0, int64_t nc) {
  EwArgs a;
  a.nin = static_cast<int32_t>(o.ins.size());
  for (size_t i = 0; i < o.ins.size(); ++i) a.in[i] = view_of(p, o.ins[i], roots, c0);
  for (size_t i = 0; i < o.bcast.size(); ++i) a.bc[i] = o.bcast[i];
  a.out = view_of(p, o.out, roots, c0);
  a.merge = o.merge;
  a.avg_div = o.avg_div;
  a.subtract_first = o.subtract_first;
  auto f32 = [&](int b) { return b >= 0 ? reinterpret_cast<const float*>(blobs[b].data()) : nullptr; };
  a.scale = f32(o.scale);
  a.shift = f32(o.shift);
  a.bias = f32(o.bias);
  a.alpha = f32(o.alpha);
  a.dequant = f32(o.dequant);
  a.params = o.params;
  a.n = o.n;
  a.ncol = nc;
  a.remap_w = o.remap_w;
  a.remap_total = o.remap_total;
  a.remap_start = o.remap_start;
  dispatch_act(o.act, [&](auto k) {
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t q = 0; q < o.n; ++q) ew_element<decltype(k)::value>(a, c, q);
  });
}

inline void softmax(const Program& p, const Op& o, const std::vector<std::vector<uint8_t>>& blobs,
                    char* const* roots, int64_t c0, int64_t nc) {
  const View in = view_of(p, o.ins[0], roots, c0);
  const View out = view_of(p, o.out, roots, c0);
  const float* bias = o.bias >= 0 ? reinterpret_cast<const float*>(blobs[o.bias].data()) : nullptr;
  std::vector<float> row(static_cast<size_t>(o.L));
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t s = 0; s < o.rpc; ++s) {
      for (int64_t j = 0; j < o.L; ++j) {
        const int64_t q = s * o.L + j;
        row[j] = load_elem(in.p, in.dt, view_index(in, c, q)) + (bias ? bias[q] : 0.0f);
      }
      softmax_row(row.data(), o.L);
      for (int64_t j = 0; j < o.L; ++j) store_elem(out.p, out.dt, view_index(out, c, s * o.L + j), row[j]);
    }
}

inline void row_quant(const Program& p, const Op& o, char* const* roots, int64_t c0, int64_t nc) {
  const View in = view_of(p, o.ins[0], roots, c0);
  const View q = view_of(p, o.out, roots, c0);
  const View sc = view_of(p, o.out2, roots, c0);
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t r = 0; r < o.rpc; ++r) {
      float amax = 0.0f;
      for (int64_t j = 0; j < o.L; ++j) amax = fmaxf(amax, fabsf(load_elem(in.p, in.dt, view_index(in, c, r * o.L + j))));
      const float scale = row_quant_scale(amax);
      for (int64_t j = 0; j < o.L; ++j) {
        const int64_t e = r * o.L + j;
        store_elem(q.p, q.dt, view_index(q, c, e), row_quant_value(load_elem(in.p, in.dt, view_index(in, c, e)), scale));
      }
      store_elem(sc.p, sc.dt, view_index(sc, c, r), scale);
    }
}

inline void im2col(const Program& p, const Op& o, char* const* roots, int64_t c0, int64_t nc) {
  Im2colArgs a;
  a.in = view_of(p, o.ins[0], roots, c0);
  a.out = view_of(p, o.out, roots, c0);
  a.steps_in = o.steps_in;
  a.cin = o.cin;
  a.ksize = o.ksize;
  a.stride = o.stride;
  a.dilation = o.dilation;
  a.pad_left = o.pad_left;
  a.steps_out = o.steps_out;
  a.ncol = nc;
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t e = 0; e < o.n; ++e) im2col_element(a, c, e);
}

}  // namespace emu

/// Run `p` on the host for `ncol` float32 columns per input ([ncol][features] row-major each), with the
/// arena sized for `max_batch` and the batch processed in the given chunks (default: one). Returns the
/// outputs, [ncol][features] each.
inline std::vector<std::vector<float>> emulate(const Program& p, const std::vector<const float*>& inputs, int64_t ncol,
                                               int64_t max_batch, std::vector<Chunk> chunks = {}) {
  if (chunks.empty()) chunks.push_back({0, ncol});
  const std::vector<int64_t> off = slot_offsets(p, max_batch);
  std::vector<uint8_t> arena(static_cast<size_t>(off.back()), 0xFF);  // NaN everywhere (f32, bf16, f16)
  std::vector<char*> roots(p.roots.size(), nullptr);
  for (size_t r = 0; r < p.roots.size(); ++r)
    if (p.roots[r].slot >= 0) roots[r] = reinterpret_cast<char*>(arena.data()) + off[p.roots[r].slot];
  std::vector<std::vector<uint8_t>> blobs;
  for (const auto& b : p.blobs) blobs.push_back(blob_to_bytes(b));

  std::vector<std::vector<float>> outputs(p.outputs.size());
  for (size_t j = 0; j < p.outputs.size(); ++j) outputs[j].resize(static_cast<size_t>(ncol * p.values[p.outputs[j]].n));

  for (const Chunk& ch : chunks) {
    for (size_t i = 0; i < p.inputs.size(); ++i) {
      const int v = p.inputs[i];
      const int64_t n = p.values[v].n;
      EwArgs a;
      a.in[0].p = const_cast<float*>(inputs[i]) + ch.offset * n;
      a.in[0].L = a.in[0].ld = a.in[0].col_stride = n;
      a.out = view_of(p, v, roots.data(), ch.offset);
      a.n = n;
      a.ncol = ch.count;
      for (int64_t c = 0; c < ch.count; ++c)
        for (int64_t q = 0; q < n; ++q) ew_element<ActKind::Linear>(a, c, q);
    }
    for (const Op& o : p.ops) {
      switch (o.type) {
        case OpType::GemmLt:
        case OpType::GemmFused: emu::gemm(p, o, blobs, roots.data(), ch.offset, ch.count); break;
        case OpType::Ew: emu::ew(p, o, blobs, roots.data(), ch.offset, ch.count); break;
        case OpType::Softmax: emu::softmax(p, o, blobs, roots.data(), ch.offset, ch.count); break;
        case OpType::Im2col: emu::im2col(p, o, roots.data(), ch.offset, ch.count); break;
        case OpType::RowQuant: emu::row_quant(p, o, roots.data(), ch.offset, ch.count); break;
        case OpType::Custom: {
          // What the CUDA plan's host staging does: the cpu function on the chunk's dense f32 buffers.
          std::vector<const float*> ins;
          for (int v : o.ins) ins.push_back(static_cast<const float*>(view_of(p, v, roots.data(), ch.offset).p));
          float* out = static_cast<float*>(view_of(p, o.out, roots.data(), ch.offset).p);
          if (auto err = p.customs[static_cast<size_t>(o.custom)]->run_cpu(ins.data(), ch.count, out))
            std::rethrow_exception(err);
          break;
        }
      }
    }
    for (size_t j = 0; j < p.outputs.size(); ++j) {
      const int v = p.outputs[j];
      const int64_t n = p.values[v].n;
      const View src = view_of(p, v, roots.data(), ch.offset);
      for (int64_t c = 0; c < ch.count; ++c)
        for (int64_t q = 0; q < n; ++q)
          outputs[j][static_cast<size_t>((ch.offset + c) * n + q)] = load_elem(src.p, src.dt, view_index(src, c, q));
    }
  }
  return outputs;
}

}  // namespace fkb::cuda
