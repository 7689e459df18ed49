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

/// An open HDF5 file (from disk or from a memory image), with the path used in messages.
class File {
 public:
  /// Open a file on disk read-only. Throws FormatError when it is not a readable HDF5 file.
  static File open(const std::string& path);
  /// Open an in-memory file image (e.g. model.weights.h5 inside a .keras zip). `label` names it in messages.
  static File open_image(const std::vector<char>& image, const std::string& label);
  hid_t id() const { return h_.get(); }
  const std::string& label() const { return label_; }

 private:
  Handle h_;
  std::string label_;
};

bool exists(hid_t loc, const std::string& path);
bool is_group(hid_t loc, const std::string& path);
bool has_attr(hid_t loc, const std::string& name);
/// A string attribute (fixed or variable length, scalar or 1-element array). Throws FormatError if absent.
std::string attr_string(hid_t loc, const std::string& name, const std::string& where);
/// A string-array attribute (fixed or variable length). Keras splits long lists into name0, name1, ...
/// (HDF5's 64 KiB attribute limit): those are joined. Returns {} if absent.
std::vector<std::string> attr_strings(hid_t loc, const std::string& name, const std::string& where);
/// Names of the links in a group, in creation/name order.
std::vector<std::string> children(hid_t loc, const std::string& path);
/// Read a dataset as float32 (HDF5 converts from float16/float64/int). Throws FormatError on failure,
/// naming the dataset and `where`.
Array read_array(hid_t loc, const std::string& path, const std::string& where, loader::WeightBudget& budget);

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
/// float32 dataset at `path` (parents created).
void write_array(hid_t loc, const std::string& path, const Array& a, const std::string& where);

}  // namespace fkb::h5
