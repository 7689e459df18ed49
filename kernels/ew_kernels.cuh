// Element-wise (bias + activation + merge + affine + conversion), row-wise softmax and 1-D im2col kernels.
// Every launch takes the stream it runs on; nothing here allocates.
#pragma once

#include <cuda_runtime.h>

#include "elem.hpp"

namespace fkb::cuda {

void launch_ew(const EwArgs& a, ActKind act, cudaStream_t stream);
void launch_softmax(const SoftmaxArgs& a, cudaStream_t stream);
void launch_row_quant(const RowQuantArgs& a, cudaStream_t stream);
void launch_im2col(const Im2colArgs& a, int64_t n_per_col, cudaStream_t stream);

}  // namespace fkb::cuda
