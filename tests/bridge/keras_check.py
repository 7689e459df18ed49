#!/usr/bin/env python3
"""Load FKB-written Keras files with real Keras and compare predictions.

Usage: keras_check.py FIXTURES_DIR CONVERTED_DIR [--fkb-outputs DIR] [--tf-keras]

For every fixture of FIXTURES_DIR/manifest.json that loads in FKB (and the custom-layer fixtures, whose class
fkbtest>ScaledTanh is registered here as the fixture generator registers it), CONVERTED_DIR holds <name>.keras and
<name>.h5 written by FKB. Each is loaded with keras.saving.load_model and its predict() on the fixture's input is
compared with Keras' own output stored in the fixture (max-abs error / max-abs reference <= 1e-5) and, with
--fkb-outputs, with FKB's predictions for the same input (<name>.out<i>.npy; <= 1e-6). Where Keras' backend itself
rounds differently from the TensorFlow run that made the fixture (XLA's exp/tanh, summation order over long chains),
the FKB comparison may exceed 1e-6; it then passes only if Keras gives the *same* numbers (<= 1e-7) for the original
fixture file, which shows the written file is faithful and the difference is the backend's.

CONVERTED_DIR/cases_plan.json (written by WriterExport.CasesForKerasCheck) lists the models of
tests/fixtures/cases/*/ converted by FKB, with their inputs and Keras' outputs; each written file must reproduce
Keras' outputs (<= 1e-5, or the same backend rule against Keras on the source file, or on another file of the case
with the same outputs when this Keras cannot read the source). A model FKB refused is a failure.

--tf-keras: load with tf-keras instead (tf_keras.models.load_model), only the .h5 files written for tf-keras (their
keras_version attribute is 2.x: the default for a model read from a Keras 2 / tf-keras file).
Prints one line per file and "N passed, N failed".
"""
import argparse
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

TF_KERAS = "--tf-keras" in sys.argv
if TF_KERAS:
    import tf_keras as keras  # noqa: E402

    def load(path):
        return keras.models.load_model(path, compile=False)
else:
    import keras  # noqa: E402

    def load(path):
        return keras.saving.load_model(path, compile=False)


@keras.utils.register_keras_serializable(package="fkbtest")
class ScaledTanh(keras.layers.Layer):
    """The custom layer of the k3_custom fixtures (tests/fixtures/make_fixtures.py), as a user defines it."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x):
        return self.scale * (keras.ops.tanh(x) if hasattr(keras, "ops") else __import__("tensorflow").tanh(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        c = super().get_config()
        c["scale"] = self.scale
        return c


def rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf")
    scale = np.max(np.abs(ref))
    err = np.max(np.abs(got - ref))
    return err / scale if scale > 0 else err


def predict(model, xs, input_keys=None):
    """Keras' predict as a list in Keras' flat order (a dict output: sorted keys)."""
    feed = dict(zip(input_keys, xs)) if input_keys else (xs if len(xs) > 1 else xs[0])
    ys = model.predict(feed, verbose=0)
    if isinstance(ys, dict):
        ys = [ys[k] for k in sorted(ys)]
    return ys if isinstance(ys, (list, tuple)) else [ys]


def written_for_tf_keras(path):
    if not path.endswith(".h5"):
        return False
    with h5py.File(path, "r") as f:
        v = f.attrs.get("keras_version", b"")
    return (v.decode() if isinstance(v, bytes) else str(v)).startswith("2.")


def check_fixtures(args, report):
    manifest = json.load(open(os.path.join(args.fixtures, "manifest.json")))
    for fx in manifest["fixtures"]:
        if fx["expect_error"] and fx.get("custom_class") != "ScaledTanh":
            continue
        name = fx["name"]
        with h5py.File(os.path.join(args.fixtures, fx["data"]), "r") as d:
            xs = [d[f"input_{i}"][()] for i in range(len(fx["inputs"]))]
            refs = [d[f"output_{i}"][()] for i in range(len(fx["outputs"]))]
        original = None  # Keras' predict on the original fixture file, same backend
        if fx["format"] in ("keras", "h5"):
            try:
                original = predict(load(os.path.join(args.fixtures, fx["file"])), xs)
            except Exception:
                original = None  # e.g. a tf-keras file Keras 3 cannot read
        for ext in ("keras", "h5"):
            path = os.path.join(args.converted, f"{name}.{ext}")
            if TF_KERAS and not written_for_tf_keras(path):
                continue
            try:
                ys = predict(load(path), xs)
                worst = max(rel_err(y, r) for y, r in zip(ys, refs))
                fkb_worst = 0.0
                if args.fkb_outputs:
                    for i, y in enumerate(ys):
                        f = np.load(os.path.join(args.fkb_outputs, f"{name}.out{i}.npy"))
                        fkb_worst = max(fkb_worst, rel_err(y, f))
                same = None if original is None else max(rel_err(y, o) for y, o in zip(ys, original))
                fkb_ok = fkb_worst <= 1e-6 or (same is not None and same <= 1e-7 and fkb_worst <= 1e-5)
                ok = len(ys) == len(refs) and worst <= 1e-5 and fkb_ok
                same_s = "n/a" if same is None else f"{same:.2e}"
                report(ok, f"{name}.{ext}: vs keras reference {worst:.2e}, vs fkb {fkb_worst:.2e}, "
                           f"vs keras on the original file {same_s}")
            except Exception as e:  # a file Keras cannot load is a failure, with the reason
                report(False, f"{name}.{ext}: {type(e).__name__}: {str(e)[:300]}")


def check_cases(args, report):
    plan_path = os.path.join(args.converted, "cases_plan.json")
    if not os.path.exists(plan_path):
        return
    plan = json.load(open(plan_path))
    for c in plan:
        # Keras on the source file tells the backend's rounding from the file's; when this Keras cannot read the
        # source (Keras 3 and a bfloat16 legacy .h5), another file of the same case with the same outputs stands in.
        c["sources"] = [c["source"]] + [o["source"] for o in plan if o is not c and o["ref"] == c["ref"]]
        if c["error"]:
            if not TF_KERAS:
                report(False, f"{c['name']}: FKB refused the model Keras made, nothing to convert: {c['error'][:300]}")
            continue
        xs = [np.load(p) for p in c["inputs"]]
        refs = [np.load(p) for p in c["ref"]]
        keys = c.get("input_keys") or None
        original = None
        for path in c["files"]:
            if TF_KERAS and not written_for_tf_keras(path):
                continue
            try:
                ys = predict(load(path), xs, keys)
                worst = max(rel_err(y, r) for y, r in zip(ys, refs)) if len(ys) == len(refs) else float("inf")
                same = None
                if worst > 1e-5:  # the backend's rounding, or the file? Keras on the source file tells.
                    for src in c["sources"]:
                        try:
                            original = original or predict(load(src), xs, keys)
                            break
                        except Exception:
                            continue
                    if original is not None:
                        same = max(rel_err(y, o) for y, o in zip(ys, original))
                ok = worst <= 1e-5 or (same is not None and same <= 1e-7)
                same_s = "n/a" if same is None else f"{same:.2e}"
                report(ok, f"{os.path.basename(path)}: vs keras reference {worst:.2e}, "
                           f"vs keras on the source file {same_s}")
            except Exception as e:
                report(False, f"{os.path.basename(path)}: {type(e).__name__}: {str(e)[:300]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures")
    ap.add_argument("converted")
    ap.add_argument("--fkb-outputs")
    ap.add_argument("--tf-keras", action="store_true")
    args = ap.parse_args()
    counts = [0, 0]

    def report(ok, line):
        print(("ok " if ok else "FAIL ") + line, flush=True)
        counts[0 if ok else 1] += 1

    check_fixtures(args, report)
    check_cases(args, report)
    print(f"{counts[0]} passed, {counts[1]} failed")
    return 0 if counts[1] == 0 and counts[0] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
