#!/usr/bin/env python3
"""Hostile model files (issue 11): craft each kind from the Keras-made fixtures, then check that FKB refuses it.

A craft module (craft_<kind>.py beside this file) writes hostile files into a scratch folder and returns cases:
  {"name": ..., "argv": [fkb CLI arguments], "expect": "the exact error message", "no_output": [paths],
   "env": {extra environment}}
with {out} (the scratch folder) and {fixtures} (tests/fixtures) in argv, expect, no_output and env. Each case runs
under `ulimit -v 4000000` (4 GB of address space) and a 20 s timeout, and passes when FKB exits with status 1 (not
a signal, not the timeout), prints "fkb: error: <expect>", and leaves none of the no_output files behind. A case
whose argv is `inspect MODEL` (optionally `--config C`; MODEL not an ensemble) runs again through the C API (--capi) and through the
Fortran module (--fortran) when those programs are given: the same message must come back as fkb_last_error() /
errmsg, so every entry point enforces the same policy.

Usage: run_hostile.py --fkb PATH --module craft_h5 [--capi PATH] [--fortran PATH] [--fixtures DIR] [--work DIR]
"""
import argparse
import importlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ADDRESS_SPACE = 4_000_000 * 1024  # ulimit -v 4000000 (KiB)
TIMEOUT_S = 20


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def fill(text, out, fixtures):
    return text.replace("{out}", out).replace("{fixtures}", fixtures)


def run_one(label, cmd, env, expect_line):
    """Run cmd; return a failure text or None."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, preexec_fn=limit_memory, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"{label}: not refused within {TIMEOUT_S} s"
    dt = time.monotonic() - t0
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode < 0:
        return f"{label}: killed by signal {-p.returncode} after {dt:.1f} s\n{err[-2000:]}"
    if p.returncode != 1:
        return f"{label}: exit status {p.returncode} (expected 1) after {dt:.1f} s\n{err[-2000:]}"
    if expect_line not in err:
        return f"{label}: the message differs\n  expected: {expect_line}\n  got:      {err.strip()[-2000:]}"
    print(f"  ok  {label} ({dt:.2f} s)")
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fkb", required=True)
    ap.add_argument("--module", required=True)
    ap.add_argument("--capi")
    ap.add_argument("--fortran")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "fixtures"))
    ap.add_argument("--work")
    a = ap.parse_args()
    try:
        import h5py  # noqa: F401
        import numpy  # noqa: F401
    except ImportError as e:
        # The interpreter CMake found may lack h5py (a pyenv shim): use the project's Keras venv or Debian's
        # python3, where scripts/deps.sh installs python3-h5py.
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        for cand in (os.path.join(repo, ".venv-keras", "bin", "python"), "/usr/bin/python3"):
            if os.path.exists(cand) and os.path.realpath(cand) != os.path.realpath(sys.executable) and \
                    os.environ.get("FKB_HOSTILE_REEXEC") != cand and \
                    subprocess.run([cand, "-c", "import h5py, numpy"], capture_output=True).returncode == 0:
                os.environ["FKB_HOSTILE_REEXEC"] = cand
                os.execv(cand, [cand] + sys.argv)
        print(f"hostile: {e}; install python3-h5py and python3-numpy (scripts/deps.sh) to run these tests")
        return 77
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    mod = importlib.import_module(a.module)
    fixtures = os.path.abspath(a.fixtures)
    out = a.work or tempfile.mkdtemp(prefix=f"fkb_{a.module}_")
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cases = mod.craft(out, fixtures)
    if not cases:
        print("hostile: the craft module returned no cases")
        return 1
    names = [c["name"] for c in cases]
    if len(set(names)) != len(names):
        print("hostile: duplicate case names")
        return 1
    failures = []
    for c in cases:
        env = dict(os.environ)
        env.pop("FKB_MAX_WEIGHT_BYTES", None)
        env.pop("FKB_MAX_CONFIG_BYTES", None)
        env["OMP_NUM_THREADS"] = "1"
        for k, v in c.get("env", {}).items():
            env[k] = fill(v, out, fixtures)
        argv = [fill(x, out, fixtures) for x in c["argv"]]
        expect = fill(c["expect"], out, fixtures)
        no_output = [fill(x, out, fixtures) for x in c.get("no_output", [])]
        for f in no_output:
            if os.path.exists(f):
                os.remove(f)
        f = run_one(f"{c['name']} (fkb {' '.join(c['argv'])})", [a.fkb] + argv, env, "fkb: error: " + expect)
        if f:
            failures.append(f)
        for path in no_output:
            if os.path.exists(path):
                failures.append(f"{c['name']}: the refused run left '{path}' behind (partial output)")
        # The same model through the C API and the Fortran module.
        model = argv[1] if len(argv) > 1 else ""
        single_model = not (os.path.isdir(model) or model.endswith((".yaml", ".yml", ".txt")))  # not an ensemble
        if argv[0] == "inspect" and single_model and (len(argv) == 2 or (len(argv) == 4 and argv[2] == "--config")):
            rest = argv[1:2] + (argv[3:4] if len(argv) == 4 else [])
            for prog, tag in ((a.capi, "C API"), (a.fortran, "Fortran")):
                if prog:
                    f = run_one(f"{c['name']} ({tag})", [prog] + rest, env, "fkb: error: " + expect)
                    if f:
                        failures.append(f)
    if failures:
        print(f"\n{len(failures)} failure(s):")
        for f in failures:
            print("FAIL " + f)
        return 1
    print(f"hostile {a.module}: {len(cases)} case(s) refused as expected")
    if not a.work:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
