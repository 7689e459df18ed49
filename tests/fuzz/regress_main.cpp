// The regression driver: the fuzz targets built without libFuzzer (any compiler), run on saved inputs. CTest runs
//   fkb_fuzz_regress <target> tests/fuzz/regressions/<target> [seed files...]
// for every target, so an input that once crashed a target stays a test. Directories are read in name order;
// README files and dot-files in them are skipped. Exit status 0 when every input ran; a finding aborts (as under
// libFuzzer), after the driver has printed the input's path; an input that takes longer than 20 s
// (FKB_FUZZ_INPUT_SECONDS) fails the run.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;

#define FKB_FUZZ_TARGET(name) extern "C" int fkb_fuzz_##name(const uint8_t* data, size_t size);
#include "fuzz_targets.inc"
#undef FKB_FUZZ_TARGET

namespace {

struct Target {
  const char* name;
  int (*run)(const uint8_t*, size_t);
};

const Target kTargets[] = {
#define FKB_FUZZ_TARGET(name) {#name, fkb_fuzz_##name},
#include "fuzz_targets.inc"
#undef FKB_FUZZ_TARGET
};

void usage() {
  std::fprintf(stderr, "usage: fkb_fuzz_regress TARGET FILE|DIR...\ntargets:");
  for (const Target& t : kTargets)
    std::fprintf(stderr, " %s", t.name);
  std::fprintf(stderr, "\n");
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    usage();
    return 2;
  }
  const Target* target = nullptr;
  for (const Target& t : kTargets)
    if (std::strcmp(t.name, argv[1]) == 0)
      target = &t;
  if (!target) {
    std::fprintf(stderr, "fkb_fuzz_regress: unknown target '%s'\n", argv[1]);
    usage();
    return 2;
  }
  std::vector<std::string> files;
  for (int i = 2; i < argc; ++i) {
    std::error_code ec;
    if (fs::is_directory(argv[i], ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::directory_iterator(argv[i])) {
        const std::string leaf = e.path().filename().string();
        if (!e.is_regular_file() || leaf[0] == '.' || leaf.rfind("README", 0) == 0)
          continue;
        in_dir.push_back(e.path().string());
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else if (fs::is_regular_file(argv[i], ec)) {
      files.push_back(argv[i]);
    } else {
      std::fprintf(stderr, "fkb_fuzz_regress: no such file or directory: %s\n", argv[i]);
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "fkb_fuzz_regress: no inputs\n");
    return 2;
  }
  const char* env = std::getenv("FKB_FUZZ_INPUT_SECONDS");
  const double limit_s = env && std::atof(env) > 0 ? std::atof(env) : 20.0;
  int slow = 0;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "fkb_fuzz_regress: cannot read %s\n", f.c_str());
      return 2;
    }
    std::fprintf(stderr, "%s: %s (%zu bytes)\n", target->name, f.c_str(), bytes.size());
    std::fflush(stderr);
    const auto t0 = std::chrono::steady_clock::now();
    target->run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > limit_s) {
      std::fprintf(stderr, "%s: %s took %.1f s (limit %.0f s)\n", target->name, f.c_str(), s, limit_s);
      ++slow;
    }
  }
  if (slow)
    return 1;
  std::printf("%s: %zu inputs ran\n", target->name, files.size());
  return 0;
}
