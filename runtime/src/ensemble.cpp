// fkb::Ensemble (fkb/ensemble.hpp): member discovery (directory, list file, YAML), the architecture check,
// device selection, chunking, and the CPU engine (one blocked loop over all members).
#include "fkb/ensemble.hpp"

#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <fstream>
#include <sstream>

#include "cpu/call_threads.hpp"
#include "cpu/cpu_kernels.hpp"
#include "cpu/cpu_program.hpp"
#include "custom_call.hpp"
#include "ensemble_engine.hpp"
#include "fkb/backend.hpp"
#include "loader/config_text.hpp"
#include "loader/limits.hpp"
#include "loader/load_internal.hpp"
#include "plugin_loader.hpp"
#include "workspace_pool.hpp"

namespace fkb {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool has_ext(const std::string& path, std::initializer_list<const char*> exts) {
  const std::string l = lower(path);
  for (const char* e : exts) {
    const size_t n = std::strlen(e);
    if (l.size() > n && l.compare(l.size() - n, n, e) == 0) return true;
  }
  return false;
}

std::string resolve(const fs::path& base_dir, const std::string& p) {
  const fs::path q(p);
  return (q.is_absolute() ? q : base_dir / q).lexically_normal().string();
}

std::vector<std::string> members_of_directory(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (!it->is_regular_file(ec2)) continue;
    const std::string name = it->path().filename().string();
    if (has_ext(name, {".keras", ".h5"})) out.push_back(it->path().lexically_normal().string());
  }
  if (ec) throw_error(Status::FileError, "cannot read the ensemble directory '" + dir + "': " + ec.message());
  std::sort(out.begin(), out.end());
  if (out.empty())
    throw_error(Status::FormatError, "the ensemble directory '" + dir + "' holds no Keras files (*.keras, *.h5)");
  return out;
}

std::vector<std::string> members_of_list(const std::string& path) {
  // Read whole after a size check (the same limit as a config document), then split into lines.
  const std::string text =
      loader::read_text_file(path, "ensemble list", loader::resolve(LoadLimits{}).max_config_bytes);
  const fs::path dir = fs::path(path).parent_path();
  std::vector<std::string> out;
  std::istringstream f(text);
  std::string line;
  while (std::getline(f, line)) {
    const size_t a = line.find_first_not_of(" \t\r");
    if (a == std::string::npos || line[a] == '#') continue;
    const size_t b = line.find_last_not_of(" \t\r");
    out.push_back(resolve(dir, line.substr(a, b - a + 1)));
  }
  if (out.empty())
    throw_error(Status::FormatError, "the ensemble list '" + path + "' names no members (one model path per line)");
  return out;
}

std::vector<std::string> members_of_path(const std::string& p) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) return members_of_directory(p);
  return members_of_list(p);
}

[[noreturn]] void bad_setting(const std::string& path, const std::string& key, const std::string& what) {
  throw_error(Status::FormatError, "the ensemble config '" + path + "': '" + key + "' " + what);
}

EnsembleSpec read_yaml(const std::string& path) {
  // The loading policy's limits for a text document (size, depth, values after alias expansion), as for a
  // model's YAML config (loader/keras_config.cpp).
  const loader::Limits lim = loader::resolve(LoadLimits{});
  const keras::json doc = keras::parse_document(loader::read_text_file(path, "ensemble config", lim.max_config_bytes),
                                                path, "the ensemble config", true, lim);
  if (!doc.is_object()) throw_error(Status::FormatError, "the ensemble config '" + path + "' is not a YAML mapping");
  const fs::path dir = fs::path(path).parent_path();
  EnsembleSpec spec;
  auto bad = [&](const std::string& key, const std::string& what) { bad_setting(path, key, what); };
  // Scalars arrive typed (yaml_scalar): a path or device that looks like a number is taken as written.
  auto text = [&](const std::string& key, const keras::json& v) -> std::string {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
    bad_setting(path, key, "must be a string");
  };
  auto integer = [&](const std::string& key, const keras::json& v) -> int64_t {
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_string()) {
      const std::string t = v.get<std::string>();
      char* end = nullptr;
      errno = 0;
      const long long n = std::strtoll(t.c_str(), &end, 10);
      if (!t.empty() && *end == '\0' && errno == 0) return n;
    }
    bad_setting(path, key, "must be an integer");
  };
  for (const auto& kv : doc.items()) {
    const std::string& key = kv.key();
    const keras::json& v = kv.value();
    if (key == "members") {
      if (v.is_array()) {
        for (const auto& m : v) {
          if (m.is_array() || m.is_object() || m.is_null()) bad(key, "must list model paths (strings)");
          spec.members.push_back(resolve(dir, text(key, m)));
        }
      } else if (v.is_string() || v.is_number_integer()) {
        spec.members = members_of_path(resolve(dir, text(key, v)));
      } else {
        bad(key, "must be a list of model paths, or a directory / list file");
      }
    } else if (key == "device") {
      spec.options.device = text(key, v);
    } else if (key == "precision") {
      spec.options.precision = text(key, v);
    } else if (key == "max_batch") {
      spec.options.max_batch = integer(key, v);
      if (spec.options.max_batch < 1) bad(key, "must be >= 1");
    } else if (key == "threads") {
      const int64_t t = integer(key, v);
      if (t < 0 || t > std::numeric_limits<int>::max()) bad(key, "must be >= 0");
      spec.options.threads = static_cast<int>(t);
    } else {
      bad(key, "is not an ensemble setting (accepted: members, device, precision, max_batch, threads)");
    }
  }
  if (spec.members.empty()) throw_error(Status::FormatError, "the ensemble config '" + path + "' has no members");
  return spec;
}

std::string act_str(const Node& n) {
  const bool has = n.op == OpKind::Dense || n.op == OpKind::Conv1D || n.op == OpKind::Activation;
  if (!has) return "";
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s(alpha=%g, max=%g, threshold=%g)", n.activation.keras_name.c_str(),
                n.activation.params.alpha, n.activation.params.max_value, n.activation.params.threshold);
  return buf;
}

std::string weight_shapes(const Node& n) {
  std::string s;
  for (const auto& kv : n.weights) s += (s.empty() ? "" : ", ") + kv.first + " " + shape_str(kv.second.shape);
  for (const auto& kv : n.constants) s += (s.empty() ? "" : ", ") + kv.first + " " + shape_str(kv.second.shape);
  return "{" + s + "}";
}

struct DeviceChoice {
  bool cpu = false, cuda = false, automatic = false;
  int index = 0;
};

DeviceChoice parse_device(const std::string& d) {
  DeviceChoice c;
  if (d == "cpu") {
    c.cpu = true;
  } else if (d == "auto") {
    c.automatic = true;
  } else if (d == "cuda") {
    c.cuda = true;
  } else if (d.size() > 5 && d.compare(0, 5, "cuda:") == 0 &&
             d.find_first_not_of("0123456789", 5) == std::string::npos && d.size() <= 14) {
    c.cuda = true;
    c.index = std::atoi(d.c_str() + 5);
  } else {
    throw_error(Status::InvalidArgument, "unknown device '" + d + "'; accepted values: auto, cpu, cuda, cuda:N");
  }
  return c;
}

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// ---------------------------------------------------------------------------------------------------------------------
// The CPU engine

struct FreeDeleter {
  void operator()(float* p) const { std::free(p); }
};

// The member plans are read-only; each call takes a workspace (per thread: a float32 input block, every
// member's output block and one worker of each member plan) from a small pool, so one ensemble may be
// called from many threads at once. Inside a caller's parallel region, or concurrent with other calls, a
// call uses `nested_threads` threads (cpu/call_threads.hpp).
class CpuEnsembleEngine final : public EnsembleEngine {
public:
  CpuEnsembleEngine(const std::vector<const Model*>& members, const CompileOptions& co)
      : nin_(members[0]->input_size(0)), nout_(members[0]->output_size(0)), max_batch_(co.max_batch),
        nested_threads_(std::max(co.nested_threads, 1)) {
    for (const Model* m : members) plans_.push_back(cpu::make_cpu_block_plan(*m, co));
    block_ = plans_[0]->block_size();
    workers_ = plans_[0]->threads();
    for (const auto& p : plans_) {
      block_ = std::min(block_, p->block_size());
      workers_ = std::min(workers_, p->threads());
    }
    const int64_t nm = static_cast<int64_t>(plans_.size());
    // Per worker: the block's input in float32 (float64 callers) and every member's output for the block.
    per_worker_ = round_up(block_ * nin_, 16) + round_up(nm * block_ * nout_, 16);
    pool_.add(make_workspace(workers_));
  }

  bool concurrent_runs() const override { return true; }

  void run(const EnsembleIo& io, int64_t ncol) override {
    const int64_t nm = static_cast<int64_t>(plans_.size());
    // The split into blocks depends on the configured threads only, not on this call's: results are the same
    // whatever the concurrency.
    int64_t bs = block_;
    if (workers_ > 1 && ncol < bs * workers_)
      bs = std::clamp<int64_t>(round_up((ncol + workers_ - 1) / workers_, 8), 8, block_);
    const int64_t nblocks = (ncol + bs - 1) / bs;
    const cpu::CallScope scope;
    const int nt = static_cast<int>(std::min<int64_t>(scope.threads(workers_, nested_threads_), nblocks));
    const size_t need = static_cast<size_t>(std::max(nt, 1));
    auto ws = pool_.acquire([need](const Workspace& w) { return w.workers.size() >= need; },
                            [&] { return make_workspace(static_cast<int>(need)); });
    ErrorSink& errors = ws->errors;
    for (auto& p : plans_) p->begin_parallel_blocks();
    if (nt <= 1) {
      for (int64_t b = 0; b < nblocks && !errors.failed(); ++b)
        block(ws->workers[0], errors, io, b * bs, std::min(bs, ncol - b * bs), nm);
    } else {
#pragma omp parallel num_threads(nt)
      {
        Worker& wk = ws->workers[static_cast<size_t>(omp_get_thread_num())];
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblocks; ++b)
          if (!errors.failed()) block(wk, errors, io, b * bs, std::min(bs, ncol - b * bs), nm);
      }
    }
    errors.rethrow();
  }

  int64_t max_batch() const override { return max_batch_; }
  std::string device_name() const override { return plans_[0]->device_name(); }
  std::string name() const override { return "cpu-blocked"; }

private:
  struct Worker {
    std::unique_ptr<float[], FreeDeleter> mem;                // per_worker_ floats
    std::vector<std::unique_ptr<cpu::BlockWorker>> members;  // one worker of each member's plan
  };
  struct Workspace {
    std::vector<Worker> workers;
    ErrorSink errors;
  };

  std::unique_ptr<Workspace> make_workspace(int nworkers) const {
    auto ws = std::make_unique<Workspace>();
    const size_t bytes = static_cast<size_t>(per_worker_) * sizeof(float);
    for (int w = 0; w < nworkers; ++w) {
      Worker wk;
      void* p = std::aligned_alloc(64, (std::max<size_t>(bytes, 64) + 63) / 64 * 64);
      if (!p) throw_error(Status::OutOfMemory, "ensemble: cannot allocate " + std::to_string(bytes) + " bytes");
      wk.mem.reset(static_cast<float*>(p));
      for (const auto& plan : plans_) wk.members.push_back(plan->make_worker());
      ws->workers.push_back(std::move(wk));
    }
    return ws;
  }

  // Every member on columns [c0, c0 + b), then the reduction. Allocates nothing; never throws.
  void block(Worker& wk, ErrorSink& errors, const EnsembleIo& io, int64_t c0, int64_t b, int64_t nm) const noexcept {
    float* ws = wk.mem.get();
    float* xbuf = ws;
    float* obuf = ws + round_up(block_ * nin_, 16);
    const bool f64 = io.dtype == DType::F64;
    const float* x;
    if (f64) {
      cpu::convert_f64_to_f32(static_cast<const double*>(io.x) + c0 * nin_, xbuf, b * nin_);
      x = xbuf;
    } else {
      x = static_cast<const float*>(io.x) + c0 * nin_;
    }
    // Member outputs: straight into the caller's float32 `members`, else the worker's buffer.
    const bool direct = io.members && !f64;
    auto out_of = [&](int64_t m) {
      return direct ? static_cast<float*>(io.members) + m * io.member_stride + c0 * nout_ : obuf + m * block_ * nout_;
    };
    for (int64_t m = 0; m < nm; ++m) {
      float* y = out_of(m);
      errors.set(plans_[static_cast<size_t>(m)]->run_block(*wk.members[static_cast<size_t>(m)], &x, &y, b));
    }
    const int64_t n = b * nout_;
    const double inv = 1.0 / static_cast<double>(nm);
    for (int64_t e = 0; e < n; ++e) {
      double s = 0.0;
      for (int64_t m = 0; m < nm; ++m) s += out_of(m)[e];
      const double mean = s * inv;
      const int64_t at = c0 * nout_ + e;
      if (f64)
        static_cast<double*>(io.mean)[at] = mean;
      else
        static_cast<float*>(io.mean)[at] = static_cast<float>(mean);
      if (io.spread) {
        double q = 0.0;
        for (int64_t m = 0; m < nm; ++m) {
          const double d = out_of(m)[e] - mean;
          q += d * d;
        }
        const double sd = std::sqrt(q * inv);
        if (f64)
          static_cast<double*>(io.spread)[at] = sd;
        else
          static_cast<float*>(io.spread)[at] = static_cast<float>(sd);
      }
    }
    if (io.members && f64)
      for (int64_t m = 0; m < nm; ++m)
        cpu::convert_f32_to_f64(out_of(m), static_cast<double*>(io.members) + m * io.member_stride + c0 * nout_, n);
  }

  std::vector<std::unique_ptr<cpu::CpuBlockPlan>> plans_;
  int64_t nin_, nout_, max_batch_;
  int64_t block_ = 1;
  int workers_ = 1;
  int64_t per_worker_ = 0;
  int nested_threads_ = 1;
  mutable WorkspacePool<Workspace> pool_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------------------

bool is_ensemble_path(const std::string& path) noexcept {
  try {
    std::error_code ec;
    // A Keras 3 model directory (model.save(path, zipped=False): config.json beside the weights) is one model.
    if (fs::is_directory(path, ec)) return !is_keras_model_dir(path);
    return has_ext(path, {".yaml", ".yml", ".txt", ".lst", ".list"});
  } catch (...) {
    return false;
  }
}

EnsembleSpec read_ensemble_spec(const std::string& path) {
  if (path.empty()) throw_error(Status::InvalidArgument, "the ensemble path is empty");
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw_error(Status::FileError, "cannot open ensemble '" + path + "': " + std::strerror(ENOENT));
  if (fs::is_directory(path, ec)) return EnsembleSpec{members_of_directory(path), {}};
  if (has_ext(path, {".yaml", ".yml"})) return read_yaml(path);
  if (has_ext(path, {".txt", ".lst", ".list"})) return EnsembleSpec{members_of_list(path), {}};
  throw_error(Status::InvalidArgument, "'" + path +
                                           "' does not name an ensemble: give a directory of Keras files, a list "
                                           "file (.txt, .lst, .list: one model path per line) or a YAML config "
                                           "(.yaml, .yml) with 'members'");
}

void check_same_architecture(const std::vector<Model>& members, const std::vector<std::string>& names) {
  if (members.empty()) throw_error(Status::InvalidArgument, "an ensemble needs at least one member");
  auto name = [&](size_t i) { return i < names.size() ? names[i] : "#" + std::to_string(i); };
  const Model& a = members[0];
  for (size_t mi = 1; mi < members.size(); ++mi) {
    const Model& b = members[mi];
    const std::string head =
        "ensemble member '" + name(mi) + "' does not have the architecture of member '" + name(0) + "': ";
    auto fail = [&](const std::string& what) { throw_error(Status::ShapeMismatch, head + what); };
    if (b.num_inputs() != a.num_inputs() || b.num_outputs() != a.num_outputs())
      fail("it has " + std::to_string(b.num_inputs()) + " input(s) and " + std::to_string(b.num_outputs()) +
           " output(s), not " + std::to_string(a.num_inputs()) + " and " + std::to_string(a.num_outputs()));
    const size_t n = std::min(a.nodes.size(), b.nodes.size());
    for (size_t i = 0; i < n; ++i) {
      const Node& x = a.nodes[i];
      const Node& y = b.nodes[i];
      const std::string at = "layer '" + y.name + "' (" + y.keras_class + ", layer " + std::to_string(i) + ")";
      const std::string theirs = "'" + x.name + "' (" + x.keras_class + ")";
      if (x.op != y.op || x.keras_class != y.keras_class) fail(at + " is a " + theirs + " in the first member");
      if (x.inputs != y.inputs) fail(at + " takes other inputs than " + theirs);
      if (x.shape != y.shape)
        fail(at + " has output shape " + shape_str(y.shape) + " where " + theirs + " has " + shape_str(x.shape));
      if (act_str(x) != act_str(y))
        fail(at + " has activation " + act_str(y) + " where " + theirs + " has " + act_str(x));
      if (weight_shapes(x) != weight_shapes(y))
        fail(at + " has weights " + weight_shapes(y) + " where " + theirs + " has " + weight_shapes(x));
      if (x.units != y.units || x.use_bias != y.use_bias || x.kernel_size != y.kernel_size || x.stride != y.stride ||
          x.dilation != y.dilation || x.padding != y.padding || x.axis != y.axis || x.epsilon != y.epsilon ||
          x.target_shape != y.target_shape || (x.op == OpKind::Custom && x.config_json != y.config_json))
        fail(at + " has another configuration than " + theirs);
    }
    if (a.nodes.size() != b.nodes.size())
      fail("it has " + std::to_string(b.nodes.size()) + " layers, the first member " + std::to_string(a.nodes.size()));
    if (a.inputs != b.inputs || a.outputs != b.outputs) fail("its inputs/outputs are other layers");
  }
  if (a.num_inputs() != 1 || a.num_outputs() != 1)
    throw_error(Status::Unsupported, "ensemble member '" + name(0) + "' has " + std::to_string(a.num_inputs()) +
                                         " inputs and " + std::to_string(a.num_outputs()) +
                                         " outputs; ensembles run single-input, single-output models");
}

struct Ensemble::Impl {
  std::vector<Model> members;
  std::vector<std::string> names;
  std::unique_ptr<EnsembleEngine> engine;
  int64_t nin = 0, nout = 0;
  std::mutex serial;  // engines that are not safe for concurrent runs (CUDA: one stream, one graph) take turns

  template <typename T> void predict(const T* x, int64_t ncol, T* mean, T* spread, T* mem, DType dt) {
    if (ncol < 0)
      throw_error(Status::InvalidArgument, "ensemble predict: ncol must be >= 0, got " + std::to_string(ncol));
    if (ncol == 0) return;
    if (!x) throw_error(Status::InvalidArgument, "ensemble predict: x is a null pointer");
    if (!mean) throw_error(Status::InvalidArgument, "ensemble predict: mean is a null pointer");
    const int64_t step = engine->max_batch();
    std::unique_lock<std::mutex> turn(serial, std::defer_lock);
    if (!engine->concurrent_runs()) turn.lock();
    EnsembleIo io;
    io.dtype = dt;
    io.member_stride = ncol * nout;
    for (int64_t c0 = 0; c0 < ncol; c0 += step) {
      const int64_t nc = std::min(step, ncol - c0);
      io.x = x + c0 * nin;
      io.mean = mean + c0 * nout;
      io.spread = spread ? spread + c0 * nout : nullptr;
      io.members = mem ? mem + c0 * nout : nullptr;
      engine->run(io, nc);
    }
  }
};

std::vector<Model> load_ensemble_members(const EnsembleSpec& spec, const std::string& path) {
  // The weight limit holds for the ensemble as a whole (README "Loading policy": the sum of all weights), so members
  // each under it cannot add up past it.
  const uint64_t limit = loader::resolve(LoadLimits{}).max_weight_bytes;
  uint64_t total = 0;
  std::vector<Model> models;
  for (size_t i = 0; i < spec.members.size(); ++i) {
    models.push_back(Model::load(spec.members[i]));
    const uint64_t bytes = static_cast<uint64_t>(models.back().param_count()) * sizeof(float);
    if (bytes > limit - total)
      throw_error(Status::FormatError, "the ensemble '" + path + "': member " + std::to_string(i + 1) + " of " +
                                           std::to_string(spec.members.size()) + " ('" + spec.members[i] +
                                           "') brings the members' weights to " + loader::bytes_str(total + bytes) +
                                           ", over the limit of " + loader::bytes_str(limit) +
                                           " (raise it with FKB_MAX_WEIGHT_BYTES)");
    total += bytes;
  }
  return models;
}

Ensemble Ensemble::load(const std::string& path, const EnsembleOptions& options) {
  EnsembleSpec spec = read_ensemble_spec(path);
  EnsembleOptions o = spec.options;
  if (!options.device.empty()) o.device = options.device;
  if (!options.precision.empty()) o.precision = options.precision;
  if (options.max_batch > 0) o.max_batch = options.max_batch;
  if (options.threads > 0) o.threads = options.threads;
  if (options.max_batch < 0 || options.threads < 0)
    throw_error(Status::InvalidArgument, "ensemble: max_batch and threads must be >= 0 (0 = default)");
  o.verbose = options.verbose;
  o.nested_threads = options.nested_threads;
  if (!o.device.empty()) parse_device(o.device);  // a typo fails before the members are read
  if (!o.precision.empty()) parse_precision(o.precision);
  std::vector<Model> models = load_ensemble_members(spec, path);
  return Ensemble(std::move(models), o, spec.members);
}

Ensemble::Ensemble(std::vector<Model> members, const EnsembleOptions& options, std::vector<std::string> names)
    : impl_(std::make_unique<Impl>()) {
  Impl& e = *impl_;
  e.members = std::move(members);
  e.names = std::move(names);
  e.names.resize(e.members.size());
  for (size_t i = 0; i < e.names.size(); ++i)
    if (e.names[i].empty()) e.names[i] = "#" + std::to_string(i);
  check_same_architecture(e.members, e.names);
  e.nin = e.members[0].input_size(0);
  e.nout = e.members[0].output_size(0);

  if (options.max_batch < 0 || options.threads < 0)
    throw_error(Status::InvalidArgument, "ensemble: max_batch and threads must be >= 0 (0 = default)");
  CompileOptions co;
  co.precision = parse_precision(options.precision.empty() ? "fp32" : options.precision);
  co.max_batch = options.max_batch > 0 ? options.max_batch : 4096;
  co.threads = options.threads;
  co.verbose = options.verbose;
  if (options.nested_threads < 1)
    throw_error(Status::InvalidArgument,
                "ensemble: nested_threads must be >= 1, got " + std::to_string(options.nested_threads));
  co.nested_threads = options.nested_threads;
  const DeviceChoice dev = parse_device(options.device.empty() ? "auto" : options.device);
  co.device_index = dev.index;
  std::vector<const Model*> ptrs;
  for (const auto& m : e.members) ptrs.push_back(&m);

  auto make_cuda = [&]() -> std::unique_ptr<EnsembleEngine> {
    // The CUDA engines live in the CUDA plugin; without it this throws a CudaError saying what is missing.
    const CudaPluginV1& cuda = plugin::require_cuda_plugin();
    std::string why;
    const char* force = std::getenv("FKB_ENSEMBLE_CUDA");  // "per-member": skip the batched engine (tests)
    if (force && std::string(force) == "per-member") {
      why = "FKB_ENSEMBLE_CUDA=per-member";
    } else if (auto b = cuda.create_batched_ensemble(ptrs, co, &why)) {
      return b;
    }
    if (options.verbose)
      std::fprintf(stderr, "fkb: ensemble: one CUDA plan per member (the batched-GEMM engine does not apply: %s)\n",
                   why.c_str());
    return cuda.create_per_member_ensemble(ptrs, co);
  };

  if (dev.cpu) {
    e.engine = std::make_unique<CpuEnsembleEngine>(ptrs, co);
  } else if (dev.cuda) {
    e.engine = make_cuda();
  } else {
    std::string fallback;  // why auto runs on the CPU in a CUDA build (runtime.cpp)
    if (built_with_cuda() && cuda_device_count() > 0) {
      try {
        e.engine = make_cuda();
      } catch (const Error& err) {
        if (options.verbose)
          std::fprintf(stderr, "fkb: ensemble: device auto: CUDA failed (%s); falling back to the CPU\n", err.what());
        fallback = std::string("CUDA failed: ") + err.what();
        e.engine.reset();
      }
    } else if (built_with_cuda()) {
      fallback = plugin::cuda_unavailable_reason();
    }
    if (!e.engine) e.engine = std::make_unique<CpuEnsembleEngine>(ptrs, co);
    if (options.verbose)  // the one-line notice, with why a CUDA build runs on the CPU
      std::fprintf(stderr, "fkb: ensemble of %zu members: device auto -> %s (%s%s%s)\n", e.members.size(),
                   e.engine->device_name().c_str(), e.engine->name().c_str(), fallback.empty() ? "" : "; ",
                   fallback.c_str());
  }
}

Ensemble::~Ensemble() = default;
Ensemble::Ensemble(Ensemble&&) noexcept = default;
Ensemble& Ensemble::operator=(Ensemble&&) noexcept = default;

void Ensemble::predict(const float* x, int64_t ncol, float* mean, float* spread, float* members) {
  impl_->predict(x, ncol, mean, spread, members, DType::F32);
}

void Ensemble::predict(const double* x, int64_t ncol, double* mean, double* spread, double* members) {
  impl_->predict(x, ncol, mean, spread, members, DType::F64);
}

int64_t Ensemble::n_members() const { return static_cast<int64_t>(impl_->members.size()); }
int64_t Ensemble::n_inputs() const { return impl_->nin; }
int64_t Ensemble::n_outputs() const { return impl_->nout; }
int64_t Ensemble::max_batch() const { return impl_->engine->max_batch(); }

const Model& Ensemble::member(int i) const {
  if (i < 0 || i >= n_members())
    throw_error(Status::InvalidArgument, "member index " + std::to_string(i) + " out of range: the ensemble has " +
                                             std::to_string(n_members()) + " member(s)");
  return impl_->members[static_cast<size_t>(i)];
}

const std::string& Ensemble::member_name(int i) const {
  member(i);
  return impl_->names[static_cast<size_t>(i)];
}

std::string Ensemble::device_name() const { return impl_->engine->device_name(); }
std::string Ensemble::engine() const { return impl_->engine->name(); }

}  // namespace fkb
