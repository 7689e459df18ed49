#!/usr/bin/env python3
"""Seed corpora and dictionaries of the fuzz targets (tests/fuzz/README.md), made from the committed fixtures.

    make_corpus.py OUTDIR      -> OUTDIR/corpus/<target>/<seed>, OUTDIR/dicts/<target>.dict

Model seeds are the small Keras fixtures of tests/fixtures (under 100 KB each; the *.data.h5 files are test data,
not models). Config seeds are the configs inside them: config.json of each .keras (zipfile), the model_config
attribute of each legacy .h5 (h5py, when importable), the weights-only JSON/YAML configs. The .npy, .csv and
ensemble seeds are written here. Only the standard library is required; h5py and PyYAML add seeds when present.
Deterministic: the same fixtures give the same corpus.
"""
import json
import os
import struct
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MAX_SEED = 100 * 1024


def small_fixtures(pattern):
    out = []
    for p in sorted(FIXTURES.glob(pattern)):
        if p.name.endswith(".data.h5") or not p.is_file() or p.stat().st_size > MAX_SEED:
            continue
        out.append(p)
    return out


def write(dirpath, name, data):
    dirpath.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (dirpath / name).write_bytes(data)


# ----------------------------------------------------------------------------------------------------------------------
# Model files and their configs


def model_seeds(corpus):
    for p in small_fixtures("*.h5") + small_fixtures("custom_weights/*.h5"):
        write(corpus / "h5", p.name if p.parent == FIXTURES else "custom_" + p.name, p.read_bytes())
    for p in small_fixtures("*.keras") + small_fixtures("custom_weights/*.keras"):
        write(corpus / "keras_zip", p.name if p.parent == FIXTURES else "custom_" + p.name, p.read_bytes())


def config_texts():
    """(name, JSON text) of every model config the fixtures hold."""
    texts = []
    for p in small_fixtures("*.keras"):
        with zipfile.ZipFile(p) as z:
            texts.append((p.stem + "_config.json", z.read("config.json").decode()))
    try:
        import h5py  # noqa: F401 (optional)
    except ImportError:
        h5py = None
    if h5py is not None:
        for p in small_fixtures("*.h5"):
            with h5py.File(p, "r") as f:
                cfg = f.attrs.get("model_config")
            if cfg is None:
                continue
            if isinstance(cfg, bytes):
                cfg = cfg.decode()
            texts.append((p.stem + "_h5_config.json", str(cfg)))
    for p in sorted(FIXTURES.glob("*weights.json")):
        texts.append((p.name, p.read_text()))
    return texts


def config_seeds(corpus):
    texts = config_texts()
    for name, text in texts:
        write(corpus / "config_json", name, text)
    for p in sorted(FIXTURES.glob("*.yaml")):
        write(corpus / "config_yaml", p.name, p.read_bytes())
    try:
        import yaml
    except ImportError:
        yaml = None
    for name, text in texts:
        stem = name.rsplit(".", 1)[0]
        if yaml is not None:
            write(corpus / "config_yaml", stem + ".yaml", yaml.safe_dump(json.loads(text), sort_keys=False))
        else:
            write(corpus / "config_yaml", stem + ".flow.yaml", text)  # JSON is YAML's flow style
    # YAML features a config may use: anchors/aliases, merge keys, tags, several documents.
    write(corpus / "config_yaml", "anchors.yaml",
          "class_name: Sequential\nconfig:\n  name: s\n  layers:\n  - &d\n    class_name: Dense\n"
          "    config: {name: d0, units: 4, activation: relu}\n  - <<: *d\n"
          "    config: {name: d1, units: !!int '2', activation: linear}\n")
    write(corpus / "config_yaml", "two_docs.yaml", "class_name: Sequential\n---\nclass_name: Model\n")


# ----------------------------------------------------------------------------------------------------------------------
# .npy (written by hand: the format is a magic, a version, a header length and a Python dict literal)


def npy(shape, descr="<f4", values=None, version=(1, 0), fortran=False, header_extra="", pad_to=64):
    n = 1
    for s in shape:
        n *= s
    shape_txt = "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, %s}" % (descr, fortran, shape_txt, header_extra)
    len_fmt = "<H" if version[0] == 1 else "<I"
    prefix = 6 + 2 + struct.calcsize(len_fmt)
    total = prefix + len(header) + 1
    header += " " * ((-total) % pad_to) + "\n"
    if values is None:
        values = [i - 1 for i in range(n)] if descr == "<i4" else [0.25 * i - 1.0 for i in range(n)]
    fmt = {"<f4": "<%df", "<f8": "<%dd", ">f4": ">%df", "<i4": "<%di", "<f2": "<%de"}[descr] % n
    return (b"\x93NUMPY" + bytes(version) + struct.pack(len_fmt, len(header)) + header.encode("latin1") +
            struct.pack(fmt, *values))


def npy_seeds(corpus):
    d = corpus / "npy"
    write(d, "f4_2x3.npy", npy((2, 3)))
    write(d, "f8_4x2.npy", npy((4, 2), "<f8"))
    write(d, "f4_rank1.npy", npy((5,)))
    write(d, "f4_rank3.npy", npy((2, 3, 2)))
    write(d, "f4_0rows.npy", npy((0, 3)))
    write(d, "f4_scalar.npy", npy(()))
    write(d, "v2_f4.npy", npy((3, 2), version=(2, 0)))
    write(d, "v3_f8.npy", npy((1, 4), "<f8", version=(3, 0)))
    write(d, "fortran.npy", npy((2, 2), fortran=True))
    write(d, "big_endian.npy", npy((2, 2), ">f4"))
    write(d, "int32.npy", npy((2, 2), "<i4"))
    write(d, "half.npy", npy((2, 2), "<f2"))
    write(d, "nonfinite.npy", npy((1, 3), "<f4", [float("nan"), float("inf"), -float("inf")]))
    write(d, "truncated.npy", npy((4, 4))[:-7])


def csv_seeds(corpus):
    d = corpus / "csv"
    write(d, "plain.csv", "1,2,3\n4,5,6\n")
    write(d, "header.csv", "a,b,c\n0.5,-1e-3,2E+2\n7,8,9\n")
    write(d, "comments.csv", "# columns\n\n1 2 3\n\t4  5 6\n# end\n")
    write(d, "semicolon.csv", "1;2;3\r\n4;5;6\r\n")
    write(d, "nonfinite.csv", "nan,inf,-inf\nNaN,Infinity,-0\n")
    write(d, "ragged.csv", "1,2,3\n4,5\n")
    write(d, "one.csv", "42")
    write(d, "empty.csv", "")
    write(d, "header_only.csv", "x,y\n")
    write(d, "wide.csv", ",".join(str(i) for i in range(200)) + "\n")


def ensemble_seeds(corpus):
    d = corpus / "ensemble"
    write(d, "ensemble8.yaml", (FIXTURES / "ensemble8" / "ensemble.yaml").read_bytes())
    write(d, "members.txt", (FIXTURES / "ensemble8" / "members.txt").read_bytes())
    write(d, "options.yaml", "members: [a.keras, b.h5]\ndevice: cpu\nprecision: fp32\nmax_batch: 64\nthreads: 2\n")
    write(d, "members_dir.yaml", "members: .\n")
    write(d, "members_list.yaml", "members: members.txt\n")
    write(d, "anchors.yaml", "members: &m [a.keras, b.keras]\nx: *m\n")
    write(d, "list_comments.txt", "# members\n\n  a.keras  \r\n/abs/b.h5\n")


# ----------------------------------------------------------------------------------------------------------------------
# Dictionaries (libFuzzer -dict): tokens each parser looks for


def dict_line(token):
    out = []
    for b in token.encode() if isinstance(token, str) else token:
        if b in (0x22, 0x5C):
            out.append("\\" + chr(b))
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append("\\x%02X" % b)
    return '"' + "".join(out) + '"'


def write_dict(dicts, name, tokens):
    seen, lines = set(), []
    for t in tokens:
        if t and t not in seen and len(t) <= 64:
            seen.add(t)
            lines.append(dict_line(t))
    write(dicts, name + ".dict", "\n".join(lines) + "\n")


def config_tokens():
    keys, values = set(), set()

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                keys.add(k)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            values.add(v)

    for _, text in config_texts():
        walk(json.loads(text))
    return sorted(keys), sorted(values)


H5_TOKENS = [b"\x89HDF\r\n\x1a\n", "OHDR", "OCHK", "TREE", "HEAP", "GCOL", "SNOD", "FRHP", "FHDB", "FHIB", "FSHD",
             "BTHD", "BTIN", "BTLF", "FSSE", "SMTB", "EAHD", "EAIB", "EADB", "FAHD", "FADB", b"\xff" * 8, b"\x00" * 8,
             "model_config", "model_weights", "layer_names", "weight_names", "keras_version", "backend", "layers",
             "vars", "training_config", "kernel:0", "bias:0", "_layer_checkpoint_dependencies"]
ZIP_TOKENS = [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07", b"PK\x07\x08",
              "config.json", "metadata.json", "model.weights.h5", "assets/", b"\x08\x00", b"\x00\x00"]


def dictionaries(dicts):
    keys, values = config_tokens()
    json_tokens = ['"%s":' % k for k in keys] + ['"%s"' % v for v in values] + \
        ["{", "}", "[", "]", ",", ":", "null", "true", "false", "-0", "1e400", "\\u0000", "\\ud800"]
    write_dict(dicts, "config_json", json_tokens)
    yaml_tokens = [k + ": " for k in keys] + values + \
        ["- ", "&a ", "*a", "<<: ", "!!str ", "!!int ", "!!binary ", "!!map", "---\n", "...\n", "? ", "|\n", ">\n",
         "{", "}", "[", "]", "~", "null", ".inf", ".nan", "0x1F", "0o17"]
    write_dict(dicts, "config_yaml", yaml_tokens)
    write_dict(dicts, "h5", H5_TOKENS + ['"%s"' % k for k in keys[:100]])
    write_dict(dicts, "keras_zip", ZIP_TOKENS + H5_TOKENS + ['"%s":' % k for k in keys[:100]])
    write_dict(dicts, "npy", [b"\x93NUMPY", b"\x01\x00", b"\x02\x00", b"\x03\x00", "'descr': ", "'<f4'", "'<f8'",
                              "'>f4'", "'|u1'", "'fortran_order': ", "False", "True", "'shape': ", "(", ")", ",)",
                              "{", "}", "\n", "18446744073709551615", "2147483648"])
    write_dict(dicts, "csv", [",", ";", "\t", "\n", "\r\n", "#", "nan", "inf", "-inf", "Infinity", "1e308", "1e-400",
                              "0x1p3", "-0", "+", "e+", "E-"])
    write_dict(dicts, "ensemble", ["members: ", "device: ", "precision: ", "max_batch: ", "threads: ", "cpu", "cuda",
                                   "cuda:0", "auto", "fp32", "tf32", "bf16", "- ", ".keras", ".h5", ".txt", ".yaml",
                                   "&a ", "*a", "<<: ", "[", "]", "{", "}", "#", "\n", "/", "..", "-1",
                                   "9223372036854775808"])


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    corpus, dicts = out / "corpus", out / "dicts"
    model_seeds(corpus)
    config_seeds(corpus)
    npy_seeds(corpus)
    csv_seeds(corpus)
    ensemble_seeds(corpus)
    dictionaries(dicts)
    for t in sorted(os.listdir(corpus)):
        files = list((corpus / t).iterdir())
        print("[corpus] %-12s %3d seeds, %7d bytes" % (t, len(files), sum(f.stat().st_size for f in files)))


if __name__ == "__main__":
    main()
