// Custom layers (fkb/custom_layer.hpp) against Keras: the registered class `fkbtest>ScaledTanh` with config
// {"scale": 1.7} of the fixtures k3_custom_keras / k3_custom_h5 (Keras' own predictions in their data files),
// implemented here in C++ reading `scale` from the layer's config; a custom layer with three Keras variables
// (tests/fixtures/custom_weights, make_custom_fixtures.py); the registry's rules and errors; the CUDA
// backend's lowering of custom layers run by the host emulator of CUDA programs.
//
// Every test registers what it needs through a Registration guard that unregisters at the end, so nothing
// leaks into other tests (the loader's FixtureRejected test needs an empty registry).
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../../kernels/emulator.hpp"
#include "../../kernels/lowering.hpp"
#include "fkb/backend.hpp"
#include "fkb/custom_layer.hpp"
#include "fkb/error.hpp"
#include "fkb/model.hpp"
#include "fkb/runtime.hpp"
#include "test_util.hpp"

namespace {

using fkb::test::fixture_path;
using fkb::test::relative_max_error;

/// Registers on construction, unregisters on destruction.
struct Registration {
  std::string name;
  Registration(const std::string& n, fkb::CustomLayer l) : name(n) { fkb::register_custom_layer(n, std::move(l)); }
  ~Registration() { fkb::unregister_custom_layer(name); }
};

/// ScaledTanh as a user would write it: y = scale * tanh(x), scale read from the Keras config once per plan.
fkb::CustomLayer scaled_tanh(int* calls = nullptr) {
  fkb::CustomLayer l;
  l.output_shape = [](const std::vector<fkb::Shape>& in, const std::string&) { return in.at(0); };
  l.prepare = [](const fkb::CustomLayerInfo& info) {
    const auto cfg = nlohmann::json::parse(info.config_json);
    return std::make_shared<float>(cfg.at("scale").get<float>());
  };
  l.cpu = [calls](const fkb::CustomLayerInfo& info, const float* const* x, int64_t ncol, float* y) {
    const float s = *static_cast<const float*>(info.state);
    for (int64_t i = 0; i < ncol * info.input_sizes[0]; ++i) y[i] = s * std::tanh(x[0][i]);
    if (calls) ++*calls;
  };
  return l;
}

struct FixtureData {
  fkb::test::Data x, y;
};

FixtureData data(const std::string& file, const char* in = "input_0", const char* out = "output_0") {
  return {fkb::test::read_dataset(fixture_path(file), in), fkb::test::read_dataset(fixture_path(file), out)};
}

double predict_error(const std::string& model_file, const FixtureData& d, int threads = 0, int64_t max_batch = 4096) {
  fkb::Model m = fkb::Model::load(fixture_path(model_file));
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.verbose = false;
  o.threads = threads;
  o.max_batch = max_batch;
  fkb::Runtime rt(m, o);
  std::vector<float> y(d.y.values.size(), -999.0f);
  rt.predict(d.x.values.data(), d.x.rows(), y.data());
  double e = relative_max_error(y.data(), d.y.values.data(), static_cast<int64_t>(y.size()));
  // float64 in and out
  std::vector<double> x64(d.x.values.begin(), d.x.values.end()), y64(y.size());
  rt.predict(x64.data(), d.x.rows(), y64.data());
  std::vector<float> y64f(y64.begin(), y64.end());
  return std::max(e, relative_max_error(y64f.data(), d.y.values.data(), static_cast<int64_t>(y.size())));
}

TEST(CustomLayer, ScaledTanhAgreesWithKerasKerasAndH5) {
  for (const char* name : {"ScaledTanh", "fkbtest>ScaledTanh"}) {
    Registration r(name, scaled_tanh());
    EXPECT_LE(predict_error("k3_custom.keras", data("k3_custom_keras.data.h5")), 1e-5) << name;
    EXPECT_LE(predict_error("k3_custom.h5", data("k3_custom_h5.data.h5")), 1e-5) << name;
    // Blocks on 2 threads, chunks of 5 columns.
    EXPECT_LE(predict_error("k3_custom.keras", data("k3_custom_keras.data.h5"), 2, 5), 1e-5) << name;
  }
}

TEST(CustomLayer, ConfigReachesTheImplementation) {
  // A scale read from the config, not hard-coded: scale 1.0 instead of 1.7 must not reproduce Keras.
  fkb::CustomLayer l = scaled_tanh();
  l.prepare = [](const fkb::CustomLayerInfo&) { return std::make_shared<float>(1.0f); };
  Registration r("ScaledTanh", l);
  EXPECT_GT(predict_error("k3_custom.keras", data("k3_custom_keras.data.h5")), 1e-2);
  // The info the implementation sees.
  const fkb::Model m = fkb::Model::load(fixture_path("k3_custom.h5"));
  const fkb::Node* node = nullptr;
  for (const auto& n : m.nodes)
    if (n.op == fkb::OpKind::Custom) node = &n;
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->keras_class, "fkbtest>ScaledTanh");
  const fkb::CustomLayerInfo info = fkb::make_custom_layer_info(m, *node);
  EXPECT_EQ(info.class_name, "fkbtest>ScaledTanh");
  EXPECT_EQ(info.layer_name, "scaled_tanh");
  EXPECT_EQ(info.input_shapes, std::vector<fkb::Shape>{fkb::Shape{6}});
  EXPECT_EQ(info.output_size, 6);
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(info.config_json).at("scale").get<double>(), 1.7);
  EXPECT_TRUE(info.weights.empty());
}

TEST(CustomLayer, WeightsInFileOrder) {
  // y = t * tanh(x * w + b); Keras stores w, b (trainable), then t (non-trainable).
  fkb::CustomLayer l;
  l.output_shape = [](const std::vector<fkb::Shape>& in, const std::string& cfg) {
    if (nlohmann::json::parse(cfg).at("gain").get<double>() != 0.5) throw std::runtime_error("gain not 0.5");
    return in.at(0);
  };
  l.cpu = [](const fkb::CustomLayerInfo& info, const float* const* x, int64_t ncol, float* y) {
    if (info.weights.size() != 3) throw fkb::Error(fkb::Status::ShapeMismatch, "expected 3 weights");
    const float* w = info.weights[0]->data.data();
    const float* b = info.weights[1]->data.data();
    const float t = info.weights[2]->data[0];
    const int64_t n = info.input_sizes[0];
    for (int64_t c = 0; c < ncol; ++c)
      for (int64_t j = 0; j < n; ++j) y[c * n + j] = t * std::tanh(x[0][c * n + j] * w[j] + b[j]);
  };
  Registration r("FeatureAffine", l);
  const FixtureData d = data("custom_weights/data.h5", "input", "output");
  for (const char* f : {"custom_weights/model.keras", "custom_weights/model.h5"}) {
    const fkb::Model m = fkb::Model::load(fixture_path(f));
    const fkb::Node* node = nullptr;
    for (const auto& n : m.nodes)
      if (n.op == fkb::OpKind::Custom) node = &n;
    ASSERT_NE(node, nullptr) << f;
    const auto ws = fkb::custom_layer_weights(*node);
    ASSERT_EQ(ws.size(), 3u) << f;
    const auto w = fkb::test::read_dataset(fixture_path("custom_weights/data.h5"), "w");
    EXPECT_EQ(ws[0]->data, w.values) << f;
    EXPECT_EQ(node->param_count(), 5 + 5 + 1) << f;
    EXPECT_LE(predict_error(f, d), 1e-5) << f;
  }
}

TEST(CustomLayer, RegistryRules) {
  EXPECT_TRUE(fkb::registered_custom_layers().empty());
  {
    Registration r("ScaledTanh", scaled_tanh());
    EXPECT_EQ(fkb::registered_custom_layers(), std::vector<std::string>{"ScaledTanh"});
    // Twice: an error naming the class; the first registration stays.
    try {
      fkb::register_custom_layer("ScaledTanh", scaled_tanh());
      FAIL() << "expected InvalidArgument";
    } catch (const fkb::Error& e) {
      EXPECT_EQ(e.status(), fkb::Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("already registered"), std::string::npos) << e.what();
    }
    EXPECT_NE(fkb::find_custom_layer("ScaledTanh"), nullptr);
    EXPECT_NE(fkb::find_custom_layer("fkbtest>ScaledTanh"), nullptr);  // bare name serves any package
    EXPECT_EQ(fkb::find_custom_layer("ScaledTanh2"), nullptr);
  }
  EXPECT_EQ(fkb::find_custom_layer("ScaledTanh"), nullptr);
  EXPECT_FALSE(fkb::unregister_custom_layer("ScaledTanh"));
  {
    // A qualified registration serves its own package and the bare name, not another package.
    Registration r("otherpkg>ScaledTanh", scaled_tanh());
    EXPECT_NE(fkb::find_custom_layer("ScaledTanh"), nullptr);
    EXPECT_EQ(fkb::find_custom_layer("fkbtest>ScaledTanh"), nullptr);
    EXPECT_NO_THROW(fkb::Model::load(fixture_path("k3_custom.keras")));        // "ScaledTanh" in .keras
    EXPECT_THROW(fkb::Model::load(fixture_path("k3_custom.h5")), fkb::Error);  // "fkbtest>ScaledTanh" in .h5
  }
  // Re-registering after unregistering works, and a new implementation is used by new plans.
  {
    Registration r("ScaledTanh", scaled_tanh());
    EXPECT_LE(predict_error("k3_custom.h5", data("k3_custom_h5.data.h5")), 1e-5);
  }
  // Invalid registrations.
  auto expect_invalid = [](const std::string& name, fkb::CustomLayer l, const std::string& part) {
    try {
      fkb::register_custom_layer(name, std::move(l));
      fkb::unregister_custom_layer(name);
      ADD_FAILURE() << "expected InvalidArgument for " << name;
    } catch (const fkb::Error& e) {
      EXPECT_EQ(e.status(), fkb::Status::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_invalid("", scaled_tanh(), "empty");
  expect_invalid("Dense", scaled_tanh(), "built-in");
  fkb::CustomLayer no_cpu = scaled_tanh();
  no_cpu.cpu = nullptr;
  expect_invalid("NoCpu", no_cpu, "cpu");
  fkb::CustomLayer no_shape = scaled_tanh();
  no_shape.output_shape = nullptr;
  expect_invalid("NoShape", no_shape, "output_shape");
  EXPECT_TRUE(fkb::registered_custom_layers().empty());
}

TEST(CustomLayer, UnregisteredClassKeepsTheLoaderMessage) {
  for (const char* f : {"k3_custom.keras", "k3_custom.h5"}) {
    try {
      fkb::Model::load(fixture_path(f));
      FAIL() << "expected Unsupported";
    } catch (const fkb::Error& e) {
      EXPECT_EQ(e.status(), fkb::Status::Unsupported);
      const std::string msg = e.what();
      EXPECT_NE(msg.find("ScaledTanh"), std::string::npos) << msg;
      EXPECT_NE(msg.find("Supported:"), std::string::npos) << msg;
      EXPECT_EQ(msg.find("Registered custom layers"), std::string::npos) << msg;
    }
  }
  // With another class registered, the message lists it.
  Registration r("SomethingElse", scaled_tanh());
  try {
    fkb::Model::load(fixture_path("k3_custom.keras"));
    FAIL() << "expected Unsupported";
  } catch (const fkb::Error& e) {
    EXPECT_NE(std::string(e.what()).find("Registered custom layers: SomethingElse"), std::string::npos) << e.what();
  }
}

void expect_bad_shape(std::function<fkb::Shape(const std::vector<fkb::Shape>&, const std::string&)> fn,
                      const std::string& part) {
  fkb::CustomLayer l = scaled_tanh();
  l.output_shape = std::move(fn);
  Registration r("ScaledTanh", l);
  try {
    fkb::Model::load(fixture_path("k3_custom.keras"));
    ADD_FAILURE() << "expected ShapeMismatch (" << part << ")";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::ShapeMismatch) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scaled_tanh"), std::string::npos) << e.what();
  }
}

TEST(CustomLayer, BadOutputShapes) {
  expect_bad_shape([](const std::vector<fkb::Shape>&, const std::string&) { return fkb::Shape{}; }, "returned ()");
  expect_bad_shape([](const std::vector<fkb::Shape>&, const std::string&) { return fkb::Shape{0}; }, "returned (0,)");
  expect_bad_shape(
      [](const std::vector<fkb::Shape>&, const std::string&) {
        return fkb::Shape{6, -1};
      },
      "returned (6, -1)");
  expect_bad_shape([](const std::vector<fkb::Shape>&,
                      const std::string&) -> fkb::Shape { throw std::runtime_error("no such scale"); },
                   "no such scale");
  // A valid shape that does not fit the next layer: the next Dense's kernel check names it.
  fkb::CustomLayer l = scaled_tanh();
  l.output_shape = [](const std::vector<fkb::Shape>&, const std::string&) { return fkb::Shape{7}; };
  Registration r("ScaledTanh", l);
  try {
    fkb::Model::load(fixture_path("k3_custom.keras"));
    FAIL();
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::ShapeMismatch);
    EXPECT_NE(std::string(e.what()).find("kernel"), std::string::npos) << e.what();
  }
}

TEST(CustomLayer, ErrorsInTheLayerReachPredict) {
  fkb::CustomLayer l = scaled_tanh();
  l.cpu = [](const fkb::CustomLayerInfo&, const float* const*, int64_t, float*) {
    throw fkb::Error(fkb::Status::NonFinite, "bad value in the custom layer");
  };
  Registration r("ScaledTanh", l);
  const FixtureData d = data("k3_custom_keras.data.h5");
  for (int threads : {1, 2}) {
    fkb::RuntimeOptions o;
    o.device = "cpu";
    o.verbose = false;
    o.threads = threads;
    fkb::Runtime rt(fkb::Model::load(fixture_path("k3_custom.keras")), o);
    std::vector<float> y(d.y.values.size());
    try {
      rt.predict(d.x.values.data(), d.x.rows(), y.data());
      FAIL() << "expected an error";
    } catch (const fkb::Error& e) {
      EXPECT_EQ(e.status(), fkb::Status::NonFinite);
      EXPECT_NE(std::string(e.what()).find("scaled_tanh"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad value"), std::string::npos) << e.what();
    }
    // The plan stays usable: a second call fails the same way (no stale state, no crash).
    EXPECT_THROW(rt.predict(d.x.values.data(), 1, y.data()), fkb::Error);
  }
}

TEST(CustomLayer, PlansKeepTheirImplementation) {
  int calls = 0;
  auto reg = std::make_unique<Registration>("ScaledTanh", scaled_tanh(&calls));
  fkb::RuntimeOptions o;
  o.device = "cpu";
  o.verbose = false;
  o.threads = 1;
  fkb::Runtime rt(fkb::Model::load(fixture_path("k3_custom.keras")), o);
  reg.reset();  // unregistered: the compiled plan keeps its implementation
  const FixtureData d = data("k3_custom_keras.data.h5");
  std::vector<float> y(d.y.values.size());
  rt.predict(d.x.values.data(), d.x.rows(), y.data());
  EXPECT_GT(calls, 0);
  EXPECT_LE(relative_max_error(y.data(), d.y.values.data(), static_cast<int64_t>(y.size())), 1e-5);
  EXPECT_THROW(fkb::Model::load(fixture_path("k3_custom.keras")), fkb::Error);  // new loads need a registration
}

// GPU only (skips elsewhere): the CUDA backend runs the custom layer through pinned host staging (a host node in
// the plan's graph) and agrees with Keras; an error in the layer reaches predict.
TEST(CustomLayer, CudaBackendHostStaging) {
  if (fkb::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Registration r("ScaledTanh", scaled_tanh());
  for (const char* f : {"k3_custom.keras", "k3_custom.h5"}) {
    const FixtureData d =
        data(std::string(f) == "k3_custom.keras" ? "k3_custom_keras.data.h5" : "k3_custom_h5.data.h5");
    fkb::RuntimeOptions o;
    o.device = "cuda";
    o.verbose = false;
    fkb::Runtime rt(fkb::Model::load(fixture_path(f)), o);
    std::vector<float> y(d.y.values.size(), -999.0f);
    for (int rep = 0; rep < 2; ++rep) {  // capture, then replay the graph
      rt.predict(d.x.values.data(), d.x.rows(), y.data());
      EXPECT_LE(relative_max_error(y.data(), d.y.values.data(), static_cast<int64_t>(y.size())), 1e-5) << f;
    }
  }
  fkb::CustomLayer bad = scaled_tanh();
  bad.cpu = [](const fkb::CustomLayerInfo&, const float* const*, int64_t, float*) {
    throw fkb::Error(fkb::Status::NonFinite, "bad value on the host");
  };
  fkb::unregister_custom_layer("ScaledTanh");
  fkb::register_custom_layer("ScaledTanh", bad);
  fkb::RuntimeOptions o;
  o.device = "cuda";
  o.verbose = false;
  fkb::Runtime rt(fkb::Model::load(fixture_path("k3_custom.keras")), o);
  const FixtureData d = data("k3_custom_keras.data.h5");
  std::vector<float> y(d.y.values.size());
  try {
    rt.predict(d.x.values.data(), d.x.rows(), y.data());
    FAIL() << "expected an error";
  } catch (const fkb::Error& e) {
    EXPECT_EQ(e.status(), fkb::Status::NonFinite);
    EXPECT_NE(std::string(e.what()).find("scaled_tanh"), std::string::npos) << e.what();
  }
}

// The CUDA backend's program with a custom layer, executed by the host emulator (the same ops, views and
// arena the GPU uses; the custom op runs the cpu function as the plan's host staging does).
TEST(CustomLayer, CudaLoweringWithHostStaging) {
  Registration r("ScaledTanh", scaled_tanh());
  const FixtureData d = data("k3_custom_h5.data.h5");
  const fkb::Model m = fkb::Model::load(fixture_path("k3_custom.h5"));
  EXPECT_TRUE(fkb::cuda::cuda_supports(m.nodes[2], nullptr));
  for (auto prec : {fkb::Precision::FP32, fkb::Precision::FP16}) {
    fkb::cuda::LowerOptions lo;
    lo.precision = prec;
    const fkb::cuda::Program p = fkb::cuda::lower_model(m, lo);
    ASSERT_EQ(p.count_ops(fkb::cuda::OpType::Custom), 1);
    for (const auto& o : p.ops)
      if (o.type == fkb::cuda::OpType::Custom) {
        for (int v : o.ins) EXPECT_EQ(p.roots[p.values[v].root].dt, fkb::cuda::DT::F32);
        EXPECT_EQ(p.roots[p.values[o.out].root].dt, fkb::cuda::DT::F32);  // custom layers write float32
      }
    const auto out = fkb::cuda::emulate(p, {d.x.values.data()}, d.x.rows(), 64, {{0, 20}, {20, d.x.rows() - 20}});
    const double e = relative_max_error(out[0].data(), d.y.values.data(), static_cast<int64_t>(out[0].size()));
    EXPECT_LE(e, prec == fkb::Precision::FP32 ? 1e-5 : 1e-2) << fkb::precision_name(prec);
  }
}

}  // namespace
