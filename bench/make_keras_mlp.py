#!/usr/bin/env python3
"""Save a Keras MLP of the BENCHMARKS.md `climsim` shape with real Keras (tf-keras, legacy .h5).

Usage: $(scripts/pyenv.sh --tensorflow) bench/make_keras_mlp.py OUT.h5 [--seed N]

124 -> Dense 768, 640, 512, 640, 640 (each followed by LeakyReLU(alpha=0.15)) -> Dense 128, seeded
Glorot weights with perturbed biases. Next to OUT.h5 it writes OUT.ref.h5 with a float32 input batch
`input_0` [64, 124] and Keras' own `model.predict` output `output_0` [64, 128], so a baseline built from
the same weights can be checked against Keras before it is timed.
"""
import argparse
import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=20261127)
    args = ap.parse_args()

    import numpy as np
    import h5py
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    inp = keras.Input(shape=(124,), name="state")
    x = inp
    for i, units in enumerate([768, 640, 512, 640, 640]):
        x = keras.layers.Dense(units, name=f"dense_{i}")(x)
        x = keras.layers.LeakyReLU(alpha=0.15, name=f"leaky_{i}")(x)
    out = keras.layers.Dense(128, name="tendencies")(x)
    model = keras.Model(inp, out, name="climsim_mlp")
    for layer in model.layers:
        ws = layer.get_weights()
        if len(ws) == 2:
            layer.set_weights([ws[0], (ws[1] + rng.normal(0, 0.1, ws[1].shape)).astype("float32")])
    model.save(args.out)
    x = rng.standard_normal((64, 124)).astype("float32")
    y = model.predict(x, verbose=0)
    with h5py.File(os.path.splitext(args.out)[0] + ".ref.h5", "w") as f:
        f["input_0"] = x
        f["output_0"] = y.astype("float32")
    print(f"wrote {args.out} (Keras {keras.__version__})")


if __name__ == "__main__":
    main()
