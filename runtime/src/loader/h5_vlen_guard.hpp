// Checks a variable-length string attribute's references into the HDF5 global heap before HDF5 follows them.
//
// A variable-length string attribute stores, per string, its length and a reference (collection address, object
// index) into a "global heap collection" elsewhere in the file; H5Aread follows each reference and copies the
// object. HDF5 1.10 (Debian 12's libhdf5) trusts both the reference and the collection's own layout: a crafted
// file makes it copy past its buffers, read through a null object, or loop forever while decoding a collection
// (README "Loading policy"; tests/fuzz/README.md). Keras keeps its model_config, keras_version and backend in such
// attributes, so every legacy .h5 FKB loads goes through this check first.
//
// The check reads the attribute's raw bytes from the object header itself (HDF5 has no call that returns them
// undecoded) and each collection it points into, with the file's own sizes of addresses and lengths, and accepts
// only what HDF5 writes: the attribute message in the object header (v1 or v2, with continuation chunks), each
// reference either null with length 0, or pointing at a collection ("GCOL", version 1, at least 4096 bytes, inside
// the file) whose objects tile it exactly, at an object that exists and holds exactly the string's length.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>

namespace fkb::h5 {

/// Throws fkb::Error (Status::FormatError) naming the file, the object and what is wrong unless every attribute
/// message in the object header of `loc` has the layout HDF5 writes: a name terminated inside the message, a
/// datatype and dataspace inside it, and as many data bytes as its dataspace and datatype declare. HDF5 1.10 decodes
/// the name with strdup and copies the declared bytes without these checks (fuzz_h5 found heap overflows in
/// H5Aexists/H5Aopen/H5Aread). Call before any H5Aexists/H5Aopen on `loc` (h5::has_attr does). Object headers
/// already checked in the file being read are not read again. The caller holds h5::lock().
void check_attribute_messages(hid_t loc);

/// Throws fkb::Error (Status::FormatError) naming `where`, the attribute and what is wrong unless every element of
/// the variable-length string attribute `name` of `loc` (a file, group or dataset) refers to an intact object of
/// the global heap. `elements` is the attribute's element count (H5Sget_simple_extent_npoints). An attribute held
/// outside the object header (dense or shared attribute storage, which Keras and h5py's defaults never write) is
/// refused: FKB cannot check it. Reads only inside the file. The caller holds h5::lock().
void check_vlen_string_attr(hid_t loc, const std::string& name, uint64_t elements, const std::string& where);

}  // namespace fkb::h5
