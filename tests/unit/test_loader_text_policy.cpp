// The loading policy for text documents (README "Loading policy"): JSON/YAML size, nesting depth and values after
// YAML alias expansion (loader/keras_config.cpp), the .keras zip directory checks (loader/keras_zip.cpp), the
// ensemble readers, and the .npy header-vs-file-size check (io/npy.cpp).
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fkb/ensemble.hpp"
#include "fkb/error.hpp"
#include "io/array_io.hpp"
#include "loader/keras_config.hpp"
#include "loader/limits.hpp"
#include "loader/load_internal.hpp"
#include "test_util.hpp"

using namespace fkb;
using keras::json;

namespace {

// The error of `f` (an fkb::Error), or a test failure.
Error error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected an fkb::Error, got: " << e.what();
    return Error(Status::Ok, "");
  }
  ADD_FAILURE() << "expected an fkb::Error";
  return Error(Status::Ok, "");
}

void expect_message(const Error& e, std::initializer_list<const char*> parts) {
  EXPECT_EQ(e.status(), Status::FormatError) << e.what();
  for (const char* p : parts)
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "'" << p << "' in: " << e.what();
}

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// Run `f` on a thread with a small stack (2 MiB, a quarter of the usual 8 MiB): deep documents must be
// refused by counting, never by recursing.
void on_small_stack(const std::function<void()>& f) {
  struct Ctx {
    const std::function<void()>* f;
  } ctx{&f};
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 2 * 1024 * 1024);
  pthread_t t;
  ASSERT_EQ(pthread_create(
                &t, &attr,
                [](void* p) -> void* {
                  (*static_cast<Ctx*>(p)->f)();
                  return nullptr;
                },
                &ctx),
            0);
  pthread_join(t, nullptr);
  pthread_attr_destroy(&attr);
}

loader::Limits limits() { return loader::resolve(LoadLimits{}); }

json parse(const std::string& text, bool yaml, const loader::Limits& lim = limits()) {
  return keras::parse_config_text(text, "doc", yaml, lim);
}

std::string billion_laughs(const std::string& item) {
  std::string s = "lol0: &a0 [";
  for (int i = 0; i < 9; ++i)
    s += (i ? ", \"" : "\"") + item + "\"";
  s += "]\n";
  for (int k = 1; k < 10; ++k) {
    s += "lol" + std::to_string(k) + ": &a" + std::to_string(k) + " [";
    for (int i = 0; i < 9; ++i)
      s += (i ? ", *a" : "*a") + std::to_string(k - 1);
    s += "]\n";
  }
  return s;
}

} // namespace

TEST(LoaderTextPolicy, JsonDepthIsLimitedWithoutRecursion) {
  on_small_stack([] {
    const Error e = error_of([] { parse(nested(100000), false); });
    expect_message(e, {"doc: the model config is nested deeper than 512 levels", "LoadLimits::max_config_depth"});
  });
  loader::Limits lim = limits();
  lim.max_config_depth = 8;
  EXPECT_EQ(parse(nested(8), false, lim).dump(), nested(8));
  expect_message(error_of([&] { parse("{\"a\": " + nested(8) + "}", false, lim); }), {"deeper than 8 levels"});
  // Real configs stay far below: the deepest fixture config nests about 10 levels.
  EXPECT_NO_THROW(parse("{\"a\": " + nested(500) + "}", false));
}

TEST(LoaderTextPolicy, JsonValuesAndSizeAreLimited) {
  loader::Limits lim = limits();
  lim.max_config_values = 100;
  std::string ok = "[";
  for (int i = 0; i < 99; ++i)
    ok += i ? ",1" : "1";
  ok += "]";
  EXPECT_EQ(parse(ok, false, lim).size(), 99u); // 99 numbers and the array: 100 values
  expect_message(error_of([&] { parse("{\"k\": " + ok + "}", false, lim); }),
                 {"holds more than 100 values", "LoadLimits::max_config_values"});

  lim = limits();
  lim.max_config_bytes = 1024;
  const std::string big = "{\"a\": \"" + std::string(2000, 'x') + "\"}";
  for (bool yaml : {false, true})
    expect_message(error_of([&] { parse(big, yaml, lim); }),
                   {"doc: the model config is 2.0 KiB, over the limit of 1 KiB", "FKB_MAX_CONFIG_BYTES"});
}

TEST(LoaderTextPolicy, YamlDepthIsLimitedWithoutRecursion) {
  on_small_stack([] {
    for (const std::string& doc : {nested(100000), "a: " + nested(100000)}) {
      const Error e = error_of([&] { parse(doc, true); });
      expect_message(e, {"nested deeper than 400 levels (at line 1, column", "at most 400 for YAML"});
    }
    // Block nesting: each level one more space of indentation.
    std::string block;
    for (int i = 0; i < 1000; ++i)
      block += std::string(i, ' ') + "a:\n";
    expect_message(error_of([&] { parse(block, true); }), {"nested deeper than 400 levels"});
    std::string dashes;
    for (int i = 0; i < 100000; ++i)
      dashes += "- ";
    expect_message(error_of([&] { parse(dashes + "x\n", true); }), {"nested deeper than 400 levels"});
  });
  loader::Limits lim = limits();
  lim.max_config_depth = 3;
  EXPECT_NO_THROW(parse("a: [[1]]", true, lim));
  expect_message(error_of([&] { parse("a: [[[1]]]", true, lim); }), {"nested deeper than 3 levels"});
}

TEST(LoaderTextPolicy, YamlAliasesAreCountedExpanded) {
  // 500 bytes that expand to 387 million values: refused by arithmetic, before anything is built.
  const auto t0 = std::chrono::steady_clock::now();
  expect_message(error_of([] { parse(billion_laughs("lol"), true); }),
                 {"doc: the model config holds more than 10000000 values once its YAML aliases are expanded (at line ",
                  "LoadLimits::max_config_values"});
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);
  // Few values, long strings: the expanded text is limited like a document's size.
  expect_message(error_of([] { parse(billion_laughs(std::string(4000, 'x')), true); }),
                 {"grows past 64 MiB once its YAML aliases are expanded", "FKB_MAX_CONFIG_BYTES"});
  // Aliases multiply depth too.
  const std::string deep = "a: &a " + nested(300) + "\nb: [[[[[[[[[[*a]]]]]]]]]]\nc: " + std::string(100, '[') + "*a" +
                           std::string(100, ']') + "\n";
  expect_message(error_of([&] { parse(deep, true); }), {"nested deeper than 400 levels", "after expanding aliases"});
  // Small expansions are fine and give the same values as writing them out.
  EXPECT_EQ(parse("a: &x {k: [1, 'two', null]}\nb: *x\nc: [*x, *x]\n", true),
            json::parse(R"({"a": {"k": [1, "two", null]}, "b": {"k": [1, "two", null]},
                            "c": [{"k": [1, "two", null]}, {"k": [1, "two", null]}]})"));
}

TEST(LoaderTextPolicy, YamlScalarsAndKeysConvertAsBefore) {
  const json j = parse("s: 'quoted 1'\ni: 12\nf: 0.5\nb: true\nB: False\nn: ~\ne:\ninf: .inf\nt: text\n1: one\n", true);
  EXPECT_EQ(j["s"], "quoted 1");
  EXPECT_EQ(j["i"], 12);
  EXPECT_EQ(j["f"], 0.5);
  EXPECT_EQ(j["b"], true);
  EXPECT_EQ(j["B"], false);
  EXPECT_TRUE(j["n"].is_null());
  EXPECT_TRUE(j["e"].is_null());
  EXPECT_TRUE(std::isinf(j["inf"].get<double>()));
  EXPECT_EQ(j["t"], "text");
  EXPECT_EQ(j["1"], "one");
  expect_message(error_of([] { parse("? [a, b]\n: c\n", true); }), {"has a mapping key that is not a string"});
  expect_message(error_of([] { parse("a: [unclosed\n", true); }), {"doc: the model config is not valid YAML"});
  expect_message(error_of([] { parse("{\"a\": ", false); }), {"doc: the model config is not valid JSON"});
  EXPECT_TRUE(parse("", true).is_null());
}

TEST(LoaderTextPolicy, EnsembleYamlAndListUseTheLimits) {
  const std::string dir = test::temp_dir();
  const std::string bomb = dir + "/bomb.yaml";
  std::ofstream(bomb) << billion_laughs("m.h5") << "members: *a9\n";
  expect_message(error_of([&] { read_ensemble_spec(bomb); }),
                 {"the ensemble config holds more than 10000000 values once its YAML aliases are expanded"});
  const std::string deep = dir + "/deep.yaml";
  std::ofstream(deep) << "members: " << nested(100000) << "\n";
  on_small_stack([&] { expect_message(error_of([&] { read_ensemble_spec(deep); }), {"nested deeper than 400"}); });

  const std::string list = dir + "/big.txt";
  std::ofstream(list) << std::string(3000, '#') << "\nm.keras\n";
  ::setenv("FKB_MAX_CONFIG_BYTES", "2K", 1);
  const Error e = error_of([&] { read_ensemble_spec(list); });
  const Error ey = error_of([&] { read_ensemble_spec(bomb); });
  ::unsetenv("FKB_MAX_CONFIG_BYTES");
  expect_message(e, {"the ensemble list '", "over the limit of 2 KiB"});
  expect_message(ey, {"the ensemble config grows past 2 KiB once its YAML aliases are expanded"});

  // Settings keep their types: numbers that are paths or devices, integers given as strings.
  const std::string ok = dir + "/ok.yaml";
  std::ofstream(ok) << "members: [a.keras, 2024.h5]\nmax_batch: '8'\nthreads: 2\ndevice: cpu\n";
  const EnsembleSpec spec = read_ensemble_spec(ok);
  ASSERT_EQ(spec.members.size(), 2u);
  EXPECT_EQ(spec.options.max_batch, 8);
  EXPECT_EQ(spec.options.threads, 2);
  std::ofstream(ok) << "members: [a.keras]\nmax_batch: [1]\n";
  expect_message(error_of([&] { read_ensemble_spec(ok); }), {"'max_batch' must be an integer"});
}

// ---------------------------------------------------------------------------------------------------------------------
// .keras zips: a stored-only zip written here, so the directory can say what a test needs.

namespace {

uint32_t crc32_of(const std::string& d) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : d) {
    c ^= b;
    for (int k = 0; k < 8; ++k)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void put16(std::string& s, uint32_t v) { s += static_cast<char>(v & 0xff), s += static_cast<char>((v >> 8) & 0xff); }
void put32(std::string& s, uint32_t v) { put16(s, v & 0xffff), put16(s, v >> 16); }

std::vector<char> stored_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::string out, cd;
  for (const auto& [name, data] : entries) {
    const uint32_t offset = static_cast<uint32_t>(out.size());
    std::string common;
    put16(common, 20), put16(common, 0), put16(common, 0), put16(common, 0), put16(common, 0x21);
    put32(common, crc32_of(data)), put32(common, static_cast<uint32_t>(data.size()));
    put32(common, static_cast<uint32_t>(data.size())), put16(common, static_cast<uint32_t>(name.size())),
        put16(common, 0);
    put32(out, 0x04034b50), out += common, out += name, out += data;
    put32(cd, 0x02014b50), put16(cd, 20), cd += common;
    put16(cd, 0), put16(cd, 0), put16(cd, 0), put32(cd, 0), put32(cd, offset), cd += name;
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out += cd;
  put32(out, 0x06054b50), put16(out, 0), put16(out, 0), put16(out, static_cast<uint32_t>(entries.size()));
  put16(out, static_cast<uint32_t>(entries.size())), put32(out, static_cast<uint32_t>(cd.size()));
  put32(out, cd_offset), put16(out, 0);
  return std::vector<char>(out.begin(), out.end());
}

std::vector<std::pair<std::string, std::string>> fixture_entries() {
  // The Keras-made fixture's three entries, read through a zip of them (Keras stores them uncompressed).
  std::ifstream f(test::fixture_path("k3_dense_chain.keras"), std::ios::binary);
  const std::string z((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::pair<std::string, std::string>> out;
  size_t p = 0;
  while (p + 30 <= z.size() && std::memcmp(z.data() + p, "PK\x03\x04", 4) == 0) {
    auto u16 = [&](size_t o) {
      return static_cast<uint32_t>(static_cast<unsigned char>(z[o]) | (static_cast<unsigned char>(z[o + 1]) << 8));
    };
    auto u32 = [&](size_t o) { return u16(o) | (u16(o + 2) << 16); };
    const uint32_t csize = u32(p + 18), nlen = u16(p + 26), elen = u16(p + 28);
    EXPECT_EQ(u16(p + 8), 0u) << "the fixture's entries are stored";
    out.emplace_back(z.substr(p + 30, nlen), z.substr(p + 30 + nlen + elen, csize));
    p += 30 + nlen + elen + csize;
  }
  EXPECT_EQ(out.size(), 3u);
  return out;
}

} // namespace

TEST(LoaderTextPolicy, KerasZipDirectoryIsCheckedBeforeInflating) {
  auto entries = fixture_entries();
  Model::LoadOptions opt;
  EXPECT_NO_THROW(load_keras_zip_buffer(stored_zip(entries), "m.keras", opt));

  opt.limits.max_config_bytes = 1024;
  expect_message(error_of([&] { load_keras_zip_buffer(stored_zip(entries), "m.keras", opt); }),
                 {"'m.keras': zip entry 'config.json' declares ", "uncompressed, over the limit of 1 KiB",
                  "FKB_MAX_CONFIG_BYTES"});

  opt = {};
  auto many = entries;
  for (int i = 0; i < 10001; ++i)
    many.emplace_back("assets/" + std::to_string(i), "");
  expect_message(error_of([&] { load_keras_zip_buffer(stored_zip(many), "m.keras", opt); }),
                 {"'m.keras': the zip holds 10004 entries, over the limit of 10000"});

  // A config nested too deeply inside the zip: refused by the JSON limits, naming the entry.
  for (auto& [name, data] : entries)
    if (name == "config.json")
      data = data.substr(0, data.rfind('}')) + ", \"x\": " + nested(100000) + "}";
  on_small_stack([&] {
    expect_message(error_of([&] { load_keras_zip_buffer(stored_zip(entries), "m.keras", Model::LoadOptions{}); }),
                   {"m.keras:config.json: the model config is nested deeper than 512 levels"});
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// .npy: the header's shape against the file size, before allocating.

namespace {

void write_npy_header(const std::string& path, const std::string& shape, size_t data_bytes) {
  std::string d = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  d += std::string((64 - (10 + d.size() + 1) % 64) % 64, ' ') + "\n";
  std::string h = "\x93NUMPY\x01";
  h += '\0';
  put16(h, static_cast<uint32_t>(d.size()));
  std::ofstream(path, std::ios::binary) << h << d << std::string(data_bytes, '\0');
}

} // namespace

TEST(LoaderTextPolicy, NpyShapeMustMatchTheFileSize) {
  const std::string dir = test::temp_dir();
  write_npy_header(dir + "/ok.npy", "(3, 4)", 48);
  EXPECT_EQ(io::read_npy(dir + "/ok.npy").shape, (std::vector<int64_t>{3, 4}));

  write_npy_header(dir + "/bomb.npy", "(1000000000000, 94)", 48);
  expect_message(error_of([&] { io::read_npy(dir + "/bomb.npy"); }),
                 {"truncated data: the header's shape (1000000000000, 94) of '<f4' needs 342.0 TiB of data, the file "
                  "holds 48 bytes after its header"});

  write_npy_header(dir + "/short.npy", "(3, 4)", 47);
  expect_message(error_of([&] { io::read_npy(dir + "/short.npy"); }), {"needs 48 bytes of data, the file holds 47"});

  write_npy_header(dir + "/long.npy", "(3, 4)", 52);
  expect_message(error_of([&] { io::read_npy(dir + "/long.npy"); }), {"holds 52 bytes after its header (trailing"});

  write_npy_header(dir + "/overflow.npy", "(9223372036854775807, 9223372036854775807)", 48);
  expect_message(error_of([&] { io::read_npy(dir + "/overflow.npy"); }), {"declares more data than any file can hold"});
  write_npy_header(dir + "/range.npy", "(99999999999999999999999, 1)", 48);
  expect_message(error_of([&] { io::read_npy(dir + "/range.npy"); }), {"bad shape"});

  write_npy_header(dir + "/empty.npy", "(0, 94)", 0);
  EXPECT_EQ(io::read_npy(dir + "/empty.npy").shape, (std::vector<int64_t>{0, 94}));
}

TEST(LoaderTextPolicy, NpyFromAPipeReadsWhatArrives) {
  // A pipe has no size: the buffer grows with the data, and a short stream is refused.
  const std::string dir = test::temp_dir();
  write_npy_header(dir + "/ok.npy", "(3, 4)", 48);
  write_npy_header(dir + "/bomb.npy", "(1000000000000, 94)", 48);
  for (const char* name : {"ok.npy", "bomb.npy"}) {
    const std::string fifo = dir + "/fifo.npy";
    ::unlink(fifo.c_str());
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::thread writer([&] {
      std::ifstream in(dir + "/" + name, std::ios::binary);
      std::ofstream(fifo, std::ios::binary) << in.rdbuf();
    });
    if (std::string(name) == "ok.npy") {
      EXPECT_EQ(io::read_npy(fifo).shape, (std::vector<int64_t>{3, 4}));
    } else {
      expect_message(error_of([&] { io::read_npy(fifo); }), {"needs 342.0 TiB of data, the file holds 48 bytes"});
    }
    writer.join();
  }
}
