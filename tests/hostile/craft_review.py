"""Hostile files found in a review of the loading policy (issue 11), crafted at test time from the Keras-made
fixtures, each a variant the first rounds (craft_h5, craft_text, craft_netcdf) did not cover.

craft(out_dir, fixtures_dir) -> list of cases (see tests/hostile/run_hostile.py for the protocol).
Covered: YAML anchors nested inside each other (each anchored level keeps a copy of its subtree), a .keras whose
model.weights.h5 entry is a deflate bomb under the weight limit, a JSON config of many small objects (quadratic in
nlohmann's callback parser), a CSV input with a huge line, a chain of
soft links longer than HDF5's own limit of 16, a YAML config
of one huge scalar, an ensemble whose members add up past the weight limit, a
weight_names attribute whose dataspace declares 2^40 strings, a chunked dataset of a million tiny chunks.
"""

import os
import shutil
import struct
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from craft_text import _keras_entries, _stored, deflated_padding, write_zip  # noqa: E402

MAX_VALUES = 10_000_000


def _nested_anchors(levels, inner):
    """`&a0 [&a1 [... [1, 1, ...] ...]]`: no alias at all, yet each anchored level keeps a copy of its subtree."""
    return "".join(f"&a{i} [" for i in range(levels)) + "[" + ", ".join(["1"] * inner) + "]" + "]" * levels + "\n"


def _nested_anchors_refusal(levels, inner):
    """Where FKB refuses _nested_anchors(levels, inner): the column of the anchored sequence whose copy passes the
    value limit. Frames close innermost first; the copy of each anchored level inside another (a_1 .. a_n-1) counts:
    the sequence, what it nests and the (unanchored) inner sequence; the document counts every node once."""
    doc = levels + 1 + inner  # every sequence, the inner values
    copied = 0
    for k in range(levels - 1, 0, -1):  # a_k closes inside a_0..a_k-1; its subtree: levels - k sequences + inner
        sub = (levels - k) + 1 + inner
        if sub > MAX_VALUES - doc - copied:
            col = sum(len(f"&a{i} [") for i in range(k)) + 1
            return f"line 1, column {col}"
        copied += sub
    raise AssertionError("the anchors stay under the limit")


def craft(out, fixtures):
    cases = []

    # 1. A weights-only YAML config whose anchors nest 390 deep around 300 000 values (600 KB): no alias, but
    #    building it kept a copy per level (117 million values, gigabytes, past the 20 s limit).
    levels, inner = 390, 300_000
    with open(os.path.join(out, "nested_anchors.yaml"), "w") as fh:
        fh.write(_nested_anchors(levels, inner))
    cases.append({"name": "yaml_nested_anchors",
                  "argv": ["inspect", "{fixtures}/tk_weights_weights.h5", "--config", "{out}/nested_anchors.yaml"],
                  "expect": "{out}/nested_anchors.yaml: the model config holds more than 10000000 values counting the "
                            "copies its YAML anchors keep (at " + _nested_anchors_refusal(levels, inner) +
                            "), over the limit for one JSON/YAML document (LoadLimits::max_config_values)"})

    # 2. A .keras whose model.weights.h5 inflates to 3 GiB (the real weights, then zeros) from ~3 MB: under the
    #    16 GiB weight limit, but inflating it took more than 20 s and gigabytes before the HDF5 checks ran.
    e = _keras_entries(fixtures, "k3_dense_chain.keras")
    size = 3 << 30
    head = e["model.weights.h5"]
    pieces, crc, total = deflated_padding(head, b"\0", size - len(head) - 1, b"\0")
    comp = sum(len(b) * r for b, r in pieces)
    write_zip(os.path.join(out, "weights_bomb.keras"),
              [_stored("metadata.json", e["metadata.json"]), _stored("config.json", e["config.json"]),
               {"name": "model.weights.h5", "method": 8, "crc": crc, "size": size, "pieces": pieces}])
    from craft_h5 import bytes_str  # noqa: E402
    cases.append({"name": "zip_weights_bomb", "argv": ["convert", "{out}/weights_bomb.keras", "{out}/out.h5"],
                  "expect": "'{out}/weights_bomb.keras': zip entry 'model.weights.h5' declares 3 GiB uncompressed from "
                            + bytes_str(comp) + ", a compression ratio over the limit of 200:1 for the weights (a "
                            "decompression bomb)",
                  "no_output": ["{out}/out.h5"]})

    # 3. A weights-only JSON config holding 300 000 empty objects in one array (900 KB, under every limit): nlohmann's
    #    callback parser scanned the whole array at the end of each object, quadratic (minutes).
    with open(os.path.join(out, "many_objects.json"), "w") as fh:
        fh.write("[" + ",".join(["{}"] * 300_000) + "]")
    cases.append({"name": "json_many_objects",
                  "argv": ["inspect", "{fixtures}/tk_weights_weights.h5", "--config", "{out}/many_objects.json"],
                  "expect": "{fixtures}/tk_weights_weights.h5 (config {out}/many_objects.json): the model config is "
                            "not a JSON object"})

    # 4. A CSV input whose first line holds 34 million values (68 MB): read whole, then parsed into a second copy,
    #    a few hundred MB of such a line printed "std::bad_alloc" under the 4 GB limit.
    with open(os.path.join(out, "long_line.csv"), "w") as fh:
        fh.write("0," * (34 << 20) + "0\n")
    cases.append({"name": "csv_long_line", "argv": ["predict", "{fixtures}/tk_cbrain.h5", "--input",
                                                    "{out}/long_line.csv", "--output", "{out}/y.npy"],
                  "expect": "'{out}/long_line.csv' line 1 is longer than 64 MiB, over the limit for one line of a CSV "
                            "batch (one column's features)",
                  "no_output": ["{out}/y.npy"]})

    # 5. A kernel reached through a chain of 20 soft links (all inside the file) whose shape disagrees with the
    #    config: HDF5 stops at 16 soft links, so the chain was refused as one "which does not resolve inside the
    #    file"; it resolves, and the shape rule is what refuses it.
    p = os.path.join(out, "soft_chain.h5")
    shutil.copyfile(os.path.join(fixtures, "tk_cbrain.h5"), p)
    os.chmod(p, 0o644)
    with h5py.File(p, "r+") as f:
        kpath = "model_weights/dense/dense/kernel:0"
        k = f[kpath][()]
        del f[kpath]
        f["model_weights/real"] = k[:, :5]
        prev = "/model_weights/real"
        for i in range(20):
            f[f"model_weights/s{i}"] = h5py.SoftLink(prev)
            prev = f"/model_weights/s{i}"
        f[kpath] = h5py.SoftLink(prev)
    cases.append({"name": "h5_soft_link_chain", "argv": ["inspect", "{out}/soft_chain.h5"],
                  "expect": "{out}/soft_chain.h5: layer 'dense' (Dense): weight 'dense/kernel:0' has the shape "
                            "(94, 5) but units=256 in the config implies (*, 256)"})

    # 6. A weights-only YAML config holding one 8 MiB plain scalar (the 64 MiB document limit allowed 48 MiB, which
    #    took minutes: yaml-cpp reads such a scalar at about 1 MB/s and FKB reads YAML twice); YAML stops at 4 MiB.
    with open(os.path.join(out, "huge_scalar.yaml"), "w") as fh:
        fh.write("class_name: " + "x" * (8 << 20) + "\n")
    cases.append({"name": "yaml_huge_scalar",
                  "argv": ["inspect", "{fixtures}/tk_weights_weights.h5", "--config", "{out}/huge_scalar.yaml"],
                  "expect": "{out}/huge_scalar.yaml: the model config is 8.0 MiB, over the limit of 4 MiB for one "
                            "JSON/YAML document (FKB_MAX_CONFIG_BYTES; at most 4 MiB for YAML)"})

    # 7. An ensemble list of three members, each under the weight limit (2.2 MiB of weights, limit 5 MiB): the sum
    #    passes it, which loaded.
    with open(os.path.join(out, "three.txt"), "w") as fh:
        fh.write("\n".join([os.path.join(fixtures, "tk_cbrain.h5")] * 3) + "\n")
    cases.append({"name": "ensemble_weight_sum", "argv": ["inspect", "{out}/three.txt"], "env": {"FKB_MAX_WEIGHT_BYTES": "5M"},
                  "expect": "the ensemble '{out}/three.txt': member 3 of 3 ('{fixtures}/tk_cbrain.h5') brings the "
                            "members' weights to 6.5 MiB, over the limit of 5 MiB (raise it with FKB_MAX_WEIGHT_BYTES)"})

    # 8. A layer's weight_names attribute whose dataspace declares 2^40 strings (patched in the file; it stores 3001):
    #    HDF5 cannot decode it and H5Aexists fails, which read as "no attribute": "the file lists 0 weight(s)". FKB
    #    checks the attribute message first (runtime/src/loader/h5_vlen_guard.hpp).
    p = os.path.join(out, "names_bomb.h5")
    shutil.copyfile(os.path.join(fixtures, "tk_cbrain.h5"), p)
    os.chmod(p, 0o644)
    with h5py.File(p, "r+") as f:
        g = f["model_weights/dense"]
        del g.attrs["weight_names"]
        g.attrs.create("weight_names", np.array([b"dense/kernel:0"] * 3001, dtype="S16"))
    raw = bytearray(open(p, "rb").read())
    dim = struct.pack("<Q", 3001)
    at = raw.find(dim)  # the dataspace's size, then its maximum size
    assert at > 0 and raw[at + 8:at + 16] == dim and raw.find(dim, at + 16) < 0
    raw[at:at + 16] = struct.pack("<QQ", 1 << 40, 1 << 40)
    open(p, "wb").write(raw)
    cases.append({"name": "h5_names_attr_bomb", "argv": ["inspect", "{out}/names_bomb.h5"],
                  "expect": "{out}/names_bomb.h5: object '/model_weights/dense': attribute 'weight_names' declares "
                            "%d bytes of data but its message holds %d; FKB checks attribute messages and their "
                            "global-heap references before HDF5 decodes them (the file is truncated, corrupted or "
                            "crafted)" % ((1 << 40) * 16, 3001 * 16)})

    # 9. A predict input whose dataset declares (12000, 94) floats in 1-element chunks, 12 rows stored (passing the
    #    1000:1 rule): HDF5 keeps ~4 KiB of state per chunk a read selects, so the 1.1 million chunks ran into the
    #    4 GB limit ("cannot read dataset") after seconds.
    with h5py.File(os.path.join(out, "chunks.h5"), "w") as f:
        d = f.create_dataset("x", shape=(12000, 94), dtype="f4", chunks=(1, 1))
        d[0:12, :] = np.ones((12, 94), "f4")
    cases.append({"name": "h5_chunk_count_bomb", "argv": ["predict", "{fixtures}/tk_cbrain.h5", "--input",
                                                          "{out}/chunks.h5", "--dataset", "x", "--output",
                                                          "{out}/y_chunks.npy"],
                  "expect": "'{out}/chunks.h5': dataset 'x' declares the shape (12000, 94) in chunks of (1, 1): "
                            "1128000 chunks, over the limit of 262144 (HDF5 keeps state for every chunk it reads)",
                  "no_output": ["{out}/y_chunks.npy"]})
    return cases


if __name__ == "__main__":
    import tempfile
    d = tempfile.mkdtemp()
    for c in craft(d, os.path.join(os.path.dirname(__file__), "..", "fixtures")):
        print(c["name"], c["expect"])
