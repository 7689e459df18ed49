// Device assignment by node-local rank (DESIGN.md "MPI"): never by global rank, since ranks are usually
// placed node by node and rank % n_gpus would then pile several nodes' worth of ranks onto GPU 0 of each
// node whenever ranks-per-node is not a multiple of n_gpus.
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "fkb/error.hpp"
#include "fkb/mpi.hpp"

namespace fkb {
namespace mpi {

namespace {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = s.find(',', start);
    out.push_back(trim(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

const char* mode_name(Mode m) {
  switch (m) {
  case Mode::PerRank: return "per-rank";
  case Mode::NodeAggregate: return "node-aggregate";
  case Mode::Cpu: return "cpu";
  }
  return "unknown";
}

Mode parse_mode(const std::string& s) {
  const std::string m = lower(trim(s));
  if (m == "per-rank" || m == "per_rank" || m == "perrank") return Mode::PerRank;
  if (m == "node-aggregate" || m == "node_aggregate" || m == "aggregate") return Mode::NodeAggregate;
  if (m == "cpu") return Mode::Cpu;
  throw_error(Status::InvalidArgument, "unknown MPI mode '" + s + "'; accepted values: per-rank, node-aggregate, cpu");
}

DeviceChoice assign_device(Mode mode, const std::string& option_device, const char* env, int local_rank, int n_gpus) {
  DeviceChoice c;
  if (mode == Mode::Cpu) {
    c.device = "cpu";
    c.source = "mode cpu";
    return c;
  }
  if (local_rank < 0) throw_error(Status::InvalidArgument, "local rank must be >= 0");
  n_gpus = std::max(n_gpus, 0);
  std::string spec, from;
  if (env && *env && !trim(env).empty()) {
    spec = env;
    from = "FKB_DEVICE";
  } else if (!trim(option_device).empty()) {
    spec = option_device;
    from = "option";
  } else {
    spec = "auto";
    from = "default";
  }
  const std::vector<std::string> list = split_list(spec);
  const std::string entry = lower(list[static_cast<size_t>(local_rank) % list.size()]);
  const std::string which =
      list.size() > 1 ? " entry " + std::to_string(local_rank % static_cast<int>(list.size())) + " of '" + spec + "'"
                      : " '" + entry + "'";
  const std::string where = from + which;
  if (entry == "cpu") {
    c.device = "cpu";
    c.source = where;
  } else if (entry == "auto") {
    c.automatic = true;
    if (n_gpus > 0) {
      c.device = "cuda:" + std::to_string(local_rank % n_gpus);
      c.source = where + ": local rank " + std::to_string(local_rank) + " % " + std::to_string(n_gpus) + " GPU(s)";
    } else {
      c.device = "cpu";
      c.source = where + ": no GPU on this node";
    }
  } else if (entry == "cuda" || entry == "gpu") {
    if (n_gpus <= 0)
      throw_error(Status::CudaError, "device 'cuda' requested (" + where +
                                         ") but no usable CUDA device was found on this node (or FKB was built "
                                         "without CUDA); use 'auto' to fall back to the CPU");
    c.device = "cuda:" + std::to_string(local_rank % n_gpus);
    c.source = where + ": local rank " + std::to_string(local_rank) + " % " + std::to_string(n_gpus) + " GPU(s)";
  } else if (entry.rfind("cuda:", 0) == 0 && entry.size() > 5 && entry.size() <= 5 + 9 &&
             entry.find_first_not_of("0123456789", 5) == std::string::npos) {
    c.device = "cuda:" + std::to_string(std::stol(entry.substr(5)));
    c.source = where;
  } else {
    throw_error(Status::InvalidArgument, "bad device '" + list[static_cast<size_t>(local_rank) % list.size()] + "' (" +
                                             from +
                                             "); accepted values: auto, cpu, cuda, cuda:N, or a comma-separated list "
                                             "of them indexed by node-local rank");
  }
  return c;
}

}  // namespace mpi
}  // namespace fkb
