// `fkb predict MODEL --input X [--input X2 ...] --output Y [--output Y2 ...]`: run a model, or an ensemble, on
// batches stored in files.
//
// Inputs: .npy (float32/float64), .csv, .h5 with --dataset, or netCDF (3 or 4) with --dataset VAR; HDF5 and
// netCDF are recognised by their content, not their name. Shape [ncol, features] (or [ncol, per-column
// shape]); netCDF variables flatten their leading dimensions into columns, --slice picks part of them.
// Outputs are float32 [ncol, features]: one --output per model output, or one directory for all of them;
// ensembles also write --spread and --members. Every prediction is computed before anything is written, and
// each file is written under a temporary name and renamed, so an error never leaves a partial output behind.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "commands.hpp"
#include "fkb/ensemble.hpp"
#include "fkb/error.hpp"
#include "fkb/runtime.hpp"
#include "io/array_io.hpp"
#include "io/netcdf.hpp"

namespace fkb::cli {

namespace {

struct PredictArgs {
  std::string model, device, precision, config, output_dataset = "output";
  std::string output_format = "npy", nonfinite = "propagate", spread, members;
  std::vector<std::string> inputs, outputs, datasets, slices, output_vars;
  int threads = 0;
  int64_t max_batch = 0;
  bool quiet = false;
};

bool is_directory(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool has_extension(const std::string& p) {
  const size_t slash = p.find_last_of('/');
  const std::string base = slash == std::string::npos ? p : p.substr(slash + 1);
  const size_t dot = base.find_last_of('.');
  return dot != std::string::npos && dot > 0 && dot + 1 < base.size();
}

std::string q(const std::string& s) { return "'" + s + "'"; }

// One input file, read.
struct Input {
  io::HostArray array;
  io::FileKind kind = io::FileKind::Npy;
  std::vector<io::NcDim> column_dims;  // netCDF inputs: the dims flattened into columns
  std::vector<io::NcCoord> coords;     // netCDF inputs: coordinate variables of those dims
  std::string what;                    // for messages: "input 0 ('x.npy')", with the netCDF variable and dims
};

// Number of columns of input `i` for a model input of per-column shape `shape`, checking the width.
int64_t columns_of(const Input& in, int i, const Shape& shape) {
  const io::HostArray& a = in.array;
  int64_t nin = 1;
  for (auto v : shape) nin *= v;
  const std::string& what = in.what;
  const std::string nc_hint =
      in.kind == io::FileKind::NetCdf
          ? " (a netCDF variable's last dimension holds the features, or its last " + std::to_string(shape.size()) +
                " when they are " + shape_str(shape) + "; the others are columns)"
          : "";
  if (a.shape.size() == 1) {
    if (a.shape[0] == 0) return 0;  // an empty file: 0 columns, whatever the width
    if (nin == 1) return a.shape[0];
    if (a.shape[0] == nin) return 1;
    throw_error(Status::ShapeMismatch, what + " has " + std::to_string(a.shape[0]) +
                                           " values but the model expects " + std::to_string(nin) +
                                           " features per column (shape [ncol, " + std::to_string(nin) + "])");
  }
  if (a.shape.empty())
    throw_error(Status::ShapeMismatch, what + " is a scalar; expected shape [ncol, " + std::to_string(nin) + "]" +
                                           nc_hint);
  if (a.shape.size() > 2) {  // a per-column shape is given: it must be the model's (a flat [ncol, n] is also fine)
    const Shape per_col(a.shape.begin() + 1, a.shape.end());
    if (per_col != shape)
      throw_error(Status::ShapeMismatch, what + " has per-column shape " + shape_str(per_col) +
                                             " but the model expects " + shape_str(shape) + " (or a flat [ncol, " +
                                             std::to_string(nin) + "] array)");
  }
  if (a.row_size() != nin)
    throw_error(Status::ShapeMismatch, what + " has " + std::to_string(a.row_size()) +
                                           " features per column but the model expects " + std::to_string(nin) +
                                           " (input shape " + shape_str(shape) + ")" + nc_hint);
  return a.shape[0];
}

// Read every --input; `shapes` are the model's per-column input shapes (they decide a netCDF variable's
// feature dimensions). Returns the inputs and sets ncol.
std::vector<Input> read_inputs(const PredictArgs& a, const std::vector<Shape>& shapes, int64_t& ncol) {
  const int nin = static_cast<int>(shapes.size());
  if (static_cast<int>(a.inputs.size()) != nin)
    throw_error(Status::InvalidArgument, "the model has " + std::to_string(nin) + " input(s) but " +
                                             std::to_string(a.inputs.size()) +
                                             " --input file(s) were given; give --input once per model input, in "
                                             "Keras order");
  if (a.datasets.size() > 1 && a.datasets.size() != a.inputs.size())
    throw_error(Status::InvalidArgument, "give --dataset once (for every HDF5/netCDF input) or once per --input (" +
                                             std::to_string(a.inputs.size()) + " times)");
  std::vector<io::DimSlice> slices;
  for (const auto& s : a.slices) slices.push_back(io::parse_slice(s));

  std::vector<Input> xs;
  std::vector<int> slice_uses(slices.size(), 0);
  std::vector<std::string> nc_dims;  // "'x.nc' variable 'X' (time=4, ...)" of every netCDF input, for messages
  ncol = -1;
  for (int i = 0; i < nin; ++i) {
    const std::string& path = a.inputs[i];
    const std::string ds = a.datasets.empty() ? "" : a.datasets.size() == 1 ? a.datasets[0] : a.datasets[i];
    Input in;
    in.kind = io::input_kind(path);
    in.what = "input " + std::to_string(i) + " (" + q(path) + ")";
    switch (in.kind) {
      case io::FileKind::NetCdf: {
        std::vector<size_t> unused;
        io::NcArray nc = io::read_netcdf(path, ds, slices, shapes[i], &unused);
        for (size_t k = 0; k < slices.size(); ++k)
          if (std::find(unused.begin(), unused.end(), k) == unused.end()) ++slice_uses[k];
        in.array = std::move(nc.array);
        in.column_dims = std::move(nc.column_dims);
        in.coords = std::move(nc.coords);
        in.what = "input " + std::to_string(i) + ", " + nc.description;
        nc_dims.push_back(nc.description);
        break;
      }
      case io::FileKind::H5: in.array = io::read_h5(path, ds); break;
      case io::FileKind::Npy: in.array = io::read_npy(path); break;
      case io::FileKind::Csv: in.array = io::read_csv(path, /*allow_empty=*/true); break;
    }
    const int64_t n = columns_of(in, i, shapes[i]);
    if (ncol >= 0 && n != ncol)
      throw_error(Status::ShapeMismatch, in.what + " has " + std::to_string(n) + " columns, input 0 has " +
                                             std::to_string(ncol));
    ncol = n;
    xs.push_back(std::move(in));
  }
  for (size_t k = 0; k < slices.size(); ++k) {
    if (slice_uses[k] > 0) continue;
    if (nc_dims.empty())
      throw_error(Status::InvalidArgument, "--slice " + slices[k].text +
                                               ": --slice picks part of a netCDF variable's named dimensions, and no "
                                               "input is a netCDF file");
    std::string list;
    for (const auto& d : nc_dims) list += (list.empty() ? "" : "; ") + d;
    throw_error(Status::InvalidArgument, "--slice " + slices[k].text + ": no netCDF input has a dimension " +
                                             q(slices[k].dim) + "; the inputs: " + list);
  }
  return xs;
}

// One file to write.
struct OutFile {
  std::string path, label;
  const float* data = nullptr;
  std::vector<int64_t> shape;  // [rows, per-column shape...], or [n_members, rows, per-column shape...]
  bool member_major = false;   // shape starts with n_members (ensemble --members)
  io::NcWriteSpec nc;
};

// Where each model output goes: one path per output (files), or a directory. Validated before any work.
struct OutputPlan {
  std::vector<std::string> paths;
  std::string dir;  // non-empty: a directory of output_<i>.<format> files
};

OutputPlan plan_outputs(const PredictArgs& a, int nout) {
  static const std::set<std::string> formats{"npy", "csv", "h5", "nc"};
  if (!formats.count(a.output_format))
    throw_error(Status::InvalidArgument, "unknown --output-format " + q(a.output_format) +
                                             "; accepted: npy, csv, h5, nc");
  OutputPlan p;
  const size_t n = a.outputs.size();
  const std::string forms = "give --output once per output (--output a.npy --output b.npy, in Keras output order) "
                            "or once with a directory path without a file extension (--output outdir: one file "
                            "output_<i>.<format> per output, --output-format npy|csv|h5|nc)";
  if (n == 1 && (is_directory(a.outputs[0]) || (nout > 1 && !has_extension(a.outputs[0])))) {
    p.dir = a.outputs[0];
    return p;
  }
  if (n == 1 && nout > 1)
    throw_error(Status::InvalidArgument, "the model has " + std::to_string(nout) + " outputs but one --output " +
                                             q(a.outputs[0]) + " with a file extension was given; " + forms);
  if (static_cast<int>(n) != nout)
    throw_error(Status::InvalidArgument, "the model has " + std::to_string(nout) + " output(s) but " +
                                             std::to_string(n) + " --output paths were given; " + forms);
  std::set<std::string> seen;
  for (const auto& o : a.outputs) {
    if (is_directory(o))
      throw_error(Status::InvalidArgument, "--output " + q(o) + " is a directory; with one --output per model "
                                                                "output each must be a file path");
    io::file_kind(o);  // a bad output name fails before any work
    if (!seen.insert(o).second) throw_error(Status::InvalidArgument, "--output " + q(o) + " is given twice");
  }
  p.paths = a.outputs;
  return p;
}

std::string output_path(const OutputPlan& p, int o, const PredictArgs& a) {
  if (p.dir.empty()) return p.paths[static_cast<size_t>(o)];
  return p.dir + "/output_" + std::to_string(o) + "." + a.output_format;
}

void check_var_names(const PredictArgs& a, int nout) {
  if (a.output_vars.size() > 1 && static_cast<int>(a.output_vars.size()) != nout)
    throw_error(Status::InvalidArgument, "give --output-var once (for every netCDF output) or once per model output (" +
                                             std::to_string(nout) + " times)");
  for (const auto& v : a.output_vars)
    if (!io::valid_netcdf_name(v))
      throw_error(Status::InvalidArgument, "--output-var " + q(v) +
                                               " is not a valid netCDF variable name (names start with a letter, "
                                               "digit or '_' and hold no '/' or control characters)");
}

std::string sanitize(std::string n) {
  std::replace(n.begin(), n.end(), '/', '_');
  return io::valid_netcdf_name(n) ? n : "y";
}

// The netCDF column dimensions of the outputs (and their coordinate variables): those of the first netCDF
// input, else one dimension "ncol".
std::vector<io::NcDim> column_dims(const std::vector<Input>& xs, int64_t ncol, std::vector<io::NcCoord>* coords) {
  for (const auto& x : xs) {
    if (x.kind != io::FileKind::NetCdf) continue;
    int64_t n = 1;
    for (const auto& d : x.column_dims) n *= d.length;
    if (n == ncol && !x.column_dims.empty()) {
      *coords = x.coords;
      return x.column_dims;
    }
  }
  return {{"ncol", ncol, false}};
}

std::string inputs_attribute(const PredictArgs& a, const std::vector<Input>& xs) {
  std::string s;
  for (size_t i = 0; i < xs.size(); ++i) {
    std::string w = xs[i].kind == io::FileKind::NetCdf ? xs[i].what.substr(xs[i].what.find(", ") + 2) : q(a.inputs[i]);
    if (xs[i].kind == io::FileKind::H5)
      w += " dataset " + q(a.datasets.empty() ? "" : a.datasets.size() == 1 ? a.datasets[0] : a.datasets[i]);
    s += (i ? "; " : "") + w;
  }
  return s;
}

// Write every file, or none: on a failure the files already written (and a directory created here) are removed.
void write_all(const std::vector<OutFile>& files, const std::string& dir, const PredictArgs& a) {
  const bool created = !dir.empty() && !is_directory(dir);
  if (created && mkdir(dir.c_str(), 0777) != 0)
    throw_error(Status::FileError, "cannot create the output directory " + q(dir));
  std::vector<std::string> written;
  static const float dummy = 0.0f;  // writers get a valid pointer for 0-column batches
  try {
    for (const auto& f : files) {
      const io::FileKind kind = io::file_kind(f.path);
      std::vector<int64_t> shape = f.shape;
      if (f.member_major && kind != io::FileKind::Npy && kind != io::FileKind::H5) {
        // CSV and netCDF take [n_members*ncol, per-column shape]: CSV rows member after member; netCDF dims
        // (member, columns..., nout).
        shape.erase(shape.begin());
        shape[0] *= f.shape[0];
      }
      io::write_array(f.path, f.data ? f.data : &dummy, shape, a.output_dataset, &f.nc);
      written.push_back(f.path);
      if (!a.quiet) {
        std::string s;
        for (size_t i = 0; i < f.shape.size(); ++i) s += (i ? " x " : "") + std::to_string(f.shape[i]);
        std::fprintf(stderr, "fkb: wrote %s (%s, [%s], float32)\n", f.path.c_str(), f.label.c_str(), s.c_str());
      }
    }
  } catch (...) {
    for (const auto& p : written) std::remove(p.c_str());
    if (created) rmdir(dir.c_str());
    throw;
  }
}

std::vector<io::NcDim> members_dims(std::vector<io::NcDim> cols, int64_t n_members) {
  cols.insert(cols.begin(), io::NcDim{"member", n_members, false});
  return cols;
}

void predict_model(const PredictArgs& a) {
  if (!a.spread.empty() || !a.members.empty())
    throw_error(Status::InvalidArgument, "--spread and --members apply to ensembles (a directory, a list file or a "
                                         "YAML config of models); " + q(a.model) + " is one model");
  Model::LoadOptions lo;
  lo.config_path = a.config;
  Model model = Model::load(a.model, lo);
  const int nin = static_cast<int>(model.num_inputs());
  const int nout = static_cast<int>(model.num_outputs());
  const OutputPlan plan = plan_outputs(a, nout);
  check_var_names(a, nout);

  std::vector<Shape> shapes;
  for (int i = 0; i < nin; ++i) shapes.push_back(model.input_shape(i));
  if (static_cast<int>(a.inputs.size()) != nin && !model.info.input_keys.empty()) {
    // A dict-input model: say which file goes where (Keras' flat order sorts the dict keys).
    std::string keys;
    for (const auto& k : model.info.input_keys) keys += (keys.empty() ? "" : ", ") + k;
    throw_error(Status::InvalidArgument, "the model has " + std::to_string(nin) + " dict inputs but " +
                                             std::to_string(a.inputs.size()) +
                                             " --input file(s) were given; give --input once per key, in Keras' "
                                             "flat order (sorted keys): " + keys);
  }
  int64_t ncol = 0;
  std::vector<Input> xs = read_inputs(a, shapes, ncol);
  bool any_f64 = false;
  for (const auto& x : xs) any_f64 = any_f64 || x.array.dtype == DType::F64;

  RuntimeOptions ro;
  ro.device = a.device.empty() ? "auto" : a.device;
  ro.precision = a.precision.empty() ? "fp32" : a.precision;
  ro.threads = a.threads;
  ro.max_batch = a.max_batch > 0 ? a.max_batch : 4096;
  ro.nonfinite = a.nonfinite;
  ro.verbose = !a.quiet;
  Runtime rt(model, ro);

  std::vector<std::vector<float>> ys(static_cast<size_t>(nout));
  for (int o = 0; o < nout; ++o) ys[o].resize(static_cast<size_t>(ncol * model.output_size(o)));
  if (ncol == 0) {
    // Nothing to compute: the outputs are empty batches of the right shape.
  } else if (any_f64) {
    // float64 inputs take the double path (converted per block inside the plan).
    std::vector<std::vector<double>> x64(static_cast<size_t>(nin));
    std::vector<const double*> xp;
    for (int i = 0; i < nin; ++i) {
      if (xs[i].array.dtype == DType::F32) {
        x64[i].assign(xs[i].array.f32.begin(), xs[i].array.f32.end());
        xp.push_back(x64[i].data());
      } else {
        xp.push_back(xs[i].array.f64.data());
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
    for (int i = 0; i < nin; ++i) xp.push_back(xs[i].array.f32.data());
    std::vector<float*> yp;
    for (int o = 0; o < nout; ++o) yp.push_back(ys[o].data());
    rt.predict(xp, ncol, yp);
  }

  std::vector<io::NcCoord> coords;
  const std::vector<io::NcDim> cols = column_dims(xs, ncol, &coords);
  std::vector<OutFile> files;
  for (int o = 0; o < nout; ++o) {
    OutFile f;
    f.path = output_path(plan, o, a);
    const std::string layer = model.nodes[model.outputs[o]].name;
    f.label = "output " + std::to_string(o) + " '" + layer + "'" +
              (static_cast<size_t>(o) < model.info.output_keys.size()
                   ? " (dict key '" + model.info.output_keys[static_cast<size_t>(o)] + "')"
                   : "");
    f.data = ys[o].data();
    f.shape = {ncol};
    const Shape& os = model.output_shape(o);
    f.shape.insert(f.shape.end(), os.begin(), os.end());
    f.nc.var = a.output_vars.empty()       ? sanitize(layer)
               : a.output_vars.size() == 1 ? a.output_vars[0]
                                           : a.output_vars[static_cast<size_t>(o)];
    f.nc.column_dims = cols;
    f.nc.coords = coords;
    f.nc.global_attributes = {{"fkb_model_file", a.model},
                              {"fkb_model_name", model.info.name},
                              {"fkb_version", version()},
                              {"fkb_inputs", inputs_attribute(a, xs)},
                              {"source", std::string("FKB ") + version() + " (fkb predict)"}};
    f.nc.variable_attributes = {{"long_name", "output " + std::to_string(o) + " ('" + layer + "') of Keras model '" +
                                                  model.info.name + "'"},
                                {"fkb_output_layer", layer}};
    files.push_back(std::move(f));
  }
  write_all(files, plan.dir, a);
}

void predict_ensemble(const PredictArgs& a) {
  if (!a.config.empty())
    throw_error(Status::InvalidArgument, "--config applies to one weights-only model, not to an ensemble (" +
                                             q(a.model) + ")");
  if (a.nonfinite != "propagate")
    throw_error(Status::InvalidArgument, "--nonfinite " + a.nonfinite + " is not available for ensembles (" +
                                             q(a.model) + "); accepted for ensembles: propagate");
  if (a.outputs.size() != 1 || is_directory(a.outputs[0]))
    throw_error(Status::InvalidArgument, "an ensemble writes its mean to one --output file (.npy, .csv, .h5 or .nc), "
                                         "its spread to --spread FILE and every member's output to --members FILE; " +
                                             std::to_string(a.outputs.size()) + " --output path(s) were given" +
                                             (a.outputs.size() == 1 ? " and it is a directory" : ""));
  std::vector<std::string> paths{a.outputs[0]};
  if (!a.spread.empty()) paths.push_back(a.spread);
  if (!a.members.empty()) paths.push_back(a.members);
  std::set<std::string> seen;
  for (const auto& p : paths) {
    io::file_kind(p);
    if (!seen.insert(p).second) throw_error(Status::InvalidArgument, "output path " + q(p) + " is given twice");
  }
  if (a.output_vars.size() > 1)
    throw_error(Status::InvalidArgument, "an ensemble has one output: give --output-var once");
  check_var_names(a, 1);

  EnsembleOptions eo;
  eo.device = a.device;
  eo.precision = a.precision;
  eo.max_batch = a.max_batch;
  eo.threads = a.threads;
  eo.verbose = !a.quiet;
  Ensemble ens = Ensemble::load(a.model, eo);
  const Model& m0 = ens.member(0);
  int64_t ncol = 0;
  std::vector<Input> xs = read_inputs(a, {m0.input_shape(0)}, ncol);
  const int64_t nm = ens.n_members(), no = ens.n_outputs();
  const size_t n = static_cast<size_t>(ncol * no);
  std::vector<float> mean(n), spread(a.spread.empty() ? 0 : n), members(a.members.empty() ? 0 : n * nm);
  if (ncol > 0) {
    if (xs[0].array.dtype == DType::F64) {
      std::vector<double> m(n), s(spread.size()), mb(members.size());
      ens.predict(xs[0].array.f64.data(), ncol, m.data(), s.empty() ? nullptr : s.data(),
                  mb.empty() ? nullptr : mb.data());
      std::copy(m.begin(), m.end(), mean.begin());
      std::copy(s.begin(), s.end(), spread.begin());
      std::copy(mb.begin(), mb.end(), members.begin());
    } else {
      ens.predict(xs[0].array.f32.data(), ncol, mean.data(), spread.empty() ? nullptr : spread.data(),
                  members.empty() ? nullptr : members.data());
    }
  }

  std::vector<io::NcCoord> coords;
  const std::vector<io::NcDim> cols = column_dims(xs, ncol, &coords);
  std::string member_files;
  for (int i = 0; i < nm; ++i) member_files += (i ? ", " : "") + ens.member_name(i);
  const std::string base = a.output_vars.empty() ? "" : a.output_vars[0];
  auto make = [&](const std::string& path, const std::string& what, const std::vector<float>& data) {
    OutFile f;
    f.path = path;
    f.label = "ensemble " + what + ", " + std::to_string(nm) + " members";
    f.data = data.data();
    f.shape = {ncol};
    const Shape& os = m0.output_shape(0);
    f.shape.insert(f.shape.end(), os.begin(), os.end());
    f.nc.var = base.empty() ? what : what == "mean" ? base : base + "_" + what;
    f.nc.column_dims = cols;
    f.nc.coords = coords;
    f.nc.global_attributes = {{"fkb_model_file", a.model},
                              {"fkb_model_name", "ensemble of " + std::to_string(nm) + " members of Keras model '" +
                                                     m0.info.name + "'"},
                              {"fkb_ensemble_members", member_files},
                              {"fkb_version", version()},
                              {"fkb_inputs", inputs_attribute(a, xs)},
                              {"source", std::string("FKB ") + version() + " (fkb predict)"}};
    f.nc.variable_attributes = {
        {"long_name", what == "mean"     ? "ensemble mean over " + std::to_string(nm) + " members"
                      : what == "spread" ? "ensemble spread: population standard deviation over " +
                                               std::to_string(nm) + " members"
                                         : "output of each of the " + std::to_string(nm) + " ensemble members"}};
    return f;
  };
  std::vector<OutFile> files{make(a.outputs[0], "mean", mean)};
  if (!a.spread.empty()) files.push_back(make(a.spread, "spread", spread));
  if (!a.members.empty()) {
    OutFile f = make(a.members, "members", members);
    f.shape.insert(f.shape.begin(), nm);  // [n_members][ncol][nout]
    f.member_major = true;
    f.nc.column_dims = members_dims(cols, nm);
    files.push_back(std::move(f));
  }
  write_all(files, "", a);
}

void run_predict(const PredictArgs& a) {
  if (is_ensemble_path(a.model))
    predict_ensemble(a);
  else
    predict_model(a);
}

}  // namespace

void register_predict(CLI::App& app) {
  auto args = std::make_shared<PredictArgs>();
  auto* sub = app.add_subcommand("predict",
                                 "Run a model (or an ensemble) on inputs stored in .npy, .csv, HDF5 or netCDF files");
  sub->add_option("model", args->model,
                  "Keras model file (.h5, .keras, or weights-only .h5 with --config), or an ensemble: a directory "
                  "of models, a list file (.txt/.lst/.list) or a YAML config (.yaml/.yml)")
      ->required();
  sub->add_option("--input,-i", args->inputs,
                  "input file [ncol, features]: .npy (float32/float64), .csv, HDF5 with --dataset, or netCDF-3/4 "
                  "with --dataset VAR (HDF5 and netCDF are recognised by content, whatever the name); repeat once "
                  "per model input, in Keras order")
      ->required();
  sub->add_option("--output,-o", args->outputs,
                  "output file, float32 [ncol, features]: .npy, .csv, .h5 or .nc (netCDF-4); for a model with "
                  "several outputs give --output once per output, or once with a directory path without an "
                  "extension (one file output_<i>.<format> per output); an ensemble writes its mean here")
      ->required();
  sub->add_option("--spread", args->spread,
                  "ensembles: file for the spread (population standard deviation over members) [ncol, features]");
  sub->add_option("--members", args->members,
                  "ensembles: file for every member's output [n_members, ncol, features] (CSV: n_members*ncol rows, "
                  "member after member; netCDF: dims (member, columns..., nout))");
  sub->add_option("--device", args->device, "auto | cpu | cuda | cuda:N (default auto; ensembles: their YAML's)");
  sub->add_option("--precision", args->precision, "fp32 | tf32 | bf16 | fp16 (CPU: fp32; default fp32)");
  sub->add_option("--threads", args->threads, "CPU threads (0 = OpenMP's default: OMP_NUM_THREADS when set, else all cores)")->capture_default_str();
  sub->add_option("--max-batch", args->max_batch,
                  "columns per backend call, larger inputs are chunked (default 4096; ensembles: their YAML's)");
  sub->add_option("--config", args->config, "architecture file (Keras JSON/YAML) for weights-only .h5 files");
  sub->add_option("--dataset", args->datasets,
                  "HDF5 dataset or netCDF variable of the input (once, or once per --input); a netCDF variable in a "
                  "group: group/name");
  sub->add_option("--slice", args->slices,
                  "netCDF inputs: DIM=INDEX picks one index of dimension DIM and drops it (negative counts from the "
                  "end: time=-1 is the last), DIM=START:STOP keeps the half-open range (time=0:12, time=6:); "
                  "repeatable, one per dimension; applies to every netCDF input that has DIM");
  sub->add_option("--output-dataset", args->output_dataset, "HDF5 dataset name of the output")->capture_default_str();
  sub->add_option("--output-var", args->output_vars,
                  "netCDF output variable (once, or once per model output; default: the Keras output layer's name; "
                  "ensembles: mean, spread, members, or NAME, NAME_spread, NAME_members)");
  sub->add_option("--output-format", args->output_format, "file format in an output directory: npy | csv | h5 | nc")
      ->capture_default_str();
  sub->add_option("--nonfinite", args->nonfinite, "non-finite inputs: propagate | error")->capture_default_str();
  sub->add_flag("--quiet,-q", args->quiet, "no notices on stderr");
  sub->footer(
      "netCDF inputs: the variable's last dimension holds the features (its last two when they equal a rank-3 "
      "model's per-column shape (levels, channels)); the other dimensions are flattened into columns in C order, "
      "so x(time, ncol, nin) is read as [time*ncol, nin]. A .nc output keeps those column dimensions and their "
      "names, e.g. y(time, ncol, nout), copies their coordinate variables (e.g. time and its units), and records the model file, the model's name and FKB's version as global "
      "attributes. An input with 0 columns writes outputs with 0 columns.\n"
      "Examples:\n"
      "  fkb predict model.keras -i x.npy -o y.npy\n"
      "  fkb predict model.keras -i state.nc --dataset X --slice time=3 -o y.nc --output-var tend\n"
      "  fkb predict two_outputs.keras -i x.npy -o a.npy -o b.csv     (or -o outdir)\n"
      "  fkb predict ensemble.yaml -i x.nc --dataset X -o mean.nc --spread sd.nc --members all.npy");
  sub->callback([args] { run_predict(*args); });
}

}  // namespace fkb::cli
