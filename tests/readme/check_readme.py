#!/usr/bin/env python3
"""Check that every fenced code block of README.md compiles and runs as written (CTest label `readme`).

Every fenced block must be announced by an HTML comment on the closest non-blank line above it:

    <!-- snippet: KIND [key=value ...] [, xfail: REASON] -->

KIND (what the checker does with the block):
    run       a complete program (```c, ```cpp, ```fortran): compile it once against the installed FKB
              (pkg-config fkb, or fkb_mpi with `mpi`), run it in the work folder, require exit status 0
    compile   the same, without running it
    shell     ```sh: run the commands with bash -e in the work folder (the installed bin/ first on PATH)
    file      write the block to the work folder as `name=` before anything runs (a namelist, a CMakeLists.txt)
    excerpt   every line of the block, comments and blanks aside, is a line of the repository file `path=`
              (in order; trailing comments and spacing ignored)
    usage     a CLI synopsis: every `--option` it names appears in `fkb SUBCOMMAND --help`
    skip: REASON   not checked (text that is not code, or a command that rebuilds everything)
Options:
    save=PATH   (run/compile) also write the source under that name, for later shell snippets to build
    name=PATH   (file) the file to write
    dir=DIR     run in (or write under) that sub-folder of the work folder
    mpi         link with pkg-config fkb_mpi, compile with the MPI wrappers and run under mpiexec -n `np`;
                on a shell snippet: it needs MPI (skipped when FKB was built without it)
    fortran     (shell) the commands need FKB's Fortran modules (skipped when FKB was built without Fortran)
    np=N        ranks for `mpi` snippets (default 2)
    xfail: REASON  the snippet is known to fail because of a bug elsewhere: reported, does not fail the check;
                   once it passes, the check fails until the marker is removed (so the fix is noticed)
A block without a marker, or a marker without a block, fails the check: new snippets cannot drift in untested.
The prose is checked too: links to #anchors name headings, relative links name files of the repository, and
no path leaves the repository (`../`).

The work folder holds what the README's text refers to, so that the snippets stay readable: links to real
fixtures under the names the README uses (`cbrain.h5` is tests/fixtures/tk_cbrain.h5, `model.keras` and its
normalization files are the column-model example's, ...; see FILES below), `configs/` and `tests/` of the
source tree, `build` (the build tree being tested) and HOME=<work>/home, into whose opt/fkb the checker installs
the build first (`cmake --install`), exactly as the README's install snippet does, so every program is built
against an installed FKB as a user would build it.

usage: check_readme.py --readme README.md --source SRC --build BUILD --work DIR [--cmake CMAKE] [--cc CC]
                       [--cxx CXX] [--fc FC] [--mpicc MPICC] [--mpifc MPIFC] [--mpiexec MPIEXEC] [--list]
Python 3 standard library only.
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import time

# README name -> file in the source tree (linked into the work folder).
FILES = {
    "cbrain.h5": "tests/fixtures/tk_cbrain.h5",                     # 94 inputs, 65 outputs (tf-keras .h5)
    "k3_custom.keras": "tests/fixtures/k3_custom.keras",            # uses the custom layer ScaledTanh
    "k3_custom.h5": "tests/fixtures/k3_custom.h5",
    "model.keras": "fortran/examples/column_model/model/column_physics.keras",   # the namelist's files
    "inp_sub.txt": "fortran/examples/column_model/model/inp_sub.txt",
    "inp_div.txt": "fortran/examples/column_model/model/inp_div.txt",
    "out_scale.txt": "fortran/examples/column_model/model/out_scale.txt",
    "configs": "configs",
    "tests": "tests",
}
KINDS = ("run", "compile", "shell", "file", "excerpt", "usage", "skip")
LANGS = {"c": "c", "cpp": "cpp", "c++": "cpp", "fortran": "fortran", "f90": "fortran", "sh": "sh",
         "bash": "sh", "shell": "sh", "console": "sh"}
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)")
RUN_TIMEOUT = 180
NAME = "README.md"  # the checked file's name in messages


class Snippet:
    def __init__(self, line, lang, text, marker, marker_line):
        self.line, self.lang, self.text, self.marker, self.marker_line = line, lang, text, marker, marker_line
        self.kind, self.opts, self.xfail, self.reason, self.error = None, {}, None, None, None
        self.parse_marker()

    def parse_marker(self):
        if self.marker is None:
            self.error = "no <!-- snippet: KIND --> marker on the line before it (see tests/readme/check_readme.py)"
            return
        m = self.marker
        if m.startswith("skip"):
            self.kind, self.reason = "skip", m[4:].lstrip(":").strip()
            if not self.reason:
                self.error = "`skip` needs a reason: <!-- snippet: skip: why -->"
            return
        main, _, xf = m.partition(", xfail:")
        if _:
            self.xfail = xf.strip() or "(no reason given)"
        words = main.split()
        self.kind = words[0] if words else ""
        for w in words[1:]:
            k, eq, v = w.partition("=")
            self.opts[k] = v if eq else True
        lang = LANGS.get(self.lang, self.lang)
        if self.kind not in KINDS:
            self.error = "unknown snippet kind %r (one of %s)" % (self.kind, ", ".join(KINDS))
        elif self.kind in ("run", "compile") and lang not in ("c", "cpp", "fortran"):
            self.error = "`%s` needs a ```c, ```cpp or ```fortran block, not ```%s" % (self.kind, self.lang)
        elif self.kind in ("shell", "usage") and lang != "sh":
            self.error = "`%s` needs a ```sh block, not ```%s" % (self.kind, self.lang)
        elif self.kind == "file" and not self.opts.get("name"):
            self.error = "`file` needs name=FILE"
        elif self.kind == "excerpt" and not self.opts.get("path"):
            self.error = "`excerpt` needs path=FILE"
        self.lang = lang

    def title(self):
        return NAME + ":%d %s %s%s" % (self.line, self.lang or "text", self.kind or "?",
                                         " (mpi)" if self.opts.get("mpi") else "")


def parse(readme):
    lines = open(readme, encoding="utf-8").read().split("\n")
    snippets, problems = [], []
    pending = None  # (marker text, line) not yet followed by a block
    i = 0
    while i < len(lines):
        mk = MARKER.match(lines[i])
        if mk:
            if pending:
                problems.append(NAME + ":%d: snippet marker not followed by a code block" % pending[1])
            pending = (mk.group(1), i + 1)
            i += 1
            continue
        fm = FENCE.match(lines[i])
        if fm:
            indent, fence, lang = fm.group(1), fm.group(2), fm.group(3).lower()
            start = i
            body = []
            i += 1
            while i < len(lines) and not (lines[i].strip().startswith(fence[0] * len(fence))
                                          and lines[i].strip().strip(fence[0]) == ""):
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            # The marker must be the closest non-blank line above the fence.
            marker, mline = None, None
            j = start - 1
            while j >= 0 and not lines[j].strip():
                j -= 1
            if pending and j + 1 == pending[1]:
                marker, mline = pending
            elif pending:
                problems.append(NAME + ":%d: snippet marker not followed by a code block" % pending[1])
            pending = None
            snippets.append(Snippet(start + 1, lang, "\n".join(body) + "\n", marker, mline))
        elif pending and lines[i].strip():
            problems.append(NAME + ":%d: snippet marker not followed by a code block" % pending[1])
            pending = None
        i += 1
    if pending:
        problems.append(NAME + ":%d: snippet marker not followed by a code block" % pending[1])
    return snippets, problems


def check_prose(readme, source):
    """Outside code blocks: every [text](#anchor) names a heading, every relative link names a file of the
    repository, and no path leaves it (`../`): the README must stand alone."""
    lines = open(readme, encoding="utf-8").read().split("\n")
    prose, fence = [], None
    for n, ln in enumerate(lines, 1):
        fm = FENCE.match(ln)
        if fence is None and fm:
            fence = fm.group(2)[0]
        elif fence is not None and ln.strip() and ln.strip().strip(fence) == "" and ln.strip()[0] == fence:
            fence = None
        elif fence is None:
            prose.append((n, ln))
    slugs = set()
    for _, ln in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", ln)
        if m:
            slugs.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    problems = []
    for n, ln in prose:
        for target in re.findall(r"\]\(([^)\s]+)\)", ln):
            if target.startswith("#"):
                if target[1:] not in slugs:
                    problems.append("%s:%d: link to #%s: no such heading" % (NAME, n, target[1:]))
            elif not re.match(r"^[a-z]+://", target):
                path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(readme)), target.split("#")[0]))
                if not path.startswith(os.path.abspath(source) + os.sep) or not os.path.exists(path):
                    problems.append("%s:%d: link to %s: not a file of the repository" % (NAME, n, target))
        if re.search(r"(?<![.\w])\.\./", ln):
            problems.append("%s:%d: a path outside the repository (../): %s" % (NAME, n, ln.strip()))
    return problems


def sh(cmd, cwd, env, timeout=RUN_TIMEOUT):
    """Run cmd (list or bash text); return (status, combined output)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, shell=isinstance(cmd, str), executable="/bin/bash"
                           if isinstance(cmd, str) else None)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode("utf-8", "replace")
        return 124, out + "\n[timed out after %d s]" % timeout


def pkg(names, env):
    st, out = sh(["pkg-config", "--cflags", "--libs"] + names, None, env)
    if st != 0:
        raise RuntimeError("pkg-config %s failed: %s" % (" ".join(names), out.strip()))
    return shlex.split(out)


class Checker:
    def __init__(self, a):
        self.a = a
        self.src = os.path.abspath(a.source)
        self.build = os.path.abspath(a.build)
        self.work = os.path.abspath(a.work)
        self.home = os.path.join(self.work, "home")
        self.prefix = os.path.join(self.home, "opt", "fkb")
        env = dict(os.environ)
        env["HOME"] = self.home
        path = [os.path.join(self.prefix, "bin")]
        if os.sep in a.cmake:  # the snippets' `cmake` is the one this build uses
            path.append(os.path.dirname(os.path.abspath(a.cmake)))
        env["PATH"] = os.pathsep.join(path + [env.get("PATH", "")])
        env["PKG_CONFIG_PATH"] = os.pathsep.join(
            [os.path.join(self.prefix, d, "pkgconfig") for d in ("lib", "lib64")] + [env.get("PKG_CONFIG_PATH", "")])
        env.setdefault("OMP_NUM_THREADS", "2")
        # The compilers of this build for the snippets' CMake projects (the .mod files are compiler-specific).
        env.update({"CC": a.cc, "CXX": a.cxx, "FC": a.fc})
        # Open MPI: CI runs as root on 2 cores; the README's `mpirun -np 2` stays as a user would type it.
        env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                    "OMPI_MCA_rmaps_base_oversubscribe": "1", "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe"})
        self.env = env
        self.help_cache = {}  # fkb SUBCOMMAND --help
        self.gnu_cache = {}   # compiler -> is gfortran

    def setup(self):
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(self.home)
        for name, rel in FILES.items():
            os.symlink(os.path.join(self.src, rel), os.path.join(self.work, name))
        os.symlink(self.build, os.path.join(self.work, "build"))
        t = time.time()
        st, out = sh([self.a.cmake, "--install", self.build, "--prefix", self.prefix], self.work, self.env, 600)
        if st != 0:
            print(out)
            raise RuntimeError("cmake --install %s --prefix %s failed" % (self.build, self.prefix))
        print("installed %s into %s (%.1f s)" % (self.build, self.prefix, time.time() - t))
        self.has_fortran = os.path.exists(os.path.join(self.prefix, "include", "fkb", "fortran", "fkb.mod"))
        self.has_mpi = any(os.path.exists(os.path.join(self.prefix, d, "pkgconfig", "fkb_mpi.pc"))
                           for d in ("lib", "lib64"))

    def folder(self, rel):
        """The work folder or a sub-folder of it, made on first use with the same FILES links."""
        d = os.path.normpath(os.path.join(self.work, rel))
        if not os.path.isdir(d):
            self.folder(os.path.dirname(rel))
            os.makedirs(d)
            for name, target in FILES.items():
                os.symlink(os.path.join(self.src, target), os.path.join(d, name))
        return d

    def where(self, s):
        """The snippet's folder: the work folder, or its dir= sub-folder."""
        return self.folder(s.opts["dir"]) if isinstance(s.opts.get("dir"), str) else self.work

    def write_files(self, snippets):
        for s in snippets:
            name = s.opts.get("name") if s.kind == "file" else s.opts.get("save")
            if s.error or not isinstance(name, str):
                continue
            path = os.path.join(self.where(s), name)
            self.folder(os.path.relpath(os.path.dirname(path), self.work))
            with open(path, "w", encoding="utf-8") as f:
                f.write(s.text)

    def missing(self, s):
        """Why this build cannot check the snippet (None when it can)."""
        fortran = s.lang == "fortran" and s.kind in ("run", "compile") or s.opts.get("fortran")
        if fortran and not self.has_fortran:
            return "FKB built without Fortran"
        if s.opts.get("mpi"):
            if not self.has_mpi:
                return "FKB built without MPI"
            wrapper = self.a.mpifc if fortran else self.a.mpicc
            if not shutil.which(wrapper) or not shutil.which(self.a.mpiexec):
                return "no MPI compiler wrapper %s or no %s" % (wrapper, self.a.mpiexec)
        return None

    def check(self, s):
        """Return (ok, output)."""
        d = self.where(s)
        if s.kind == "run" or s.kind == "compile":
            ext = {"c": ".c", "cpp": ".cpp", "fortran": ".f90"}[s.lang]
            stem = "snippet_%d" % s.line
            src = os.path.join(d, stem + ext)
            with open(src, "w", encoding="utf-8") as f:
                f.write(s.text)
            mpi = bool(s.opts.get("mpi"))
            flags = pkg(["fkb_mpi"] if mpi else ["fkb"], self.env)
            if s.lang == "c":
                cc = [self.a.mpicc if mpi else self.a.cc, "-std=c11", "-Wall", "-Werror"]
                libs = ["-lm"]
            elif s.lang == "cpp":
                cc = [self.a.cxx, "-std=c++17", "-Wall", "-Werror"]
                libs = []
            else:
                fc = self.a.mpifc if mpi else self.a.fc
                cc = [fc] + (["-Wall", "-Werror", "-Wno-unused-dummy-argument"] if self.is_gfortran(fc) else [])
                libs = []
            st, out = sh(cc + [src] + flags + libs + ["-o", stem], d, self.env)
            if st != 0 or s.kind == "compile":
                return st == 0, out
            cmd = ["./" + stem]
            if mpi:
                cmd = [self.a.mpiexec, "-n", str(s.opts.get("np", 2))] + cmd
            st2, out2 = sh(cmd, d, self.env)
            return st2 == 0, out + out2 + ("" if st2 == 0 else "\n[exit status %d]" % st2)
        if s.kind == "shell":
            st, out = sh("set -euo pipefail\n" + s.text, d, self.env)
            return st == 0, out + ("" if st == 0 else "\n[exit status %d]" % st)
        if s.kind == "file":
            return True, ""
        if s.kind == "excerpt":
            return self.check_excerpt(s)
        if s.kind == "usage":
            return self.check_usage(s)
        return False, "unhandled kind"

    def is_gfortran(self, fc):
        if fc not in self.gnu_cache:
            self.gnu_cache[fc] = "GNU Fortran" in sh([fc, "--version"], None, self.env)[1]
        return self.gnu_cache[fc]

    @staticmethod
    def content_lines(text):
        out = []
        for ln in text.split("\n"):
            ln = re.sub(r"\s+#.*$|^\s*#.*$", "", ln).strip()
            if ln:
                out.append(re.sub(r"\s+", " ", ln))
        return out

    def check_excerpt(self, s):
        path = os.path.join(self.src, s.opts["path"])
        try:
            have = self.content_lines(open(path, encoding="utf-8").read())
        except OSError as e:
            return False, str(e)
        pos = 0
        for ln in self.content_lines(s.text):
            try:
                pos = have.index(ln, pos) + 1
            except ValueError:
                return False, "%r is not a line of %s (after line %d of its content)" % (ln, s.opts["path"], pos)
        return True, ""

    def check_usage(self, s):
        problems, sub = [], None
        for ln in s.text.split("\n"):
            code = ln.split("#", 1)[0]
            m = re.match(r"\s*fkb\s+([a-z-]+)", code)
            if m:
                sub = m.group(1)
            if sub is None:
                continue
            if sub not in self.help_cache:
                st, out = sh([os.path.join(self.prefix, "bin", "fkb"), sub, "--help"], self.work, self.env)
                self.help_cache[sub] = out if st == 0 else None
                if st != 0:
                    problems.append("`fkb %s --help` failed: %s" % (sub, out.strip()))
            helptext = self.help_cache[sub]
            for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", code):
                if helptext is not None and not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(opt), helptext):
                    problems.append("`fkb %s` has no option %s (per `fkb %s --help`)" % (sub, opt, sub))
        return not problems, "\n".join(problems)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--readme", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--cc", default="cc")
    ap.add_argument("--cxx", default="c++")
    ap.add_argument("--fc", default="gfortran")
    ap.add_argument("--mpicc", default="mpicc")
    ap.add_argument("--mpifc", default="mpifort")
    ap.add_argument("--mpiexec", default="mpiexec")
    ap.add_argument("--list", action="store_true", help="list the snippets and their markers, run nothing")
    a = ap.parse_args()
    global NAME
    NAME = os.path.basename(a.readme)

    snippets, problems = parse(a.readme)
    problems += check_prose(a.readme, a.source)
    for s in snippets:
        if s.error:
            problems.append(NAME + ":%d: ```%s block: %s" % (s.line, s.lang, s.error))
    if a.list:
        for s in snippets:
            print("%-40s %s" % (s.title(), s.marker))
    if problems:
        print("\n".join(problems))
        print("FAIL: %d README snippet problem(s)" % len(problems))
        return 1
    if a.list:
        return 0

    t0 = time.time()
    c = Checker(a)
    c.setup()
    c.write_files(snippets)
    counts = {"PASS": 0, "FAIL": 0, "XFAIL": 0, "XPASS": 0, "SKIP": 0}
    for s in snippets:
        if s.kind == "skip":
            counts["SKIP"] += 1
            print("SKIP  %s: %s" % (s.title(), s.reason))
            continue
        why = c.missing(s)
        if why:
            counts["SKIP"] += 1
            print("SKIP  %s: %s" % (s.title(), why))
            continue
        t = time.time()
        try:
            ok, out = c.check(s)
        except Exception as e:  # a tool missing, pkg-config failing: the snippet fails, the others still run
            ok, out = False, "%s: %s" % (type(e).__name__, e)
        status = ("XPASS" if ok else "XFAIL") if s.xfail else ("PASS" if ok else "FAIL")
        counts[status] += 1
        note = ""
        if status == "XFAIL":
            note = "  (expected: %s)" % s.xfail
        elif status == "XPASS":
            note = "  -- passes now: remove `xfail: %s` from its marker (%s:%d)" % (s.xfail, NAME,
                                                                                          s.marker_line)
        print("%-5s %s  %.1f s%s" % (status, s.title(), time.time() - t, note))
        if status in ("FAIL", "XFAIL") or os.environ.get("FKB_README_VERBOSE"):
            for ln in out.rstrip().split("\n")[-40:]:
                print("      | " + ln)
    print("%d snippets: %s; %.0f s" % (len(snippets), ", ".join("%d %s" % (v, k.lower()) for k, v in counts.items()),
                                        time.time() - t0))
    return 1 if counts["FAIL"] or counts["XPASS"] else 0


if __name__ == "__main__":
    sys.exit(main())
