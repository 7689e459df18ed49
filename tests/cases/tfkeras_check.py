#!/usr/bin/env python3
"""tf-keras half of run_cases.py: one call for all jobs, run with `bash scripts/pyenv.sh --tensorflow`'s Python.

usage: tfkeras_check.py JOBS.json RESULTS.json
JOBS.json is a list of
  {"kind": "params", "model": PATH, "config": PATH or "", "flavour": "tf-keras" | "keras3"}
                                                                  -> {"params": N}  (count_params(); keras3 = Keras 3
                                                                     on TensorFlow, for files JAX cannot read)
  {"kind": "predict", "model": PATH, "inputs": [npy...], "out_prefix": P, "flavour": "tf-keras" | "keras3"}
                                                                  -> {"outputs": [P0.npy, ...]} (float32)
Each result is {"error": "first line"} when tf-keras cannot do it. RESULTS.json is the list of results in order.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np  # noqa: E402
import tf_keras  # noqa: E402


def first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return "(no message)"


def load(model, config, flavour="tf-keras"):
    if flavour == "keras3":  # a Keras 3 file Keras 3 on JAX cannot read: Keras 3 on TensorFlow (same venv)
        import keras

        if config:
            with open(config) as f:
                m = keras.models.model_from_json(f.read())
            m.load_weights(model)
            return m
        return keras.models.load_model(model, compile=False)
    if config:
        with open(config) as f:
            text = f.read()
        m = (tf_keras.models.model_from_yaml(text) if config.endswith((".yaml", ".yml"))
             else tf_keras.models.model_from_json(text))
        m.load_weights(model)
        return m
    return tf_keras.models.load_model(model, compile=False)


def flat(y):
    if isinstance(y, dict):  # Keras' flat order of a dict: sorted keys
        return [np.asarray(y[k], dtype=np.float32) for k in sorted(y)]
    if isinstance(y, (list, tuple)):
        return [np.asarray(v, dtype=np.float32) for v in y]
    return [np.asarray(y, dtype=np.float32)]


def do(job):
    m = load(job["model"], job.get("config", ""), job.get("flavour", "tf-keras"))
    if job["kind"] == "params":
        return {"params": int(m.count_params())}
    xs = [np.load(p) for p in job["inputs"]]
    struct = getattr(m, "_inputs_struct", None)
    if job.get("flavour") == "keras3" and isinstance(struct, dict):  # Keras 3 dict inputs, in sorted-key order
        import keras

        feed = keras.tree.pack_sequence_as(struct, xs)
    else:
        feed = xs if len(xs) > 1 else xs[0]
    ys = flat(m.predict(feed, verbose=0))
    paths = []
    for i, y in enumerate(ys):
        p = "%s%d.npy" % (job["out_prefix"], i)
        np.save(p, y)
        paths.append(p)
    return {"outputs": paths}


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    results = []
    for job in jobs:
        try:
            results.append(do(job))
        except Exception as e:
            results.append({"error": "%s: %s" % (type(e).__name__, first_line(str(e)))})
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
