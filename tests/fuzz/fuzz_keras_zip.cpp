// Fuzz target: a Keras 3 .keras zip (config.json, metadata.json, model.weights.h5) read from memory
// (fkb::load_keras_zip_buffer), then compiled and run on two columns when it loads.
//
// Under libFuzzer a custom mutator mostly mutates one entry of the zip and writes the zip again, with valid CRCs:
// byte-level mutations of a zip almost always break an entry's CRC, which libzip checks first, so they would never
// reach the config parser or the HDF5 weights reader. One mutation in four is byte-level, for the zip's own
// structure (directory, local headers, sizes).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fuzz_common.hpp"
#include "loader/load_internal.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<char> bytes(data, data + size);
  fkb::Model::LoadOptions opt;
  opt.limits = fkb_fuzz::load_limits();
  fkb_fuzz::run_guarded([&] { fkb_fuzz::smoke_run(fkb::load_keras_zip_buffer(bytes, "fuzz.keras", opt)); });
  return 0;
}

#ifdef FKB_LIBFUZZER
#include <zip.h>

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

struct Entry {
  std::string name;
  std::vector<uint8_t> bytes;
  bool stored = false;
};

constexpr uint64_t kMaxEntryBytes = uint64_t{1} << 20;
constexpr zip_int64_t kMaxEntries = 16;

// The entries of a zip in memory; false when libzip cannot read it whole (then the mutation is byte-level).
bool read_zip(const uint8_t* data, size_t size, std::vector<Entry>* out) {
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t* src = zip_source_buffer_create(data, size, 0, &ze);
  zip_error_fini(&ze);
  if (!src)
    return false;
  zip_t* z = zip_open_from_source(src, ZIP_RDONLY, nullptr);
  if (!z) {
    zip_source_free(src);
    return false;
  }
  bool ok = true;
  const zip_int64_t n = zip_get_num_entries(z, 0);
  if (n <= 0 || n > kMaxEntries)
    ok = false;
  for (zip_int64_t i = 0; ok && i < n; ++i) {
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, i, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) || !st.name || st.size > kMaxEntryBytes) {
      ok = false;
      break;
    }
    Entry e;
    e.name = st.name;
    e.stored = (st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE;
    e.bytes.resize(st.size);
    zip_file_t* f = zip_fopen_index(z, i, 0);
    if (!f) {
      ok = false;
      break;
    }
    const zip_int64_t got = e.bytes.empty() ? 0 : zip_fread(f, e.bytes.data(), e.bytes.size());
    zip_fclose(f);
    if (got != static_cast<zip_int64_t>(e.bytes.size()))
      ok = false;
    out->push_back(std::move(e));
  }
  zip_discard(z);
  return ok;
}

// A zip of `entries`, written by libzip into memory (compressed like the original entries, mtime 0).
std::vector<uint8_t> write_zip(const std::vector<Entry>& entries) {
  std::vector<uint8_t> out;
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t* src = zip_source_buffer_create(nullptr, 0, 0, &ze);
  zip_error_fini(&ze);
  if (!src)
    return out;
  zip_t* z = zip_open_from_source(src, ZIP_TRUNCATE, nullptr);
  if (!z) {
    zip_source_free(src);
    return out;
  }
  zip_source_keep(src);
  for (const Entry& e : entries) {
    zip_source_t* s = zip_source_buffer(z, e.bytes.data(), e.bytes.size(), 0);
    const zip_int64_t idx = s ? zip_file_add(z, e.name.c_str(), s, ZIP_FL_OVERWRITE | ZIP_FL_ENC_RAW) : -1;
    if (idx < 0) {
      if (s)
        zip_source_free(s);
      continue;
    }
    zip_set_file_compression(z, static_cast<zip_uint64_t>(idx), e.stored ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 1);
    zip_file_set_mtime(z, static_cast<zip_uint64_t>(idx), 0, 0);
  }
  if (zip_close(z) != 0) {
    zip_discard(z);
    zip_source_free(src);
    return out;
  }
  if (zip_source_open(src) == 0) {
    zip_source_seek(src, 0, SEEK_END);
    const zip_int64_t n = zip_source_tell(src);
    zip_source_seek(src, 0, SEEK_SET);
    if (n > 0) {
      out.resize(static_cast<size_t>(n));
      if (zip_source_read(src, out.data(), out.size()) != n)
        out.clear();
    }
    zip_source_close(src);
  }
  zip_source_free(src);
  return out;
}

} // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::minstd_rand rng(seed);
  std::vector<Entry> entries;
  if (rng() % 4 == 0 || !read_zip(data, size, &entries) || entries.empty())
    return LLVMFuzzerMutate(data, size, max_size);
  Entry& e = entries[rng() % entries.size()];
  if (e.bytes.empty())
    e.bytes.push_back('{');
  const size_t used = e.bytes.size();
  e.bytes.resize(used + used / 4 + 64);
  e.bytes.resize(LLVMFuzzerMutate(e.bytes.data(), used, e.bytes.size()));
  if (rng() % 16 == 0)
    e.stored = !e.stored;
  const std::vector<uint8_t> out = write_zip(entries);
  if (out.empty() || out.size() > max_size)
    return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}
#endif
