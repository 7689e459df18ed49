// Formatting of the per-rank statistics: a min / median / max table over ranks, and JSON.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fkb/mpi.hpp"

namespace fkb {
namespace mpi {

namespace {

struct Summary {
  double min = 0, median = 0, max = 0;
};

Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  s.min = v.front();
  s.max = v.back();
  s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  return s;
}

using Getter = double (*)(const RankStats&);

struct Metric {
  const char* name;  // JSON key
  const char* label;
  Getter get;
  bool time;  // seconds (shown as ms per call in the table)
};

const Metric kMetrics[] = {
    {"calls", "calls", [](const RankStats& s) { return static_cast<double>(s.calls); }, false},
    {"columns", "columns (own)", [](const RankStats& s) { return static_cast<double>(s.columns); }, false},
    {"batch_columns", "columns run", [](const RankStats& s) { return static_cast<double>(s.batch_columns); }, false},
    {"batches", "runtime batches", [](const RankStats& s) { return static_cast<double>(s.batches); }, false},
    {"pack", "pack", [](const RankStats& s) { return s.pack; }, true},
    {"unpack", "unpack", [](const RankStats& s) { return s.unpack; }, true},
    {"h2d", "H2D", [](const RankStats& s) { return s.h2d; }, true},
    {"compute", "compute", [](const RankStats& s) { return s.compute; }, true},
    {"d2h", "D2H", [](const RankStats& s) { return s.d2h; }, true},
    {"wait", "wait", [](const RankStats& s) { return s.wait; }, true},
    {"total", "total", [](const RankStats& s) { return s.total; }, true},
};

double per_call_ms(const RankStats& s, double seconds) { return s.calls > 0 ? 1e3 * seconds / s.calls : 0.0; }

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

}  // namespace

std::string Report::text() const {
  std::string out;
  out += "fkb_mpi report: mode " + mode + ", model " + model + " (" + std::to_string(n_inputs) + " -> " +
         std::to_string(n_outputs) + "), " + std::to_string(ranks) + " rank(s) on " + std::to_string(nodes) +
         " node(s), " + std::to_string(groups) + " runtime(s)";
  if (!memory_model.empty()) out += ", shared window memory model " + memory_model;
  out += "\n";
  // Runtimes: distinct device descriptions with how many ranks run one.
  std::vector<std::pair<std::string, int>> devs;
  for (const auto& r : per_rank) {
    if (!r.leader) continue;
    auto it = std::find_if(devs.begin(), devs.end(), [&](const auto& d) { return d.first == r.device; });
    if (it == devs.end())
      devs.emplace_back(r.device, 1);
    else
      ++it->second;
  }
  out += "  runtimes:";
  for (size_t i = 0; i < devs.size(); ++i)
    out += (i ? ", " : " ") + std::to_string(devs[i].second) + " x " + devs[i].first;
  out += "\n";
  char line[256];
  std::snprintf(line, sizeof(line), "  %-22s %12s %12s %12s   (over %d ranks)\n", "", "min", "median", "max", ranks);
  out += line;
  for (const Metric& m : kMetrics) {
    std::vector<double> v;
    for (const auto& r : per_rank) v.push_back(m.time ? per_call_ms(r.stats, m.get(r.stats)) : m.get(r.stats));
    const Summary s = summarize(v);
    const std::string label = m.time ? std::string(m.label) + " [ms/call]" : std::string(m.label);
    const char* f = m.time ? "%12.4f" : "%12.0f";
    std::snprintf(line, sizeof(line), "  %-22s %s %s %s\n", label.c_str(), fmt(f, s.min).c_str(),
                  fmt(f, s.median).c_str(), fmt(f, s.max).c_str());
    out += line;
  }
  return out;
}

std::string Report::json() const {
  nlohmann::json j;
  j["fkb_mpi_report"] = 1;
  j["mode"] = mode;
  j["model"] = model;
  j["n_inputs"] = n_inputs;
  j["n_outputs"] = n_outputs;
  j["ranks"] = ranks;
  j["nodes"] = nodes;
  j["runtimes"] = groups;
  j["memory_model"] = memory_model;
  nlohmann::json summary = nlohmann::json::object();
  for (const Metric& m : kMetrics) {
    std::vector<double> v, per_call;
    for (const auto& r : per_rank) {
      v.push_back(m.get(r.stats));
      if (m.time) per_call.push_back(per_call_ms(r.stats, m.get(r.stats)));
    }
    const Summary s = summarize(v);
    const std::string key = m.time ? std::string(m.name) + "_s" : std::string(m.name);
    summary[key] = {{"min", s.min}, {"median", s.median}, {"max", s.max}};
    if (m.time) {
      const Summary p = summarize(per_call);
      summary[std::string(m.name) + "_ms_per_call"] = {{"min", p.min}, {"median", p.median}, {"max", p.max}};
    }
  }
  j["summary"] = summary;
  nlohmann::json ranks_j = nlohmann::json::array();
  for (const auto& r : per_rank) {
    nlohmann::json x;
    x["rank"] = r.rank;
    x["node"] = r.node;
    x["local_rank"] = r.local_rank;
    x["leader"] = r.leader;
    x["device"] = r.device;
    x["calls"] = r.stats.calls;
    x["columns"] = r.stats.columns;
    x["batch_columns"] = r.stats.batch_columns;
    x["batches"] = r.stats.batches;
    x["pack_s"] = r.stats.pack;
    x["unpack_s"] = r.stats.unpack;
    x["h2d_s"] = r.stats.h2d;
    x["compute_s"] = r.stats.compute;
    x["d2h_s"] = r.stats.d2h;
    x["wait_s"] = r.stats.wait;
    x["total_s"] = r.stats.total;
    ranks_j.push_back(x);
  }
  j["per_rank"] = ranks_j;
  return j.dump(1);
}

}  // namespace mpi
}  // namespace fkb
