#!/usr/bin/env python3
"""PyTorch baseline of FKB's GPU benchmarks: what a user would pick instead (BENCHMARKS.md).

Usage (on the GPU machine, from the repository root; needs torch with CUDA, numpy, h5py):

    python3 bench/device/torch_baseline.py --model cbrain=PATH.h5:128,2048 [--model climsim=...] \
        [--iters 20] [--warmup 3] [--out torch.json]

Each model is a chain of Dense (+ LeakyReLU) layers read from the very Keras .h5 file FKB loads (through
model_weights/<layer>.attrs['weight_names']), checked against a float64 NumPy forward pass before timing.
Variants per batch (median / min / max microseconds per call):
  eager_fp32                 device-resident eager forward (CUDA events around the call)
  graph_fp32, graph_tf32,    a CUDA graph of the forward, replayed (CUDA events); bf16: weights and
  graph_bf16                 activations in bfloat16, input converted from and output to float32 in the graph
  graph_<p>_h2h_pinned       pinned host input -> graph -> pinned host output, host clock after synchronize
  eager_fp32_h2h_pageable    NumPy array -> .cuda() -> forward -> .cpu(), host clock
Inputs are random normal (never zeros), the same shapes FKB's `fkb bench` uses.
"""
import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import time

import h5py
import numpy as np


def as_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_keras_mlp(path):
    """[(kernel [in,out], bias or None, leaky_alpha or None)] in layer order, from a legacy Keras .h5 file."""
    with h5py.File(path, "r") as f:
        cfg = json.loads(as_str(f.attrs["model_config"]))
        layers = cfg["config"]["layers"] if isinstance(cfg["config"], dict) else cfg["config"]
        mw = f["model_weights"]
        out = []
        for layer in layers:
            cls, lc = layer["class_name"], layer["config"]
            name = lc["name"]
            if cls == "InputLayer":
                continue
            if cls == "Dense":
                g = mw[name]
                names = [as_str(n) for n in g.attrs["weight_names"]]
                w = {n.split("/")[-1].split(":")[0]: np.asarray(g[n], dtype=np.float32) for n in names}
                act = lc.get("activation", "linear")
                if act not in ("linear", None):
                    raise SystemExit(f"{path}: Dense activation {act!r} not handled by this baseline")
                out.append([w["kernel"], w.get("bias"), None])
            elif cls == "LeakyReLU":
                alpha = lc.get("alpha", lc.get("negative_slope", 0.3))
                if not out or out[-1][2] is not None:
                    raise SystemExit(f"{path}: LeakyReLU not after a Dense")
                out[-1][2] = float(alpha)
            elif cls in ("Dropout",):
                continue
            else:
                raise SystemExit(f"{path}: layer class {cls} not handled by this baseline")
        return out


def numpy_forward(layers, x):
    y = x.astype(np.float64)
    for w, b, alpha in layers:
        y = y @ w.astype(np.float64)
        if b is not None:
            y = y + b.astype(np.float64)
        if alpha is not None:
            y = np.where(y >= 0, y, alpha * y)
    return y


def build_torch(layers, torch):
    mods = []
    for w, b, alpha in layers:
        lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=b is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            if b is not None:
                lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if alpha is not None:
            mods.append(torch.nn.LeakyReLU(alpha))
    return torch.nn.Sequential(*mods).cuda().eval()


def stats(us):
    return {"median_us": statistics.median(us), "min_us": min(us), "max_us": max(us)}


def time_device(torch, fn, iters, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    us = []
    for _ in range(iters):
        s = torch.cuda.Event(enable_timing=True)
        e = torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        us.append(s.elapsed_time(e) * 1000.0)
    return stats(us)


def time_host(torch, fn, iters, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    us = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        us.append((time.perf_counter() - t0) * 1e6)
    return stats(us)


def set_precision(torch, prec):
    tf32 = prec == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def capture(torch, body):
    """A CUDA graph of body() (returns the static output tensor)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            body()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = body()
    torch.cuda.synchronize()
    return g, out


def rel_err(got, ref):
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def bench_model(torch, name, path, batches, iters, warmup, results):
    layers = read_keras_mlp(path)
    nin = layers[0][0].shape[0]
    model32 = build_torch(layers, torch)
    model16 = copy.deepcopy(model32).to(torch.bfloat16)
    rng = np.random.default_rng(1234)

    # Correctness before timing.
    xc = rng.standard_normal((64, nin)).astype(np.float32)
    ref = numpy_forward(layers, xc)
    errors = {}
    with torch.inference_mode():
        for prec in ("fp32", "tf32", "bf16"):
            set_precision(torch, prec)
            xd = torch.from_numpy(xc).cuda()
            y = (model16(xd.to(torch.bfloat16)).float() if prec == "bf16" else model32(xd)).cpu().numpy()
            errors[prec] = rel_err(y, ref)
    print(f"{name}: relative error vs float64 NumPy: " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()), flush=True)
    if errors["fp32"] > 1e-5:
        raise SystemExit(f"{name}: the fp32 baseline differs from the float64 reference by {errors['fp32']:.3g}")

    for batch in batches:
        x_np = rng.standard_normal((batch, nin)).astype(np.float32)
        with torch.inference_mode():
            x_dev = torch.from_numpy(x_np).cuda()
            rows = []
            set_precision(torch, "fp32")
            rows.append(("eager_fp32", time_device(torch, lambda: model32(x_dev), iters, warmup)))
            rows.append(("eager_fp32_h2h_pageable",
                         time_host(torch, lambda: model32(torch.from_numpy(x_np).cuda()).cpu().numpy(), iters, warmup)))
            for prec in ("fp32", "tf32", "bf16"):
                set_precision(torch, prec)
                static_x = torch.empty_like(x_dev)
                static_x.copy_(x_dev)
                if prec == "bf16":
                    body = lambda: model16(static_x.to(torch.bfloat16)).float()  # noqa: E731
                else:
                    body = lambda: model32(static_x)  # noqa: E731
                g, static_y = capture(torch, body)
                rows.append((f"graph_{prec}", time_device(torch, g.replay, iters, warmup)))
                x_pin = torch.from_numpy(x_np).pin_memory()
                y_pin = torch.empty(static_y.shape, dtype=torch.float32).pin_memory()

                def h2h():
                    static_x.copy_(x_pin, non_blocking=True)
                    g.replay()
                    y_pin.copy_(static_y, non_blocking=True)
                    torch.cuda.synchronize()

                rows.append((f"graph_{prec}_h2h_pinned", time_host(torch, h2h, iters, warmup)))
                del g, static_y, static_x, x_pin, y_pin
            set_precision(torch, "fp32")
        line = f"{name:8s} {batch:8d} " + " ".join(f"{v}={s['median_us']:.1f}" for v, s in rows)
        print(line, flush=True)
        for variant, s in rows:
            r = {"model": name, "batch": batch, "variant": variant}
            r.update(s)
            prec = variant.split("_")[1]
            r["max_rel_err_vs_f64"] = errors.get(prec)
            results.append(r)
        del x_dev
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="NAME=PATH.h5:B1,B2,...")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default="")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        raise SystemExit("torch: no CUDA device")
    results = []
    for spec in args.model:
        name, rest = spec.split("=", 1)
        path, batches = rest.rsplit(":", 1)
        bench_model(torch, name, path, [int(b) for b in batches.split(",")], args.iters, args.warmup, results)
    out = {
        "tool": "torch_baseline.py",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0),
        "python": platform.python_version(),
        "iters": args.iters,
        "warmup": args.warmup,
        "results": results,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
