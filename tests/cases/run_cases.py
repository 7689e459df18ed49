#!/usr/bin/env python3
"""Run every Keras-made case under a root through FKB and compare with Keras' own values.

A case folder holds model files, float32 inputs, Keras' outputs and a cases.json: a list of entries
  {"model": "m.keras", "inputs": ["x.npy", ...], "ref": ["keras_y.npy", ...], "expect": "run",
   "config": "arch.json" (weights-only files), "alt_ref": [...] (another accepted reference), "note": "..."}
or {"model": ..., "inputs": [...], "expect": "refuse"} (fkb must exit non-zero with a message).

For each "run" entry:
  predict   `fkb predict` matches ref (or alt_ref): max|y - ref| / max|ref| <= 1e-5 for every output
  params    `fkb inspect --json` total_params equals Keras' count_params() of the source model (the entry's "params",
            recorded by make.py from the model as built, when it has one)
  convert   `fkb convert` to .keras and .h5; each written file loads in Keras 3 and predicts ref (<= 1e-5);
            for a Keras 2 / tf-keras source .h5, the written .h5 also loads in tf-keras with the same predictions.

Run it with the Keras 3 Python (`bash scripts/pyenv.sh`, KERAS_BACKEND=jax); tf-keras checks go through one call
of tfkeras_check.py under `bash scripts/pyenv.sh --tensorflow`'s Python. Prints one line per check
(PASS/FAIL/SKIP) and a summary; exits 1 when a check failed.
"""
import argparse
import fnmatch
import json
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TOL = 1e-5


def first_line(text):
    """The first non-empty line (with the next one when it ends with ':', as Keras' 'could not be loaded:' does)."""
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    if not lines:
        return "(no message)"
    out = lines[0]
    if out.endswith(":") and len(lines) > 1:
        out += " " + lines[1]
    return out[:300]


def rel_error(y, ref):
    """max|y - ref| / max|ref| (absolute when ref is all zero); None when shapes cannot match."""
    y = np.asarray(y, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if y.size != ref.size:
        return None
    y = y.reshape(ref.shape)
    if not np.all(np.isfinite(y)):
        return float("inf")
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    err = np.max(np.abs(y - ref)) if ref.size else 0.0
    return float(err / scale) if scale > 0 else float(err)


def compare(ys, refs, alt_refs):
    """(ok, text): every output within TOL of ref, or of alt_ref."""
    if len(ys) != len(refs):
        return False, "%d outputs, Keras has %d" % (len(ys), len(refs))
    texts, ok = [], True
    for i, y in enumerate(ys):
        e = rel_error(y, refs[i])
        ea = rel_error(y, alt_refs[i]) if alt_refs else None
        best = min([v for v in (e, ea) if v is not None], default=None)
        if best is None:
            ok = False
            texts.append("out%d shape %s vs Keras %s" % (i, np.shape(y), np.shape(refs[i])))
            continue
        which = "ref" if e is not None and e == best else "alt_ref"
        texts.append("out%d %.2e (%s)" % (i, best, which))
        ok = ok and best <= TOL
    return ok, ", ".join(texts)


class Report:
    def __init__(self):
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
        self.failed = []

    def line(self, status, label, check, text):
        self.counts[status] += 1
        if status == "FAIL":
            self.failed.append("%s %s" % (label, check))
        print("%-4s  %-50s %-14s %s" % (status, label, check, text), flush=True)


class Keras:
    """Keras 3 in this process, imported on first use."""

    def __init__(self):
        self.mod, self.error = None, None
        try:
            import keras  # noqa: F401

            self.mod = keras
        except Exception as e:  # no Keras in this Python: every Keras check is a SKIP
            self.error = "cannot import keras in %s (%s)" % (sys.executable, first_line(str(e)))

    def load(self, path, config=None):
        k = self.mod
        if config:
            with open(config) as f:
                text = f.read()
            if config.endswith((".yaml", ".yml")):
                raise RuntimeError("Keras 3 reads no YAML configs")
            m = k.models.model_from_json(text)
            m.load_weights(path)
            return m
        return k.models.load_model(path, compile=False)

    def predict(self, model, xs):
        k = self.mod
        struct = getattr(model, "_inputs_struct", None)
        if isinstance(struct, dict):  # dict inputs: the flat list is in sorted-key order (keras.tree.flatten)
            feed = k.tree.pack_sequence_as(struct, xs)
        else:
            feed = xs if len(xs) > 1 else xs[0]
        y = model.predict(feed, verbose=0)
        return [np.asarray(v, dtype=np.float32) for v in k.tree.flatten(y)]


def check_dict_keys(rep, label, km, info):
    """A dict-input/-output model: inspect's input_keys/output_keys are Keras' flat order (sorted keys)."""
    for side, struct in (("input", getattr(km, "_inputs_struct", None)), ("output", getattr(km, "_outputs_struct", None))):
        if not isinstance(struct, dict):
            continue
        want = sorted(struct)  # keras.tree.flatten's order of a dict
        got = info.get(side + "_keys")
        rep.line("PASS" if got == want else "FAIL", label, side + "_keys",
                 "fkb %s, Keras' flat order %s" % (got, want))


def keras_version_of(path):
    """The keras_version attribute of an HDF5 model/weights file ('' when none or not HDF5)."""
    try:
        import h5py

        with h5py.File(path, "r") as f:
            v = f.attrs.get("keras_version", "")
            return v.decode() if isinstance(v, bytes) else str(v)
    except Exception:
        return ""


def run(cmd, timeout=600, env=None):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %d s: %s" % (timeout, " ".join(cmd))


def fkb_predict(args, d, entry, outdir):
    cmd = [args.fkb, "predict", os.path.join(d, entry["model"]), "--quiet", "--device", "cpu"]
    if entry.get("config"):
        cmd += ["--config", os.path.join(d, entry["config"])]
    for x in entry["inputs"]:
        cmd += ["--input", os.path.join(d, x)]
    nout = max(1, len(entry.get("ref", [])))
    outs = [os.path.join(outdir, "fkb_y%d.npy" % i) for i in range(nout)]
    for o in outs:
        cmd += ["--output", o]
    rc, out, err = run(cmd)
    return rc, out, err, outs


def check_entry(args, keras, rep, d, entry, tf_jobs, workdir):
    name = os.path.basename(d)
    label = "%s/%s" % (name, entry["model"])
    expect = entry.get("expect", "run")
    xs = [np.load(os.path.join(d, x)) for x in entry["inputs"]]
    cfg = ["--config", os.path.join(d, entry["config"])] if entry.get("config") else []
    src = os.path.join(d, entry["model"])
    tmp = tempfile.mkdtemp(prefix=name + "_", dir=workdir)

    rc, out, err, outs = fkb_predict(args, d, entry, tmp)
    if expect == "refuse":
        msg = first_line(err or out)
        if rc != 0 and msg != "(no message)":
            rep.line("PASS", label, "refuse", "exit %d: %s" % (rc, msg))
        else:
            rep.line("FAIL", label, "refuse", "exit %d (expected a refusal with a message): %s" % (rc, msg))
        return
    if expect != "run":
        rep.line("FAIL", label, "cases.json", "unknown expect %r (accepted: run, refuse)" % expect)
        return
    refs = [np.load(os.path.join(d, r)) for r in entry["ref"]]
    alts = [np.load(os.path.join(d, r)) for r in entry.get("alt_ref", [])] or None
    if rc != 0:
        rep.line("FAIL", label, "predict", "exit %d: %s" % (rc, first_line(err or out)))
    else:
        ok, text = compare([np.load(o) for o in outs], refs, alts)
        rep.line("PASS" if ok else "FAIL", label, "predict", text)

    # Parameter count: FKB's inspect against Keras' count_params() of the source model; for dict models, the
    # dict keys inspect states against Keras' flat order.
    rc, out, err = run([args.fkb, "inspect", "--json", src] + cfg)
    info = None
    if rc != 0:
        rep.line("FAIL", label, "params", "fkb inspect exit %d: %s" % (rc, first_line(err or out)))
    else:
        try:
            info = json.loads(out)
            info["total_params"] = int(info["total_params"])
        except Exception as e:
            info = None
            rep.line("FAIL", label, "params", "fkb inspect --json gave no total_params: %s" % first_line(str(e)))
    if info is not None and "params" in entry:
        # Keras' count_params() of the model as built, recorded by make.py: Keras' reload of some files unties a
        # layer shared inside and outside a nested model (and counts it twice), or cannot load them at all.
        n, fkb_params = int(entry["params"]), info["total_params"]
        rep.line("PASS" if n == fkb_params else "FAIL", label, "params",
                 "fkb %d, Keras %d (count_params() as built, cases.json)" % (fkb_params, n))
    elif info is not None:
        fkb_params = info["total_params"]
        if keras.mod is None:
            rep.line("SKIP", label, "params", "fkb %d; %s" % (fkb_params, keras.error))
        else:
            try:
                km = keras.load(src, os.path.join(d, entry["config"]) if entry.get("config") else None)
            except Exception as e:  # Keras 3 cannot read it: ask tf-keras (if the source is a Keras 2 file)
                km = None  # Keras 2 files: tf-keras counts; Keras 3 files: Keras 3 on TensorFlow (the tf venv)
                tf_jobs.append({"label": label, "check": "params", "kind": "params", "model": src,
                                "config": os.path.join(d, entry["config"]) if entry.get("config") else "",
                                "flavour": "tf-keras" if keras_version_of(src).startswith("2.") else "keras3",
                                "fkb_params": fkb_params, "keras3_error": first_line(str(e))})
            if km is not None:
                n = int(km.count_params())
                rep.line("PASS" if n == fkb_params else "FAIL", label, "params", "fkb %d, Keras %d" % (fkb_params, n))
                check_dict_keys(rep, label, km, info)

    if args.no_convert:
        return
    source_k2 = keras_version_of(src).startswith("2.")
    config_path = os.path.join(d, entry["config"]) if entry.get("config") else None
    src_pred = {}  # the source model's own predictions in this Keras, computed when first needed
    for ext in ("keras", "h5"):
        written = os.path.join(tmp, "converted." + ext)
        check = "convert." + ext
        rc, out, err = run([args.fkb, "convert", src, written] + cfg)
        if rc != 0:
            rep.line("FAIL", label, check, "fkb convert exit %d: %s" % (rc, first_line(err or out)))
            continue
        if keras.mod is None:
            rep.line("SKIP", label, check, keras.error)
        else:
            try:
                ys = keras.predict(keras.load(written), xs)
            except Exception as e:
                rep.line("FAIL", label, check, "Keras 3 cannot load the written file: %s" % first_line(str(e)))
                continue
            # Against Keras' ref (not alt_ref: a written file must keep the source's dtypes). Reduced-precision
            # layers compute differently per backend (ref may come from TensorFlow, this Keras runs JAX): then the
            # written file must predict what the source file predicts in this same Keras.
            ok, text = compare(ys, refs, None)
            if not ok:
                if "source" not in src_pred:
                    try:
                        src_pred["source"] = keras.predict(keras.load(src, config_path), xs)
                    except Exception:
                        src_pred["source"] = None
                if src_pred["source"] is not None:
                    ok2, text2 = compare(ys, src_pred["source"], None)
                    _, text_src = compare(src_pred["source"], refs, None)
                    if ok2:
                        ok, text = True, "%s (the source in this Keras: %s; vs ref: %s)" % (
                            text2.replace("(ref)", "").strip(), text_src, text)
                    else:
                        text += "; vs the source in this Keras: " + text2
            if ok:
                rep.line("PASS", label, check, "Keras 3 reload: " + text)
            else:  # the verdict of Keras 3 on TensorFlow (the backend Keras' refs were made with), in the tf venv
                tf_jobs.append({"label": label, "check": check, "kind": "predict", "flavour": "keras3",
                                "model": written, "inputs": [os.path.join(d, x) for x in entry["inputs"]],
                                "out_prefix": os.path.join(tmp, "k3tf_%s_y" % ext),
                                "ref": [os.path.join(d, r) for r in entry["ref"]], "jax_text": text})
        if ext == "h5" and source_k2:
            tf_jobs.append({"label": label, "check": "convert.h5.tfk", "kind": "predict", "model": written,
                            "inputs": [os.path.join(d, x) for x in entry["inputs"]],
                            "out_prefix": os.path.join(tmp, "tfk_y"),
                            "ref": [os.path.join(d, r) for r in entry["ref"]]})


def tf_python(args):
    """The tf-keras Python, or (None, why)."""
    if args.tf_python:
        return args.tf_python, ""
    if args.no_tf:
        return None, "--no-tf given"
    # Without KERAS_BACKEND: pyenv.sh's import check would make Keras look for JAX, which that venv lacks.
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "JAX_PLATFORMS")}
    rc, out, err = run(["bash", os.path.join(REPO, "scripts", "pyenv.sh"), "--tensorflow"], timeout=1200, env=env)
    if rc != 0 or not out.strip():
        return None, "the tf-keras environment could not be made (scripts/pyenv.sh --tensorflow exit %d: %s)" % (
            rc, first_line(err))
    return out.strip().splitlines()[-1], ""


def run_tf_jobs(args, rep, jobs, workdir):
    if not jobs:
        return
    py, why = tf_python(args)
    if py is None:
        for j in jobs:
            if "jax_text" in j:  # failed on JAX and cannot be checked on TensorFlow: a failure
                rep.line("FAIL", j["label"], j["check"], "Keras 3/JAX reload: %s (TensorFlow check impossible: %s)"
                         % (j["jax_text"], why))
            else:
                rep.line("SKIP", j["label"], j["check"], "tf-keras: " + why)
        return
    job_file = os.path.join(workdir, "tf_jobs.json")
    result_file = os.path.join(workdir, "tf_results.json")
    with open(job_file, "w") as f:
        json.dump(jobs, f)
    env = {k: v for k, v in os.environ.items() if k not in ("KERAS_BACKEND", "JAX_PLATFORMS")}
    env["TF_USE_LEGACY_KERAS"] = "1"
    p = subprocess.run([py, os.path.join(HERE, "tfkeras_check.py"), job_file, result_file], capture_output=True,
                       text=True, env=env, timeout=1200)
    if p.returncode != 0 or not os.path.exists(result_file):
        for j in jobs:
            rep.line("FAIL", j["label"], j["check"], "tfkeras_check.py exit %d: %s" % (p.returncode,
                                                                                     first_line(p.stderr[-2000:])))
        return
    with open(result_file) as f:
        results = json.load(f)
    for j, r in zip(jobs, results):
        if j["kind"] == "params":
            who = "tf-keras" if j["flavour"] == "tf-keras" else "Keras 3 (TensorFlow)"
            if r.get("error"):
                rep.line("SKIP", j["label"], "params", "fkb %d; neither Keras 3/JAX (%s) nor %s (%s) loads the source"
                         % (j["fkb_params"], j["keras3_error"], who, r["error"]))
            else:
                n = r["params"]
                rep.line("PASS" if n == j["fkb_params"] else "FAIL", j["label"], "params",
                         "fkb %d, %s %d (Keras 3/JAX cannot load it: %s)" % (j["fkb_params"], who, n,
                                                                          j["keras3_error"]))
        else:
            who = "Keras 3/TensorFlow" if j.get("flavour") == "keras3" else "tf-keras"
            jax = " (Keras 3/JAX reload: %s)" % j["jax_text"] if "jax_text" in j else ""
            if r.get("error"):
                rep.line("FAIL", j["label"], j["check"], "%s cannot load the written file: %s%s" % (who, r["error"], jax))
                continue
            ys = [np.load(p) for p in r["outputs"]]
            ok, text = compare(ys, [np.load(p) for p in j["ref"]], None)
            rep.line("PASS" if ok else "FAIL", j["label"], j["check"], "%s reload: %s%s" % (who, text, jax))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fkb", default=os.environ.get("FKB", os.path.join(REPO, "build", "bin", "fkb")),
                    help="the fkb binary (default $FKB, else build/bin/fkb)")
    ap.add_argument("--root", default=os.path.join(REPO, "tests", "fixtures", "cases"),
                    help="folder of case folders (default tests/fixtures/cases)")
    ap.add_argument("--only", action="append", default=[],
                    help="run only case folders whose name matches (glob; repeatable)")
    ap.add_argument("--no-convert", action="store_true", help="skip the fkb convert round trips")
    ap.add_argument("--no-tf", action="store_true", help="skip the tf-keras checks (SKIP lines)")
    ap.add_argument("--tf-python", default="", help="Python with tf-keras (default: scripts/pyenv.sh --tensorflow)")
    args = ap.parse_args()
    if not os.access(args.fkb, os.X_OK):
        print("error: fkb binary %r not found or not executable (give --fkb PATH)" % args.fkb, file=sys.stderr)
        return 2
    if not os.path.isdir(args.root):
        print("error: case root %r is not a directory" % args.root, file=sys.stderr)
        return 2
    folders = sorted(n for n in os.listdir(args.root) if os.path.isfile(os.path.join(args.root, n, "cases.json")))
    if args.only:
        folders = [n for n in folders if any(fnmatch.fnmatch(n, pat) or n == pat for pat in args.only)]
    if not folders:
        print("error: no case folder (with a cases.json) under %r%s" % (
            args.root, " matches --only " + ", ".join(args.only) if args.only else ""), file=sys.stderr)
        return 2

    keras = Keras()
    print("fkb: %s\nKeras: %s\n" % (args.fkb, keras.mod.__version__ + " (" + keras.mod.backend.backend() + ")"
                                    if keras.mod else keras.error), flush=True)
    rep = Report()
    tf_jobs = []
    with tempfile.TemporaryDirectory(prefix="fkb_cases_") as workdir:
        for name in folders:
            d = os.path.join(args.root, name)
            try:
                with open(os.path.join(d, "cases.json")) as f:
                    entries = json.load(f)
            except Exception as e:
                rep.line("FAIL", name, "cases.json", first_line(str(e)))
                continue
            for entry in entries:
                try:
                    check_entry(args, keras, rep, d, entry, tf_jobs, workdir)
                except Exception as e:  # a broken entry fails alone
                    rep.line("FAIL", "%s/%s" % (name, entry.get("model", "?")), "harness",
                             "%s: %s" % (type(e).__name__, first_line(str(e))))
        run_tf_jobs(args, rep, tf_jobs, workdir)
    c = rep.counts
    print("\n%d passed, %d failed, %d skipped (%d case folders)" % (c["PASS"], c["FAIL"], c["SKIP"], len(folders)))
    for f in rep.failed:
        print("  failed: " + f)
    return 1 if c["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
