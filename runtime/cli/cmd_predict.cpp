// `fkb predict MODEL --input X [--input X2 ...] --output Y`: run a model on batches stored in files.
//
// Inputs: .npy (float32/float64), .csv, or .h5 with --dataset; shape [ncol, features] (or [ncol, per-column
// shape]). Outputs are float32 [ncol, features]; a model with several outputs writes one file per output
// into the directory named by --output. Every prediction is computed before anything is written, and each
// file is written under a temporary name and renamed, so an error never leaves a partial output behind.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.hpp"
#include "fkb/error.hpp"
#include "fkb/runtime.hpp"
#include "io/array_io.hpp"

namespace fkb::cli {

namespace {

struct PredictArgs {
  std::string model, output, device = "auto", precision = "fp32", config, output_dataset = "output";
  std::string output_format = "npy", nonfinite = "propagate";
  std::vector<std::string> inputs, datasets;
  int threads = 0;
  int64_t max_batch = 4096;
  bool quiet = false;
};

bool is_directory(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Number of columns of `a` for a model input of `nin` features, checking the width.
int64_t columns_of(const io::HostArray& a, const std::string& path, int i, const Model& m) {
  const int64_t nin = m.input_size(i);
  const std::string what = "input " + std::to_string(i) + " ('" + path + "')";
  if (a.shape.size() == 1) {
    if (nin == 1) return a.shape[0];
    if (a.shape[0] == nin) return 1;
    throw_error(Status::ShapeMismatch, what + " has " + std::to_string(a.shape[0]) +
                                           " values but the model expects " + std::to_string(nin) +
                                           " features per column (shape [ncol, " + std::to_string(nin) + "])");
  }
  if (a.shape.empty())
    throw_error(Status::ShapeMismatch, what + " is a scalar; expected shape [ncol, " + std::to_string(nin) + "]");
  if (a.shape.size() > 2) {  // a per-column shape is given: it must be the model's (a flat [ncol, n] is also fine)
    const Shape per_col(a.shape.begin() + 1, a.shape.end());
    if (per_col != m.input_shape(i))
      throw_error(Status::ShapeMismatch, what + " has per-column shape " + shape_str(per_col) +
                                             " but the model expects " + shape_str(m.input_shape(i)) +
                                             " (or a flat [ncol, " + std::to_string(nin) + "] array)");
  }
  if (a.row_size() != nin)
    throw_error(Status::ShapeMismatch, what + " has " + std::to_string(a.row_size()) +
                                           " features per column but the model expects " + std::to_string(nin) +
                                           " (input shape " + shape_str(m.input_shape(i)) + ")");
  return a.shape[0];
}

void run_predict(const PredictArgs& a) {
  Model::LoadOptions lo;
  lo.config_path = a.config;
  Model model = Model::load(a.model, lo);
  const int nin = static_cast<int>(model.num_inputs());
  const int nout = static_cast<int>(model.num_outputs());
  const bool to_dir = nout > 1 || is_directory(a.output);
  if (!to_dir) io::file_kind(a.output);  // a bad output name fails before any work
  if (a.output_format != "npy" && a.output_format != "csv" && a.output_format != "h5")
    throw_error(Status::InvalidArgument, "unknown --output-format '" + a.output_format + "'; accepted: npy, csv, h5");
  if (static_cast<int>(a.inputs.size()) != nin)
    throw_error(Status::InvalidArgument, "the model has " + std::to_string(nin) + " input(s) but " +
                                             std::to_string(a.inputs.size()) +
                                             " --input file(s) were given; give --input once per model input, in "
                                             "Keras order");
  if (a.datasets.size() > 1 && a.datasets.size() != a.inputs.size())
    throw_error(Status::InvalidArgument, "give --dataset once (for every HDF5 input) or once per --input (" +
                                             std::to_string(a.inputs.size()) + " times)");

  std::vector<io::HostArray> xs;
  int64_t ncol = -1;
  bool any_f64 = false;
  for (int i = 0; i < nin; ++i) {
    const std::string ds = a.datasets.empty() ? "" : a.datasets.size() == 1 ? a.datasets[0] : a.datasets[i];
    xs.push_back(io::read_array(a.inputs[i], ds));
    const int64_t n = columns_of(xs.back(), a.inputs[i], i, model);
    if (ncol >= 0 && n != ncol)
      throw_error(Status::ShapeMismatch, "input " + std::to_string(i) + " ('" + a.inputs[i] + "') has " +
                                             std::to_string(n) + " columns, input 0 has " + std::to_string(ncol));
    ncol = n;
    any_f64 = any_f64 || xs.back().dtype == DType::F64;
  }

  RuntimeOptions ro;
  ro.device = a.device;
  ro.precision = a.precision;
  ro.threads = a.threads;
  ro.max_batch = a.max_batch;
  ro.nonfinite = a.nonfinite;
  ro.verbose = !a.quiet;
  Runtime rt(model, ro);

  std::vector<std::vector<float>> ys(static_cast<size_t>(nout));
  for (int o = 0; o < nout; ++o) ys[o].resize(static_cast<size_t>(ncol * model.output_size(o)));
  if (any_f64) {
    // float64 inputs take the double path (converted per block inside the plan).
    std::vector<std::vector<double>> x64(static_cast<size_t>(nin));
    std::vector<const double*> xp;
    for (int i = 0; i < nin; ++i) {
      if (xs[i].dtype == DType::F32) {
        x64[i].assign(xs[i].f32.begin(), xs[i].f32.end());
        xp.push_back(x64[i].data());
      } else {
        xp.push_back(xs[i].f64.data());
      }
    }
    std::vector<std::vector<double>> y64(static_cast<size_t>(nout));
    std::vector<double*> yp;
    for (int o = 0; o < nout; ++o) {
      y64[o].resize(ys[o].size());
      yp.push_back(y64[o].data());
    }
    rt.predict(xp, ncol, yp);
    for (int o = 0; o < nout; ++o)
      for (size_t j = 0; j < ys[o].size(); ++j) ys[o][j] = static_cast<float>(y64[o][j]);
  } else {
    std::vector<const float*> xp;
    for (int i = 0; i < nin; ++i) xp.push_back(xs[i].f32.data());
    std::vector<float*> yp;
    for (int o = 0; o < nout; ++o) yp.push_back(ys[o].data());
    rt.predict(xp, ncol, yp);
  }

  auto shape_of = [&](int o) {
    std::vector<int64_t> s{ncol};
    const Shape& os = model.output_shape(o);
    s.insert(s.end(), os.begin(), os.end());
    return s;
  };
  if (!to_dir) {
    io::write_array(a.output, ys[0].data(), shape_of(0), a.output_dataset);
    if (!a.quiet)
      std::fprintf(stderr, "fkb: wrote %s (%lld columns x %lld features, float32)\n", a.output.c_str(),
                   static_cast<long long>(ncol), static_cast<long long>(model.output_size(0)));
    return;
  }
  const bool created = !is_directory(a.output);
  if (created && mkdir(a.output.c_str(), 0777) != 0)
    throw_error(Status::FileError, "cannot create the output directory '" + a.output + "'");
  std::vector<std::string> written;
  try {
    for (int o = 0; o < nout; ++o) {
      const std::string path = a.output + "/output_" + std::to_string(o) + "." + a.output_format;
      io::write_array(path, ys[o].data(), shape_of(o), a.output_dataset);
      written.push_back(path);
      if (!a.quiet)
        std::fprintf(stderr, "fkb: wrote %s (output %d '%s', %lld columns x %lld features, float32)\n", path.c_str(),
                     o, model.nodes[model.outputs[o]].name.c_str(), static_cast<long long>(ncol),
                     static_cast<long long>(model.output_size(o)));
    }
  } catch (...) {
    for (const auto& p : written) std::remove(p.c_str());
    if (created) rmdir(a.output.c_str());
    throw;
  }
}

}  // namespace

void register_predict(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  auto* sub = app.add_subcommand("predict", "Run a model on inputs stored in .npy, .csv or .h5 files");
  sub->add_option("model", args->model, "Keras model file (.h5, .keras, or weights-only .h5 with --config)")
      ->required();
  sub->add_option("--input,-i", args->inputs,
                  "input file [ncol, features]: .npy (float32/float64), .csv, or .h5 with --dataset; repeat once "
                  "per model input, in Keras order")
      ->required();
  sub->add_option("--output,-o", args->output,
                  "output file (float32 [ncol, features], .npy/.csv/.h5); a directory for models with several "
                  "outputs (one file output_<i>.<format> per output)")
      ->required();
  sub->add_option("--device", args->device, "auto | cpu | cuda | cuda:N")->capture_default_str();
  sub->add_option("--precision", args->precision, "fp32 | tf32 | bf16 | fp16 (CPU: fp32)")->capture_default_str();
  sub->add_option("--threads", args->threads, "CPU threads (0 = all cores)")->capture_default_str();
  sub->add_option("--max-batch", args->max_batch, "columns per backend call (larger inputs are chunked)")
      ->capture_default_str();
  sub->add_option("--config", args->config, "architecture file (Keras JSON/YAML) for weights-only .h5 files");
  sub->add_option("--dataset", args->datasets, "HDF5 dataset of the input (once, or once per --input)");
  sub->add_option("--output-dataset", args->output_dataset, "HDF5 dataset name of the output")->capture_default_str();
  sub->add_option("--output-format", args->output_format, "file format in an output directory: npy | csv | h5")
      ->capture_default_str();
  sub->add_option("--nonfinite", args->nonfinite, "non-finite inputs: propagate | error")->capture_default_str();
  sub->add_flag("--quiet,-q", args->quiet, "no notices on stderr");
  sub->callback([args] { run_predict(*args); });
}

}  // namespace fkb::cli
