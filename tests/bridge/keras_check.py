#!/usr/bin/env python3
"""Load FKB-written Keras files with real Keras and compare predictions.

Usage: keras_check.py FIXTURES_DIR CONVERTED_DIR [--fkb-outputs DIR]

For every fixture of FIXTURES_DIR/manifest.json that loads in FKB, CONVERTED_DIR holds
<name>.keras and <name>.h5 written by `fkb convert`. Each is loaded with keras.saving.load_model and
its predict() on the fixture's input is compared with Keras' own output stored in the fixture
(max-abs error / max-abs reference <= 1e-5) and, with --fkb-outputs, with FKB's predictions for the
same input (<name>.out<i>.npy; <= 1e-6). Where Keras' backend itself rounds differently from the TensorFlow
run that made the fixture (XLA's exp/tanh, summation order over long chains), the FKB comparison may exceed
1e-6; it then passes only if Keras gives the *same* numbers (<= 1e-7) for the original fixture file, which
shows the written file is faithful and the difference is the backend's. Prints one line per file and
"N passed, N failed".
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
import keras  # noqa: E402


def rel_err(got, ref):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    scale = np.max(np.abs(ref))
    err = np.max(np.abs(got - ref))
    return err / scale if scale > 0 else err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixtures")
    ap.add_argument("converted")
    ap.add_argument("--fkb-outputs")
    args = ap.parse_args()
    manifest = json.load(open(os.path.join(args.fixtures, "manifest.json")))
    passed = failed = 0
    for fx in manifest["fixtures"]:
        if fx["expect_error"]:
            continue
        name = fx["name"]
        with h5py.File(os.path.join(args.fixtures, fx["data"]), "r") as d:
            xs = [d[f"input_{i}"][()] for i in range(len(fx["inputs"]))]
            refs = [d[f"output_{i}"][()] for i in range(len(fx["outputs"]))]
        original = None  # Keras' predict on the original fixture file, same backend
        if fx["format"] in ("keras", "h5"):
            try:
                om = keras.saving.load_model(os.path.join(args.fixtures, fx["file"]), compile=False)
                original = om.predict(xs if len(xs) > 1 else xs[0], verbose=0)
                if not isinstance(original, (list, tuple)):
                    original = [original]
            except Exception:
                original = None  # e.g. a tf-keras file Keras 3 cannot read
        for ext in ("keras", "h5"):
            path = os.path.join(args.converted, f"{name}.{ext}")
            try:
                model = keras.saving.load_model(path, compile=False)
                ys = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
                if not isinstance(ys, (list, tuple)):
                    ys = [ys]
                errs = [rel_err(y, r) for y, r in zip(ys, refs)]
                worst = max(errs)
                fkb_worst = 0.0
                if args.fkb_outputs:
                    for i, y in enumerate(ys):
                        f = np.load(os.path.join(args.fkb_outputs, f"{name}.out{i}.npy"))
                        fkb_worst = max(fkb_worst, rel_err(y, f))
                same = None
                if original is not None:
                    same = max(rel_err(y, o) for y, o in zip(ys, original))
                fkb_ok = fkb_worst <= 1e-6 or (same is not None and same <= 1e-7 and fkb_worst <= 1e-5)
                ok = len(ys) == len(refs) and worst <= 1e-5 and fkb_ok
                status = "ok" if ok else "FAIL"
                same_s = "n/a" if same is None else f"{same:.2e}"
                print(f"{status} {name}.{ext}: vs keras reference {worst:.2e}, vs fkb {fkb_worst:.2e}, "
                      f"vs keras on the original file {same_s}")
            except Exception as e:  # a file Keras cannot load is a failure, with the reason
                ok = False
                print(f"FAIL {name}.{ext}: {type(e).__name__}: {str(e)[:300]}")
            passed += ok
            failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
