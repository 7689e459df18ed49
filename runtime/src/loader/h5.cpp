#include "loader/h5.hpp"

#include <H5PLpublic.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "fkb/error.hpp"
#include "loader/h5_vlen_guard.hpp"

namespace fkb::h5 {

std::recursive_mutex& lock() {
  static std::recursive_mutex m;
  return m;
}

QuietErrors::QuietErrors() {
  H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

QuietErrors::~QuietErrors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    kind_ = o.kind_;
    o.id_ = -1;
  }
  return *this;
}

void Handle::reset() {
  if (id_ < 0) return;
  switch (kind_) {
    case Kind::File: H5Fclose(id_); break;
    case Kind::Group: H5Gclose(id_); break;
    case Kind::Dataset: H5Dclose(id_); break;
    case Kind::Attribute: H5Aclose(id_); break;
    case Kind::Dataspace: H5Sclose(id_); break;
    case Kind::Datatype: H5Tclose(id_); break;
    case Kind::Plist: H5Pclose(id_); break;
  }
  id_ = -1;
}

NoPlugins::NoPlugins() {
  if (H5PLget_loading_state(&saved_) >= 0 && H5PLset_loading_state(0) >= 0) active_ = true;
}

NoPlugins::~NoPlugins() {
  if (active_) H5PLset_loading_state(saved_);
}

File File::open(const std::string& path) {
  File f;
  f.label_ = path;
  // H5F_CLOSE_STRONG closes everything still open when the file is closed (no leaked handles on errors).
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), Handle::Kind::Plist);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0)
    throw_error(Status::FormatError, "'" + path + "' could not be opened as HDF5: the file is truncated or corrupted");
  f.h_ = Handle(id, Handle::Kind::File);
  return f;
}

File File::open_image(const std::vector<char>& image, const std::string& label) {
  File f;
  f.label_ = label;
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), Handle::Kind::Plist);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
  // Core driver over a copy of the image: nothing touches the disk.
  H5Pset_fapl_core(fapl.get(), image.size() + 1, 0);
  if (H5Pset_file_image(fapl.get(), const_cast<char*>(image.data()), image.size()) < 0)
    throw_error(Status::FormatError, "'" + label + "': could not hand the HDF5 image to the library");
  hid_t id = H5Fopen(label.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (id < 0)
    throw_error(Status::FormatError, "'" + label + "' is not a readable HDF5 file: it is truncated or corrupted");
  f.h_ = Handle(id, Handle::Kind::File);
  return f;
}

namespace {

// External-link traversal fails, whatever the link says (H5Pset_elink_cb: a negative return stops it).
herr_t refuse_elink(const char*, const char*, const char*, const char*, unsigned*, hid_t, void*) { return -1; }

// Soft links followed for one path, in all (a target may hold soft links of its own: counting them all bounds the
// walk, which a depth limit alone would not).
constexpr int kMaxSoftLinks = 32;

// A name from the file, printable and bounded, for messages.
std::string printable(const char* s, size_t max_len = 200) {
  std::string out;
  for (size_t i = 0; s && s[i] && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  if (s && std::strlen(s) > max_len) out += "...";
  return out;
}

std::string only_inside(const std::string& file_kind) {
  return "FKB reads only data stored inside the " + file_kind;
}

struct Walker {
  const std::string& where;
  const std::string& what;
  const std::string& top;  // the path asked for (messages say "is" for it, "goes through" for others)
  const std::string& file_kind;
  mutable int followed = 0;

  [[noreturn]] void refuse(const std::string& link, const std::string& rest) const {
    const std::string head = link == top ? " is " : " goes through '" + link + "', which is ";
    throw_error(Status::FormatError, where + ": " + what + head + rest);
  }

  std::string link_value(hid_t loc, const std::string& link, size_t size, hid_t lapl) const {
    if (size == 0 || size > (1u << 16))
      refuse(link, "a link with an invalid value of " + std::to_string(size) + " bytes");
    std::vector<char> buf(size + 1, '\0');
    if (H5Lget_val(loc, link.c_str(), buf.data(), size, lapl) < 0) refuse(link, "a link whose value cannot be read");
    return std::string(buf.data(), size);
  }

  // Whether every link along `path` exists; throws on a link the policy refuses.
  bool walk(hid_t loc, const std::string& path) const {
    hid_t lapl = no_external_links_lapl();
    size_t pos = path.empty() || path[0] != '/' ? 0 : 1;
    std::string prefix = pos ? "/" : "";
    while (pos <= path.size()) {
      size_t next = path.find('/', pos);
      if (next == std::string::npos) next = path.size();
      const std::string comp = path.substr(pos, next - pos);
      pos = next + 1;
      if (comp.empty() || comp == ".") continue;
      const std::string parent = prefix;
      prefix += (prefix.empty() || prefix == "/" ? "" : "/") + comp;
      if (H5Lexists(loc, prefix.c_str(), lapl) <= 0) return false;
      H5L_info_t info;
      if (H5Lget_info(loc, prefix.c_str(), &info, lapl) < 0) return false;
      if (info.type == H5L_TYPE_HARD) continue;
      if (info.type == H5L_TYPE_SOFT) {
        const std::string raw = link_value(loc, prefix, info.u.val_size, lapl);
        const std::string target = raw.c_str();  // the value is NUL-terminated
        const std::string shown = printable(target.c_str(), 1000);
        if (++followed > kMaxSoftLinks)
          throw_error(Status::FormatError, where + ": " + what + " leads through more than " +
                                               std::to_string(kMaxSoftLinks) +
                                               " soft links (a cycle?); FKB follows soft links only to objects "
                                               "stored inside the " + file_kind);
        const std::string resolved =
            target[0] == '/' || parent.empty() ? target : (parent == "/" ? "/" : parent + "/") + target;
        if (!walk(loc, resolved) || H5Oexists_by_name(loc, prefix.c_str(), lapl) <= 0)
          refuse(prefix, "a soft link to '" + shown + "', which does not resolve inside the file; FKB follows soft "
                         "links only to objects stored inside the " + file_kind);
        continue;
      }
      if (info.type == H5L_TYPE_EXTERNAL) {
        const std::string val = link_value(loc, prefix, info.u.val_size, lapl);
        unsigned flags = 0;
        const char* file = nullptr;
        const char* obj = nullptr;
        if (H5Lunpack_elink_val(val.data(), val.size(), &flags, &file, &obj) < 0)
          refuse(prefix, "an external link (HDF5) whose value cannot be read; " + only_inside(file_kind));
        refuse(prefix, "an external link to '" + printable(obj) + "' in the file '" + printable(file) +
                           "' (HDF5 external link); " + only_inside(file_kind));
      }
      refuse(prefix, "a user-defined HDF5 link (type " + std::to_string(static_cast<int>(info.type)) +
                         "); FKB follows only hard links and soft links to objects stored inside the " + file_kind);
    }
    return true;
  }
};

H5O_type_t object_type(hid_t loc, const std::string& path) {
  H5O_info_t info;
#if H5_VERSION_GE(1, 12, 0)
  if (H5Oget_info_by_name3(loc, path.c_str(), &info, H5O_INFO_BASIC, no_external_links_lapl()) < 0)
    return H5O_TYPE_UNKNOWN;
#else
  if (H5Oget_info_by_name2(loc, path.c_str(), &info, H5O_INFO_BASIC, no_external_links_lapl()) < 0)
    return H5O_TYPE_UNKNOWN;
#endif
  return info.type;
}

}  // namespace

namespace {
hid_t make_apl(hid_t cls) {
  hid_t p = H5Pcreate(cls);
  // HDF5 itself follows at most H5L_NUM_LINKS (16) soft links, and a longer chain that resolves would be reported as
  // one that does not: let it follow what the walk allows, which refuses more with its own message.
  if (p >= 0 && (H5Pset_elink_cb(p, refuse_elink, nullptr) < 0 || H5Pset_nlinks(p, kMaxSoftLinks + 1) < 0)) {
    H5Pclose(p);
    p = -1;
  }
  if (p < 0) throw_error(Status::Internal, "HDF5: cannot create an access property list");
  return p;
}
}  // namespace

// Created once and kept for the process (like H5P_DEFAULT); used with lock() held. Group and dataset access lists
// inherit the link-access properties.
hid_t no_external_links_lapl() {
  static const hid_t p = make_apl(H5P_LINK_ACCESS);
  return p;
}
hid_t no_external_links_gapl() {
  static const hid_t p = make_apl(H5P_GROUP_ACCESS);
  return p;
}
hid_t no_external_links_dapl() {
  static const hid_t p = make_apl(H5P_DATASET_ACCESS);
  return p;
}

bool exists(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
            const std::string& file_kind) {
  return Walker{where, what, path, file_kind}.walk(loc, path);
}

bool is_group(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
              const std::string& file_kind) {
  return exists(loc, path, where, what, file_kind) && object_type(loc, path) == H5O_TYPE_GROUP;
}

Handle open_group(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
                  const std::string& file_kind) {
  if (!exists(loc, path, where, what, file_kind)) throw_error(Status::FormatError, where + ": " + what + " is missing");
  if (object_type(loc, path) != H5O_TYPE_GROUP)
    throw_error(Status::FormatError, where + ": " + what + " is not a group");
  Handle g(H5Gopen2(loc, path.c_str(), no_external_links_gapl()), Handle::Kind::Group);
  if (!g.valid()) throw_error(Status::FormatError, where + ": " + what + " cannot be opened");
  return g;
}

Handle open_dataset(hid_t loc, const std::string& path, const std::string& where, const std::string& what,
                    const std::string& file_kind) {
  if (!exists(loc, path, where, what, file_kind)) throw_error(Status::FormatError, where + ": " + what + " is missing");
  if (object_type(loc, path) != H5O_TYPE_DATASET)
    throw_error(Status::FormatError, where + ": " + what + " is not a dataset");
  Handle d(H5Dopen2(loc, path.c_str(), no_external_links_dapl()), Handle::Kind::Dataset);
  if (!d.valid()) throw_error(Status::FormatError, where + ": " + what + " is not a readable dataset");
  return d;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

namespace {

bool builtin_filter(H5Z_filter_t id) {
  switch (id) {
    case H5Z_FILTER_DEFLATE:
    case H5Z_FILTER_SHUFFLE:
    case H5Z_FILTER_FLETCHER32:
    case H5Z_FILTER_SZIP:
    case H5Z_FILTER_NBIT:
    case H5Z_FILTER_SCALEOFFSET: return true;
    default: return false;
  }
}

}  // namespace

DatasetInfo check_dataset(hid_t d, const std::string& where, const std::string& what, const std::string& file_kind,
                          const ShapeRule* rule) {
  auto refuse = [&](const std::string& rest) { throw_error(Status::FormatError, where + ": " + what + " " + rest); };
  Handle dcpl(H5Dget_create_plist(d), Handle::Kind::Plist);
  if (!dcpl.valid()) refuse("has no readable creation properties (the file is truncated or corrupted)");
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  // Where the bytes live: HDF5 external storage and virtual datasets read other files of the host.
  const int n_ext = H5Pget_external_count(dcpl.get());
  if (n_ext > 0) {
    char name[1024] = {0};
    off_t offset = 0;
    hsize_t size = 0;
    H5Pget_external(dcpl.get(), 0, sizeof name - 1, name, &offset, &size);
    refuse("is stored in an external file '" + printable(name, 1000) + "' (HDF5 external storage); " +
           only_inside(file_kind));
  }
  if (layout == H5D_VIRTUAL) {
    std::string src = "?", dset = "?";
    size_t count = 0;
    if (H5Pget_virtual_count(dcpl.get(), &count) >= 0 && count > 0) {
      char buf[1024] = {0};
      if (H5Pget_virtual_filename(dcpl.get(), 0, buf, sizeof buf - 1) >= 0) src = printable(buf, 1000);
      char dbuf[1024] = {0};
      if (H5Pget_virtual_dsetname(dcpl.get(), 0, dbuf, sizeof dbuf - 1) >= 0) dset = printable(dbuf, 1000);
    }
    refuse("is a virtual dataset whose data comes from '" + dset + "' in the file '" + src +
           "' (HDF5 virtual dataset); " + only_inside(file_kind));
  }
  if (layout != H5D_CONTIGUOUS && layout != H5D_COMPACT && layout != H5D_CHUNKED)
    refuse("has an unknown storage layout (" + std::to_string(static_cast<int>(layout)) + ")");
  // Filters: only those built into HDF5. Checked before any read, and plugin loading is off (NoPlugins) anyway.
  const int n_filters = H5Pget_nfilters(dcpl.get());
  if (n_filters < 0) refuse("has an unreadable filter pipeline (the file is truncated or corrupted)");
  for (int i = 0; i < n_filters; ++i) {
    unsigned flags = 0, config = 0;
    size_t n_cd = 0;
    char name[256] = {0};
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &n_cd, nullptr,
                                           sizeof name - 1, name, &config);
    if (id < 0) refuse("has an unreadable filter pipeline (the file is truncated or corrupted)");
    if (!builtin_filter(id))
      refuse("uses HDF5 filter " + std::to_string(id) + (name[0] ? " ('" + printable(name) + "')" : std::string()) +
             ", which is not built into HDF5; FKB does not load filter plugins (built-in filters: deflate, "
             "shuffle, fletcher32, szip, nbit, scaleoffset)");
  }

  DatasetInfo info;
  Handle space(H5Dget_space(d), Handle::Kind::Dataspace);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || rank > 8) refuse("has an invalid shape (rank " + std::to_string(rank) + ")");
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) refuse("has an invalid shape");
  Handle type(H5Dget_type(d), Handle::Kind::Datatype);
  info.type_class = type.valid() ? H5Tget_class(type.get()) : H5T_NO_CLASS;
  info.type_size = type.valid() ? H5Tget_size(type.get()) : 0;
  uint64_t n = 1;
  bool overflow = false;
  for (auto v : dims) {
    info.shape.push_back(v > static_cast<hsize_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(v));
    overflow = overflow || v > static_cast<hsize_t>(INT64_MAX) || __builtin_mul_overflow(n, v, &n);
  }
  uint64_t declared = 0;
  if (overflow || n > static_cast<uint64_t>(INT64_MAX) ||
      __builtin_mul_overflow(n, uint64_t{info.type_size}, &declared))
    refuse("declares the shape " + shape_str(info.shape) + ", whose size does not fit in 64 bits");
  info.elements = n;
  // What the config fixes comes first: a shape that disagrees with it is refused whatever the file stores.
  if (rule && ((rule->rank >= 0 && static_cast<int>(info.shape.size()) != rule->rank) ||
               (rule->last_dim >= 0 && (info.shape.empty() || info.shape.back() != rule->last_dim)))) {
    std::string expect = "(";
    for (int i = 0; i + 1 < rule->rank; ++i) expect += "*, ";
    expect += std::to_string(rule->last_dim) + (rule->rank == 1 ? ",)" : ")");
    throw_error(Status::ShapeMismatch, where + ": " + what + " has the shape " + shape_str(info.shape) +
                                         " but " + rule->why + " implies " + expect);
  }
  // Opaque: h5py's storage of ml_dtypes.bfloat16 (Keras 3), read by read_array; other classes the caller refuses.
  if (info.type_class != H5T_FLOAT && info.type_class != H5T_INTEGER && info.type_class != H5T_OPAQUE) return info;
  if (info.type_size == 0 || info.type_size > 16) refuse("has an invalid element size");

  // Declared bytes vs what the file stores for them (H5Dget_storage_size: the bytes allocated in the file).
  const uint64_t stored = H5Dget_storage_size(d);
  const std::string sizes = "declares the shape " + shape_str(info.shape) + " (" + loader::bytes_str(declared) +
                            ") but the file stores " + loader::bytes_str(stored) + " for it";
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(dims.size(), 0);
    if (rank > 0 && H5Pget_chunk(dcpl.get(), rank, chunk.data()) != rank)
      refuse("has an unreadable chunk layout (the file is truncated or corrupted)");
    uint64_t chunks = 1;
    bool many = false;
    for (size_t i = 0; i < dims.size(); ++i)
      many = many || chunk[i] == 0 || __builtin_mul_overflow(chunks, (dims[i] + chunk[i] - 1) / chunk[i], &chunks);
    if (many || chunks > kMaxChunks) {
      std::vector<int64_t> cshape(chunk.begin(), chunk.end());
      refuse("declares the shape " + shape_str(info.shape) + " in chunks of " + shape_str(cshape) + ": " +
             (many ? std::string("more than 2^64") : std::to_string(chunks)) + " chunks, over the limit of " +
             std::to_string(kMaxChunks) + " (HDF5 keeps state for every chunk it reads)");
    }
    if (n > 0 && stored == 0) refuse(sizes + "; " + only_inside(file_kind) + ", not HDF5 fill values");
    if (declared > kMinRatioCheckBytes && declared / kMaxChunkedRatio > stored)
      refuse(sizes + ", more than " + std::to_string(kMaxChunkedRatio) +
             " times its stored size (a decompression bomb); FKB refuses compressed data that inflates beyond that");
  } else {
    if (stored != declared) refuse(sizes + "; its stored size must equal its declared size");
    if (layout == H5D_CONTIGUOUS && n > 0) {
      const haddr_t off = H5Dget_offset(d);
      hsize_t file_bytes = 0;
      Handle file(H5Iget_file_id(d), Handle::Kind::File);
      if (off == HADDR_UNDEF || !file.valid() || H5Fget_filesize(file.get(), &file_bytes) < 0 ||
          off > file_bytes || declared > file_bytes - off)
        refuse(sizes + " at offset " + (off == HADDR_UNDEF ? std::string("(none)") : std::to_string(off)) +
               ", past the end of the file (" + loader::bytes_str(file_bytes) +
               "): the file is truncated or corrupted");
    }
  }
  return info;
}

bool has_attr(hid_t loc, const std::string& name) {
  check_attribute_messages(loc);  // HDF5 1.10 decodes attribute messages without bounds checks: check first
  return H5Aexists(loc, name.c_str()) > 0;
}

namespace {

std::vector<std::string> read_string_attr(hid_t loc, const std::string& name, const std::string& where,
                                          uint64_t max_bytes, const char* limit_name) {
  const std::string limit = limit_name ? std::string(" (") + limit_name + ")" : std::string(" for it");
  Handle a(H5Aopen(loc, name.c_str(), H5P_DEFAULT), Handle::Kind::Attribute);
  if (!a.valid()) throw_error(Status::FormatError, where + ": attribute '" + name + "' cannot be opened");
  Handle type(H5Aget_type(a.get()), Handle::Kind::Datatype);
  Handle space(H5Aget_space(a.get()), Handle::Kind::Dataspace);
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw_error(Status::FormatError, where + ": attribute '" + name + "' is not a string");
  hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) throw_error(Status::FormatError, where + ": attribute '" + name + "' has an invalid dataspace");
  std::vector<std::string> out;
  if (n == 0) return out;
  // Sizes before allocation: what the attribute declares against what it stores and against the caller's limit.
  const uint64_t stored = H5Aget_storage_size(a.get());
  const bool vlen = H5Tis_variable_str(type.get()) > 0;
  const size_t len = vlen ? 1 : H5Tget_size(type.get());
  uint64_t declared = 0;
  if (len == 0 || __builtin_mul_overflow(static_cast<uint64_t>(n), uint64_t{len}, &declared) || declared > stored)
    throw_error(Status::FormatError, where + ": attribute '" + name + "' declares " + std::to_string(n) +
                                         " string(s) of " + std::to_string(len) + " byte(s) but stores " +
                                         loader::bytes_str(stored) + ": the file is truncated or corrupted");
  if (declared > max_bytes || stored > max_bytes)
    throw_error(Status::FormatError, where + ": attribute '" + name + "' holds " +
                                         loader::bytes_str(std::max(declared, stored)) + ", over the limit of " +
                                         loader::bytes_str(max_bytes) + limit);
  try {
    if (vlen) {
      // HDF5 1.10 follows each string's global-heap reference without checking it: check first.
      check_vlen_string_attr(loc, name, static_cast<uint64_t>(n), where);
      Handle mem(H5Tcopy(H5T_C_S1), Handle::Kind::Datatype);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
      std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
      if (H5Aread(a.get(), mem.get(), ptrs.data()) < 0)
        throw_error(Status::FormatError, where + ": attribute '" + name + "' cannot be read");
      // Strings longer than the limit are refused after HDF5 has read them from the file (their length is in the
      // file's global heap, bounded by the file's size).
      uint64_t total = 0;
      for (char* p : ptrs) total += p ? std::strlen(p) : 0;
      if (total > max_bytes) {
        H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
        throw_error(Status::FormatError, where + ": attribute '" + name + "' holds " + loader::bytes_str(total) +
                                             ", over the limit of " + loader::bytes_str(max_bytes) + limit);
      }
      for (char* p : ptrs) out.emplace_back(p ? p : "");
      H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, ptrs.data());
    } else {
      std::vector<char> buf(static_cast<size_t>(declared) + 1, '\0');
      Handle mem(H5Tcopy(type.get()), Handle::Kind::Datatype);
      if (H5Aread(a.get(), mem.get(), buf.data()) < 0)
        throw_error(Status::FormatError, where + ": attribute '" + name + "' cannot be read");
      for (hssize_t i = 0; i < n; ++i) {
        const char* s = buf.data() + i * len;
        out.emplace_back(s, strnlen(s, len));
      }
    }
  } catch (const std::bad_alloc&) {
    throw_error(Status::FormatError, where + ": attribute '" + name + "' (" + loader::bytes_str(declared) +
                                         ") cannot be allocated in this process");
  }
  return out;
}

// Attributes FKB reads are names and configs: at most this much unless the caller says otherwise.
constexpr uint64_t kMaxNamesAttrBytes = uint64_t{256} << 20;

}  // namespace

std::string attr_string(hid_t loc, const std::string& name, const std::string& where, uint64_t max_bytes,
                        const char* limit_name) {
  if (!has_attr(loc, name)) throw_error(Status::FormatError, where + ": attribute '" + name + "' is missing");
  auto v = read_string_attr(loc, name, where, max_bytes, limit_name);
  if (v.empty()) return "";
  return v[0];
}

std::vector<std::string> attr_strings(hid_t loc, const std::string& name, const std::string& where) {
  // H5Aexists fails (rather than saying "no") on an attribute whose header it cannot decode, e.g. one declaring more
  // data than it holds: that is a corrupted file, not a layer without weights.
  check_attribute_messages(loc);
  if (H5Aexists(loc, name.c_str()) < 0)
    throw_error(Status::FormatError, where + ": attribute '" + name +
                                         "' cannot be read (its declared size or header is invalid): the file is "
                                         "truncated or corrupted");
  if (has_attr(loc, name)) return read_string_attr(loc, name, where, kMaxNamesAttrBytes, nullptr);
  std::vector<std::string> out;
  for (int chunk = 0; has_attr(loc, name + std::to_string(chunk)); ++chunk) {
    auto part = read_string_attr(loc, name + std::to_string(chunk), where, kMaxNamesAttrBytes, nullptr);
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::vector<std::string> children(hid_t loc, const std::string& path, const std::string& where) {
  std::vector<std::string> out;
  Handle g = open_group(loc, path, where, "group '" + path + "'");
  H5G_info_t info;
  if (H5Gget_info(g.get(), &info) < 0) return out;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    ssize_t len = H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (len < 0 || len > (1 << 16)) continue;
    std::string name(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(g.get(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT);
    name.resize(static_cast<size_t>(len));
    out.push_back(name);
  }
  return out;
}

namespace {

const char* type_class_name(H5T_class_t c) {
  switch (c) {
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
  }
}

// Whether a 2-byte opaque dataset holds bfloat16: Keras 3's H5IOStore marks it with the attribute dtype="bfloat16"
// (.keras, .weights.h5); its legacy .h5 writer does not, and the layer's dtype policy says it (`layer_bfloat16`).
bool opaque_is_bfloat16(hid_t dset, const DatasetInfo& info, bool layer_bfloat16, const std::string& where) {
  if (info.type_size != 2) return false;
  if (layer_bfloat16) return true;
  if (!has_attr(dset, "dtype")) return false;
  Handle a(H5Aopen(dset, "dtype", H5P_DEFAULT), Handle::Kind::Attribute);
  Handle t(a.valid() ? H5Aget_type(a.get()) : -1, Handle::Kind::Datatype);
  if (!t.valid() || H5Tget_class(t.get()) != H5T_STRING) return false;
  return attr_string(dset, "dtype", where, 64) == "bfloat16";
}

// bfloat16 is the upper half of a float32: widening is exact. h5py stores the raw little-endian bytes of the numpy
// array (opaque types have no byte order of their own).
void read_bfloat16(hid_t dset, const std::string& where, const std::string& path, Array* a) {
  std::vector<unsigned char> raw(a->data.size() * 2);
  Handle type(H5Dget_type(dset), Handle::Kind::Datatype);
  if (!type.valid() || H5Dread(dset, type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
    throw_error(Status::FormatError,
                where + ": weight '" + path + "' cannot be read (the file is truncated or corrupted)");
  for (size_t i = 0; i < a->data.size(); ++i) {
    const uint32_t bits = (uint32_t{raw[2 * i + 1]} << 24) | (uint32_t{raw[2 * i]} << 16);
    std::memcpy(&a->data[i], &bits, sizeof bits);
  }
}

}  // namespace

Array read_array(hid_t loc, const std::string& path, const std::string& where, loader::WeightBudget& budget,
                 const ShapeRule* rule, bool layer_bfloat16) {
  const std::string what = "weight '" + path + "'";
  if (!exists(loc, path, where, what))
    throw_error(Status::FormatError, where + ": weight dataset '" + path + "' is missing");
  Handle d = open_dataset(loc, path, where, what);
  const DatasetInfo info = check_dataset(d.get(), where, what, "model file", rule);
  const bool bf16 = info.type_class == H5T_OPAQUE && opaque_is_bfloat16(d.get(), info, layer_bfloat16, where);
  if (info.type_class == H5T_OPAQUE && !bf16)
    throw_error(Status::FormatError,
                where + ": weight '" + path + "' holds opaque " + std::to_string(info.type_size) +
                    "-byte values that are not marked as bfloat16 (no dtype=\"bfloat16\" attribute, and the "
                    "layer's dtype policy is not bfloat16); FKB reads float16, float32, float64, bfloat16 and "
                    "integer weights");
  if (info.type_class != H5T_FLOAT && info.type_class != H5T_INTEGER && !bf16)
    throw_error(Status::FormatError, where + ": weight '" + path + "' is not numeric (HDF5 " +
                                         type_class_name(info.type_class) +
                                         " type); FKB reads float16, float32, float64, bfloat16 and integer weights");
  const uint64_t bytes = info.elements * sizeof(float);  // check_dataset: elements * type_size fits in 64 bits
  if (info.elements > UINT64_MAX / sizeof(float))
    throw_error(Status::FormatError, where + ": weight '" + path + "' declares the shape " + shape_str(info.shape) +
                                         ", whose size does not fit in 64 bits");
  budget.take(bytes, "weight '" + path + "' of " + where);
  Array a;
  a.shape = info.shape;
  try {
    a.data.resize(static_cast<size_t>(info.elements));
    if (bf16 && info.elements > 0) {
      read_bfloat16(d.get(), where, path, &a);
      return a;
    }
  } catch (const std::bad_alloc&) {
    throw_error(Status::FormatError, where + ": weight '" + path + "' " + shape_str(info.shape) + " needs " +
                                         loader::bytes_str(bytes) + ", which this process cannot allocate");
  } catch (const std::length_error&) {
    throw_error(Status::FormatError, where + ": weight '" + path + "' " + shape_str(info.shape) + " needs " +
                                         loader::bytes_str(bytes) + ", which this process cannot allocate");
  }
  // HDF5 converts float16/float64/integers to float32 (float16 and int8 exactly).
  if (info.elements > 0 &&
      H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data.data()) < 0)
    throw_error(Status::FormatError,
                where + ": weight '" + path + "' cannot be read (the file is truncated or corrupted)");
  return a;
}

}  // namespace fkb::h5
