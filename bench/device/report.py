#!/usr/bin/env python3
"""Merge the results of bench/device/run.sh and print the ratio table (FKB time / PyTorch time, same run,
same machine; BENCHMARKS.md "Targets").

    python3 bench/device/report.py --dir WORKDIR --out OUTDIR [--tests-rc N]

WORKDIR holds fkb_<model>_<precision>_<h2h|dev>.json (from `fkb bench --json`), torch.json (from
torch_baseline.py), machine.txt and skipped.txt. Writes OUTDIR/results.json (everything, with the ratios)
and OUTDIR/time_vs_batch.png (when matplotlib is installed). The table is printed last.
"""
import argparse
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read {path}: {e}")
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tests-rc", type=int, default=None)
    args = ap.parse_args()

    fkb = {}  # (model, precision, mode) -> {batch: result}
    fkb_raw = {}
    for p in sorted(glob.glob(os.path.join(args.dir, "fkb_*.json"))):
        base = os.path.basename(p)[4:-5]
        model, prec, mode = base.rsplit("_", 2)
        d = load(p)
        if not d:
            continue
        fkb_raw[base] = d
        fkb[(model, prec, mode)] = {r["batch"]: r for r in d.get("results", [])}
    torch_raw = load(os.path.join(args.dir, "torch.json")) if os.path.exists(os.path.join(args.dir, "torch.json")) else None
    torch = {}  # (model, variant) -> {batch: result}
    if torch_raw:
        for r in torch_raw["results"]:
            torch.setdefault((r["model"], r["variant"]), {})[r["batch"]] = r
    machine = open(os.path.join(args.dir, "machine.txt")).read() if os.path.exists(os.path.join(args.dir, "machine.txt")) else ""
    skipped = []
    if os.path.exists(os.path.join(args.dir, "skipped.txt")):
        skipped = [s for s in open(os.path.join(args.dir, "skipped.txt")).read().splitlines() if s.strip()]

    mpi = {os.path.basename(p)[:-5]: load(p) for p in sorted(glob.glob(os.path.join(args.dir, "mpi", "mpi_*.json")))}
    mpi_table = ""
    if os.path.exists(os.path.join(args.dir, "mpi_table.txt")):
        lines = open(os.path.join(args.dir, "mpi_table.txt")).read().splitlines()
        start = max((i for i, l in enumerate(lines) if l.startswith("MPI:")), default=None)
        mpi_table = "\n".join(lines[start:]) if start is not None else "\n".join(lines[-8:])

    models = sorted({k[0] for k in fkb} | {k[0] for k in torch})

    def med(table, key, batch):
        r = table.get(key, {}).get(batch)
        return r["median_us"] if r else None

    # Device-resident FKB numbers only mean something if `fkb bench --device-resident` really keeps the data
    # on the device; if they match the host-to-host ones at large batches, say so.
    warnings = []
    for m in models:
        h, d = fkb.get((m, "fp32", "h2h"), {}), fkb.get((m, "fp32", "dev"), {})
        common = sorted(set(h) & set(d))
        if common and common[-1] >= 32768:
            b = common[-1]
            if abs(h[b]["median_us"] - d[b]["median_us"]) < 0.1 * h[b]["median_us"]:
                warnings.append(f"{m}: fkb --device-resident time at batch {b} equals the host-to-host time: the CLI "
                                "probably still times host buffers; the 'dev' ratios compare unlike things")

    # Comparisons: (label, fkb key, torch variant, target(batch) -> ratio bound or None)
    def target_fp32_h2h(b):
        return 0.35 if b <= 2048 else (0.7 if b >= 32768 else None)

    comps = [
        ("fp32 h2h / torch graph h2h pinned", ("fp32", "h2h"), "graph_fp32_h2h_pinned", target_fp32_h2h),
        ("fp32 h2h / torch eager h2h pageable", ("fp32", "h2h"), "eager_fp32_h2h_pageable", None),
        ("fp32 fused-GEMM h2h / torch graph h2h pinned", ("fp32-fused", "h2h"), "graph_fp32_h2h_pinned", target_fp32_h2h),
        ("fp32 dev / torch graph", ("fp32", "dev"), "graph_fp32", None),
        ("tf32 h2h / torch graph tf32 h2h pinned", ("tf32", "h2h"), "graph_tf32_h2h_pinned", lambda b: 0.5),
        ("tf32 dev / torch graph tf32", ("tf32", "dev"), "graph_tf32", lambda b: 0.5),
        ("bf16 h2h / torch graph bf16 h2h pinned", ("bf16", "h2h"), "graph_bf16_h2h_pinned", lambda b: 0.5),
        ("bf16 dev / torch graph bf16", ("bf16", "dev"), "graph_bf16", lambda b: 0.5),
    ]
    ratios = []
    for m in models:
        batches = sorted({b for k, v in fkb.items() if k[0] == m for b in v})
        for label, (prec, mode), tv, target in comps:
            for b in batches:
                ours, theirs = med(fkb, (m, prec, mode), b), med(torch, (m, tv), b)
                if ours is None or theirs is None:
                    continue
                t = target(b) if target else None
                err = fkb[(m, prec, mode)][b].get("max_rel_err_vs_cpu_1thread")
                ratios.append({"model": m, "comparison": label, "batch": b, "fkb_us": ours, "torch_us": theirs,
                               "ratio": ours / theirs, "target": t, "fkb_err_vs_cpu": err,
                               "meets_target": (ours / theirs <= t) if t else None})

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "tests_exit_code": args.tests_rc, "skipped": skipped, "warnings": warnings,
                   "fkb": fkb_raw, "torch": torch_raw, "mpi": mpi, "ratios": ratios}, f, indent=1)

    # Plot: time per call vs batch, one panel per model.
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, max(len(models), 1), figsize=(7 * max(len(models), 1), 5), squeeze=False)
        for ax, m in zip(axes[0], models):
            for (mm, prec, mode), rows in sorted(fkb.items()):
                if mm != m:
                    continue
                bs = sorted(rows)
                ax.plot(bs, [rows[b]["median_us"] for b in bs], "o-", label=f"FKB {prec} {mode}")
            for (mm, v), rows in sorted(torch.items()):
                if mm != m or v not in ("graph_fp32_h2h_pinned", "graph_fp32", "graph_tf32", "graph_bf16",
                                        "eager_fp32_h2h_pageable"):
                    continue
                bs = sorted(rows)
                ax.plot(bs, [rows[b]["median_us"] for b in bs], "x--", label=f"torch {v}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch (columns)")
            ax.set_ylabel("median time per call (us)")
            ax.set_title(m)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(machine.splitlines()[1] if len(machine.splitlines()) > 1 else "")
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "time_vs_batch.png"), dpi=120)
        print(f"plot: {os.path.join(args.out, 'time_vs_batch.png')}")
    except ImportError:
        print("matplotlib is not installed: no plot (results.json has every number)")

    # The table, last.
    print()
    print(machine.strip())
    if args.tests_rc is not None:
        print(f"GPU tests: {'passed' if args.tests_rc == 0 else 'FAILED (exit %d): see tests.log' % args.tests_rc}")
    for s in skipped:
        print(f"skipped (time budget): {s}")
    for w in warnings:
        print(f"warning: {w}")
    if mpi_table:
        print()
        print(mpi_table)
    if not ratios:
        print("no ratio: FKB or PyTorch results are missing (see run.log)")
        return 0
    print()
    print(f"{'model':8s} {'comparison':46s} {'batch':>8s} {'fkb_us':>10s} {'torch_us':>10s} {'ratio':>7s} {'target':>7s}"
          f" {'fkb_err':>9s}")
    for r in ratios:
        t = f"{r['target']:.2f}" if r["target"] else "-"
        mark = "" if r["meets_target"] is None else (" ok" if r["meets_target"] else " MISS")
        e = f"{r['fkb_err_vs_cpu']:.1e}" if r["fkb_err_vs_cpu"] is not None else "-"
        print(f"{r['model']:8s} {r['comparison']:46s} {r['batch']:8d} {r['fkb_us']:10.1f} {r['torch_us']:10.1f}"
              f" {r['ratio']:7.3f} {t:>7s} {e:>9s}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
