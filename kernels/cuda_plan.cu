// The CUDA plan (cuda_plan.cuh).
//
// One predict call, for a batch split into chunks (plan_chunks: only when the caller's data is on the host):
//   stream h2d :  H2D(0) ─ev─ H2D(1) ─ev─ ...            (pageable callers: memcpy into pinned staging first)
//   stream comp:      └wait─ graph(0) ─ev─ graph(1) ...   (chunk i uses columns [off_i, off_i+n_i) of every
//   stream d2h :                  └wait─ D2H(0) ─ev─ ...   buffer, so chunks never touch each other's data)
// Each chunk's forward pass is a CUDA graph captured on first use for that (size, offset, dtypes) and
// replayed afterwards. Conversions from float64 input and to float64 output are kernels inside the graph,
// reading/writing device staging. Device-resident callers (cudaPointerGetAttributes) are copied
// device-to-device, without host staging.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "cuda_check.hpp"
#include "cuda_plan.cuh"
#include "ew_kernels.cuh"
#include "gemm_fused.cuh"
#include "nvtx.hpp"

namespace fkb::cuda {

// ---------------------------------------------------------------------------------------------------------------------

DeviceGuard::DeviceGuard(int device) {
  FKB_CHECK_CUDA(cudaGetDevice(&previous_));
  if (previous_ != device) {
    FKB_CHECK_CUDA(cudaSetDevice(device));
    changed_ = true;
  }
}

DeviceGuard::~DeviceGuard() {
  if (changed_) cudaSetDevice(previous_);
}

PlanTunables PlanTunables::from_env() {
  PlanTunables t;
  t.chunks.min_chunk = env_int64("FKB_CUDA_MIN_CHUNK", t.chunks.min_chunk);
  t.chunks.max_chunks = static_cast<int>(std::min<int64_t>(env_int64("FKB_CUDA_MAX_CHUNKS", t.chunks.max_chunks), 16));
  t.use_graphs = env_string("FKB_CUDA_GRAPHS") != "0";
  t.fake_memory_limit = env_int64("FKB_CUDA_MAX_BYTES", 0);
  return t;
}

namespace {

double elapsed_s(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0.0f;
  if (cudaEventElapsedTime(&ms, a, b) != cudaSuccess) {
    cudaGetLastError();
    return 0.0;
  }
  return static_cast<double>(ms) * 1e-3;
}

// Copies between the caller's pageable memory and pinned staging: one thread moves about 5-10 GB/s, less
// than one PCIe direction, so large copies are split over a few threads.
void staging_memcpy(void* dst, const void* src, size_t bytes) {
  constexpr size_t kMinParallel = size_t(8) << 20;
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t nthreads = std::min<size_t>({8, hw / 2 + 1, bytes / (kMinParallel / 2) + 1});
  if (bytes < kMinParallel || nthreads < 2) {
    std::memcpy(dst, src, bytes);
    return;
  }
  const size_t part = (bytes + nthreads - 1) / nthreads;
  std::vector<std::thread> pool;
  for (size_t t = 1; t < nthreads; ++t) {
    const size_t off = t * part;
    if (off >= bytes) break;
    pool.emplace_back([=] { std::memcpy(static_cast<char*>(dst) + off, static_cast<const char*>(src) + off, std::min(part, bytes - off)); });
  }
  std::memcpy(dst, src, std::min(part, bytes));
  for (auto& th : pool) th.join();
}

View dense_view(void* p, int64_t n, DT dt) {
  View v;
  v.p = p;
  v.L = v.ld = v.col_stride = n;
  v.dt = dt;
  v.dense = 1;
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------------

CudaPlan::CudaPlan(Program program, const CompileOptions& options, int device)
    : prog_(std::move(program)), options_(options), tun_(PlanTunables::from_env()), device_(device) {
  DeviceGuard guard(device_);
  NvtxRange range("fkb::cuda::compile");
  try {
    cudaDeviceProp prop;
    FKB_CHECK_CUDA(cudaGetDeviceProperties(&prop, device_));
    device_name_ = "cuda:" + std::to_string(device_) + " (" + prop.name + ")";
    FKB_CHECK_CUDA(cudaStreamCreateWithFlags(&s_h2d_, cudaStreamNonBlocking));
    FKB_CHECK_CUDA(cudaStreamCreateWithFlags(&s_comp_, cudaStreamNonBlocking));
    FKB_CHECK_CUDA(cudaStreamCreateWithFlags(&s_d2h_, cudaStreamNonBlocking));
    FKB_CHECK_CUBLAS(cublasLtCreate(&lt_));
    FKB_CHECK_CUDA(cudaEventCreate(&ev_start_));
    FKB_CHECK_CUDA(cudaEventCreate(&ev_comp0_));
    FKB_CHECK_CUDA(cudaEventCreate(&ev_d2h0_));
    for (int i = 0; i < kMaxChunks; ++i) {
      FKB_CHECK_CUDA(cudaEventCreate(&ev_h2d_[i]));
      FKB_CHECK_CUDA(cudaEventCreate(&ev_comp_[i]));
      FKB_CHECK_CUDA(cudaEventCreate(&ev_d2h_[i]));
    }
    {
      NvtxRange up("fkb::cuda::upload_weights");
      upload_weights();
    }
    if (prog_.count_ops(OpType::GemmLt) > 0) FKB_CHECK_CUDA(cudaMalloc(&workspace_, tun_.workspace_bytes));
    allocate_batch_buffers(options.max_batch);
    if (prog_.count_ops(OpType::Custom) > 0) custom_ = std::make_unique<CustomStaging>(prog_, max_batch_);
  } catch (...) {
    release();  // the destructor does not run when the constructor throws
    throw;
  }
}

CudaPlan::~CudaPlan() { release(); }

void CudaPlan::release() noexcept {
  int previous = -1;
  const bool switch_device = cudaGetDevice(&previous) == cudaSuccess && previous != device_;
  if (switch_device) cudaSetDevice(device_);
  if (s_comp_) cudaStreamSynchronize(s_comp_);
  if (s_h2d_) cudaStreamSynchronize(s_h2d_);
  if (s_d2h_) cudaStreamSynchronize(s_d2h_);
  destroy_graphs();
  custom_.reset();
  free_batch_buffers();
  if (pinned_) cudaFreeHost(pinned_);
  pinned_ = nullptr;
  in_pin_.clear();
  out_pin_.clear();
  if (weights_) cudaFree(weights_);
  weights_ = nullptr;
  if (workspace_) cudaFree(workspace_);
  workspace_ = nullptr;
  for (cudaEvent_t* e : {&ev_start_, &ev_comp0_, &ev_d2h0_})
    if (*e) {
      cudaEventDestroy(*e);
      *e = nullptr;
    }
  for (int i = 0; i < kMaxChunks; ++i)
    for (cudaEvent_t* e : {&ev_h2d_[i], &ev_comp_[i], &ev_d2h_[i]})
      if (*e) {
        cudaEventDestroy(*e);
        *e = nullptr;
      }
  if (lt_) cublasLtDestroy(lt_);
  lt_ = nullptr;
  for (cudaStream_t* s : {&s_h2d_, &s_comp_, &s_d2h_})
    if (*s) {
      cudaStreamDestroy(*s);
      *s = nullptr;
    }
  cudaGetLastError();  // leave no sticky error from teardown to the caller's next CUDA call
  if (switch_device) cudaSetDevice(previous);
}

void CudaPlan::upload_weights() {
  std::vector<size_t> off;
  size_t total = 0;
  std::vector<std::vector<uint8_t>> bytes;
  for (const Blob& b : prog_.blobs) {
    bytes.push_back(blob_to_bytes(b));
    off.push_back(total);
    total += (bytes.back().size() + 255) / 256 * 256;
  }
  std::vector<uint8_t> host(std::max<size_t>(total, 256), 0);
  for (size_t i = 0; i < bytes.size(); ++i)
    if (!bytes[i].empty()) std::memcpy(host.data() + off[i], bytes[i].data(), bytes[i].size());
  FKB_CHECK_CUDA(cudaMalloc(&weights_, host.size()));
  weights_bytes_ = static_cast<int64_t>(host.size());
  FKB_CHECK_CUDA(cudaMemcpy(weights_, host.data(), host.size(), cudaMemcpyHostToDevice));
  blob_ptr_.clear();
  for (size_t i = 0; i < off.size(); ++i) blob_ptr_.push_back(static_cast<char*>(weights_) + off[i]);
}

// Device bytes of the per-batch allocation: the arena, then device staging for every input and output
// (8 bytes per element: float64 callers convert from/to it; float32 callers that need a conversion too).
bool CudaPlan::try_allocate_batch(int64_t batch) {
  const std::vector<int64_t> slots = slot_offsets(prog_, batch);
  int64_t total = slots.back();
  std::vector<int64_t> in_off, out_off;
  for (int v : prog_.inputs) {
    in_off.push_back(total);
    total += round_up(batch * prog_.values[v].n * 8, 256);
  }
  for (int v : prog_.outputs) {
    out_off.push_back(total);
    total += round_up(batch * prog_.values[v].n * 8, 256);
  }
  if (tun_.fake_memory_limit > 0) {
    // What is already resident counts against the pretended size too.
    const int64_t fixed = static_cast<int64_t>(workspace_ ? tun_.workspace_bytes : 0) + weights_bytes_;
    if (total + fixed > tun_.fake_memory_limit) return false;
  }
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, static_cast<size_t>(std::max<int64_t>(total, 256)));
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it: the next, smaller try may succeed
    return false;
  }
  FKB_CHECK_CUDA(e);
  batch_ = p;
  char* base = static_cast<char*>(p);
  root_base_.assign(prog_.roots.size(), nullptr);
  for (size_t r = 0; r < prog_.roots.size(); ++r)
    if (prog_.roots[r].slot >= 0) root_base_[r] = base + slots[static_cast<size_t>(prog_.roots[r].slot)];
  in_raw_.clear();
  out_raw_.clear();
  for (auto o : in_off) in_raw_.push_back(base + o);
  for (auto o : out_off) out_raw_.push_back(base + o);
  return true;
}

void CudaPlan::allocate_batch_buffers(int64_t requested) {
  if (requested < 1)
    throw_error(Status::InvalidArgument, "max_batch must be at least 1 (got " + std::to_string(requested) + ")");
  const int64_t got = fallback_max_batch(requested, [this](int64_t b) { return try_allocate_batch(b); });
  if (got == 0) {
    int64_t per_col = prog_.activation_bytes_per_col();
    for (int v : prog_.inputs) per_col += prog_.values[v].n * 8;
    for (int v : prog_.outputs) per_col += prog_.values[v].n * 8;
    throw_error(Status::OutOfMemory, "CUDA backend: not enough device memory on " + device_name_ +
                                         " even for one column (" + std::to_string(per_col) + " bytes per column)");
  }
  max_batch_ = got;
  if (got < requested && options_.verbose)
    std::fprintf(stderr, "fkb: %s: not enough device memory for a maximum batch of %lld columns; using %lld\n",
                 device_name_.c_str(), static_cast<long long>(requested), static_cast<long long>(got));
}

void CudaPlan::free_batch_buffers() {
  if (batch_) cudaFree(batch_);
  batch_ = nullptr;
  root_base_.clear();
  in_raw_.clear();
  out_raw_.clear();
}

// Pinned host staging for pageable callers, allocated on first need for the maximum batch. When pinned
// memory is short the plan copies from pageable memory directly (slower, still correct).
void CudaPlan::ensure_pinned_staging() {
  if (pinned_tried_) return;
  pinned_tried_ = true;
  std::vector<int64_t> in_off, out_off;
  int64_t total = 0;
  for (int v : prog_.inputs) {
    in_off.push_back(total);
    total += round_up(max_batch_ * prog_.values[v].n * 8, 256);
  }
  for (int v : prog_.outputs) {
    out_off.push_back(total);
    total += round_up(max_batch_ * prog_.values[v].n * 8, 256);
  }
  void* p = nullptr;
  const cudaError_t e = cudaHostAlloc(&p, static_cast<size_t>(total), cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (options_.verbose)
      std::fprintf(stderr, "fkb: %s: cannot allocate %lld bytes of pinned host memory (%s); copying from pageable "
                           "memory directly\n",
                   device_name_.c_str(), static_cast<long long>(total), cudaGetErrorString(e));
    return;
  }
  pinned_ = p;
  for (auto o : in_off) in_pin_.push_back(static_cast<char*>(p) + o);
  for (auto o : out_off) out_pin_.push_back(static_cast<char*>(p) + o);
}

bool CudaPlan::input_direct(size_t i, bool f64) const {
  return !f64 && prog_.roots[prog_.values[prog_.inputs[i]].root].dt == DT::F32;
}

bool CudaPlan::output_direct(size_t /*j*/, bool f64) const {
  return !f64;  // model outputs are always stored dense f32
}

CudaPlan::Where CudaPlan::classify(const void* p) const {
  cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();
    return Where::Pageable;
  }
  switch (attr.type) {
    case cudaMemoryTypeDevice:
    case cudaMemoryTypeManaged: return Where::Device;
    case cudaMemoryTypeHost: return Where::Pinned;
    default: return Where::Pageable;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Recording one chunk's forward pass

void CudaPlan::record_op(const Op& o, int64_t c0, int64_t nc, Graph& g, cudaStream_t st) {
  char* const* roots = root_base_.data();
  auto blob = [&](int b) { return b >= 0 ? static_cast<const float*>(blob_ptr_[static_cast<size_t>(b)]) : nullptr; };
  const size_t oi = static_cast<size_t>(&o - prog_.ops.data());
  NvtxRange range(o.name.c_str());
  switch (o.type) {
    case OpType::GemmLt:
    case OpType::GemmFused: {
      if (o.type == OpType::GemmLt && g.matmuls[oi]) {
        g.matmuls[oi]->enqueue(lt_, st);
        return;
      }
      FusedGemmArgs a;
      a.A = blob_ptr_[static_cast<size_t>(o.a)];
      a.adt = prog_.blobs[static_cast<size_t>(o.a)].dt;
      a.m = o.m;
      a.k = o.k;
      const View B = view_of(prog_, o.b, roots, c0), D = view_of(prog_, o.d, roots, c0);
      a.B = B.p;
      a.bdt = B.dt;
      a.ldb = gemm_ld(prog_, o.b, o.k);
      if (o.c >= 0) {
        const View C = view_of(prog_, o.c, roots, c0);
        a.C = C.p;
        a.cdt = C.dt;
        a.ldc = gemm_ld(prog_, o.c, o.m);
      }
      a.D = D.p;
      a.ddt = D.dt;
      a.ldd = gemm_ld(prog_, o.d, o.m);
      a.rows = nc * o.rpc;
      a.rpc = o.rpc;
      a.bias = blob(o.bias);
      ActKind act = o.act;
      if (o.type == OpType::GemmLt) {  // cuBLASLt had no algorithm: the same epilogue in the fused kernel
        act = (o.lt_epilogue == LtEpilogue::Relu || o.lt_epilogue == LtEpilogue::ReluBias) ? ActKind::Relu
                                                                                           : ActKind::Linear;
      } else {
        a.alpha = blob(o.alpha);
        a.params = o.params;
      }
      launch_fused_gemm(a, act, st);
      return;
    }
    case OpType::Ew: {
      EwArgs a;
      a.nin = static_cast<int32_t>(o.ins.size());
      for (size_t i = 0; i < o.ins.size(); ++i) a.in[i] = view_of(prog_, o.ins[i], roots, c0);
      for (size_t i = 0; i < o.bcast.size(); ++i) a.bc[i] = o.bcast[i];
      a.out = view_of(prog_, o.out, roots, c0);
      a.merge = o.merge;
      a.avg_div = o.avg_div;
      a.subtract_first = o.subtract_first;
      a.scale = blob(o.scale);
      a.shift = blob(o.shift);
      a.bias = blob(o.bias);
      a.alpha = blob(o.alpha);
      a.dequant = blob(o.dequant);
      a.params = o.params;
      a.n = o.n;
      a.ncol = nc;
      a.remap_w = o.remap_w;
      a.remap_total = o.remap_total;
      a.remap_start = o.remap_start;
      launch_ew(a, o.act, st);
      return;
    }
    case OpType::Softmax: {
      SoftmaxArgs a;
      a.in = view_of(prog_, o.ins[0], roots, c0);
      a.out = view_of(prog_, o.out, roots, c0);
      a.bias = blob(o.bias);
      a.L = o.L;
      a.rows_per_col = o.rpc;
      a.ncol = nc;
      launch_softmax(a, st);
      return;
    }
    case OpType::Im2col: {
      Im2colArgs a;
      a.in = view_of(prog_, o.ins[0], roots, c0);
      a.out = view_of(prog_, o.out, roots, c0);
      a.steps_in = o.steps_in;
      a.cin = o.cin;
      a.ksize = o.ksize;
      a.stride = o.stride;
      a.dilation = o.dilation;
      a.pad_left = o.pad_left;
      a.steps_out = o.steps_out;
      a.ncol = nc;
      launch_im2col(a, o.n, st);
      return;
    }
    case OpType::Custom:
      custom_->enqueue(prog_, oi, roots, c0, nc, st);
      return;
    case OpType::RowQuant: {
      RowQuantArgs a;
      a.in = view_of(prog_, o.ins[0], roots, c0);
      a.q = view_of(prog_, o.out, roots, c0);
      a.scale = view_of(prog_, o.out2, roots, c0);
      a.L = o.L;
      a.rows_per_col = o.rpc;
      a.ncol = nc;
      launch_row_quant(a, st);
      return;
    }
  }
}

void CudaPlan::record(const GraphKey& key, Graph& g, cudaStream_t st) {
  const int64_t c0 = key.offset, nc = key.ncol;
  const int64_t ie = key.in_f64 ? 8 : 4, oe = key.out_f64 ? 8 : 4;
  for (size_t i = 0; i < prog_.inputs.size(); ++i) {
    if (input_direct(i, key.in_f64)) continue;
    const int v = prog_.inputs[i];
    const int64_t n = prog_.values[v].n;
    EwArgs a;
    a.in[0] = dense_view(in_raw_[i] + c0 * n * ie, n, key.in_f64 ? DT::F64 : DT::F32);
    a.out = view_of(prog_, v, root_base_.data(), c0);
    a.n = n;
    a.ncol = nc;
    NvtxRange range("convert input");
    launch_ew(a, ActKind::Linear, st);
  }
  for (const Op& o : prog_.ops) record_op(o, c0, nc, g, st);
  for (size_t j = 0; j < prog_.outputs.size(); ++j) {
    if (output_direct(j, key.out_f64)) continue;
    const int v = prog_.outputs[j];
    const int64_t n = prog_.values[v].n;
    EwArgs a;
    a.in[0] = view_of(prog_, v, root_base_.data(), c0);
    a.out = dense_view(out_raw_[j] + c0 * n * oe, n, key.out_f64 ? DT::F64 : DT::F32);
    a.n = n;
    a.ncol = nc;
    NvtxRange range("convert output");
    launch_ew(a, ActKind::Linear, st);
  }
}

CudaPlan::Graph& CudaPlan::graph_for(const GraphKey& key) {
  auto it = graphs_.find(key);
  if (it != graphs_.end()) return it->second;
  Graph& g = graphs_[key];
  try {
    NvtxRange range("fkb::cuda::prepare_graph");
    // cuBLASLt descriptors and algorithms first, outside any capture (host work only).
    g.matmuls.resize(prog_.ops.size());
    char* const* roots = root_base_.data();
    for (size_t oi = 0; oi < prog_.ops.size(); ++oi) {
      const Op& o = prog_.ops[oi];
      if (o.type != OpType::GemmLt) continue;
      LtMatmulSpec s;
      s.precision = prog_.precision;
      s.m = o.m;
      s.n = key.ncol * o.rpc;
      s.k = o.k;
      s.A = blob_ptr_[static_cast<size_t>(o.a)];
      s.adt = prog_.blobs[static_cast<size_t>(o.a)].dt;
      const View B = view_of(prog_, o.b, roots, key.offset), D = view_of(prog_, o.d, roots, key.offset);
      s.B = B.p;
      s.bdt = B.dt;
      s.ldb = gemm_ld(prog_, o.b, o.k);
      if (o.c >= 0) {
        s.C = view_of(prog_, o.c, roots, key.offset).p;
        s.ldc = gemm_ld(prog_, o.c, o.m);
      }
      s.D = D.p;
      s.ldd = gemm_ld(prog_, o.d, o.m);
      s.bias = o.bias >= 0 ? static_cast<const float*>(blob_ptr_[static_cast<size_t>(o.bias)]) : nullptr;
      s.epilogue = o.lt_epilogue;
      s.workspace = workspace_;
      s.workspace_bytes = tun_.workspace_bytes;
      auto mm = std::make_unique<LtMatmul>();
      std::string why;
      if (mm->prepare(lt_, s, &why)) {
        g.matmuls[oi] = std::move(mm);
      } else if (options_.verbose) {
        std::fprintf(stderr, "fkb: %s: cuBLASLt cannot run layer '%s' (m %lld, n %lld, k %lld: %s); using the "
                             "fused GEMM\n",
                     device_name_.c_str(), o.name.c_str(), static_cast<long long>(o.m), static_cast<long long>(s.n),
                     static_cast<long long>(o.k), why.c_str());
      }
    }
    if (!tun_.use_graphs) return g;
    NvtxRange cap("fkb::cuda::capture_graph");
    FKB_CHECK_CUDA(cudaStreamBeginCapture(s_comp_, cudaStreamCaptureModeThreadLocal));
    try {
      record(key, g, s_comp_);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(s_comp_, &broken);
      if (broken) cudaGraphDestroy(broken);
      cudaGetLastError();
      throw;
    }
    cudaGraph_t graph = nullptr;
    FKB_CHECK_CUDA(cudaStreamEndCapture(s_comp_, &graph));
    const cudaError_t e = cudaGraphInstantiate(&g.exec, graph, 0);
    cudaGraphDestroy(graph);
    FKB_CHECK_CUDA(e);
    // Upload now so the first replay does not pay for it inside the timed pipeline.
    FKB_CHECK_CUDA(cudaGraphUpload(g.exec, s_comp_));
  } catch (...) {
    if (g.exec) cudaGraphExecDestroy(g.exec);
    graphs_.erase(key);
    throw;
  }
  return g;
}

void CudaPlan::destroy_graphs() {
  for (auto& kv : graphs_)
    if (kv.second.exec) cudaGraphExecDestroy(kv.second.exec);
  graphs_.clear();
}

// ---------------------------------------------------------------------------------------------------------------------

void CudaPlan::run(const IoBinding& io, int64_t ncol) {
  if (ncol == 0) return;
  if (ncol < 0 || ncol > max_batch_)
    throw_error(Status::InvalidArgument, "CUDA plan: ncol = " + std::to_string(ncol) + " is outside 1.." +
                                             std::to_string(max_batch_) + " (the plan's maximum batch)");
  if (io.inputs.size() != prog_.inputs.size() || io.outputs.size() != prog_.outputs.size())
    throw_error(Status::InvalidArgument, "CUDA plan: the model has " + std::to_string(prog_.inputs.size()) +
                                             " input(s) and " + std::to_string(prog_.outputs.size()) +
                                             " output(s); the call gives " + std::to_string(io.inputs.size()) +
                                             " and " + std::to_string(io.outputs.size()));
  for (size_t i = 0; i < io.inputs.size(); ++i)
    if (!io.inputs[i]) throw_error(Status::InvalidArgument, "CUDA plan: input " + std::to_string(i) + " is null");
  for (size_t j = 0; j < io.outputs.size(); ++j)
    if (!io.outputs[j]) throw_error(Status::InvalidArgument, "CUDA plan: output " + std::to_string(j) + " is null");

  const auto t0 = std::chrono::steady_clock::now();
  DeviceGuard guard(device_);
  NvtxRange range("fkb::cuda::predict");
  const bool in64 = io.input_dtype == DType::F64, out64 = io.output_dtype == DType::F64;
  const int64_t ie = in64 ? 8 : 4, oe = out64 ? 8 : 4;

  std::vector<Where> win, wout;
  bool host = false, pageable = false;
  for (const void* p : io.inputs) win.push_back(classify(p));
  for (void* p : io.outputs) wout.push_back(classify(p));
  for (Where w : win) host |= w != Where::Device, pageable |= w == Where::Pageable;
  for (Where w : wout) host |= w != Where::Device, pageable |= w == Where::Pageable;
  if (pageable) ensure_pinned_staging();
  const bool staged = !in_pin_.empty() || !out_pin_.empty();

  const std::vector<Chunk> chunks = plan_chunks(ncol, host, tun_.chunks);
  FKB_ASSERT(!chunks.empty() && chunks.size() <= static_cast<size_t>(kMaxChunks));

  // Capture (or find) every chunk's graph before the pipeline starts, so no capture stalls it. The cache is
  // bounded for callers with ever-changing sizes.
  if (graphs_.size() + chunks.size() > 256) destroy_graphs();
  std::vector<Graph*> graphs;
  for (const Chunk& ch : chunks) graphs.push_back(&graph_for(GraphKey{ch.count, ch.offset, in64, out64}));

  FKB_CHECK_CUDA(cudaEventRecord(ev_start_, s_h2d_));
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const Chunk ch = chunks[ci];
    {
      NvtxRange r("H2D");
      for (size_t i = 0; i < io.inputs.size(); ++i) {
        const int v = prog_.inputs[i];
        const int64_t n = prog_.values[v].n;
        const size_t bytes = static_cast<size_t>(ch.count * n * ie);
        const char* src = static_cast<const char*>(io.inputs[i]) + ch.offset * n * ie;
        char* dst = input_direct(i, in64) ? static_cast<char*>(view_of(prog_, v, root_base_.data(), ch.offset).p)
                                          : in_raw_[i] + ch.offset * n * ie;
        if (win[i] == Where::Pageable && staged) {
          char* pin = in_pin_[i] + ch.offset * n * ie;
          staging_memcpy(pin, src, bytes);
          src = pin;
        }
        FKB_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s_h2d_));
      }
      FKB_CHECK_CUDA(cudaEventRecord(ev_h2d_[ci], s_h2d_));
    }
    {
      NvtxRange r("layers");
      FKB_CHECK_CUDA(cudaStreamWaitEvent(s_comp_, ev_h2d_[ci], 0));
      if (ci == 0) FKB_CHECK_CUDA(cudaEventRecord(ev_comp0_, s_comp_));
      Graph& g = *graphs[ci];
      if (g.exec)
        FKB_CHECK_CUDA(cudaGraphLaunch(g.exec, s_comp_));
      else
        record(GraphKey{ch.count, ch.offset, in64, out64}, g, s_comp_);
      FKB_CHECK_CUDA(cudaEventRecord(ev_comp_[ci], s_comp_));
    }
    {
      NvtxRange r("D2H");
      FKB_CHECK_CUDA(cudaStreamWaitEvent(s_d2h_, ev_comp_[ci], 0));
      if (ci == 0) FKB_CHECK_CUDA(cudaEventRecord(ev_d2h0_, s_d2h_));
      for (size_t j = 0; j < io.outputs.size(); ++j) {
        const int v = prog_.outputs[j];
        const int64_t n = prog_.values[v].n;
        const size_t bytes = static_cast<size_t>(ch.count * n * oe);
        const char* src = output_direct(j, out64)
                              ? static_cast<const char*>(view_of(prog_, v, root_base_.data(), ch.offset).p)
                              : out_raw_[j] + ch.offset * n * oe;
        char* dst = static_cast<char*>(io.outputs[j]) + ch.offset * n * oe;
        if (wout[j] == Where::Pageable && staged) dst = out_pin_[j] + ch.offset * n * oe;
        FKB_CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s_d2h_));
      }
      FKB_CHECK_CUDA(cudaEventRecord(ev_d2h_[ci], s_d2h_));
    }
  }
  // Pageable outputs: copy each chunk out of pinned staging as soon as it has landed.
  bool any_pageable_out = false;
  for (Where w : wout) any_pageable_out |= w == Where::Pageable;
  if (any_pageable_out && staged) {
    NvtxRange r("copy out of pinned staging");
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      FKB_CHECK_CUDA(cudaEventSynchronize(ev_d2h_[ci]));
      const Chunk ch = chunks[ci];
      for (size_t j = 0; j < io.outputs.size(); ++j) {
        if (wout[j] != Where::Pageable) continue;
        const int64_t n = prog_.values[prog_.outputs[j]].n;
        staging_memcpy(static_cast<char*>(io.outputs[j]) + ch.offset * n * oe, out_pin_[j] + ch.offset * n * oe,
                       static_cast<size_t>(ch.count * n * oe));
      }
    }
  }
  FKB_CHECK_CUDA(cudaStreamSynchronize(s_d2h_));
  if (custom_) custom_->rethrow();  // a custom layer's host call failed during this run

  const size_t last = chunks.size() - 1;
  last_.h2d = elapsed_s(ev_start_, ev_h2d_[last]);
  last_.compute = elapsed_s(ev_comp0_, ev_comp_[last]);
  last_.d2h = elapsed_s(ev_d2h0_, ev_d2h_[last]);
  last_.total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace fkb::cuda
