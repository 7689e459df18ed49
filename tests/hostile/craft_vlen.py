"""Hostile variable-length string attributes (README "Loading policy"; runtime/src/loader/h5_vlen_guard.hpp).

Keras keeps model_config, keras_version and backend of a legacy .h5 in variable-length string attributes: each holds
a reference (length, global heap collection address, object index) into a "GCOL" collection elsewhere in the file.
HDF5 1.10 follows these references without checking them (found by fuzz_h5: heap overflows, segfaults and endless
loops inside H5HG_read). Each case patches the bytes of a Keras-made .h5 the way a fuzzer or an attacker would, and
FKB must refuse it with a message naming the attribute and the damage, before HDF5 reads it.

craft(out_dir, fixtures_dir) -> cases, as in run_hostile.py.
"""
import os
import shutil
import struct

import h5py

SUFFIX = ("; FKB checks attribute messages and their global-heap references before HDF5 decodes them (the file is "
          "truncated, corrupted or crafted)")


def _layout(path):
    """Where model_config's reference and its heap object are: (ref_offset, length, gcol_addr, idx, obj_offset)."""
    with h5py.File(path, "r") as f:
        config = f.attrs["model_config"]
        config = config.encode() if isinstance(config, str) else bytes(config)
        sizes = f.id.get_create_plist().get_sizes()
    assert sizes == (8, 8), sizes
    b = open(path, "rb").read()
    pos = 0
    while True:
        gcol = b.find(b"GCOL", pos)
        assert gcol >= 0, "model_config's heap object not found"
        size = struct.unpack_from("<Q", b, gcol + 8)[0]
        p = gcol + 16
        while p + 16 <= gcol + size:
            idx, _ = struct.unpack_from("<HH", b, p)
            osize = struct.unpack_from("<Q", b, p + 8)[0]
            if idx and b[p + 16:p + 16 + osize] == config:
                ref = struct.pack("<IQI", len(config), gcol, idx)
                assert b.count(ref) == 1, "model_config's reference is not unique"
                return b.find(ref), len(config), gcol, idx, p
            p += osize if idx == 0 else 16 + ((osize + 7) & ~7)
            if osize == 0:
                break
        pos = gcol + 4


def _patch(src, dst, edits):
    b = bytearray(open(src, "rb").read())
    for off, fmt, value in edits:
        struct.pack_into(fmt, b, off, value)
    with open(dst, "wb") as fh:
        fh.write(b)


def craft(out_dir, fixtures_dir):
    out, fx = out_dir, fixtures_dir
    os.makedirs(out, exist_ok=True)
    src = os.path.join(out, "vlen_source.h5")
    shutil.copyfile(os.path.join(fx, "k3_dense_chain.h5"), src)
    ref, length, gcol, idx, obj = _layout(src)
    where = "{out}/%s: variable-length string attribute '%s': "
    at = f"the global heap collection at address {gcol} "
    cases = []

    def case(name, edits, problem, attr="model_config"):
        _patch(src, os.path.join(out, name + ".h5"), edits)
        cases.append({
            "name": "vlen_" + name,
            "argv": ["inspect", "{out}/%s.h5" % name],
            "expect": (where % (name + ".h5", attr)) + problem + SUFFIX,
        })

    # The reference names an object its collection does not hold (H5HG_read indexed past its object table).
    case("missing_object", [(ref + 12, "<I", 999)],
         "string 0 refers to object 999, which its global heap collection does not hold")
    # The reference declares more bytes than the object holds (H5HG_read copied the object into a buffer sized by
    # the reference: a heap overflow when the object is the larger one, uninitialised bytes the other way).
    case("length_mismatch", [(ref, "<I", length + 100)],
         f"string 0 declares {length + 100} bytes but its heap object holds {length}")
    # Damage to the collection itself is met by the first attribute FKB reads through it: keras_version, whose
    # string lives in the same collection as model_config.
    # The object declares more bytes than its collection has left (H5HG_read copied past the collection).
    case("object_past_end", [(obj + 8, "<Q", 1 << 40)],
         at + f"holds object {idx} of {1 << 40} bytes, past the collection's end",
         attr="keras_version")
    # The collection declares a size HDF5 never writes (its object table was sized from it).
    case("tiny_collection", [(gcol + 8, "<Q", 100)],
         at + "declares 100 bytes (HDF5 writes 4096 bytes to 1 GiB)",
         attr="keras_version")
    # A free-space object of size 0 (HDF5's collection decoder looped forever on it).
    case("zero_free_space", [(obj, "<H", 0), (obj + 8, "<Q", 0)],
         at + "has a free-space object smaller than its header",
         attr="keras_version")
    # The reference points at bytes that are no collection (the superblock).
    case("not_a_collection", [(ref + 4, "<Q", 0x8)],
         "the global heap collection at address 8 has no GCOL signature of version 1")
    # The reference points past the end of the file.
    case("past_eof", [(ref + 4, "<Q", 1 << 40)],
         f"the global heap collection at address {1 << 40} lies outside the file")
    return cases
