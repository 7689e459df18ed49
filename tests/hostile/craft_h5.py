"""Hostile HDF5 files for the loading policy (README "Loading policy"), crafted at test time from the Keras-made
fixtures: each case copies a fixture and changes one thing, the way an attacker would.

craft(out_dir, fixtures_dir) -> list of cases (see tests/hostile/run_hostile.py for the protocol):
  {"name", "argv", "expect", optional "no_output", optional "env"}; {out} and {fixtures} in argv/expect are
  replaced by out_dir and fixtures_dir.
Covered: HDF5 external storage, external links (a weight, a layer group, a weight inside a .keras zip), soft links
that do not resolve, soft-link cycles, virtual datasets, unknown filters, shape bombs (declared but not stored),
a shape that disagrees with the config, a chunked deflate bomb, the weight limit, and a predict input with external
storage.
"""

import json
import os
import shutil
import zipfile
import zlib

import h5py
import numpy as np

ONLY_MODEL = "FKB reads only data stored inside the model file"
ONLY_INPUT = "FKB reads only data stored inside the input file"


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


def _copy(fixtures, name, out, new_name):
    dst = os.path.join(out, new_name)
    shutil.copyfile(os.path.join(fixtures, name), dst)
    os.chmod(dst, 0o644)
    return dst


def _set_units(f, layer, units):
    """Edit the model_config attribute of a legacy .h5: layer `layer` gets `units`."""
    cfg = json.loads(f.attrs["model_config"])
    for l in cfg["config"]["layers"]:
        if l["config"].get("name") == layer:
            l["config"]["units"] = units
    f.attrs["model_config"] = json.dumps(cfg)


def _secret(out, name, nbytes):
    """A host file holding known bytes that a hostile model would like FKB to read."""
    p = os.path.join(out, name)
    with open(p, "wb") as fh:
        fh.write((b"SECRET-HOST-DATA" * (nbytes // 16 + 1))[:nbytes])
    return p


def _rezip(src, dst, weights_bytes=None, config_bytes=None):
    """Rebuild a .keras zip with Python's zipfile, replacing model.weights.h5 and/or config.json."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == "model.weights.h5" and weights_bytes is not None:
                data = weights_bytes
            if info.filename == "config.json" and config_bytes is not None:
                data = config_bytes
            zout.writestr(info.filename, data, compress_type=info.compress_type)


def _edit_keras_weights(src_keras, out, edit):
    """Extract model.weights.h5 to a scratch file, let `edit(h5py.File)` change it, return its bytes."""
    scratch = os.path.join(out, "scratch.weights.h5")
    with zipfile.ZipFile(src_keras) as z, open(scratch, "wb") as fh:
        fh.write(z.read("model.weights.h5"))
    with h5py.File(scratch, "r+") as f:
        edit(f)
    with open(scratch, "rb") as fh:
        data = fh.read()
    os.remove(scratch)
    return data


def craft(out_dir, fixtures_dir):
    out, fx = out_dir, fixtures_dir
    os.makedirs(out, exist_ok=True)
    cases = []

    # The legacy full model (Keras 3 model.save('x.h5')) and its input; weight paths are relative to the layer group.
    chain = "k3_dense_chain.h5"
    chain_in = ["--input", "{fixtures}/k3_dense_chain_h5.data.h5", "--dataset", "input_0"]
    kgroup = "model_weights/dense"
    kname = "k3_dense_chain/dense/kernel"
    layer = "{out}/%s: layer 'dense' (Dense)"

    # 1. HDF5 external storage: the kernel's bytes live in another file of the host.
    secret = _secret(out, "secret.bin", 5 * 7 * 4)
    p = _copy(fx, chain, out, "ext_storage.h5")
    with h5py.File(p, "r+") as f:
        del f[kgroup][kname]
        f[kgroup].create_dataset(kname, shape=(5, 7), dtype="float32", external=[(secret, 0, 5 * 7 * 4)])
    cases.append({
        "name": "h5_external_storage",
        "argv": ["predict", "{out}/ext_storage.h5", *chain_in, "--output", "{out}/y_ext_storage.npy"],
        "expect": (layer % "ext_storage.h5") + f": weight '{kname}' is stored in an external file "
                  "'{out}/secret.bin' (HDF5 external storage); " + ONLY_MODEL,
        "no_output": ["{out}/y_ext_storage.npy"],
    })

    # 2. A weight that is an external link to a dataset in another file.
    other = os.path.join(out, "other.h5")
    with h5py.File(other, "w") as f:
        f.create_dataset("secret", data=np.arange(35, dtype="float32").reshape(5, 7))
        f.create_group("group").create_dataset("kernel", data=np.ones((10, 12), "float32"))
    p = _copy(fx, chain, out, "ext_link.h5")
    with h5py.File(p, "r+") as f:
        del f[kgroup][kname]
        f[kgroup][kname] = h5py.ExternalLink(other, "/secret")
    cases.append({
        "name": "h5_external_link",
        "argv": ["inspect", "{out}/ext_link.h5"],
        "expect": (layer % "ext_link.h5") + f": weight '{kname}' is an external link to '/secret' in the file "
                  "'{out}/other.h5' (HDF5 external link); " + ONLY_MODEL,
    })

    # 3. A layer's weights group (weights-only legacy file) that is an external link.
    p = _copy(fx, "tk_weights_weights.h5", out, "ext_link_group.h5")
    with h5py.File(p, "r+") as f:
        del f["dense"]
        f["dense"] = h5py.ExternalLink(other, "/group")
    cases.append({
        "name": "h5_external_link_group",
        "argv": ["predict", "{out}/ext_link_group.h5", "--config", "{fixtures}/tk_weights.json", "--input",
                 "{fixtures}/tk_weights_weights_json.data.h5", "--dataset", "input_0", "--output",
                 "{out}/y_ext_link_group.npy"],
        "expect": "{out}/ext_link_group.h5 (config {fixtures}/tk_weights.json): layer 'dense' (Dense): weights group "
                  "'dense' is an external link to '/group' in the file '{out}/other.h5' (HDF5 external link); "
                  + ONLY_MODEL,
        "no_output": ["{out}/y_ext_link_group.npy"],
    })

    # 4. A soft link to an object that is not in the file.
    p = _copy(fx, chain, out, "soft_missing.h5")
    with h5py.File(p, "r+") as f:
        del f[kgroup][kname]
        f[kgroup][kname] = h5py.SoftLink("/nowhere/kernel")
    cases.append({
        "name": "h5_soft_link_missing",
        "argv": ["convert", "{out}/soft_missing.h5", "{out}/out_soft_missing.keras"],
        "expect": (layer % "soft_missing.h5") + f": weight '{kname}' is a soft link to '/nowhere/kernel', which "
                  "does not resolve inside the file; FKB follows soft links only to objects stored inside the "
                  "model file",
        "no_output": ["{out}/out_soft_missing.keras"],
    })

    # 5. Soft links in a cycle (Keras 3 weights-only file).
    p = _copy(fx, "k3_weights.weights.h5", out, "soft_cycle.weights.h5")
    with h5py.File(p, "r+") as f:
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = h5py.SoftLink("/layers/dense/vars/loop")
        f["layers/dense/vars/loop"] = h5py.SoftLink("/layers/dense/vars/0")
    cases.append({
        "name": "h5_soft_link_cycle",
        "argv": ["inspect", "{out}/soft_cycle.weights.h5", "--config", "{fixtures}/k3_weights.json"],
        "expect": "{out}/soft_cycle.weights.h5 (config {fixtures}/k3_weights.json): layer 'dense' (Dense): weight "
                  "'layers/dense/vars/0' leads through more than 32 soft links (a cycle?); FKB follows soft links "
                  "only to objects stored inside the model file",
    })

    # 6. A virtual dataset whose data comes from another file.
    vsrc = os.path.join(out, "vsource.h5")
    with h5py.File(vsrc, "w") as f:
        f.create_dataset("data", data=np.arange(35, dtype="float32").reshape(5, 7))
    p = _copy(fx, chain, out, "virtual.h5")
    with h5py.File(p, "r+") as f:
        del f[kgroup][kname]
        lay = h5py.VirtualLayout(shape=(5, 7), dtype="float32")
        lay[:] = h5py.VirtualSource(vsrc, "data", shape=(5, 7))
        f[kgroup].create_virtual_dataset(kname, lay)
    cases.append({
        "name": "h5_virtual_dataset",
        "argv": ["inspect", "{out}/virtual.h5"],
        "expect": (layer % "virtual.h5") + f": weight '{kname}' is a virtual dataset whose data comes from "
                  "'data' in the file '{out}/vsource.h5' (HDF5 virtual dataset); " + ONLY_MODEL,
    })

    # 7. A filter that is not built into HDF5 (id 32123, optional: HDF5 writes the data unfiltered and records the
    # filter in the pipeline; a reader with a plugin of that id would run it).
    p = _copy(fx, chain, out, "unknown_filter.h5")
    with h5py.File(p, "r+") as f:
        g = f[kgroup]
        del g[kname]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((5, 7))
        dcpl.set_filter(32123, h5py.h5z.FLAG_OPTIONAL, (1, 2, 3))
        space = h5py.h5s.create_simple((5, 7))
        dsid = h5py.h5d.create(g.id, kname.encode(), h5py.h5t.IEEE_F32LE, space, dcpl=dcpl, lcpl=_lcpl())
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ones((5, 7), "float32"))
    cases.append({
        "name": "h5_unknown_filter",
        "argv": ["predict", "{out}/unknown_filter.h5", *chain_in, "--output", "{out}/y_unknown_filter.npy"],
        "expect": (layer % "unknown_filter.h5") + f": weight '{kname}' uses HDF5 filter 32123, which is not "
                  "built into HDF5; FKB does not load filter plugins (built-in filters: deflate, shuffle, "
                  "fletcher32, szip, nbit, scaleoffset)",
        "no_output": ["{out}/y_unknown_filter.npy"],
    })

    # 8. Shape bomb: config and dataset agree on 64 x 2e8 floats (47.7 GiB), nothing is stored.
    p = _copy(fx, chain, out, "shape_bomb.h5")
    with h5py.File(p, "r+") as f:
        _set_units(f, "dense", 200000000)
        del f[kgroup][kname]
        f[kgroup].create_dataset(kname, shape=(64, 200000000), dtype="float32")  # contiguous, not allocated
    cases.append({
        "name": "h5_shape_bomb",
        "argv": ["convert", "{out}/shape_bomb.h5", "{out}/out_shape_bomb.keras"],
        "expect": (layer % "shape_bomb.h5") + f": weight '{kname}' declares the shape (64, 200000000) "
                  f"({bytes_str(64 * 200000000 * 4)}) but the file stores 0 bytes for it; its stored size must "
                  "equal its declared size",
        "no_output": ["{out}/out_shape_bomb.keras"],
    })

    # 9. A dataset shape that disagrees with the config (units=7): refused before anything else.
    p = _copy(fx, chain, out, "shape_mismatch.h5")
    with h5py.File(p, "r+") as f:
        del f[kgroup][kname]
        f[kgroup].create_dataset(kname, shape=(5, 200000000), dtype="float32")
    cases.append({
        "name": "h5_shape_config_mismatch",
        "argv": ["inspect", "{out}/shape_mismatch.h5"],
        "expect": (layer % "shape_mismatch.h5") + f": weight '{kname}' has the shape (5, 200000000) but units=7 in "
                  "the config implies (*, 7)",
    })

    # 10. Chunked deflate bomb: ~3.9 GB of zeros declared, one compressed chunk of a few KB stored.
    n = 975_000_000
    chunk = 1_000_000
    p = _copy(fx, "tk_weights_weights.h5", out, "deflate_bomb.h5")
    with h5py.File(p, "r+") as f:
        g = f["batch_normalization/batch_normalization"]
        del g["moving_mean:0"]
        d = g.create_dataset("moving_mean:0", shape=(n,), dtype="float32", chunks=(chunk,), compression="gzip")
        comp = zlib.compress(bytes(chunk * 4), 9)
        d.id.write_direct_chunk((0,), comp)
        stored = d.id.get_storage_size()
    cases.append({
        "name": "h5_deflate_bomb",
        "argv": ["predict", "{out}/deflate_bomb.h5", "--config", "{fixtures}/tk_weights.json", "--input",
                 "{fixtures}/tk_weights_weights_json.data.h5", "--dataset", "input_0", "--output",
                 "{out}/y_deflate_bomb.npy"],
        "expect": "{out}/deflate_bomb.h5 (config {fixtures}/tk_weights.json): layer 'batch_normalization' "
                  "(BatchNormalization): weight 'batch_normalization/moving_mean:0' declares the shape (975000000,) "
                  f"({bytes_str(n * 4)}) but the file stores {bytes_str(stored)} for it, more than 1000 times its "
                  "stored size (a decompression bomb); FKB refuses compressed data that inflates beyond that",
        "no_output": ["{out}/y_deflate_bomb.npy"],
    })

    # 11. The weight limit, on an unmodified fixture.
    cases.append({
        "name": "h5_weight_limit",
        "argv": ["inspect", "{fixtures}/" + chain],
        "env": {"FKB_MAX_WEIGHT_BYTES": "1K"},
        "expect": "'{fixtures}/k3_dense_chain.h5': weight 'k3_dense_chain/dense_5/kernel' of "
                  "{fixtures}/k3_dense_chain.h5: layer 'dense_5' (Dense) needs 168 bytes, which brings the model's "
                  "weights to 1.1 KiB, over the limit of 1 KiB (raise it with LoadLimits::max_weight_bytes or "
                  "FKB_MAX_WEIGHT_BYTES)",
    })

    # 12. A .keras whose model.weights.h5 (read as an in-memory image) has an external-link weight.
    src = os.path.join(fx, "k3_dense_chain.keras")

    def link_kernel(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars/0"] = h5py.ExternalLink(other, "/secret")

    _rezip(src, os.path.join(out, "ext_link.keras"), weights_bytes=_edit_keras_weights(src, out, link_kernel))
    cases.append({
        "name": "keras_external_link",
        "argv": ["predict", "{out}/ext_link.keras", "--input", "{fixtures}/k3_dense_chain_keras.data.h5",
                 "--dataset", "input_0", "--output", "{out}/y_ext_link_keras.npy"],
        "expect": "{out}/ext_link.keras: layer 'dense' (Dense): weight 'layers/dense/vars/0' is an external link "
                  "to '/secret' in the file '{out}/other.h5' (HDF5 external link); " + ONLY_MODEL,
        "no_output": ["{out}/y_ext_link_keras.npy"],
    })

    # 13. A .keras shape bomb: config.json says units=15625000, vars/0 declares (64, 15625000) float32 (3.7 GiB,
    # under the 16 GiB weight limit) chunked with no chunk written.
    def bomb_kernel(f):
        del f["layers/dense/vars/0"]
        f["layers/dense/vars"].create_dataset("0", shape=(64, 15625000), dtype="float32", chunks=(64, 100000))

    with zipfile.ZipFile(src) as z:
        cfg = json.loads(z.read("config.json"))
    for l in cfg["config"]["layers"]:
        if l["config"].get("name") == "dense":
            l["config"]["units"] = 15625000
    _rezip(src, os.path.join(out, "shape_bomb.keras"), weights_bytes=_edit_keras_weights(src, out, bomb_kernel),
           config_bytes=json.dumps(cfg).encode())
    cases.append({
        "name": "keras_shape_bomb_chunked",
        "argv": ["convert", "{out}/shape_bomb.keras", "{out}/out_shape_bomb2.keras"],
        "expect": "{out}/shape_bomb.keras: layer 'dense' (Dense): weight 'layers/dense/vars/0' declares the shape "
                  f"(64, 15625000) ({bytes_str(64 * 15625000 * 4)}) but the file stores 0 bytes for it; " + ONLY_MODEL
                  + ", not HDF5 fill values",
        "no_output": ["{out}/out_shape_bomb2.keras"],
    })

    # 14. A predict input whose dataset has HDF5 external storage.
    secret_in = _secret(out, "secret_input.bin", 37 * 5 * 4)
    with h5py.File(os.path.join(out, "ext_input.h5"), "w") as f:
        f.create_dataset("x", shape=(37, 5), dtype="float32", external=[(secret_in, 0, 37 * 5 * 4)])
    cases.append({
        "name": "predict_input_external_storage",
        "argv": ["predict", "{fixtures}/" + chain, "--input", "{out}/ext_input.h5", "--dataset", "x", "--output",
                 "{out}/y_ext_input.npy"],
        "expect": "'{out}/ext_input.h5': dataset 'x' is stored in an external file '{out}/secret_input.bin' "
                  "(HDF5 external storage); " + ONLY_INPUT,
        "no_output": ["{out}/y_ext_input.npy"],
    })

    # 15. A predict input that declares more than it stores (contiguous, 1e9 x 5 float32, nothing written).
    with h5py.File(os.path.join(out, "bomb_input.h5"), "w") as f:
        f.create_dataset("x", shape=(1_000_000_000, 5), dtype="float32")
    cases.append({
        "name": "predict_input_shape_bomb",
        "argv": ["predict", "{fixtures}/" + chain, "--input", "{out}/bomb_input.h5", "--dataset", "x", "--output",
                 "{out}/y_bomb_input.npy"],
        "expect": "'{out}/bomb_input.h5': dataset 'x' declares the shape (1000000000, 5) "
                  f"({bytes_str(5_000_000_000 * 4)}) but the file stores 0 bytes for it; its stored size must equal "
                  "its declared size",
        "no_output": ["{out}/y_bomb_input.npy"],
    })

    # (argv and expect use the {out}/{fixtures} placeholders: FKB names files as they are given on the command line.)
    return cases


def _lcpl():
    lcpl = h5py.h5p.create(h5py.h5p.LINK_CREATE)
    lcpl.set_create_intermediate_group(True)
    return lcpl


if __name__ == "__main__":
    import sys

    for c in craft(sys.argv[1], sys.argv[2]):
        print(c["name"])
