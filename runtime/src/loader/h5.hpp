// Thin RAII layer over the HDF5 C API for reading (and writing) Keras files.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "fkb/model.hpp"
#include "loader/limits.hpp"

namespace fkb::h5 {

/// HDF5 (serial builds) is not thread-safe: every FKB use of it holds this lock.
std::recursive_mutex& lock();

/// Silences HDF5's automatic error printing for its lifetime and restores the caller's handler after,
/// so a GCM that uses HDF5 itself keeps its own settings.
class QuietErrors {
 public:
  QuietErrors();
  ~QuietErrors();
  QuietErrors(const QuietErrors&) = delete;
  QuietErrors& operator=(const QuietErrors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

/// An owned hid_t, closed with the right H5*close.
class Handle {
 public:
  enum class Kind { File, Group, Dataset, Attribute, Dataspace, Datatype, Plist };
  Handle() = default;
  Handle(hid_t id, Kind kind) : id_(id), kind_(kind) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), kind_(o.kind_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = -1;
  Kind kind_ = Kind::File;
};

/// HDF5 filter plugins are not loaded while this guard lives (README "Loading policy": built-in filters only):
/// H5PLset_loading_state(0), the caller's state restored after. Movable, so a File can own one. The caller holds
/// lock().
class NoPlugins {
 public:
  NoPlugins();
  ~NoPlugins();
  NoPlugins(NoPlugins&& o) noexcept : saved_(o.saved_), active_(o.active_) { o.active_ = false; }
  NoPlugins& operator=(NoPlugins&&) = delete;
  NoPlugins(const NoPlugins&) = delete;
  NoPlugins& operator=(const NoPlugins&) = delete;

 private:
  unsigned saved_ = 0;
  bool active_ = false;
};

/// An open HDF5 file (from disk or from a memory image), with the path used in messages. Plugin loading is off
/// while it is open (NoPlugins). The caller holds lock() for the File's whole life.
class File {
 public:
  /// Open a file on disk read-only. Throws FormatError when it is not a readable HDF5 file.
  static File open(const std::string& path);
  /// Open an in-memory file image (e.g. model.weights.h5 inside a .keras zip). `label` names it in messages.
  static File open_image(const std::vector<char>& image, const std::string& label);
  hid_t id() const { return h_.get(); }
  const std::string& label() const { return label_; }

 private:
  NoPlugins plugins_;  // declared first: restored after the file is closed
  Handle h_;
  std::string label_;
};

// ---- the loading policy for HDF5 objects (README "Loading policy") -------------------------------------------------
// Only data stored inside the file is read. Every path is walked link by link before anything is opened by it:
// hard links pass, soft links pass when their target resolves inside the file (the target is walked the same way),
// external links and user-defined links are refused. Datasets are checked before they are read: no external storage,
// no virtual dataset, built-in filters only, and the declared size must agree with what the file stores.
// Messages read "<where>: <what> ...; FKB reads only data stored inside the <file_kind>", e.g. where =
// "m.h5: layer 'dense' (Dense)", what = "weight 'dense/kernel:0'", file_kind = "model file".

/// A link-access (also dataset/group-access) property list whose external-link traversal always fails: the second
/// line of defence behind the link walk.
hid_t no_external_links_lapl();
hid_t no_external_links_gapl();  ///< the same, for H5Gopen2
hid_t no_external_links_dapl();  ///< the same, for H5Dopen2
/// Walk `path` (relative to `loc`, or absolute) link by link. Returns false when a link on the way is missing;
/// throws FormatError for an external link (naming its file and object), a user-defined link, a soft link that does
/// not resolve inside the file, or a chain of more than 16 soft links.
bool exists(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
            const std::string& file_kind = "model file");
/// exists() and the object is a group.
bool is_group(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
              const std::string& file_kind = "model file");
/// Open the group at `path` after exists(); throws FormatError naming `what` when it is missing or not a group.
Handle open_group(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
                  const std::string& file_kind = "model file");
/// Open the dataset at `path` after exists(); throws FormatError naming `what` when it is missing or not a dataset.
Handle open_dataset(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
                    const std::string& file_kind = "model file");

/// What the config fixes about a weight's shape (Dense/Conv1D kernel and bias), checked before it is read.
struct ShapeRule {
  int rank = -1;          ///< -1: any
  int64_t last_dim = -1;  ///< -1: any
  std::string why;        ///< "units=10 in the config"
};
/// What check_dataset found: the declared shape, element count, and the stored type.
struct DatasetInfo {
  std::vector<int64_t> shape;
  uint64_t elements = 0;
  size_t type_size = 0;  ///< bytes per element in the file
  H5T_class_t type_class = H5T_NO_CLASS;
};
/// Chunked datasets may declare at most this many times the bytes they store (deflate's best is about 1032:1 on
/// zeros; sparse chunks and stacked filters go far beyond). Applied above kMinRatioCheckBytes.
constexpr uint64_t kMaxChunkedRatio = 1000;
constexpr uint64_t kMinRatioCheckBytes = uint64_t{1} << 20;
/// At most this many chunks (declared, stored or not) in a chunked dataset: HDF5 keeps state for every chunk a read
/// selects (about 4 KiB each in HDF5 1.10), so 1-element chunks make a 20 MB file cost gigabytes and seconds. Keras
/// writes weights contiguous; a chunked netCDF-4 input of 262 144 records (chunks of one record) still reads.
constexpr uint64_t kMaxChunks = uint64_t{1} << 18;
/// The layout and size checks of the loading policy on an open dataset, before anything is allocated: refuses
/// external storage (naming the external file), virtual datasets (naming the source file), filters that are not
/// built into HDF5 (deflate, shuffle, fletcher32, szip, nbit, scaleoffset are), element counts that overflow,
/// contiguous/compact datasets whose stored bytes differ from the declared ones (or lie past the end of the file),
/// chunked datasets that store nothing or declare more than kMaxChunkedRatio times what they store. A shape that
/// disagrees with `rule` is refused before the size checks.
DatasetInfo check_dataset(hid_t dset, const std::string& where, const std::string& what,
                          const std::string& file_kind = "model file", const ShapeRule* rule = nullptr);

/// "(64, 200000000)"
std::string shape_str(const std::vector<int64_t>& shape);

bool has_attr(hid_t loc, const std::string& name);
/// A string attribute (fixed or variable length, scalar or 1-element array). Throws FormatError if absent, or when
/// it declares more than `max_bytes` (or more than it stores); `limit_name` names that limit in the message.
std::string attr_string(hid_t loc, const std::string& name, const std::string& where,
                        uint64_t max_bytes = uint64_t{1} << 30, const char* limit_name = nullptr);
/// A string-array attribute (fixed or variable length). Keras splits long lists into name0, name1, ...
/// (HDF5's 64 KiB attribute limit): those are joined. Returns {} if absent.
std::vector<std::string> attr_strings(hid_t loc, const std::string& name, const std::string& where);
/// Names of the links in the group at `path` (opened with open_group), in name order.
std::vector<std::string> children(hid_t loc, const std::string& path, const std::string& where);

/// Read a dataset as float32 (HDF5 converts from float16/float64/int; bfloat16 is widened exactly). bfloat16 is a
/// 2-byte opaque type (h5py's storage of ml_dtypes.bfloat16): read as such when the dataset carries Keras 3's
/// dtype="bfloat16" attribute, or when `layer_bfloat16` says the layer's variables are bfloat16 (Keras 3's legacy
/// .h5 writer marks nothing). The loading policy is applied first (exists, check_dataset, `rule`, then `budget`), so
/// nothing is allocated for a refused dataset. Throws FormatError naming the dataset and `where`.
Array read_array(hid_t loc, const std::string& path, const std::string& where, loader::WeightBudget& budget,
                 const ShapeRule* rule = nullptr, bool layer_bfloat16 = false);

// ---- writing ---------------------------------------------------------------------------------------------------
/// A new in-memory HDF5 file (core driver, no backing store); take its bytes with file_image().
Handle create_memory_file(const std::string& label);
/// The bytes of an open (in-memory) file, after flushing it.
std::vector<char> file_image(hid_t file);
/// Create a group (and its missing parents). Throws FileError naming `where`.
Handle create_group(hid_t loc, const std::string& path, const std::string& where);
/// Scalar variable-length UTF-8 string attribute (what h5py writes for a Python str).
void write_attr_string(hid_t loc, const std::string& name, const std::string& value, const std::string& where);
/// Fixed-length string array attribute (what h5py writes for a list of bytes). Empty: a 0-length float64 array,
/// as h5py writes an empty list.
void write_attr_strings(hid_t loc, const std::string& name, const std::vector<std::string>& values,
                        const std::string& where);
/// Like write_attr_strings, but split as Keras' save_attributes_to_hdf5_group does when the fixed-length array would
/// exceed HDF5's object header limit (64512 bytes): name0, name1, ... (numpy.array_split of the list into the fewest
/// chunks that fit, every chunk with the width of the longest string). Throws InvalidArgument naming the string
/// when one string alone exceeds the limit (Keras refuses those too).
void write_attr_strings_chunked(hid_t loc, const std::string& name, const std::vector<std::string>& values,
                                const std::string& where);
/// HDF5's object header limit Keras splits attributes at (keras legacy_h5_format.HDF5_OBJECT_HEADER_LIMIT).
constexpr size_t kKerasAttributeLimit = 64512;

/// How write_array stores values (all come from float32 in memory). BFloat16 is what Keras 3 writes for a bfloat16
/// variable: a 2-byte opaque type (the upper half of the float32, rounded to nearest even).
enum class StoreType { Float32, Float16, Float64, BFloat16, Int64, Int8 };
/// Dataset at `path` (parents created), stored as `type` (default float32).
void write_array(hid_t loc, const std::string& path, const Array& a, const std::string& where,
                 StoreType type = StoreType::Float32);

}  // namespace fkb::h5
