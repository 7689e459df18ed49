// fkb_mpi_bench: time per step of the MPI layer's modes in one run (BENCHMARKS.md: "MPI node-aggregate vs
// per-rank: on 4 ranks x 512 columns sharing one GPU, aggregate <= 0.5 x the per-rank time per step").
//
//   mpirun -np 4 fkb_mpi_bench MODEL [--ncol 512] [--modes per-rank,node-aggregate] [--steps 50] [--warmup 5]
//          [--rounds 5] [--device auto] [--precision fp32] [--threads 0] [--max-batch 4096] [--json OUT] [--tol T]
//
// A step = every rank predicts its `ncol` random columns; its time is the slowest rank's (barrier before,
// max-reduce after). The modes' steps are interleaved in --rounds rounds, so load drift hits all alike. Before timing,
// each mode's outputs are checked against a single-thread CPU fkb::Runtime on the same columns (max-abs error / max-abs
// reference <= tol). Prints the median / min / max step time per mode, the ratio node-aggregate / per-rank, and each
// mode's per-rank report (phases); --json writes all.
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fkb/mpi.hpp"
#include "fkb/runtime.hpp"

namespace {

struct Args {
  std::string model;
  int64_t ncol = 512;
  std::vector<std::string> modes = {"per-rank", "node-aggregate"};
  int steps = 50, warmup = 5, rounds = 5;
  std::string device = "auto", precision = "fp32", json;
  int threads = 0;
  int64_t max_batch = 4096;
  double tol = -1;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  while (b <= s.size()) {
    const size_t e = s.find(',', b);
    out.push_back(s.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  return out;
}

bool parse(int argc, char** argv, Args& a, std::string& err) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        err = std::string("missing value for ") + name;
        return nullptr;
      }
      return argv[++i];
    };
    const char* v = nullptr;
    if (k == "--ncol") {
      if (!(v = val("--ncol"))) return false;
      a.ncol = std::atoll(v);
    } else if (k == "--modes") {
      if (!(v = val("--modes"))) return false;
      a.modes = split(v);
    } else if (k == "--steps") {
      if (!(v = val("--steps"))) return false;
      a.steps = std::atoi(v);
    } else if (k == "--rounds") {
      if (!(v = val("--rounds"))) return false;
      a.rounds = std::atoi(v);
    } else if (k == "--warmup") {
      if (!(v = val("--warmup"))) return false;
      a.warmup = std::atoi(v);
    } else if (k == "--device") {
      if (!(v = val("--device"))) return false;
      a.device = v;
    } else if (k == "--precision") {
      if (!(v = val("--precision"))) return false;
      a.precision = v;
    } else if (k == "--threads") {
      if (!(v = val("--threads"))) return false;
      a.threads = std::atoi(v);
    } else if (k == "--max-batch") {
      if (!(v = val("--max-batch"))) return false;
      a.max_batch = std::atoll(v);
    } else if (k == "--json") {
      if (!(v = val("--json"))) return false;
      a.json = v;
    } else if (k == "--tol") {
      if (!(v = val("--tol"))) return false;
      a.tol = std::atof(v);
    } else if (!k.empty() && k[0] == '-') {
      err = "unknown option " + k;
      return false;
    } else if (a.model.empty()) {
      a.model = k;
    } else {
      err = "unexpected argument " + k;
      return false;
    }
  }
  if (a.model.empty())
    err = "usage: fkb_mpi_bench MODEL [--ncol N] [--modes per-rank,node-aggregate] [--steps N] "
          "[--warmup N] [--rounds N] [--device D] [--precision P] [--threads N] [--max-batch N] [--json OUT] "
          "[--tol T]";
  if (a.ncol < 1 || a.steps < 1 || a.warmup < 0 || a.rounds < 1)
    err = "--ncol, --steps and --rounds must be >= 1, --warmup >= 0";
  return err.empty();
}

struct Timing {
  double median = 0, min = 0, max = 0;
};

Timing summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  Timing t;
  t.min = v.front();
  t.max = v.back();
  const size_t n = v.size();
  t.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Args a;
  std::string err;
  if (!parse(argc, argv, a, err)) {
    if (rank == 0) std::fprintf(stderr, "fkb_mpi_bench: %s\n", err.c_str());
    MPI_Finalize();
    return 2;
  }
  int rc = 0;
  nlohmann::json out;
  try {
    const fkb::Model model = fkb::Model::load(a.model);
    const int64_t nin = model.input_size(0), nout = model.output_size(0);
    // Random inputs (never zeros), different per rank, seeded.
    std::mt19937 gen(12345u + 7919u * static_cast<unsigned>(rank));
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(a.ncol * nin)), y(static_cast<size_t>(a.ncol * nout)),
        ref(static_cast<size_t>(a.ncol * nout));
    for (auto& v : x) v = dist(gen);
    {
      fkb::RuntimeOptions ro;
      ro.device = "cpu";
      ro.threads = 1;
      ro.verbose = false;
      ro.max_batch = a.ncol;
      fkb::Runtime rt(model, ro);
      rt.predict(x.data(), a.ncol, ref.data());
    }
    double refmax = 0;
    for (float v : ref) refmax = std::max(refmax, static_cast<double>(std::fabs(v)));
    const double tol = a.tol >= 0 ? a.tol : (a.precision == "fp32" ? 1e-4 : 5e-2);

    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    out["bench"] = "fkb_mpi_bench";
    out["host"] = host;
    out["model"] = a.model;
    out["n_inputs"] = nin;
    out["n_outputs"] = nout;
    out["ranks"] = size;
    out["ncol_per_rank"] = a.ncol;
    out["steps"] = a.steps;
    out["warmup"] = a.warmup;
    out["rounds"] = a.rounds;
    out["device"] = a.device;
    out["precision"] = a.precision;
    out["modes"] = nlohmann::json::object();
    std::vector<std::pair<std::string, Timing>> results;

    // All sessions first (each checked against the reference), then the timed steps in interleaved rounds
    // (mode A, mode B, mode A, ...) so a drift in machine load hits every mode alike.
    std::vector<std::unique_ptr<fkb::mpi::Session>> sessions;
    std::vector<double> check_error;
    for (const std::string& mode : a.modes) {
      fkb::mpi::SessionOptions so;
      so.mode = mode;
      so.device = a.device;
      so.precision = a.precision;
      so.threads = a.threads;
      so.max_batch = a.max_batch;
      so.verbose = true;
      sessions.push_back(std::make_unique<fkb::mpi::Session>(MPI_COMM_WORLD, model, so));
      fkb::mpi::Session& s = *sessions.back();
      std::fill(y.begin(), y.end(), std::nanf(""));
      s.predict(x.data(), a.ncol, y.data());
      double e = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        const double d = std::fabs(static_cast<double>(y[i]) - ref[i]);
        e = std::isnan(d) ? INFINITY : std::max(e, d);
      }
      double rel = refmax > 0 ? e / refmax : e, worst = 0;
      MPI_Allreduce(&rel, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
      check_error.push_back(worst);
      if (!(worst <= tol)) {
        if (rank == 0)
          std::fprintf(stderr, "fkb_mpi_bench: mode %s: outputs differ from the CPU reference: error %.3g > %.3g\n",
                       mode.c_str(), worst, tol);
        rc = 1;
      }
      for (int i = 0; i < a.warmup; ++i) s.predict(x.data(), a.ncol, y.data());
      s.reset_stats();
    }
    // Per step: its time (slowest rank) and the MPI layer's own cost in it, the step time less the slowest
    // runtime's h2d + compute + d2h in that step (what aggregation adds: counts, packing, hand-overs, waking).
    std::vector<std::vector<double>> steps(sessions.size()), overhead(sessions.size());
    const int per_round = (a.steps + a.rounds - 1) / a.rounds;
    auto runtime_seconds = [](const fkb::mpi::Session& s) {
      const fkb::mpi::RankStats& st = s.stats();
      return st.h2d + st.compute + st.d2h;
    };
    for (int round = 0; round < a.rounds; ++round) {
      for (size_t k = 0; k < sessions.size(); ++k) {
        for (int i = 0; i < per_round; ++i) {
          const double r0 = runtime_seconds(*sessions[k]);
          MPI_Barrier(MPI_COMM_WORLD);
          const double t0 = MPI_Wtime();
          sessions[k]->predict(x.data(), a.ncol, y.data());
          double t[2] = {MPI_Wtime() - t0, runtime_seconds(*sessions[k]) - r0}, tmax[2] = {0, 0};
          MPI_Allreduce(t, tmax, 2, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
          steps[k].push_back(tmax[0]);
          overhead[k].push_back(tmax[0] - tmax[1]);
        }
      }
    }
    for (size_t k = 0; k < sessions.size(); ++k) {
      fkb::mpi::Session& s = *sessions[k];
      const std::string mode = fkb::mpi::mode_name(s.mode());
      const Timing t = summarize(steps[k]);
      const Timing ov = summarize(overhead[k]);
      // The cost of the MPI layer itself: step time less the slowest runtime's h2d + compute + d2h per call.
      const fkb::mpi::Report r = s.report();
      double runtime_ms = 0;
      for (const auto& pr : r.per_rank)
        if (pr.stats.calls > 0)
          runtime_ms = std::max(runtime_ms, 1e3 * (pr.stats.h2d + pr.stats.compute + pr.stats.d2h) / pr.stats.calls);
      results.emplace_back(mode, t);
      if (rank == 0) {
        std::printf("\n== mode %s: step median %.3f ms (min %.3f, max %.3f) over %zu steps; slowest runtime's "
                    "h2d+compute+d2h %.3f ms/call (mean); MPI-layer overhead per step median %.3f ms (min %.3f); "
                    "check error %.2e\n",
                    mode.c_str(), 1e3 * t.median, 1e3 * t.min, 1e3 * t.max, steps[k].size(), runtime_ms,
                    1e3 * ov.median, 1e3 * ov.min, check_error[k]);
        std::fputs(r.text().c_str(), stdout);
        std::fflush(stdout);
      }
      nlohmann::json m;
      m["step_ms"] = {{"median", 1e3 * t.median}, {"min", 1e3 * t.min}, {"max", 1e3 * t.max}};
      m["check_error"] = check_error[k];
      m["slowest_runtime_ms_per_call"] = runtime_ms;
      m["overhead_ms"] = {{"median", 1e3 * ov.median}, {"min", 1e3 * ov.min}, {"max", 1e3 * ov.max}};
      m["report"] = nlohmann::json::parse(r.json());
      out["modes"][mode] = m;
    }
    const Timing* per = nullptr;
    const Timing* agg = nullptr;
    for (const auto& p : results) {
      if (p.first == "per-rank" || p.first == "cpu") per = per ? per : &p.second;
      if (p.first == "node-aggregate") agg = &p.second;
    }
    if (rank == 0) {
      std::printf("\n%-16s %12s %12s %12s %14s\n", "mode", "median ms", "min ms", "max ms", "overhead ms");
      for (size_t k = 0; k < results.size(); ++k) {
        const auto& p = results[k];
        std::printf("%-16s %12.3f %12.3f %12.3f %14.3f\n", p.first.c_str(), 1e3 * p.second.median, 1e3 * p.second.min,
                    1e3 * p.second.max, 1e3 * summarize(overhead[k]).median);
      }
      if (per && agg) {
        std::printf("node-aggregate / per-rank (median time per step): %.3f  [%d ranks x %lld columns, %s, host %s]\n",
                    agg->median / per->median, size, static_cast<long long>(a.ncol), a.model.c_str(), host);
      }
    }
    if (per && agg) out["ratio_aggregate_over_per_rank"] = agg->median / per->median;
    if (rank == 0 && !a.json.empty()) {
      std::ofstream f(a.json);
      f << out.dump(1) << "\n";
      if (!f) {
        std::fprintf(stderr, "fkb_mpi_bench: cannot write %s\n", a.json.c_str());
        rc = 1;
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fkb_mpi_bench (rank %d): %s\n", rank, e.what());
    rc = 1;
  }
  int worst_rc = 0;
  MPI_Allreduce(&rc, &worst_rc, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return worst_rc;
}
