// Custom layers in the CUDA plan (custom_staging.cuh).
#include <string>

#include "cuda_check.hpp"
#include "custom_staging.cuh"

namespace fkb::cuda {

namespace {

void CUDART_CB run_host_call(void* data) {
  auto* c = static_cast<CustomStaging::HostCall*>(data);
  // Never throws (CustomCall::run_cpu returns its error), as a host node must not.
  c->errors->set(c->call->run_cpu(c->ins.data(), c->ncol, c->out));
}

}  // namespace

CustomStaging::CustomStaging(const Program& p, int64_t max_batch) {
  try {
    for (size_t oi = 0; oi < p.ops.size(); ++oi) {
      const Op& o = p.ops[oi];
      if (o.type != OpType::Custom || p.customs[static_cast<size_t>(o.custom)]->has_cuda()) continue;
      OpBuffers b;
      auto alloc = [&](int64_t n) {
        void* q = nullptr;
        FKB_CHECK_CUDA(cudaHostAlloc(&q, static_cast<size_t>(std::max<int64_t>(n * max_batch, 1)) * sizeof(float),
                                     cudaHostAllocDefault));
        pinned_.push_back(q);
        return static_cast<float*>(q);
      };
      for (int v : o.ins) b.ins.push_back(alloc(p.values[static_cast<size_t>(v)].n));
      b.out = alloc(o.n);
      buffers_[oi] = b;
    }
  } catch (...) {
    for (void* q : pinned_) cudaFreeHost(q);
    throw;
  }
}

CustomStaging::~CustomStaging() {
  for (void* q : pinned_) cudaFreeHost(q);
}

void CustomStaging::enqueue(const Program& p, size_t oi, char* const* roots, int64_t c0, int64_t nc, cudaStream_t st) {
  const Op& o = p.ops[oi];
  const CustomCall& call = *p.customs[static_cast<size_t>(o.custom)];
  std::vector<const float*> dev_in;
  for (int v : o.ins) dev_in.push_back(static_cast<const float*>(view_of(p, v, roots, c0).p));
  float* dev_out = static_cast<float*>(view_of(p, o.out, roots, c0).p);
  if (call.has_cuda()) {
    call.run_cuda(dev_in.data(), nc, dev_out, st);
    FKB_CHECK_LAUNCH();
    return;
  }
  const OpBuffers& b = buffers_.at(oi);
  auto& rec = calls_[std::make_tuple(oi, c0, nc)];
  if (!rec) {
    rec = std::make_unique<HostCall>();
    rec->call = &call;
    rec->ncol = nc;
    rec->errors = &errors_;
    for (size_t i = 0; i < o.ins.size(); ++i)
      rec->ins.push_back(b.ins[i] + c0 * p.values[static_cast<size_t>(o.ins[i])].n);
    rec->out = b.out + c0 * o.n;
  }
  for (size_t i = 0; i < o.ins.size(); ++i) {
    const int64_t n = p.values[static_cast<size_t>(o.ins[i])].n;
    FKB_CHECK_CUDA(cudaMemcpyAsync(const_cast<float*>(rec->ins[i]), dev_in[i],
                                   static_cast<size_t>(nc * n) * sizeof(float), cudaMemcpyDeviceToHost, st));
  }
  FKB_CHECK_CUDA(cudaLaunchHostFunc(st, run_host_call, rec.get()));
  FKB_CHECK_CUDA(
      cudaMemcpyAsync(dev_out, rec->out, static_cast<size_t>(nc * o.n) * sizeof(float), cudaMemcpyHostToDevice, st));
}

}  // namespace fkb::cuda
