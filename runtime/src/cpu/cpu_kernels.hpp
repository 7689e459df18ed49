// Element-wise and data-movement kernels of the CPU backend, on blocks of `ncol` columns laid out
// [ncol][features] row-major. GEMMs go to OpenBLAS; everything here is a single pass over its tile.
#pragma once

#include <cstdint>

#include "cpu/cpu_program.hpp"

namespace fkb::cpu {

/// y[c][f] = act(y[c][f] + bias[f]) for c < ncol, f < features; then softmax rows if requested.
void apply_epilogue(const Epilogue& e, float* y, int64_t ncol, int64_t features);

/// out = in * scale + shift (or (in - shift) * scale), then the epilogue, in one pass.
void apply_affine(const Step& s, const float* in, float* out, int64_t ncol, int64_t features);

/// out = in, then the epilogue (an activation that could not be fused).
void apply_activation(const Step& s, const float* in, float* out, int64_t ncol, int64_t features);

/// Element-wise merge of `nin` inputs (broadcast through Step::merge_index when given), then the epilogue.
void apply_merge(const Step& s, const float* const* in, int nin, float* out, int64_t ncol, int64_t features);

/// Keras 3 int8 Dense (Step::Int8Gemm) on ncol columns, then the epilogue. `scratch` holds k + n int32.
void apply_int8_gemm(const Step& s, const float* in, float* out, int64_t ncol, void* scratch);

/// Concatenation per column (Step::outer, Step::inner).
void apply_concat(const Step& s, const float* const* in, float* out, int64_t ncol);

/// Conv1D patches: out[c][t][j][ch] = in[c][t*stride + j*dilation - pad_left][ch] (0 outside).
void im2col_1d(const Step& s, const float* in, float* out, int64_t ncol);

/// out[i] = (float)in[i] and the reverse; n values.
void convert_f64_to_f32(const double* in, float* out, int64_t n);
void convert_f32_to_f64(const float* in, double* out, int64_t n);

}  // namespace fkb::cpu
