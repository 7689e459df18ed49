// `fkb bench MODEL`: time predict() per batch size (BENCHMARKS.md "Method").
//
// Random inputs (never zeros), outputs checked before timing: finite, and on the CPU equal within the fp32
// contract (1e-5 relative) to a fresh single-threaded CPU run (on other devices the error against a CPU run
// is reported). The reference covers the first 16384 columns of each batch. Then `--warmup` untimed calls and `--iters` timed
// calls; median/min/max microseconds per call and columns per second, printed as a table and written as
// JSON with the machine's description.
#include <dlfcn.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "commands.hpp"
#include "fkb/error.hpp"
#include "fkb/runtime.hpp"

namespace fkb::cli {

namespace {

struct BenchArgs {
  std::string model, device = "auto", precision = "fp32", json_path, config;
  std::vector<int64_t> batches{128, 512, 2048, 8192};
  int threads = 0, warmup = 5, iters = 30;
  bool device_resident = false;
  uint32_t seed = 1234;
};

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      if (c != std::string::npos) return line.substr(line.find_first_not_of(' ', c + 1));
    }
  }
  return "unknown";
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// --device-resident on CUDA: inputs and outputs in device memory, allocated through the CUDA runtime that
// libfkb's CUDA backend already loaded (found with dlopen, so the CLI needs no CUDA at build time). The
// backend recognizes device pointers (cudaPointerGetAttributes) and skips the host transfers.
class CudaBuffers {
 public:
  CudaBuffers() {
    for (int pass = 0; pass < 2 && !lib_; ++pass)
      for (const char* n : {"libcudart.so.13", "libcudart.so.12", "libcudart.so"})
        if ((lib_ = dlopen(n, RTLD_NOW | RTLD_LOCAL | (pass == 0 ? RTLD_NOLOAD : 0)))) break;
    if (!lib_)
      throw_error(Status::CudaError, "--device-resident: cannot load the CUDA runtime (libcudart.so): " +
                                         std::string(dlerror() ? dlerror() : "not found"));
    malloc_ = reinterpret_cast<int (*)(void**, size_t)>(dlsym(lib_, "cudaMalloc"));
    free_ = reinterpret_cast<int (*)(void*)>(dlsym(lib_, "cudaFree"));
    memcpy_ = reinterpret_cast<int (*)(void*, const void*, size_t, int)>(dlsym(lib_, "cudaMemcpy"));
    sync_ = reinterpret_cast<int (*)()>(dlsym(lib_, "cudaDeviceSynchronize"));
    set_device_ = reinterpret_cast<int (*)(int)>(dlsym(lib_, "cudaSetDevice"));
    if (!malloc_ || !free_ || !memcpy_ || !sync_ || !set_device_)
      throw_error(Status::CudaError, "--device-resident: the CUDA runtime lacks cudaMalloc/cudaMemcpy");
  }
  ~CudaBuffers() {
    for (void* p : owned_) free_(p);
  }
  void set_device(int d) { check(set_device_(d), "cudaSetDevice"); }
  float* alloc(size_t n) {
    void* p = nullptr;
    check(malloc_(&p, n * sizeof(float)), "cudaMalloc");
    owned_.push_back(p);
    return static_cast<float*>(p);
  }
  void to_device(float* d, const float* h, size_t n) { check(memcpy_(d, h, n * sizeof(float), 1), "cudaMemcpy H2D"); }
  void to_host(float* h, const float* d, size_t n) { check(memcpy_(h, d, n * sizeof(float), 2), "cudaMemcpy D2H"); }
  void sync() { check(sync_(), "cudaDeviceSynchronize"); }

 private:
  static void check(int rc, const char* what) {
    if (rc != 0) throw_error(Status::CudaError, std::string("--device-resident: ") + what + " failed (error " +
                                                    std::to_string(rc) + ")");
  }
  void* lib_ = nullptr;
  int (*malloc_)(void**, size_t) = nullptr;
  int (*free_)(void*) = nullptr;
  int (*memcpy_)(void*, const void*, size_t, int) = nullptr;
  int (*sync_)() = nullptr;
  int (*set_device_)(int) = nullptr;
  std::vector<void*> owned_;
};

double max_rel_err(const std::vector<float>& got, const std::vector<float>& ref) {
  double e = 0, m = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    e = std::max(e, std::fabs(static_cast<double>(got[i]) - ref[i]));
    m = std::max(m, std::fabs(static_cast<double>(ref[i])));
  }
  return m > 0 ? e / m : e;
}

void run_bench(const BenchArgs& a) {
  if (a.batches.empty()) throw_error(Status::InvalidArgument, "--batch needs at least one batch size");
  for (auto b : a.batches)
    if (b < 1) throw_error(Status::InvalidArgument, "batch sizes must be >= 1, got " + std::to_string(b));
  if (a.iters < 1 || a.warmup < 0) throw_error(Status::InvalidArgument, "--iters must be >= 1 and --warmup >= 0");
  Model::LoadOptions lo;
  lo.config_path = a.config;
  const Model model = Model::load(a.model, lo);
  const int64_t max_batch = *std::max_element(a.batches.begin(), a.batches.end());

  RuntimeOptions ro;
  ro.device = a.device;
  ro.precision = a.precision;
  ro.threads = a.threads;
  ro.max_batch = max_batch;
  ro.verbose = true;
  Runtime rt(model, ro);
  const bool on_cpu = rt.backend_name() == "cpu";
  if (a.device_resident && on_cpu)
    std::fprintf(stderr, "fkb bench: --device-resident only applies to CUDA devices; ignored on the CPU\n");
  const int threads = a.threads > 0 ? a.threads : omp_get_max_threads();
  std::unique_ptr<CudaBuffers> cuda;
  if (a.device_resident && !on_cpu) {
    cuda = std::make_unique<CudaBuffers>();
    const size_t colon = a.device.find(':');
    cuda->set_device(colon == std::string::npos ? 0 : std::stoi(a.device.substr(colon + 1)));
  }

  nlohmann::json out;
  out["fkb_version"] = version();
  out["date"] = now_utc();
  out["machine"] = {{"cpu_model", cpu_model()}, {"logical_cpus", static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN))}};
  out["model"] = {{"path", a.model},
                  {"name", model.info.name},
                  {"params", model.param_count()},
                  {"flops_per_column", model.flops_per_column()}};
  out["device"] = rt.device_name();
  out["backend"] = rt.backend_name();
  out["precision"] = a.precision;
  out["threads"] = on_cpu ? threads : 0;
  out["device_resident"] = a.device_resident;
  out["warmup"] = a.warmup;
  out["iters"] = a.iters;
  out["results"] = nlohmann::json::array();

  std::printf("model %s (%s), device %s, precision %s\n", a.model.c_str(), model.info.name.c_str(),
              rt.device_name().c_str(), a.precision.c_str());
  std::printf("%10s %12s %12s %12s %14s %10s %12s\n", "batch", "median_us", "min_us", "max_us", "columns/s",
              "GFLOP/s", "max_rel_err");
  std::mt19937 gen(a.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t batch : a.batches) {
    std::vector<std::vector<float>> xs, ys, refs;
    std::vector<const float*> xp;
    std::vector<float*> yp, rp;
    for (int i = 0; i < model.num_inputs(); ++i) {
      xs.emplace_back(static_cast<size_t>(batch * model.input_size(i)));
      for (auto& v : xs.back()) v = normal(gen);
      xp.push_back(xs.back().data());
    }
    for (int o = 0; o < model.num_outputs(); ++o) {
      ys.emplace_back(static_cast<size_t>(batch * model.output_size(o)));
      refs.emplace_back(ys.back().size());
      yp.push_back(ys.back().data());
      rp.push_back(refs.back().data());
    }
    rt.predict(xp, batch, yp);
    // Reference: a fresh CPU Runtime on the first columns (each column is independent of the others):
    // single-threaded when benchmarking the CPU, all cores otherwise (large GPU batches).
    const int64_t ref_cols = std::min<int64_t>(batch, 16384);
    {
      RuntimeOptions ref_opt;
      ref_opt.device = "cpu";
      ref_opt.threads = on_cpu ? 1 : 0;
      ref_opt.max_batch = ref_cols;
      ref_opt.verbose = false;
      Runtime ref(model, ref_opt);
      ref.predict(xp, ref_cols, rp);
    }
    double err = 0;
    for (int o = 0; o < model.num_outputs(); ++o) {
      for (float v : ys[o])
        if (!std::isfinite(v))
          throw_error(Status::Internal, "bench check failed: non-finite output for batch " + std::to_string(batch));
      const size_t n = static_cast<size_t>(ref_cols * model.output_size(o));
      err = std::max(err, max_rel_err(std::vector<float>(ys[o].begin(), ys[o].begin() + n),
                                      std::vector<float>(refs[o].begin(), refs[o].begin() + n)));
    }
    if (on_cpu && err > 1e-5)
      throw_error(Status::Internal, "bench check failed: batch " + std::to_string(batch) +
                                        " differs from the single-threaded reference by " + std::to_string(err));

    std::vector<const float*> txp = xp;
    std::vector<float*> typ = yp;
    if (cuda) {  // time device-resident buffers; check them once against the host run
      for (size_t i = 0; i < xs.size(); ++i) {
        float* d = cuda->alloc(xs[i].size());
        cuda->to_device(d, xs[i].data(), xs[i].size());
        txp[i] = d;
      }
      for (size_t o = 0; o < ys.size(); ++o) typ[o] = cuda->alloc(ys[o].size());
      rt.predict(txp, batch, typ);
      cuda->sync();
      std::vector<float> back;
      for (size_t o = 0; o < ys.size(); ++o) {
        back.resize(ys[o].size());
        cuda->to_host(back.data(), typ[o], back.size());
        back.resize(static_cast<size_t>(ref_cols * model.output_size(static_cast<int>(o))));
        err = std::max(err, max_rel_err(back, std::vector<float>(refs[o].begin(), refs[o].begin() + back.size())));
      }
    }
    for (int i = 0; i < a.warmup; ++i) rt.predict(txp, batch, typ);
    std::vector<double> us(static_cast<size_t>(a.iters));
    for (int i = 0; i < a.iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      rt.predict(txp, batch, typ);
      if (cuda) cuda->sync();
      const auto t1 = std::chrono::steady_clock::now();
      us[i] = std::chrono::duration<double, std::micro>(t1 - t0).count();
    }
    std::vector<double> sorted = us;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    const double median = n % 2 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
    const double cols = static_cast<double>(batch) / (median * 1e-6);
    const double gflops = cols * static_cast<double>(model.flops_per_column()) * 1e-9;
    std::printf("%10lld %12.1f %12.1f %12.1f %14.4g %10.2f %12.2e\n", static_cast<long long>(batch), median,
                sorted.front(), sorted.back(), cols, gflops, err);
    std::fflush(stdout);
    out["results"].push_back({{"batch", batch},
                              {"median_us", median},
                              {"min_us", sorted.front()},
                              {"max_us", sorted.back()},
                              {"columns_per_s", cols},
                              {"gflops", gflops},
                              {"max_rel_err_vs_cpu_reference", err}, {"reference_columns", ref_cols}});
  }
  if (!a.json_path.empty()) {
    std::ofstream f(a.json_path);
    if (!f) throw_error(Status::FileError, "cannot write '" + a.json_path + "'");
    f << out.dump(2) << "\n";
    if (!f) throw_error(Status::FileError, "cannot write '" + a.json_path + "'");
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  auto* sub = app.add_subcommand("bench", "Time predict() on random inputs for a list of batch sizes");
  sub->add_option("model", args->model, "Keras model file")->required();
  sub->add_option("--device", args->device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  sub->add_option("--precision", args->precision, "fp32 | tf32 | bf16 | fp16")->capture_default_str();
  sub->add_option("--batch", args->batches, "batch sizes (columns), comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  sub->add_option("--threads", args->threads, "CPU threads (0 = OpenMP's default: OMP_NUM_THREADS when set, else all cores)")->capture_default_str();
  sub->add_option("--warmup", args->warmup, "untimed calls per batch size")->capture_default_str();
  sub->add_option("--iters", args->iters, "timed calls per batch size")->capture_default_str();
  sub->add_option("--json", args->json_path, "write the results as JSON to this file");
  sub->add_option("--config", args->config, "architecture file for weights-only .h5 files");
  sub->add_option("--seed", args->seed, "random input seed")->capture_default_str();
  sub->add_flag("--device-resident", args->device_resident,
                "CUDA: inputs and outputs stay in device memory (no host transfers in the timing)");
  sub->callback([args] { run_bench(*args); });
}

}  // namespace fkb::cli
