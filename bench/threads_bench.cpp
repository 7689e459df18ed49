// Throughput of N caller threads sharing one compiled model against N threads each with its own model
// (issue 10): the shared plan must cost nothing next to separate copies (one copy of the weights per rank
// instead of one per thread). Each thread predicts `ncol` columns per call for `seconds`; the figure is
// columns per second summed over the threads, the median of `repeats` runs, both modes in the same run.
// Every thread's output is checked bitwise against a serial call before timing.
//
//   fkb_threads_bench MODEL [--threads 1,2,4] [--ncol 37,512] [--seconds 1] [--repeats 3] [--json OUT]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fkb/runtime.hpp"

namespace {

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoll(item));
  return v;
}

struct Args {
  std::string model, json;
  std::vector<int64_t> threads = {1, 2, 4}, ncol = {37, 512};
  double seconds = 1.0;
  int repeats = 3;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(k + " needs a value");
      return argv[++i];
    };
    if (k == "--threads") a.threads = parse_list(val());
    else if (k == "--ncol") a.ncol = parse_list(val());
    else if (k == "--seconds") a.seconds = std::stod(val());
    else if (k == "--repeats") a.repeats = std::stoi(val());
    else if (k == "--json") a.json = val();
    else if (!k.empty() && k[0] != '-' && a.model.empty()) a.model = k;
    else throw std::runtime_error("unknown argument '" + k + "'");
  }
  if (a.model.empty()) throw std::runtime_error("usage: fkb_threads_bench MODEL [--threads 1,2,4] [--ncol 37,512] "
                                                "[--seconds 1] [--repeats 3] [--json OUT]");
  return a;
}

fkb::RuntimeOptions options() {
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.threads = 1;  // one core per caller thread in both modes: the comparison is about sharing the plan
  o.verbose = false;
  return o;
}

// Columns per second of `nt` threads, thread t calling runtime rts[t] (all the same object when shared).
double throughput(const std::vector<fkb::Runtime*>& rts, int64_t ncol, const std::vector<float>& x,
                  const std::vector<float>& ref, double seconds, bool* ok) {
  const size_t nt = rts.size();
  const int64_t nout = rts[0]->n_outputs();
  std::atomic<bool> go{false}, stop{false};
  std::atomic<int64_t> columns{0};
  std::atomic<bool> good{true};
  std::vector<std::thread> pool;
  for (size_t t = 0; t < nt; ++t)
    pool.emplace_back([&, t] {
      std::vector<float> y(static_cast<size_t>(ncol * nout));
      rts[t]->predict(x.data(), ncol, y.data());  // warm-up, and the correctness check
      if (std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) != 0) good = false;
      while (!go.load()) std::this_thread::yield();
      int64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        rts[t]->predict(x.data(), ncol, y.data());
        n += ncol;
      }
      columns += n;
    });
  const auto t0 = std::chrono::steady_clock::now();
  go = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  *ok = *ok && good.load();
  return static_cast<double>(columns.load()) / s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Args a = parse(argc, argv);
    const fkb::Model model = fkb::Model::load(a.model);
    nlohmann::json out;
    out["model"] = a.model;
    out["seconds"] = a.seconds;
    out["repeats"] = a.repeats;
    out["hardware_concurrency"] = std::thread::hardware_concurrency();
    out["results"] = nlohmann::json::array();
    bool ok = true;
    std::printf("%-8s %-6s %16s %16s %8s\n", "threads", "ncol", "shared col/s", "separate col/s", "ratio");
    for (int64_t ncol : a.ncol) {
      fkb::Runtime serial(model, options());
      std::vector<float> x(static_cast<size_t>(ncol * serial.n_inputs()));
      for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i % 9973));
      std::vector<float> ref(static_cast<size_t>(ncol * serial.n_outputs()));
      serial.predict(x.data(), ncol, ref.data());
      for (int64_t nt : a.threads) {
        fkb::Runtime shared(model, options());
        std::vector<std::unique_ptr<fkb::Runtime>> own;
        std::vector<fkb::Runtime*> shared_ptrs(static_cast<size_t>(nt), &shared), own_ptrs;
        for (int64_t t = 0; t < nt; ++t) {
          own.push_back(std::make_unique<fkb::Runtime>(model, options()));
          own_ptrs.push_back(own.back().get());
        }
        std::vector<double> s, p;
        for (int r = 0; r < a.repeats; ++r) {  // alternate the modes so drifts in machine load hit both
          s.push_back(throughput(shared_ptrs, ncol, x, ref, a.seconds, &ok));
          p.push_back(throughput(own_ptrs, ncol, x, ref, a.seconds, &ok));
        }
        std::sort(s.begin(), s.end());
        std::sort(p.begin(), p.end());
        const double sm = s[s.size() / 2], pm = p[p.size() / 2];
        std::printf("%-8lld %-6lld %16.4g %16.4g %8.3f\n", static_cast<long long>(nt), static_cast<long long>(ncol), sm,
                    pm, sm / pm);
        out["results"].push_back({{"threads", nt}, {"ncol", ncol}, {"shared_columns_per_s", s},
                                  {"separate_columns_per_s", p}, {"shared_median", sm}, {"separate_median", pm},
                                  {"ratio_shared_over_separate", sm / pm}});
      }
    }
    out["outputs_bitwise_equal_serial"] = ok;
    if (!a.json.empty()) std::ofstream(a.json) << out.dump(2) << "\n";
    if (!ok) {
      std::fprintf(stderr, "fkb_threads_bench: a thread's output differs from the serial result\n");
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fkb_threads_bench: %s\n", e.what());
    return 1;
  }
}
