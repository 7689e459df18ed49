"""Hostile text documents, .keras zips and predict inputs for the loading policy (README "Loading policy"), crafted
at test time from the Keras-made fixtures: each case copies a fixture and changes one thing, the way an attacker
would.

craft(out_dir, fixtures_dir) -> list of cases (see tests/hostile/run_hostile.py for the protocol):
  {"name", "argv", "expect", optional "no_output", optional "env"}; {out} and {fixtures} in argv/expect are
  replaced by out_dir and fixtures_dir.
Covered: JSON nested 10^5 deep (a legacy .h5's model_config attribute, a .keras config.json), YAML nested 10^5 deep,
YAML alias expansion ("billion laughs": a weights-only config and an ensemble config), documents over
FKB_MAX_CONFIG_BYTES (a weights-only JSON config, an ensemble list), .keras zips: a config.json that inflates to
3 GiB, a compression ratio over the limit, 20000 entries, a model.weights.h5 over the weight limit, a directory
that lies about a size; .npy inputs whose header declares (10**12, 94) or more data than the file holds.
"""

import json
import os
import shutil
import struct
import zipfile
import zlib

import h5py
import numpy as np

DEPTH_JSON = "over the limit for one JSON/YAML document (LoadLimits::max_config_depth)"
CONFIG_BYTES = "for one JSON/YAML document (FKB_MAX_CONFIG_BYTES)"
FILE_BYTES = "for one configuration file (FKB_MAX_CONFIG_BYTES)"  # a config or list file, checked before reading


def bytes_str(b):
    """loader::bytes_str: "512 bytes", "4.0 KiB" -> "4 KiB", "3.6 GiB"."""
    if b < 1024:
        return f"{b} bytes"
    units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    v = b / 1024.0
    u = 0
    while v >= 1024.0 and u < 5:
        v /= 1024.0
        u += 1
    return f"{v:.0f} {units[u]}" if v == int(v) else f"{v:.1f} {units[u]}"


# ---------------------------------------------------------------------------------------------------------------------
# A zip written by hand, so that an entry's deflate stream can be assembled from pieces (a 3 GiB bomb in a few MB,
# without ever holding or compressing 3 GiB) and its directory can state any size.

def _gf2_times(mat, vec):
    s, i = 0, 0
    while vec:
        if vec & 1:
            s ^= mat[i]
        vec >>= 1
        i += 1
    return s


def _gf2_square(mat):
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_combine(crc1, crc2, len2):
    """zlib's crc32_combine: the CRC of A+B from crc(A), crc(B) and len(B)."""
    if len2 == 0:
        return crc1
    odd = [0xEDB88320] + [1 << n for n in range(31)]
    even = _gf2_square(odd)
    odd = _gf2_square(even)
    while True:
        even = _gf2_square(odd)
        if len2 & 1:
            crc1 = _gf2_times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = _gf2_square(even)
        if len2 & 1:
            crc1 = _gf2_times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


def crc32_repeat(crc_piece, len_piece, times):
    """CRC of a piece repeated `times` times (doubling)."""
    out, out_len = 0, 0
    p_crc, p_len = crc_piece, len_piece
    while times:
        if times & 1:
            out = crc32_combine(out, p_crc, p_len)
            out_len += p_len
        p_crc = crc32_combine(p_crc, p_crc, p_len)
        p_len *= 2
        times >>= 1
    return out


def _deflate_piece(data, last):
    """Raw deflate of `data` from a fresh compressor, ending on a byte boundary (full flush) unless `last`: such
    pieces can be concatenated into one stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_FULL_FLUSH)


def deflated_padding(head, pad_byte, pad_len, tail):
    """An entry `head + pad_byte * pad_len + tail`, deflated: returns (pieces, crc, size) where pieces is a list of
    (bytes, repeat) whose concatenation is the deflate stream."""
    chunk_len = 1 << 20
    chunk = pad_byte * chunk_len
    n, rest = divmod(pad_len, chunk_len)
    pieces = [(_deflate_piece(head, False), 1), (_deflate_piece(chunk, False), n),
              (_deflate_piece(pad_byte * rest, False), 1), (_deflate_piece(tail, True), 1)]
    crc = zlib.crc32(head)
    crc = crc32_combine(crc, crc32_repeat(zlib.crc32(chunk), chunk_len, n), chunk_len * n)
    crc = crc32_combine(crc, zlib.crc32(pad_byte * rest), rest)
    crc = crc32_combine(crc, zlib.crc32(tail), len(tail))
    return pieces, crc, len(head) + pad_len + len(tail)


def write_zip(path, entries):
    """entries: dicts with name, method (0 stored, 8 deflated), crc, size (the true or declared size), and pieces
    [(bytes, repeat)] of the stored data. Sizes below 4 GiB (no zip64)."""
    cd = b""
    with open(path, "wb") as fh:
        for e in entries:
            comp = sum(len(b) * r for b, r in e["pieces"])
            name = e["name"].encode()
            offset = fh.tell()
            fields = (20, 0, e["method"], 0, 0x21, e["crc"], comp, e["size"], len(name), 0)
            fh.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields) + name)
            for b, r in e["pieces"]:
                for _ in range(r):
                    fh.write(b)
            cd += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, offset) + name
        cd_offset = fh.tell()
        fh.write(cd)
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), cd_offset, 0))


def _stored(name, data):
    return {"name": name, "method": 0, "crc": zlib.crc32(data), "size": len(data), "pieces": [(data, 1)]}


def _keras_entries(fixtures, name):
    with zipfile.ZipFile(os.path.join(fixtures, name)) as z:
        return {i.filename: z.read(i.filename) for i in z.infolist()}


def _nested(depth):
    return "[" * depth + "]" * depth


def _billion_laughs(item):
    """The classic alias bomb: nine levels of nine aliases (9^9 = 387 million values from ~500 bytes)."""
    lines = [f'lol0: &a0 ["{item}", "{item}", "{item}", "{item}", "{item}", "{item}", "{item}", "{item}", "{item}"]']
    for k in range(1, 10):
        lines.append(f"lol{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _alias_bomb_refusal(item, max_values=10_000_000, max_bytes=64 << 20):
    """Which limit reading _billion_laughs(item) passes first, and where: ("values" or "bytes", "line L, column C"
    of the alias). FKB counts every node (keys included) and the bytes of every scalar, aliases expanded."""
    values = bytes_ = 0
    anchor_values, anchor_bytes = 1 + 9, 9 * len(item)
    values += 2 + 9  # lol0: the key, the sequence, nine scalars
    bytes_ += len("lol0") + 9 * len(item)
    for k in range(1, 10):
        line = f"lol{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]"
        values += 2
        bytes_ += len(f"lol{k}")
        col = 0
        for _ in range(9):
            col = line.index("*", col) + 1
            where = f"line {k + 1}, column {col}"
            if anchor_values > max_values - values:
                return "values", where
            if anchor_bytes > max_bytes - bytes_:
                return "bytes", where
            values += anchor_values
            bytes_ += anchor_bytes
        anchor_values, anchor_bytes = 1 + 9 * anchor_values, 9 * anchor_bytes
    raise AssertionError("the bomb stays under the limits")


def craft(out, fixtures):
    cases = []
    x94 = os.path.join(out, "x94.npy")
    np.save(x94, np.random.default_rng(11).standard_normal((37, 94)).astype(np.float32))

    # 1. A legacy .h5 whose model_config holds a layer config nested 10^5 deep (the SIGSEGV).
    p = os.path.join(out, "deep_config.h5")
    shutil.copyfile(os.path.join(fixtures, "tk_dense_acts.h5"), p)
    os.chmod(p, 0o644)
    with h5py.File(p, "r+") as f:
        raw = f.attrs["model_config"]
        cfg = raw.decode() if isinstance(raw, bytes) else raw
        cfg = json.loads(cfg)
        text = json.dumps(cfg)
        marker = '"name": "' + cfg["config"]["layers"][1]["config"]["name"] + '"'
        assert marker in text
        text = text.replace(marker, marker + ', "hostile": ' + _nested(100_000), 1)
        f.attrs["model_config"] = text
    cases.append({"name": "h5_model_config_deep", "argv": ["inspect", "{out}/deep_config.h5"],
                  "expect": "{out}/deep_config.h5: the model config is nested deeper than 512 levels, " + DEPTH_JSON})

    # 2. A .keras whose config.json is nested 10^5 deep (predict: nothing may be written).
    e = _keras_entries(fixtures, "k3_cbrain.keras")
    cfg = e["config.json"].decode()
    deep = cfg[:-1] + ', "hostile": ' + _nested(100_000) + "}"
    write_zip(os.path.join(out, "deep.keras"), [_stored("metadata.json", e["metadata.json"]),
                                                 _stored("config.json", deep.encode()),
                                                 _stored("model.weights.h5", e["model.weights.h5"])])
    cases.append({"name": "keras_config_deep",
                  "argv": ["predict", "{out}/deep.keras", "--input", "{out}/x94.npy", "--output", "{out}/y.npy"],
                  "expect": "{out}/deep.keras:config.json: the model config is nested deeper than 512 levels, " +
                            DEPTH_JSON,
                  "no_output": ["{out}/y.npy"]})

    # 3. Weights-only YAML config nested 10^5 deep (yaml-cpp's parser recurses: refused at 400 levels). The column is
    # yaml-cpp 0.7's mark of the sequence opened 401st: the 400th '[' after "hostile: ".
    yaml_cfg = open(os.path.join(fixtures, "tk_weights.yaml")).read()
    with open(os.path.join(out, "deep.yaml"), "w") as fh:
        fh.write("hostile: " + _nested(100_000) + "\n" + yaml_cfg)
    cases.append({"name": "yaml_config_deep",
                  "argv": ["inspect", "{fixtures}/tk_weights_weights.h5", "--config", "{out}/deep.yaml"],
                  "expect": "{out}/deep.yaml: the model config is nested deeper than 400 levels (at line 1, column "
                            "409), over the limit for a YAML document (LoadLimits::max_config_depth; at most 400 "
                            "for YAML)"})

    # 4. Weights-only YAML config with the billion-laughs aliases (~500 bytes -> 387 million values).
    with open(os.path.join(out, "laughs.yaml"), "w") as fh:
        fh.write(_billion_laughs("lol") + yaml_cfg)
    kind, where = _alias_bomb_refusal("lol")
    assert kind == "values"
    cases.append({"name": "yaml_config_alias_bomb",
                  "argv": ["inspect", "{fixtures}/tk_weights_weights.h5", "--config", "{out}/laughs.yaml"],
                  "expect": "{out}/laughs.yaml: the model config holds more than 10000000 values once its YAML "
                            "aliases are expanded (at " + where + "), over the limit for one JSON/YAML document "
                            "(LoadLimits::max_config_values)"})

    # 4b. The same pattern with 4 KiB strings: few values, but 1.5 TiB of text once expanded.
    item = "lol" * 1365
    with open(os.path.join(out, "laughs_bytes.yaml"), "w") as fh:
        fh.write(_billion_laughs(item) + yaml_cfg)
    kind, where = _alias_bomb_refusal(item)
    assert kind == "bytes"
    cases.append({"name": "yaml_config_alias_bytes",
                  "argv": ["inspect", "{fixtures}/tk_weights_weights.h5", "--config", "{out}/laughs_bytes.yaml"],
                  "expect": "{out}/laughs_bytes.yaml: the model config grows past 64 MiB once its YAML aliases are "
                            "expanded (at " + where + "), over the limit for one JSON/YAML document "
                            "(FKB_MAX_CONFIG_BYTES)"})

    # 5. Weights-only JSON config over FKB_MAX_CONFIG_BYTES (the fixture's config padded to 5 KiB, limit 1 KiB).
    js = open(os.path.join(fixtures, "tk_weights.json")).read().rstrip()
    assert len(js) < 5120
    with open(os.path.join(out, "big_config.json"), "w") as fh:
        fh.write(js + " " * (5120 - len(js)))
    cases.append({"name": "json_config_over_size",
                  "argv": ["predict", "{fixtures}/tk_weights_weights.h5", "--config", "{out}/big_config.json",
                           "--input", "{out}/x10.npy", "--output", "{out}/y10.npy"],
                  "env": {"FKB_MAX_CONFIG_BYTES": "1K"},
                  "expect": "the model config '{out}/big_config.json' is 5 KiB, over the limit of 1 KiB " +
                            FILE_BYTES,
                  "no_output": ["{out}/y10.npy"]})
    np.save(os.path.join(out, "x10.npy"), np.ones((3, 10), np.float32))

    # 6. A .keras whose config.json inflates to 3 GiB of whitespace from ~3 MB (a decompression bomb).
    e = _keras_entries(fixtures, "k3_dense_chain.keras")
    head = e["config.json"][:-1]
    size = 3 << 30
    pieces, crc, total = deflated_padding(head, b" ", size - len(head) - 1, b"}")
    assert total == size
    write_zip(os.path.join(out, "bomb.keras"), [_stored("metadata.json", e["metadata.json"]),
                                                 {"name": "config.json", "method": 8, "crc": crc, "size": size,
                                                  "pieces": pieces},
                                                 _stored("model.weights.h5", e["model.weights.h5"])])
    cases.append({"name": "zip_config_bomb", "argv": ["convert", "{out}/bomb.keras", "{out}/out.keras"],
                  "expect": "'{out}/bomb.keras': zip entry 'config.json' declares 3 GiB uncompressed, over the limit "
                            "of 64 MiB " + CONFIG_BYTES,
                  "no_output": ["{out}/out.keras"]})

    # 7. A config.json within the size limit but compressed over 200:1 (40 MiB of padding from ~40 KiB).
    size = 40 << 20
    pieces, crc, total = deflated_padding(head, b" ", size - len(head) - 1, b"}")
    comp = sum(len(b) * r for b, r in pieces)
    write_zip(os.path.join(out, "ratio.keras"), [_stored("metadata.json", e["metadata.json"]),
                                                  {"name": "config.json", "method": 8, "crc": crc, "size": size,
                                                   "pieces": pieces},
                                                  _stored("model.weights.h5", e["model.weights.h5"])])
    cases.append({"name": "zip_config_ratio", "argv": ["inspect", "{out}/ratio.keras"],
                  "expect": "'{out}/ratio.keras': zip entry 'config.json' declares 40 MiB uncompressed from " +
                            bytes_str(comp) + ", a compression ratio over the limit of 200:1 for a JSON entry (a "
                            "decompression bomb)"})

    # 8. A .keras with 20000 entries.
    with zipfile.ZipFile(os.path.join(out, "many.keras"), "w", zipfile.ZIP_STORED) as z:
        for n, data in e.items():
            z.writestr(n, data)
        for i in range(20000 - len(e)):
            z.writestr(f"assets/a{i}", b"")
    cases.append({"name": "zip_many_entries", "argv": ["inspect", "{out}/many.keras"],
                  "expect": "'{out}/many.keras': the zip holds 20000 entries, over the limit of 10000 for a .keras "
                            "file (Keras writes config.json, metadata.json, model.weights.h5 and its assets)"})

    # 9. model.weights.h5 inflating past the weight limit plus its slack (80 MiB against 1 MiB + 64 MiB).
    w = e["model.weights.h5"]
    size = 80 << 20
    pieces, crc, total = deflated_padding(w, b"\0", size - len(w), b"")
    write_zip(os.path.join(out, "big_weights.keras"), [_stored("metadata.json", e["metadata.json"]),
                                                        _stored("config.json", e["config.json"]),
                                                        {"name": "model.weights.h5", "method": 8, "crc": crc,
                                                         "size": size, "pieces": pieces}])
    cases.append({"name": "zip_weights_over_limit", "argv": ["inspect", "{out}/big_weights.keras"],
                  "env": {"FKB_MAX_WEIGHT_BYTES": "1M"},
                  "expect": "'{out}/big_weights.keras': zip entry 'model.weights.h5' declares 80 MiB uncompressed, "
                            "over the limit of 1 MiB of weights plus 64 MiB (raise it with "
                            "LoadLimits::max_weight_bytes or FKB_MAX_WEIGHT_BYTES)"})

    # 10. A zip directory that understates config.json (local header and directory agree on the lie): libzip stops
    # at the declared size and the CRC check fails.
    c = e["config.json"]
    write_zip(os.path.join(out, "lying.keras"), [_stored("metadata.json", e["metadata.json"]),
                                                  {"name": "config.json", "method": 8, "crc": zlib.crc32(c[:100]),
                                                   "size": 100, "pieces": [(_deflate_piece(c, True), 1)]},
                                                  _stored("model.weights.h5", e["model.weights.h5"])])
    cases.append({"name": "zip_lying_size", "argv": ["inspect", "{out}/lying.keras"],
                  "expect": "'{out}/lying.keras': 'config.json' in the zip is truncated or corrupted"})

    # 11. An ensemble config with the alias bomb in its member list.
    member = os.path.join(fixtures, "ensemble8", "members", "member_00.keras")
    with open(os.path.join(out, "laughs_ensemble.yaml"), "w") as fh:
        fh.write(_billion_laughs("m.h5") + "members: *a9\n")
    kind, where = _alias_bomb_refusal("m.h5")
    assert kind == "values"
    # (--json: the runner mirrors a plain `inspect M` through the C API's model loader, which takes no ensembles.)
    cases.append({"name": "ensemble_yaml_alias_bomb", "argv": ["inspect", "{out}/laughs_ensemble.yaml", "--json"],
                  "expect": "{out}/laughs_ensemble.yaml: the ensemble config holds more than 10000000 values once "
                            "its YAML aliases are expanded (at " + where + "), over the limit for one JSON/YAML "
                            "document (LoadLimits::max_config_values)"})

    # 12. An ensemble list over FKB_MAX_CONFIG_BYTES.
    with open(os.path.join(out, "big_list.txt"), "w") as fh:
        line = member + "\n"
        fh.write(line * (2048 // len(line) + 1))
    cases.append({"name": "ensemble_list_over_size",
                  "argv": ["predict", "{out}/big_list.txt", "--input", "{out}/x94.npy", "--output", "{out}/y_ens.npy"],
                  "no_output": ["{out}/y_ens.npy"],
                  "env": {"FKB_MAX_CONFIG_BYTES": "1K"},
                  "expect": "the ensemble list '{out}/big_list.txt' is " +
                            bytes_str(os.path.getsize(os.path.join(out, "big_list.txt"))) +
                            ", over the limit of 1 KiB " + FILE_BYTES})

    # 13. A .npy input whose header declares (10**12, 94) float32 (350 TiB) and holds 37 columns.
    def npy_with_header(path, shape, data):
        d = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }"
        d += " " * ((64 - (10 + len(d) + 1) % 64) % 64) + "\n"
        with open(path, "wb") as fh:
            fh.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode() + data)

    data = np.load(x94).tobytes()
    npy_with_header(os.path.join(out, "shape_bomb.npy"), "(1000000000000, 94)", data)
    cases.append({"name": "npy_shape_bomb",
                  "argv": ["predict", "{fixtures}/k3_cbrain.keras", "--input", "{out}/shape_bomb.npy", "--output",
                           "{out}/y_bomb.npy"],
                  "expect": "'{out}/shape_bomb.npy' is not a valid .npy file: truncated data: the header's shape "
                            "(1000000000000, 94) of '<f4' needs " + bytes_str(10**12 * 94 * 4) + " of data, the "
                            "file holds " + bytes_str(len(data)) + " after its header",
                  "no_output": ["{out}/y_bomb.npy"]})

    # 14. A .npy whose header promises more than the file holds (64 columns, 37 stored).
    npy_with_header(os.path.join(out, "short.npy"), "(64, 94)", data)
    cases.append({"name": "npy_truncated",
                  "argv": ["predict", "{fixtures}/k3_cbrain.keras", "--input", "{out}/short.npy", "--output",
                           "{out}/y_short.csv"],
                  "expect": "'{out}/short.npy' is not a valid .npy file: truncated data: the header's shape (64, 94) "
                            "of '<f4' needs " + bytes_str(64 * 94 * 4) + " of data, the file holds " +
                            bytes_str(len(data)) + " after its header",
                  "no_output": ["{out}/y_short.csv"]})

    # 15. A .npy whose dimensions overflow any size.
    npy_with_header(os.path.join(out, "overflow.npy"), "(9223372036854775807, 9223372036854775807)", data)
    cases.append({"name": "npy_shape_overflow",
                  "argv": ["predict", "{fixtures}/k3_cbrain.keras", "--input", "{out}/overflow.npy", "--output",
                           "{out}/y_overflow.npy"],
                  "expect": "'{out}/overflow.npy' is not a valid .npy file: the header's shape (9223372036854775807, "
                            "9223372036854775807) declares more data than any file can hold",
                  "no_output": ["{out}/y_overflow.npy"]})
    return cases
