// The HDF5 part of the loading policy (README "Loading policy"), on copies of Keras-made fixtures changed with the
// HDF5 C API: soft links that resolve inside the file load, everything that leaves the file is refused, plugin
// loading is off while FKB reads and restored after. The crafted CLI cases are in tests/hostile/craft_h5.py.
#include <H5PLpublic.h>
#include <gtest/gtest.h>
#include <hdf5.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "loader/load_internal.hpp"
#include "test_util.hpp"

using fkb::test::fixture_path;

namespace {

std::string copy_fixture(const std::string& name, const std::string& dst_name) {
  const std::string dst = fkb::test::temp_dir() + "/" + dst_name;
  std::ifstream in(fixture_path(name), std::ios::binary);
  std::ofstream out(dst, std::ios::binary | std::ios::trunc);
  out << in.rdbuf();
  return dst;
}

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

fkb::Model::LoadOptions k3_weights_options() {
  fkb::Model::LoadOptions o;
  o.config_path = fixture_path("k3_weights.json");
  return o;
}

const fkb::Array& dense_kernel(const fkb::Model& m) {
  for (const auto& n : m.nodes)
    if (n.name == "dense")
      return n.weights.at("kernel");
  throw std::runtime_error("no node 'dense'");
}

std::string error_of(const std::function<void()>& f, fkb::Status* status = nullptr) {
  try {
    f();
  } catch (const fkb::Error& e) {
    if (status)
      *status = e.status();
    return e.what();
  }
  return "(no error)";
}

// Replace layers/dense/vars/0 of a Keras 3 weights file by a link made by `link(file)`, after moving the dataset to
// /stash/kernel (so the file still holds it).
template <class F> std::string relinked_k3_weights(const std::string& name, F link) {
  const std::string p = copy_fixture("k3_weights.weights.h5", name);
  hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  EXPECT_GE(f, 0);
  hid_t g = H5Gcreate2(f, "/stash", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
  EXPECT_GE(H5Lmove(f, "layers/dense/vars/0", f, "/stash/kernel", H5P_DEFAULT, H5P_DEFAULT), 0);
  link(f);
  H5Fclose(f);
  return p;
}

} // namespace

TEST(LoaderH5Policy, SoftLinksThatResolveInsideTheFileLoad) {
  const fkb::Model ref = fkb::Model::load(fixture_path("k3_weights.weights.h5"), k3_weights_options());
  // Absolute target.
  const std::string abs = relinked_k3_weights("soft_abs.weights.h5", [](hid_t f) {
    EXPECT_GE(H5Lcreate_soft("/stash/kernel", f, "layers/dense/vars/0", H5P_DEFAULT, H5P_DEFAULT), 0);
  });
  EXPECT_EQ(dense_kernel(fkb::Model::load(abs, k3_weights_options())).data, dense_kernel(ref).data);
  // Relative target (resolved in the link's own group), through a chain of two soft links.
  const std::string rel = relinked_k3_weights("soft_rel.weights.h5", [](hid_t f) {
    EXPECT_GE(H5Lcreate_soft("/stash/kernel", f, "layers/dense/vars/k", H5P_DEFAULT, H5P_DEFAULT), 0);
    EXPECT_GE(H5Lcreate_soft("k", f, "layers/dense/vars/0", H5P_DEFAULT, H5P_DEFAULT), 0);
  });
  EXPECT_EQ(dense_kernel(fkb::Model::load(rel, k3_weights_options())).data, dense_kernel(ref).data);
  // A soft link on the way to the weight (the layer group).
  const std::string via = copy_fixture("k3_weights.weights.h5", "soft_group.weights.h5");
  {
    hid_t f = H5Fopen(via.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    ASSERT_GE(H5Lmove(f, "layers/dense", f, "/moved_dense", H5P_DEFAULT, H5P_DEFAULT), 0);
    ASSERT_GE(H5Lcreate_soft("/moved_dense", f, "layers/dense", H5P_DEFAULT, H5P_DEFAULT), 0);
    H5Fclose(f);
  }
  EXPECT_EQ(dense_kernel(fkb::Model::load(via, k3_weights_options())).data, dense_kernel(ref).data);
}

TEST(LoaderH5Policy, SoftLinkThroughAnExternalLinkIsRefused) {
  // The soft link's target resolves through an external link: the walk checks the target's links too.
  const std::string other = fkb::test::temp_dir() + "/soft_other.h5";
  {
    hid_t f = H5Fcreate(other.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {10, 12};
    hid_t sp = H5Screate_simple(2, dims, nullptr);
    hid_t d = H5Dcreate2(f, "kernel", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    std::vector<float> v(120, 1.0f);
    H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
  }
  const std::string p = relinked_k3_weights("soft_ext.weights.h5", [&](hid_t f) {
    EXPECT_GE(H5Lcreate_external(other.c_str(), "/", f, "/outside", H5P_DEFAULT, H5P_DEFAULT), 0);
    EXPECT_GE(H5Lcreate_soft("/outside/kernel", f, "layers/dense/vars/0", H5P_DEFAULT, H5P_DEFAULT), 0);
  });
  fkb::Status st = fkb::Status::Ok;
  const std::string msg = error_of([&] { fkb::Model::load(p, k3_weights_options()); }, &st);
  EXPECT_EQ(st, fkb::Status::FormatError);
  EXPECT_NE(msg.find("weight 'layers/dense/vars/0' goes through '/outside', which is an external link to '/' in "
                     "the file '" +
                     other + "' (HDF5 external link); FKB reads only data stored inside the model file"),
            std::string::npos)
      << msg;
}

namespace {
// A user-defined link class (HDF5 lets applications register them; FKB never follows one).
hid_t ud_traverse(const char*, hid_t, const void*, size_t, hid_t, hid_t) { return -1; }
const H5L_class_t kUdClass = {H5L_LINK_CLASS_T_VERS,
                              static_cast<H5L_type_t>(77),
                              "fkb-test-ud",
                              nullptr,
                              nullptr,
                              nullptr,
                              ud_traverse,
                              nullptr,
                              nullptr};
} // namespace

TEST(LoaderH5Policy, UserDefinedLinksAreRefused) {
  ASSERT_GE(H5Lregister(&kUdClass), 0);
  const std::string p = relinked_k3_weights("ud.weights.h5", [](hid_t f) {
    const char val[] = "elsewhere";
    EXPECT_GE(
        H5Lcreate_ud(f, "layers/dense/vars/0", static_cast<H5L_type_t>(77), val, sizeof val, H5P_DEFAULT, H5P_DEFAULT),
        0);
  });
  const std::string msg = error_of([&] { fkb::Model::load(p, k3_weights_options()); });
  H5Lunregister(static_cast<H5L_type_t>(77));
  EXPECT_NE(msg.find("layer 'dense' (Dense): weight 'layers/dense/vars/0' is a user-defined HDF5 link (type 77); "
                     "FKB follows only hard links and soft links to objects stored inside the model file"),
            std::string::npos)
      << msg;
}

TEST(LoaderH5Policy, InMemoryImagesAreCheckedTheSameWay) {
  const std::string p = relinked_k3_weights("image_ext.weights.h5", [](hid_t f) {
    EXPECT_GE(H5Lcreate_external("/etc/hostname", "/x", f, "layers/dense/vars/0", H5P_DEFAULT, H5P_DEFAULT), 0);
  });
  const std::string msg =
      error_of([&] { fkb::load_h5_image(file_bytes(p), "image.weights.h5", k3_weights_options()); });
  EXPECT_NE(msg.find("image.weights.h5 (config " + fixture_path("k3_weights.json") +
                     "): layer 'dense' (Dense): weight 'layers/dense/vars/0' is an external link to '/x' in the file "
                     "'/etc/hostname' (HDF5 external link)"),
            std::string::npos)
      << msg;
}

TEST(LoaderH5Policy, PluginLoadingIsRestoredAfterALoad) {
  unsigned before = 0;
  ASSERT_GE(H5PLget_loading_state(&before), 0);
  ASSERT_GE(H5PLset_loading_state(H5PL_FILTER_PLUGIN), 0);
  fkb::Model::load(fixture_path("k3_weights.weights.h5"), k3_weights_options());
  EXPECT_THROW(fkb::Model::load(fixture_path("k3_weights.weights.h5")), fkb::Error); // weights-only, no config
  unsigned after = 0;
  ASSERT_GE(H5PLget_loading_state(&after), 0);
  EXPECT_EQ(after, static_cast<unsigned>(H5PL_FILTER_PLUGIN));
  H5PLset_loading_state(before);
}

TEST(LoaderH5Policy, ExternalStorageIsRefusedBeforeReading) {
  // A weight whose bytes are in another file; the message names it, and nothing of it is read.
  const std::string secret = fkb::test::temp_dir() + "/policy_secret.bin";
  {
    std::ofstream s(secret, std::ios::binary);
    for (int i = 0; i < 120; ++i)
      s.write("ABCD", 4);
  }
  const std::string p = relinked_k3_weights("ext_storage.weights.h5", [&](hid_t f) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_external(dcpl, secret.c_str(), 0, 480);
    hsize_t dims[2] = {10, 12};
    hid_t sp = H5Screate_simple(2, dims, nullptr);
    hid_t d = H5Dcreate2(f, "layers/dense/vars/0", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    EXPECT_GE(d, 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(dcpl);
  });
  const std::string msg = error_of([&] { fkb::Model::load(p, k3_weights_options()); });
  EXPECT_NE(msg.find("weight 'layers/dense/vars/0' is stored in an external file '" + secret +
                     "' (HDF5 external storage); FKB reads only data stored inside the model file"),
            std::string::npos)
      << msg;
}
