// See h5_vlen_guard.hpp. Layouts: the HDF5 File Format Specification, version 2/3 ("Version 1 Object Header",
// "Version 2 Object Header", "Header Message Continuation", "Attribute Message", "Attribute Info Message",
// "Global Heap", "Variable-Length Data" in "Disk Format: Level 2A/1E").
#include "loader/h5_vlen_guard.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "fkb/error.hpp"

namespace fkb::h5 {

namespace {

using Bytes = std::vector<unsigned char>;

[[noreturn]] void refuse(const std::string& fail, const std::string& what) {
  throw_error(Status::FormatError, fail + what +
                                       "; FKB checks attribute messages and their global-heap references before "
                                       "HDF5 decodes them (the file is truncated, corrupted or crafted)");
}

constexpr uint16_t kMsgContinuation = 0x10;
constexpr uint16_t kMsgAttribute = 0x0C;
constexpr uint16_t kMsgAttributeInfo = 0x15;
constexpr uint64_t kMinCollection = 4096;           // HDF5's smallest collection (H5HG_MINSIZE)
constexpr uint64_t kMaxCollection = uint64_t{1} << 30;
constexpr int kMaxChunks = 4096;                    // object header chunks walked
constexpr uint64_t kMaxChunkBytes = uint64_t{1} << 26;

uint64_t le(const unsigned char* p, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}
uint64_t align8(uint64_t v) { return (v + 7) & ~uint64_t{7}; }

// The file's bytes, read the way its HDF5 driver reads them: pread on the sec2 descriptor or the core driver's
// image. Addresses in the file are relative to the base address (the user block's size).
class RawFile {
 public:
  RawFile(hid_t loc, const std::string& fail) {
    file_ = H5Iget_file_id(loc);
    if (file_ < 0) refuse(fail, "its file cannot be identified");
    hid_t fapl = H5Fget_access_plist(file_);
    hid_t fcpl = H5Fget_create_plist(file_);
    hid_t driver = fapl >= 0 ? H5Pget_driver(fapl) : -1;
    size_t sa = 0, ss = 0;
    hsize_t ub = 0;
    void* handle = nullptr;
    const bool ok = fcpl >= 0 && H5Pget_sizes(fcpl, &sa, &ss) >= 0 && H5Pget_userblock(fcpl, &ub) >= 0 &&
                    H5Fget_vfd_handle(file_, fapl, &handle) >= 0 && handle != nullptr;
    if (ok && driver == H5FD_SEC2) {
      fd_ = *static_cast<int*>(handle);
      struct stat st {};
      if (fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
    } else if (ok && driver == H5FD_CORE) {
      mem_ = *static_cast<const unsigned char**>(handle);
      hsize_t n = 0;
      if (H5Fget_filesize(file_, &n) >= 0) size_ = n;
    }
    if (fapl >= 0) H5Pclose(fapl);
    if (fcpl >= 0) H5Pclose(fcpl);
    sizeof_addr = static_cast<unsigned>(sa);
    sizeof_size = static_cast<unsigned>(ss);
    base_ = ub;
    if (!ok || (fd_ < 0 && mem_ == nullptr) || sa < 2 || sa > 8 || ss < 2 || ss > 8) {
      H5Fclose(file_);
      refuse(fail, "FKB cannot read its file's bytes to check it");
    }
  }
  ~RawFile() { H5Fclose(file_); }
  RawFile(const RawFile&) = delete;
  RawFile& operator=(const RawFile&) = delete;

  /// `n` bytes at file address `addr` (relative to the base); false when any of them lies outside the file.
  bool read(uint64_t addr, uint64_t n, Bytes& out) const {
    uint64_t abs = 0, end = 0;
    if (__builtin_add_overflow(addr, base_, &abs) || __builtin_add_overflow(abs, n, &end) || end > size_) return false;
    out.resize(static_cast<size_t>(n));
    if (mem_) {
      if (n) std::memcpy(out.data(), mem_ + abs, static_cast<size_t>(n));
      return true;
    }
    uint64_t done = 0;
    while (done < n) {
      ssize_t r = pread(fd_, out.data() + done, static_cast<size_t>(n - done), static_cast<off_t>(abs + done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      done += static_cast<uint64_t>(r);
    }
    return true;
  }
  bool undefined(uint64_t addr) const {  // HADDR_UNDEF: all ones in sizeof_addr bytes
    return sizeof_addr == 8 ? addr == ~uint64_t{0} : addr == (uint64_t{1} << (8 * sizeof_addr)) - 1;
  }

  unsigned sizeof_addr = 8, sizeof_size = 8;

 private:
  hid_t file_ = -1;
  int fd_ = -1;
  const unsigned char* mem_ = nullptr;
  uint64_t size_ = 0, base_ = 0;
};

struct Search {
  const RawFile& f;
  const std::string& name;
  const std::string& fail;
  Bytes data;          // the attribute's raw data, when found in the header
  bool found = false;
  bool shared = false;  // an attribute message stored as a shared message: not checkable here
  bool dense = false;   // the object has dense attribute storage
};

// The bytes an attribute message's data must hold: elements of its dataspace times its datatype's size, as HDF5
// computes them when it decodes the message (and copies that many bytes from it). -1 when a shared datatype or
// dataspace keeps them elsewhere.
int64_t attribute_data_bytes(const Search& s, const unsigned char* dt, uint64_t dt_size, bool dt_shared,
                             const unsigned char* ds, uint64_t ds_size, bool ds_shared) {
  if (dt_shared || ds_shared) return -1;
  if (dt_size < 8) refuse(s.fail, "an attribute's datatype is truncated");
  const unsigned cls = dt[0] & 0x0F;
  // HDF5 sizes the data by the size field but reads a variable-length element as its length and a global heap
  // reference: the two must agree.
  const uint64_t elem = le(dt + 4, 4);
  if (cls == 9 && elem != 4 + s.f.sizeof_addr + 4)
    refuse(s.fail, "a variable-length attribute's datatype declares " + std::to_string(elem) +
                       "-byte elements (HDF5 writes " + std::to_string(4 + s.f.sizeof_addr + 4) + ")");
  // A variable-length string's characters are 1-byte: HDF5 sizes its read buffer as length times the base type's
  // size, so a crafted base size turns a short string into a huge allocation.
  if (cls == 9 && (dt[1] & 0x0F) == 1 && (dt_size < 16 || le(dt + 12, 4) != 1))
    refuse(s.fail, "a variable-length string attribute's characters are not 1 byte");
  if (ds_size < 4) refuse(s.fail, "an attribute's dataspace is truncated");
  const unsigned version = ds[0], rank = ds[1];
  const uint64_t dims_at = version == 1 ? 8 : 4;
  if ((version != 1 && version != 2) || rank > 32 || dims_at + uint64_t{rank} * s.f.sizeof_size > ds_size)
    refuse(s.fail, "an attribute's dataspace is malformed (version " + std::to_string(version) + ", rank " +
                       std::to_string(rank) + ")");
  uint64_t n = 1;
  if (version == 2 && ds[3] == 2) n = 0;  // a null dataspace
  for (unsigned i = 0; i < rank; ++i)
    if (__builtin_mul_overflow(n, le(ds + dims_at + uint64_t{i} * s.f.sizeof_size, s.f.sizeof_size), &n))
      refuse(s.fail, "an attribute's dataspace declares more elements than can be counted");
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n, elem, &bytes) || bytes > (uint64_t{1} << 62))
    refuse(s.fail, "an attribute declares more data than can be counted");
  return static_cast<int64_t>(bytes);
}

// An attribute message: its layout is checked (HDF5 1.10 decodes the name with strdup and copies the declared data
// bytes without checking either against the message); when it carries `name`, its raw data is kept.
void attribute_message(Search& s, const unsigned char* d, uint64_t size) {
  if (size < 8) refuse(s.fail, "an attribute message of its object header is truncated");
  const unsigned version = d[0];
  const unsigned flags = version == 1 ? 0 : d[1];
  const uint64_t name_size = le(d + 2, 2), dt_size = le(d + 4, 2), ds_size = le(d + 6, 2);
  uint64_t off = 8;
  if (version == 3) off = 9;
  else if (version != 1 && version != 2)
    refuse(s.fail, "its object header holds an attribute message of unknown version " + std::to_string(version));
  auto pad = [&](uint64_t v) { return version == 1 ? align8(v) : v; };
  if (name_size == 0 || off + pad(name_size) + pad(dt_size) + pad(ds_size) > size)
    refuse(s.fail, "an attribute message's name, datatype or dataspace runs past the message");
  const char* nm = reinterpret_cast<const char*>(d + off);
  if (std::memchr(nm, '\0', static_cast<size_t>(name_size)) == nullptr)
    refuse(s.fail, "an attribute's name is not terminated within its message");
  const std::string attr_name(nm);
  const unsigned char* dt = d + off + pad(name_size);
  const unsigned char* ds = dt + pad(dt_size);
  off += pad(name_size) + pad(dt_size) + pad(ds_size);
  const int64_t need = attribute_data_bytes(s, dt, dt_size, flags & 0x01, ds, ds_size, flags & 0x02);
  if (need >= 0 && static_cast<uint64_t>(need) > size - off)
    refuse(s.fail, "attribute '" + attr_name + "' declares " + std::to_string(need) + " bytes of data but its " +
                       "message holds " + std::to_string(size - off));
  if (s.name.empty() || attr_name != s.name) return;
  if (s.found) refuse(s.fail, "its object header holds two attributes of that name");
  s.found = true;
  s.data.assign(d + off, d + size);
}

// Walk the messages of one object header chunk; continuation chunks are appended to `chunks`.
void walk_messages(Search& s, const Bytes& c, uint64_t begin, uint64_t end, bool v2, bool creation_order,
                   std::vector<std::pair<uint64_t, uint64_t>>& chunks) {
  const RawFile& f = s.f;
  const uint64_t hdr = v2 ? (creation_order ? 6 : 4) : 8;
  uint64_t p = begin;
  while (p + hdr <= end) {
    const uint16_t type = static_cast<uint16_t>(v2 ? c[p] : le(&c[p], 2));
    const uint64_t size = v2 ? le(&c[p + 1], 2) : le(&c[p + 2], 2);
    const unsigned flags = v2 ? c[p + 3] : c[p + 4];
    const uint64_t data = p + hdr;
    if (data + size > end)
      refuse(s.fail, "a message of its object header runs past the header's end");
    const unsigned char* d = &c[data];
    if (type == kMsgContinuation) {
      if (size < f.sizeof_addr + f.sizeof_size)
        refuse(s.fail, "a continuation message of its object header is truncated");
      chunks.emplace_back(le(d, f.sizeof_addr), le(d + f.sizeof_addr, f.sizeof_size));
    } else if (type == kMsgAttribute) {
      if (flags & 0x02) s.shared = true;
      else attribute_message(s, d, size);
    } else if (type == kMsgAttributeInfo && size >= 2 + f.sizeof_addr) {
      const uint64_t heap = le(d + 2 + ((d[1] & 0x01) ? 2 : 0), f.sizeof_addr);
      if (size >= 2 + ((d[1] & 0x01) ? 2u : 0u) + f.sizeof_addr && !f.undefined(heap)) s.dense = true;
    }
    p = data + size;
  }
}

void find_attribute(Search& s, uint64_t header) {
  const RawFile& f = s.f;
  Bytes c;
  auto truncated = [&](const std::string& what) { refuse(s.fail, "its object header" + what + " lies outside the file"); };
  if (!f.read(header, 16, c)) truncated("");
  std::vector<std::pair<uint64_t, uint64_t>> chunks;
  bool v2 = false, creation_order = false;
  if (std::memcmp(c.data(), "OHDR", 4) == 0) {
    v2 = true;
    const unsigned flags = c[5];
    creation_order = flags & 0x04;
    uint64_t off = 6 + ((flags & 0x20) ? 16 : 0) + ((flags & 0x10) ? 4 : 0);
    const unsigned width = 1u << (flags & 0x03);
    Bytes w;
    if (!f.read(header + off, width, w)) truncated("");
    const uint64_t size0 = le(w.data(), width);
    if (size0 > kMaxChunkBytes) refuse(s.fail, "its object header is implausibly large");
    const uint64_t start = off + width;
    if (!f.read(header, start + size0, c)) truncated("");
    walk_messages(s, c, start, start + size0, true, creation_order, chunks);
  } else if (c[0] == 1) {
    const uint64_t size0 = le(&c[8], 4);
    if (size0 > kMaxChunkBytes) refuse(s.fail, "its object header is implausibly large");
    if (!f.read(header + 16, size0, c)) truncated("");
    walk_messages(s, c, 0, size0, false, false, chunks);
  } else {
    refuse(s.fail, "its object header has an unknown version");
  }
  std::set<uint64_t> seen;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto [addr, len] = chunks[i];
    if (i >= static_cast<size_t>(kMaxChunks) || !seen.insert(addr).second || len > kMaxChunkBytes)
      refuse(s.fail, "its object header's continuation chunks loop or are too many");
    if (!f.read(addr, len, c)) truncated("'s continuation chunk");
    if (v2) {
      if (len < 8 || std::memcmp(c.data(), "OCHK", 4) != 0)
        refuse(s.fail, "a continuation chunk of its object header has no OCHK signature");
      walk_messages(s, c, 4, len - 4, true, creation_order, chunks);
    } else {
      walk_messages(s, c, 0, len, false, false, chunks);
    }
  }
}

// The objects of one global heap collection (index -> size), checked the way HDF5 decodes them.
using Collection = std::map<uint64_t, uint64_t>;

Collection read_collection(const RawFile& f, uint64_t addr, const std::string& fail) {
  const std::string at = "the global heap collection at address " + std::to_string(addr) + " ";
  const uint64_t hdr = 8 + f.sizeof_size, objhdr = 8 + f.sizeof_size;
  Bytes c;
  if (!f.read(addr, hdr, c)) refuse(fail, at + "lies outside the file");
  if (std::memcmp(c.data(), "GCOL", 4) != 0 || c[4] != 1)
    refuse(fail, at + "has no GCOL signature of version 1");
  const uint64_t size = le(&c[8], f.sizeof_size);
  if (size < kMinCollection || size > kMaxCollection)
    refuse(fail, at + "declares " + std::to_string(size) +
                                         " bytes (HDF5 writes 4096 bytes to 1 GiB)");
  if (!f.read(addr, size, c)) refuse(fail, at + "runs past the end of the file");
  Collection objs;
  uint64_t p = hdr;
  while (p < size) {
    if (p + objhdr > size) break;  // a tail too small for an object header is free space
    const uint64_t idx = le(&c[p], 2), osize = le(&c[p + 8], f.sizeof_size);
    if (osize > size - p)
      refuse(fail, at + "holds object " + std::to_string(idx) + " of " +
                                           std::to_string(osize) + " bytes, past the collection's end");
    if (idx == 0) {  // free space: its size includes its header and is where the next object begins
      if (osize < objhdr) refuse(fail, at + "has a free-space object smaller than its header");
      p += osize;
      continue;
    }
    const uint64_t need = objhdr + align8(osize);
    if (need > size - p)
      refuse(fail, at + "holds object " + std::to_string(idx) + " of " +
                                           std::to_string(osize) + " bytes, past the collection's end");
    if (!objs.emplace(idx, osize).second)
      refuse(fail, at + "holds object " + std::to_string(idx) + " twice");
    p += need;
  }
  return objs;
}

}  // namespace

namespace {

// The object header's address and the file's number (HDF5 numbers each opened file anew).
std::pair<uint64_t, unsigned long> locate(hid_t loc, const std::string& fail) {
  uint64_t header = 0;
#if H5_VERSION_GE(1, 12, 0)
  H5O_info2_t info{};
  if (H5Oget_info3(loc, &info, H5O_INFO_BASIC) < 0 || H5VLnative_token_to_addr(loc, info.token, &header) < 0)
    refuse(fail, "its object header cannot be located");
#else
  H5O_info_t info{};
  if (H5Oget_info2(loc, &info, H5O_INFO_BASIC) < 0) refuse(fail, "its object header cannot be located");
  header = info.addr;
#endif
  return {header, info.fileno};
}

std::string object_label(hid_t loc) {
  char file[4096] = {0}, obj[4096] = {0};
  if (H5Fget_name(loc, file, sizeof file) < 0) file[0] = 0;
  if (H5Iget_name(loc, obj, sizeof obj) <= 0) std::strcpy(obj, "/");
  return std::string(file) + ": object '" + obj + "': ";
}

}  // namespace

void check_attribute_messages(hid_t loc) {
  const std::string fail = object_label(loc);
  const auto [header, fileno] = locate(loc, fail);
  // Object headers already checked, for the file last checked.
  static unsigned long cached_file = 0;
  static std::set<uint64_t> checked;
  if (fileno != cached_file) {
    checked.clear();
    cached_file = fileno;
  }
  if (checked.count(header)) return;
  RawFile f(loc, fail);
  const std::string none;
  Search s{f, none, fail, {}};
  find_attribute(s, header);
  checked.insert(header);
}

void check_vlen_string_attr(hid_t loc, const std::string& name, uint64_t elements, const std::string& where) {
  const std::string fail = where + ": variable-length string attribute '" + name + "': ";
  RawFile f(loc, fail);
  const auto [header, fileno] = locate(loc, fail);
  // Collections already checked in this file (every layer's weight_names may point into the collection that holds
  // a large model_config): kept for the file last checked. HDF5 numbers each opened file anew, so a number is never
  // another file's.
  static unsigned long cached_file = 0;
  static std::map<uint64_t, Collection> collections;
  if (fileno != cached_file) {
    collections.clear();
    cached_file = fileno;
  }
  Search s{f, name, fail, {}};
  find_attribute(s, header);
  if (!s.found)
    refuse(fail, s.shared || s.dense ? "it is stored outside the object header (shared or dense attribute storage, "
                                       "which Keras and h5py do not write by default), where FKB cannot check it"
                                     : "it is not in its object header");
  const uint64_t elem = 4 + f.sizeof_addr + 4;  // sequence length, collection address, object index
  if (elements > s.data.size() / elem)
    refuse(fail, "it declares " + std::to_string(elements) + " strings but stores " +
                                         std::to_string(s.data.size()) + " bytes of references");
  for (uint64_t i = 0; i < elements; ++i) {
    const unsigned char* r = s.data.data() + i * elem;
    const uint64_t length = le(r, 4), addr = le(r + 4, f.sizeof_addr), idx = le(r + 4 + f.sizeof_addr, 4);
    if (addr == 0) continue;  // a null string: HDF5 reads nothing
    const std::string elt = "string " + std::to_string(i) + " ";
    if (f.undefined(addr)) refuse(fail, elt + "refers to an undefined address");
    auto it = collections.find(addr);
    if (it == collections.end()) it = collections.emplace(addr, read_collection(f, addr, fail)).first;
    auto obj = it->second.find(idx);
    if (obj == it->second.end())
      refuse(fail, elt + "refers to object " + std::to_string(idx) +
                                           ", which its global heap collection does not hold");
    if (obj->second != length)
      refuse(fail, elt + "declares " + std::to_string(length) + " bytes but its heap object holds " +
                                           std::to_string(obj->second));
  }
}

}  // namespace fkb::h5
