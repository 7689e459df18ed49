#!/usr/bin/env python3
"""FKB's CPU engine against ONNX Runtime on the same weights, in the same run, on this machine.

Usage (from the repository root; needs numpy, h5py, onnx, onnxruntime, e.g. a venv made with
`python3 -m venv /opt/fkb-bench && /opt/fkb-bench/bin/pip install onnx onnxruntime numpy h5py`):

    /opt/fkb-bench/bin/python bench/cpu_baseline.py [--fkb build/bin/fkb] [--threads 1,2]
        [--batch 128,512,2048,8192] [--keras-python PY (default: .venv-keras-tf from scripts/pyenv.sh --tensorflow)] [--out bench/results/cpu_DATE.json]

Networks (BENCHMARKS.md): `cbrain` = ../shared/models/cbrain/stabNN.h5 (94 -> 9 x 256 LeakyReLU 0.3 -> 65), and
`climsim` (124 -> 768, 640, 512, 640, 640 LeakyReLU 0.15 -> 128), saved at bench time by real Keras
(bench/make_keras_mlp.py, run with --keras-python) into a temporary directory.

For each network the ONNX model is built with onnx.helper (MatMul + Add + LeakyRelu) from the weights of
the very Keras file FKB loads, read with h5py through model_weights/<layer>.attrs['weight_names'], and
checked against Keras' own predictions before timing. Then for each thread count and batch size, ONNX
Runtime (intra_op_num_threads = N, sequential execution) and `fkb bench --device cpu --threads N` are
timed in alternation (`--rounds` times each), each with spinning thread waits and with blocking ones (`--spin`;
ORT session.intra_op.allow_spinning, FKB/OpenMP OMP_WAIT_POLICY). For each side the best median over the
rounds and modes counts, and the ratio FKB columns/s / ORT columns/s is printed. On a shared machine
spinning threads lose their time slices to other processes; blocking ones are woken promptly.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def as_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def read_keras_mlp(path):
    """[(kernel, bias, leaky_alpha or None)] in layer order, from a legacy Keras .h5 file."""
    with h5py.File(path, "r") as f:
        cfg = json.loads(as_str(f.attrs["model_config"]))
        layers = cfg["config"]["layers"]
        mw = f["model_weights"]
        out = []
        for layer in layers:
            cls, lc, name = layer["class_name"], layer["config"], layer["config"]["name"]
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
            else:
                raise SystemExit(f"{path}: layer class {cls} not handled by this baseline")
        return out


def build_onnx(layers, path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nin = layers[0][0].shape[0]
    nout = layers[-1][0].shape[1]
    nodes, inits = [], []
    cur = "x"
    for i, (w, b, alpha) in enumerate(layers):
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [cur, f"W{i}"], [f"m{i}"]))
        cur = f"m{i}"
        if b is not None:
            inits.append(numpy_helper.from_array(b, f"b{i}"))
            nodes.append(helper.make_node("Add", [cur, f"b{i}"], [f"a{i}"]))
            cur = f"a{i}"
        if alpha is not None:
            nodes.append(helper.make_node("LeakyRelu", [cur], [f"l{i}"], alpha=alpha))
            cur = f"l{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", nin])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", nout])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def ort_session(path, threads, spin):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def check_ort(sess, ref_h5):
    with h5py.File(ref_h5, "r") as f:
        x = np.asarray(f["input_0"], dtype=np.float32)
        y = np.asarray(f["output_0"], dtype=np.float32)
    got = sess.run(None, {"x": x})[0]
    err = float(np.max(np.abs(got - y)) / np.max(np.abs(y)))
    if err > 1e-5:
        raise SystemExit(f"ONNX model disagrees with Keras ({ref_h5}): relative error {err:.2e}")
    return err


def time_ort(sess, nin, batch, warmup, iters, seed):
    x = np.random.default_rng(seed).standard_normal((batch, nin)).astype(np.float32)
    y = sess.run(None, {"x": x})[0]
    if not np.all(np.isfinite(y)):
        raise SystemExit("ORT produced non-finite outputs")
    for _ in range(warmup):
        sess.run(None, {"x": x})
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        ts.append((time.perf_counter() - t0) * 1e6)
    ts.sort()
    med = float(np.median(ts))
    return {"batch": batch, "median_us": med, "min_us": ts[0], "max_us": ts[-1], "columns_per_s": batch / (med * 1e-6)}


def time_fkb(fkb, model, threads, batches, warmup, iters, tmpdir, spin):
    out = os.path.join(tmpdir, f"fkb_{os.path.basename(model)}_{threads}.json")
    env = dict(os.environ, OMP_WAIT_POLICY="active" if spin else "passive")
    cmd = [fkb, "bench", model, "--device", "cpu", "--threads", str(threads), "--batch", ",".join(map(str, batches)),
           "--warmup", str(warmup), "--iters", str(iters), "--json", out]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    with open(out) as f:
        return json.load(f)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fkb", default=os.path.join(ROOT, "build", "bin", "fkb"))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch", default="128,512,2048,8192")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="alternating ORT/FKB rounds; best median counts")
    ap.add_argument("--spin", default="on,off",
                    help="thread waiting modes to try, for both: on = spinning (ORT allow_spinning=1, "
                         "OMP_WAIT_POLICY=active), off = blocking; the best per batch counts for each")
    ap.add_argument("--keras-python", default=os.path.join(ROOT, ".venv-keras-tf", "bin", "python"),
                    help="Keras 3 + TensorFlow interpreter (made by scripts/pyenv.sh --tensorflow)")
    ap.add_argument("--models", default="cbrain,climsim")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results",
                                                  f"cpu_{datetime.date.today().isoformat()}.json"))
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    spins = [{"on": True, "off": False}[v] for v in args.spin.split(",")]
    batches = [int(b) for b in args.batch.split(",")]
    if not os.access(args.fkb, os.X_OK):
        raise SystemExit(f"{args.fkb} not found: build FKB first (or pass --fkb)")

    import onnxruntime as ort

    tmp = tempfile.mkdtemp(prefix="fkb-cpu-bench-")
    nets = {}
    for name in args.models.split(","):
        if name == "cbrain":
            h5 = os.path.join(ROOT, "..", "shared", "models", "cbrain", "stabNN.h5")
            ref = os.path.join(ROOT, "tests", "fixtures", "shared_refs", "cbrain_stabNN.data.h5")
            if not os.path.exists(h5):
                print(f"skipping cbrain: {h5} is absent", file=sys.stderr)
                continue
        elif name == "climsim":
            h5 = os.path.join(tmp, "climsim.h5")
            subprocess.run([args.keras_python, os.path.join(HERE, "make_keras_mlp.py"), h5], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            ref = os.path.join(tmp, "climsim.ref.h5")
        else:
            raise SystemExit(f"unknown network {name}")
        layers = read_keras_mlp(h5)
        onnx_path = os.path.join(tmp, name + ".onnx")
        build_onnx(layers, onnx_path)
        nets[name] = (h5, ref, onnx_path, layers[0][0].shape[0])

    with open("/proc/loadavg") as f:
        load_start = f.read().split()[:3]
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "load_average_start": load_start,
               "machine": {"cpu_model": cpu_model(), "logical_cpus": os.cpu_count()},
               "onnxruntime": ort.__version__,
               "method": "median us per call over --iters calls; best median of %d alternating ORT/FKB rounds and "
                         "of the thread waiting modes %s, for each side" % (args.rounds, args.spin),
               "networks": {}}
    rows = []
    for name, (h5, ref, onnx_path, nin) in nets.items():
        net = results["networks"][name] = {"keras_file": os.path.relpath(h5, ROOT) if name == "cbrain" else
                                           "generated by bench/make_keras_mlp.py", "runs": []}
        for t in threads:
            best_ort = {b: None for b in batches}
            best_fkb = {b: None for b in batches}
            fkb_json = None
            err = None
            # Interleaved per batch size: ORT, then FKB, then again for every round and waiting mode, so that
            # both see the same machine load (this box is shared; its load drifts over minutes).
            for b in batches:
                for r in range(args.rounds):
                    for spin in spins:
                        sess = ort_session(onnx_path, t, spin)
                        err = check_ort(sess, ref)
                        o = dict(time_ort(sess, nin, b, args.warmup, args.iters, seed=b), spinning=spin)
                        del sess
                        if best_ort[b] is None or o["median_us"] < best_ort[b]["median_us"]:
                            best_ort[b] = o
                        fj = time_fkb(args.fkb, h5, t, [b], args.warmup, args.iters, tmp, spin)
                        fkb_json = fkb_json or fj
                        res = dict(fj["results"][0], spinning=spin)
                        if best_fkb[b] is None or res["median_us"] < best_fkb[b]["median_us"]:
                            best_fkb[b] = res
            run = {"threads": t, "ort_check_rel_err_vs_keras": err, "fkb_version": fkb_json["fkb_version"],
                   "fkb_device": fkb_json["device"], "per_batch": []}
            for b in batches:
                ratio = best_fkb[b]["columns_per_s"] / best_ort[b]["columns_per_s"]
                run["per_batch"].append({"batch": b, "fkb": best_fkb[b], "ort": best_ort[b], "ratio": ratio})
                rows.append((name, t, b, best_fkb[b]["columns_per_s"], best_ort[b]["columns_per_s"], ratio))
            net["runs"].append(run)

    with open("/proc/loadavg") as f:
        results["load_average_end"] = f.read().split()[:3]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    print(f"machine: {results['machine']['cpu_model']} ({results['machine']['logical_cpus']} logical CPUs), "
          f"ONNX Runtime {ort.__version__}; results in {os.path.relpath(args.out, ROOT)}")
    print(f"{'network':8} {'threads':>7} {'batch':>6} {'FKB col/s':>12} {'ORT col/s':>12} {'FKB/ORT':>8}")
    for name, t, b, fc, oc, r in rows:
        print(f"{name:8} {t:>7} {b:>6} {fc:>12.4g} {oc:>12.4g} {r:>8.2f}")
    print("load average (1, 5, 15 min) at the start:", results["load_average_start"], "at the end:",
          results["load_average_end"])


if __name__ == "__main__":
    main()
