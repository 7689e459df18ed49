// The CUDA engines of fkb::Ensemble (runtime/src/ensemble_engine.hpp):
//
//  * BatchedEnsemble: members with one plain Dense/activation architecture (ensemble_lowering.hpp) run as ONE
//    cublasGemmStridedBatchedEx per layer over all members (batch = members; the model input is shared with
//    stride 0), each followed by one bias + activation kernel over [members][ncol][units]; then one kernel
//    reduces mean and population standard deviation over members (in double) into the outputs.
//  * PerMemberEnsemble: any other architecture: one CudaPlan per member (everything the CUDA backend runs),
//    each writing its output into a device buffer [members][ncol][nout], then the same reduction kernel.
//
// Caller buffers may be host or device memory (cudaPointerGetAttributes). Host inputs are uploaded once per
// call; host outputs are written to device staging and copied back. Each run ends with a stream
// synchronization. No CUDA graphs here (a run is a handful of launches per layer); nothing is allocated in
// run(): all buffers are sized for the maximum batch at construction.
#include <cublas_v2.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "cuda_check.hpp"
#include "cuda_entry.hpp"
#include "cuda_plan.cuh"
#include "ensemble_engine.hpp"
#include "ensemble_lowering.hpp"
#include "nvtx.hpp"

namespace fkb::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kMaxActs = 4;  // activations fused into one layer's epilogue kernel

int blocks_for(int64_t work) {
  const int64_t b = (work + kThreads - 1) / kThreads;
  return static_cast<int>(std::min<int64_t>(std::max<int64_t>(b, 1), 8192));
}

struct EpilogueArgs {
  float* y = nullptr;           ///< [M][nc][n], in place
  const float* bias = nullptr;  ///< [M][n] or null
  int64_t nc = 0, n = 0, members = 0;
  ActKind kinds[kMaxActs];
  ActParams params[kMaxActs];
  int nacts = 0;
};

__global__ void __launch_bounds__(kThreads) epilogue_kernel(const EpilogueArgs a) {
  const int64_t total = a.members * a.nc * a.n;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t m = e / (a.nc * a.n), j = e % a.n;
    a.y[e] = batched_epilogue(a.y[e], a.bias ? a.bias + m * a.n : nullptr, j, a.kinds, a.params, a.nacts);
  }
}

// f64 -> f32 (the caller's float64 input)
__global__ void __launch_bounds__(kThreads) to_f32_kernel(const double* in, float* out, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * kThreads)
    out[i] = static_cast<float>(in[i]);
}

// ys: [M][n] compact (n = nc * nout) float32. mean/spread: [n]; members: member m at members + m * mstride.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    reduce_kernel(const float* ys, int64_t members_count, int64_t n, T* mean, T* spread, T* members, int64_t mstride) {
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * kThreads) {
    double s = 0.0;
    for (int64_t m = 0; m < members_count; ++m) s += ys[m * n + e];
    const double mu = s / static_cast<double>(members_count);
    mean[e] = static_cast<T>(mu);
    if (spread) {
      double q = 0.0;
      for (int64_t m = 0; m < members_count; ++m) {
        const double d = ys[m * n + e] - mu;
        q += d * d;
      }
      spread[e] = static_cast<T>(sqrt(q / static_cast<double>(members_count)));
    }
    if (members)
      for (int64_t m = 0; m < members_count; ++m) members[m * mstride + e] = static_cast<T>(ys[m * n + e]);
  }
}

bool on_device(const void* p) {
  if (!p) return false;
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

void check_device_index(int index) {
  const int n = device_count();
  if (n == 0)
    throw_error(Status::CudaError, "the CUDA ensemble needs a CUDA device, and none is usable on this machine; use "
                                   "device 'cpu' or 'auto'");
  if (index < 0 || index >= n)
    throw_error(Status::CudaError, "CUDA device index " + std::to_string(index) +
                                       " is out of range: this machine has " + std::to_string(n) + " CUDA device(s)");
}

// The part both engines share: the caller's input on the device as float32, the members' outputs reduced
// into the caller's buffers (device directly, host through staging).
class EnsembleIoStage {
public:
  EnsembleIoStage(int64_t members, int64_t nin, int64_t nout, int64_t max_batch)
      : m_(members), nin_(nin), nout_(nout), max_batch_(max_batch) {}
  ~EnsembleIoStage() { release(); }
  EnsembleIoStage(const EnsembleIoStage&) = delete;
  EnsembleIoStage& operator=(const EnsembleIoStage&) = delete;

  void allocate() {
    FKB_CHECK_CUDA(cudaMalloc(&x_raw_, static_cast<size_t>(max_batch_ * nin_ * 8)));
    FKB_CHECK_CUDA(cudaMalloc(&x32_, static_cast<size_t>(max_batch_ * nin_ * 4)));
    FKB_CHECK_CUDA(cudaMalloc(&out_, static_cast<size_t>((2 + m_) * max_batch_ * nout_ * 8)));
  }

  void release() noexcept {
    if (x_raw_) cudaFree(x_raw_);
    if (x32_) cudaFree(x32_);
    if (out_) cudaFree(out_);
    x_raw_ = nullptr;
    x32_ = nullptr;
    out_ = nullptr;
  }

  /// The chunk's input as device float32 [nc][nin]: the caller's pointer itself when it is device float32.
  const float* input(const EnsembleIo& io, int64_t nc, cudaStream_t st) {
    const bool f64 = io.dtype == DType::F64;
    const size_t bytes = static_cast<size_t>(nc * nin_ * (f64 ? 8 : 4));
    const void* src = io.x;
    if (!on_device(io.x)) {
      FKB_CHECK_CUDA(cudaMemcpyAsync(x_raw_, io.x, bytes, cudaMemcpyHostToDevice, st));
      src = x_raw_;
    }
    if (!f64) return static_cast<const float*>(src);
    to_f32_kernel<<<blocks_for(nc * nin_), kThreads, 0, st>>>(static_cast<const double*>(src), x32_, nc * nin_);
    FKB_CHECK_LAUNCH();
    return x32_;
  }

  /// Reduce ys ([M][nc][nout] float32 on the device) into the caller's outputs and wait for them.
  void finish(const EnsembleIo& io, int64_t nc, const float* ys, cudaStream_t st) {
    const bool f64 = io.dtype == DType::F64;
    const int64_t es = f64 ? 8 : 4, n = nc * nout_;
    char* stage = static_cast<char*>(out_);
    char* s_mean = stage;
    char* s_spread = stage + max_batch_ * nout_ * es;
    char* s_members = stage + 2 * max_batch_ * nout_ * es;
    const bool dm = on_device(io.mean), ds = io.spread && on_device(io.spread),
               dmem = io.members && on_device(io.members);
    void* mean = dm ? io.mean : s_mean;
    void* spread = io.spread ? (ds ? io.spread : s_spread) : nullptr;
    void* members = io.members ? (dmem ? io.members : s_members) : nullptr;
    const int64_t mstride = dmem ? io.member_stride : n;
    if (f64)
      reduce_kernel<double><<<blocks_for(n), kThreads, 0, st>>>(
          ys, m_, n, static_cast<double*>(mean), static_cast<double*>(spread), static_cast<double*>(members), mstride);
    else
      reduce_kernel<float><<<blocks_for(n), kThreads, 0, st>>>(
          ys, m_, n, static_cast<float*>(mean), static_cast<float*>(spread), static_cast<float*>(members), mstride);
    FKB_CHECK_LAUNCH();
    const size_t bytes = static_cast<size_t>(n * es);
    if (!dm) FKB_CHECK_CUDA(cudaMemcpyAsync(io.mean, s_mean, bytes, cudaMemcpyDeviceToHost, st));
    if (io.spread && !ds) FKB_CHECK_CUDA(cudaMemcpyAsync(io.spread, s_spread, bytes, cudaMemcpyDeviceToHost, st));
    if (io.members && !dmem)
      FKB_CHECK_CUDA(cudaMemcpy2DAsync(io.members, static_cast<size_t>(io.member_stride * es), s_members, bytes, bytes,
                                       static_cast<size_t>(m_), cudaMemcpyDeviceToHost, st));
    FKB_CHECK_CUDA(cudaStreamSynchronize(st));
  }

private:
  int64_t m_, nin_, nout_, max_batch_;
  void* x_raw_ = nullptr;
  float* x32_ = nullptr;
  void* out_ = nullptr;  // mean, spread, members staging (8 bytes per element)
};

std::string device_label(int device) {
  cudaDeviceProp prop;
  FKB_CHECK_CUDA(cudaGetDeviceProperties(&prop, device));
  return "cuda:" + std::to_string(device) + " (" + prop.name + ")";
}

// ---------------------------------------------------------------------------------------------------------------------

class BatchedEnsemble final : public EnsembleEngine {
public:
  BatchedEnsemble(BatchedEnsembleProgram prog, const CompileOptions& co)
      : prog_(std::move(prog)), device_(co.device_index), max_batch_(co.max_batch),
        io_(prog_.members, prog_.nin, prog_.nout, co.max_batch) {
    check_device_index(device_);
    DeviceGuard guard(device_);
    try {
      name_ = device_label(device_);
      FKB_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      FKB_CHECK_CUBLAS(cublasCreate(&blas_));
      FKB_CHECK_CUBLAS(cublasSetStream(blas_, stream_));
      FKB_CHECK_CUBLAS(cublasSetPointerMode(blas_, CUBLAS_POINTER_MODE_HOST));
      for (size_t l = 0; l < prog_.layers.size(); ++l) {
        if (prog_.layers[l].acts.size() > static_cast<size_t>(kMaxActs))
          throw_error(Status::Unsupported, "ensemble layer '" + prog_.layers[l].name + "' has more than " +
                                               std::to_string(kMaxActs) + " activations");
        weights_.push_back(upload(prog_.weights[l]));
        biases_.push_back(prog_.biases[l].empty() ? nullptr : upload(prog_.biases[l]));
      }
      const size_t act = static_cast<size_t>(prog_.members * max_batch_ * prog_.max_width()) * sizeof(float);
      FKB_CHECK_CUDA(cudaMalloc(&act_[0], act));
      FKB_CHECK_CUDA(cudaMalloc(&act_[1], act));
      io_.allocate();
    } catch (...) {
      release();
      throw;
    }
  }
  ~BatchedEnsemble() override { release(); }

  void run(const EnsembleIo& io, int64_t nc) override {
    if (nc < 1 || nc > max_batch_)
      throw_error(Status::InvalidArgument,
                  "CUDA ensemble: ncol " + std::to_string(nc) + " is outside 1.." + std::to_string(max_batch_));
    DeviceGuard guard(device_);
    NvtxRange range("fkb::ensemble::batched");
    const float* in = io_.input(io, nc, stream_);
    const cublasComputeType_t compute =
        prog_.precision == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    const float one = 1.0f, zero = 0.0f;
    int cur = 0;
    for (size_t l = 0; l < prog_.layers.size(); ++l) {
      const StridedGemm g = layer_gemm(prog_, l, nc);
      float* out = act_[cur];
      FKB_CHECK_CUBLAS(cublasGemmStridedBatchedEx(
          blas_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(g.m), static_cast<int>(g.n), static_cast<int>(g.k), &one,
          weights_[l], CUDA_R_32F, static_cast<int>(g.lda), g.stride_a, in, CUDA_R_32F, static_cast<int>(g.ldb),
          g.stride_b, &zero, out, CUDA_R_32F, static_cast<int>(g.ldc), g.stride_c, static_cast<int>(g.batch), compute,
          CUBLAS_GEMM_DEFAULT));
      const BatchedLayer& L = prog_.layers[l];
      if (L.bias || !L.acts.empty()) {
        EpilogueArgs a;
        a.y = out;
        a.bias = biases_[l];
        a.nc = nc;
        a.n = L.n;
        a.members = prog_.members;
        a.nacts = static_cast<int>(L.acts.size());
        for (int i = 0; i < a.nacts; ++i) {
          a.kinds[i] = L.acts[static_cast<size_t>(i)].first;
          a.params[i] = L.acts[static_cast<size_t>(i)].second;
        }
        epilogue_kernel<<<blocks_for(prog_.members * nc * L.n), kThreads, 0, stream_>>>(a);
        FKB_CHECK_LAUNCH();
      }
      in = out;
      cur ^= 1;
    }
    io_.finish(io, nc, in, stream_);
  }

  int64_t max_batch() const override { return max_batch_; }
  std::string device_name() const override { return name_; }
  std::string name() const override { return "cuda-batched-gemm"; }

private:
  float* upload(const std::vector<float>& v) {
    float* p = nullptr;
    FKB_CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(float)));
    owned_.push_back(p);
    FKB_CHECK_CUDA(cudaMemcpy(p, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice));
    return p;
  }

  void release() noexcept {
    int previous = -1;
    const bool sw = cudaGetDevice(&previous) == cudaSuccess && previous != device_;
    if (sw) cudaSetDevice(device_);
    if (stream_) cudaStreamSynchronize(stream_);
    io_.release();
    for (float* p : owned_) cudaFree(p);
    owned_.clear();
    for (float*& p : act_)
      if (p) {
        cudaFree(p);
        p = nullptr;
      }
    if (blas_) cublasDestroy(blas_);
    blas_ = nullptr;
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
    cudaGetLastError();
    if (sw) cudaSetDevice(previous);
  }

  BatchedEnsembleProgram prog_;
  int device_;
  int64_t max_batch_;
  std::string name_;
  EnsembleIoStage io_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  std::vector<float*> owned_, weights_, biases_;
  float* act_[2] = {nullptr, nullptr};
};

// ---------------------------------------------------------------------------------------------------------------------

class PerMemberEnsemble final : public EnsembleEngine {
public:
  PerMemberEnsemble(const std::vector<const Model*>& members, const CompileOptions& co)
      : device_(co.device_index), nin_(members[0]->input_size(0)), nout_(members[0]->output_size(0)) {
    check_device_index(device_);
    auto backend = create_backend();
    max_batch_ = co.max_batch;
    for (const Model* m : members) {
      plans_.push_back(backend->compile(*m, co));
      max_batch_ = std::min(max_batch_, plans_.back()->max_batch());  // a plan may have fallen back (memory)
    }
    io_ = std::make_unique<EnsembleIoStage>(static_cast<int64_t>(members.size()), nin_, nout_, max_batch_);
    DeviceGuard guard(device_);
    try {
      name_ = device_label(device_);
      FKB_CHECK_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
      FKB_CHECK_CUDA(cudaMalloc(&ys_, static_cast<size_t>(members.size()) * max_batch_ * nout_ * sizeof(float)));
      io_->allocate();
    } catch (...) {
      release();
      throw;
    }
    bind_.inputs.assign(1, nullptr);
    bind_.outputs.assign(1, nullptr);
  }
  ~PerMemberEnsemble() override { release(); }

  void run(const EnsembleIo& io, int64_t nc) override {
    if (nc < 1 || nc > max_batch_)
      throw_error(Status::InvalidArgument,
                  "CUDA ensemble: ncol " + std::to_string(nc) + " is outside 1.." + std::to_string(max_batch_));
    DeviceGuard guard(device_);
    NvtxRange range("fkb::ensemble::per_member");
    // The input goes to the device once (as float32); every member's plan then reads device memory.
    bind_.inputs[0] = io_->input(io, nc, stream_);
    FKB_CHECK_CUDA(cudaStreamSynchronize(stream_));
    bind_.input_dtype = DType::F32;
    bind_.output_dtype = DType::F32;
    for (size_t m = 0; m < plans_.size(); ++m) {
      bind_.outputs[0] = ys_ + static_cast<int64_t>(m) * nc * nout_;
      plans_[m]->run(bind_, nc);  // returns when its output is on the device
    }
    io_->finish(io, nc, ys_, stream_);
  }

  int64_t max_batch() const override { return max_batch_; }
  std::string device_name() const override { return name_; }
  std::string name() const override { return "cuda-per-member"; }

private:
  void release() noexcept {
    if (stream_) cudaStreamSynchronize(stream_);
    if (io_) io_->release();
    if (ys_) cudaFree(ys_);
    ys_ = nullptr;
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
    cudaGetLastError();
  }

  int device_;
  int64_t nin_, nout_, max_batch_ = 0;
  std::string name_;
  std::vector<std::unique_ptr<Plan>> plans_;
  std::unique_ptr<EnsembleIoStage> io_;
  cudaStream_t stream_ = nullptr;
  float* ys_ = nullptr;
  IoBinding bind_;
};

}  // namespace

std::unique_ptr<EnsembleEngine> create_batched_ensemble(const std::vector<const Model*>& members,
                                                        const CompileOptions& options, std::string* why) {
  BatchedEnsembleProgram prog;
  if (!lower_batched_ensemble(members, options.precision, &prog, why)) return nullptr;
  if (options.reproducible) {
    if (why) *why = "the reproducible option (cuBLAS' batched GEMM may pick batch-size-dependent algorithms)";
    return nullptr;
  }
  return std::make_unique<BatchedEnsemble>(std::move(prog), options);
}

std::unique_ptr<EnsembleEngine> create_per_member_ensemble(const std::vector<const Model*>& members,
                                                           const CompileOptions& options) {
  return std::make_unique<PerMemberEnsemble>(members, options);
}

}  // namespace fkb::cuda
