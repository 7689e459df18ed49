#!/usr/bin/env python3
"""Train the column model's emulator network with Keras, on data written by the Fortran reference scheme.

Usage (from the repository root, after building build/bin/fkb_column_model; the interpreter is the Keras 3 +
TensorFlow environment that `scripts/pyenv.sh --tensorflow` creates, once):
    .venv-keras-tf/bin/python fortran/examples/column_model/train.py [--generator build/bin/fkb_column_model]
                                                                     [--data FILE] [--epochs N]

Steps:
  1. `fkb_column_model --generate FILE` runs the reference physics (relaxation + convective adjustment +
     condensation) and writes samples x = (T, q) of 2*nlev values, y = (dT/dt, dq/dt) of 2*nlev values
     (float32 stream file: int32 nin, nout, n, then per block x(ncol, nin) and y(ncol, nout)).
  2. Normalization in the SPCAM/CBRAIN convention that module fkb_physics applies:
        network input  = (x - sub) / div      sub = mean, div = standard deviation (floored)
        network output = y * scale            scale = 1 / standard deviation (floored), so y = output / scale
  3. A Keras 3 MLP 2*nlev -> 64 -> 64 -> 2*nlev (LeakyReLU 0.3, as CBRAIN), MSE on normalized outputs.
  4. Writes model/: column_physics.keras, inp_sub.txt, inp_div.txt, out_scale.txt (one value per line,
     '#' comments), fkb.nml (the namelist fkb_physics_init reads), keras_check.txt (physical inputs and
     Keras' own physical outputs for 16 columns: `fkb_column_model --check` compares with them), and
     training.json (versions, losses, offline skill).
Seeds are fixed; TensorFlow runs deterministic ops on the CPU.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

NLEV = 20
SEED = 20240501


def read_samples(path, ncol_block):
    import numpy as np
    raw = np.fromfile(path, dtype=np.uint8)
    nin, nout, n = np.frombuffer(raw[:12].tobytes(), dtype=np.int32)
    data = np.frombuffer(raw[12:].tobytes(), dtype=np.float32)
    blocks = n // ncol_block
    # Fortran writes x(nin, ncol) then y(nout, ncol) per sampled step: column-major == C [ncol][nin]
    data = data.reshape(blocks, ncol_block * (nin + nout))
    x = data[:, : ncol_block * nin].reshape(-1, nin)
    y = data[:, ncol_block * nin:].reshape(-1, nout)
    return x.astype(np.float64), y.astype(np.float64)


def floored_std(a, groups, frac):
    """Per-feature standard deviation, floored at `frac` times the largest one of its variable group."""
    import numpy as np
    s = a.std(axis=0)
    out = s.copy()
    for g in groups:
        out[g] = np.maximum(s[g], frac * s[g].max())
    return out


def write_vector(path, values, what):
    with open(path, "w") as f:
        f.write("# %s: %d values, one per line, in network order (T levels 1..%d top->surface, then q)\n"
                % (what, len(values), NLEV))
        for v in values:
            f.write("%.17g\n" % v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", default=os.path.join(ROOT, "build", "bin", "fkb_column_model"))
    ap.add_argument("--data", help="existing training file (default: run the generator)")
    ap.add_argument("--out", default=os.path.join(HERE, "model"))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--ncol", type=int, default=256, help="columns of the generator run")
    ap.add_argument("--steps", type=int, default=1600, help="steps of the generator run")
    args = ap.parse_args()

    import numpy as np
    data = args.data
    if data is None:
        data = os.path.join(tempfile.mkdtemp(prefix="fkb_column_"), "train.bin")
        cmd = [args.generator, "--generate", data, "--ncol", str(args.ncol), "--steps", str(args.steps)]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    x, y = read_samples(data, args.ncol)
    print("samples: %d, inputs %d, outputs %d" % (x.shape[0], x.shape[1], y.shape[1]), flush=True)

    groups = [slice(0, NLEV), slice(NLEV, 2 * NLEV)]
    sub = x.mean(axis=0)
    div = floored_std(x, groups, 0.05)
    scale = 1.0 / floored_std(y, groups, 0.02)
    xn = ((x - sub) / div).astype(np.float32)
    yn = (y * scale).astype(np.float32)

    rng = np.random.default_rng(SEED)
    perm = rng.permutation(len(xn))
    nval = len(xn) // 10
    val, tr = perm[:nval], perm[nval:]

    import tensorflow as tf
    import keras
    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    L = keras.layers
    model = keras.Sequential([
        keras.Input(shape=(2 * NLEV,), name="state"),
        L.Dense(64, name="hidden_1"), L.LeakyReLU(negative_slope=0.3, name="act_1"),
        L.Dense(64, name="hidden_2"), L.LeakyReLU(negative_slope=0.3, name="act_2"),
        L.Dense(2 * NLEV, name="tendencies"),
    ], name="column_physics")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=2e-3), loss="mse")
    cb = [keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=4, min_lr=5e-5, verbose=0)]
    hist = model.fit(xn[tr], yn[tr], validation_data=(xn[val], yn[val]), epochs=args.epochs, batch_size=256,
                     shuffle=True, callbacks=cb, verbose=2)

    # offline skill on the validation set, physical units
    pred = model.predict(xn[val], batch_size=4096, verbose=0).astype(np.float64) / scale
    err = pred - y[val]
    r2 = 1.0 - (err ** 2).sum(axis=0) / ((y[val] - y[val].mean(axis=0)) ** 2).sum(axis=0).clip(1e-30)
    rmse_t = float(np.sqrt((err[:, :NLEV] ** 2).mean()) * 86400)
    rmse_q = float(np.sqrt((err[:, NLEV:] ** 2).mean()) * 86400 * 1000)
    print("validation: RMSE dT/dt %.3f K/day, dq/dt %.4f g/kg/day, median R2 %.3f" % (rmse_t, rmse_q,
                                                                                     float(np.median(r2))))

    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "column_physics.keras"))
    write_vector(os.path.join(args.out, "inp_sub.txt"), sub, "input sub (mean)")
    write_vector(os.path.join(args.out, "inp_div.txt"), div, "input div (floored standard deviation)")
    write_vector(os.path.join(args.out, "out_scale.txt"), scale, "output scale (1 / floored standard deviation)")
    with open(os.path.join(args.out, "fkb.nml"), "w") as f:
        f.write("! fkb_physics namelist for the column-model example (written by train.py).\n"
                "! Relative paths are relative to this file's directory.\n"
                "&fkb_nl\n"
                "  model_path = 'column_physics.keras'\n"
                "  input_sub_file = 'inp_sub.txt'\n"
                "  input_div_file = 'inp_div.txt'\n"
                "  output_scale_file = 'out_scale.txt'\n"
                "  device = 'auto'\n"
                "  precision = 'fp32'\n"
                "  max_batch = 8192\n"
                "/\n")

    # Keras' own prediction in physical units for 16 validation columns, reloaded from the saved file
    reloaded = keras.models.load_model(os.path.join(args.out, "column_physics.keras"), compile=False)
    idx = val[:16]
    xc = x[idx]
    yc = reloaded.predict(((xc - sub) / div).astype(np.float32), verbose=0).astype(np.float64) / scale
    with open(os.path.join(args.out, "keras_check.txt"), "w") as f:
        f.write("%d %d %d\n" % (xc.shape[1], yc.shape[1], xc.shape[0]))
        for row in xc:  # column after column == Fortran x(nin, ncol)
            f.write("\n".join("%.17g" % v for v in row) + "\n")
        for row in yc:
            f.write("\n".join("%.17g" % v for v in row) + "\n")

    info = {
        "generator": "fkb_column_model --generate (--ncol %d --steps %d)" % (args.ncol, args.steps),
        "samples": int(x.shape[0]), "train": int(len(tr)), "validation": int(len(val)),
        "epochs": args.epochs, "seed": SEED,
        "final_loss": float(hist.history["loss"][-1]), "final_val_loss": float(hist.history["val_loss"][-1]),
        "val_rmse_dTdt_K_per_day": rmse_t, "val_rmse_dqdt_g_per_kg_per_day": rmse_q,
        "val_median_r2": float(np.median(r2)),
        "versions": {"keras": keras.__version__, "tensorflow": tf.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
    }
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
