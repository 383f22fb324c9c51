#!/usr/bin/env python3
"""Run rbuild check (and, if present, the throwaway BuildKit lint driver)
over corpus.tsv; write results/*.jsonl, one object per file."""
import json, os, re, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
C = os.environ.get("CORPUS", "/work/lint-corpus")
RBUILD = os.environ.get("RBUILD", "target/debug/rbuild")
BK = os.environ.get("BK", "/tmp/lintdiff-bk")
ENVF = os.environ.get("BK_ENV", "/tmp/lintdiff-env.txt")
which = sys.argv[1:] or ["rbuild", "bk"]

def sources(text):
    out = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        m = re.match(r"\s*(COPY|ADD)\s+(.*)", line, re.I)
        if not m or "--from" in m.group(2): continue
        toks = [t for t in m.group(2).split() if not t.startswith("--")]
        if m.group(2).strip().startswith("["):
            try: toks = json.loads(m.group(2).strip())
            except Exception: continue
        for t in toks[:-1]:
            if "://" in t or "$" in t or t.startswith("<<"): continue
            out.append(t.strip('"'))
    return out

def context_for(repo, f):
    """The ancestor of the Dockerfile's directory in which the most of its
    local COPY/ADD sources exist (ties: the nearest)."""
    root = os.path.join(C, "repos", repo)
    text = open(os.path.join(root, f), errors="replace").read()
    srcs = sources(text)
    d = os.path.dirname(f); best = (-1, None)
    while True:
        base = os.path.join(root, d)
        score = sum(1 for s in srcs if s not in (".", "./") and (os.path.lexists(os.path.join(base, s.lstrip("/"))) or ("*" in s and os.path.isdir(os.path.join(base, os.path.dirname(s.lstrip("/")) or ".")))))
        if score > best[0]: best = (score, base)
        if not d: break
        d = os.path.dirname(d)
    return best[1]

def run_one(row):
    repo, commit, f = row
    path = os.path.join(C, "repos", repo, f)
    ctx = context_for(repo, f)
    res = {"repo": repo, "file": f, "context": os.path.relpath(ctx, os.path.join(C, "repos", repo))}
    if "rbuild" in which:
        for mode, extra in (("std", []), ("exp", ["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=experimental=all"])):
            p = subprocess.run([RBUILD, "check", "--format", "json", "-f", path] + extra + [ctx], capture_output=True, text=True, timeout=60)
            try: res["rbuild_" + mode] = json.loads(p.stdout)
            except Exception: res["rbuild_" + mode] = {"rc": p.returncode, "stdout": p.stdout[:500], "stderr": p.stderr[:500]}
    if "bk" in which:
        for mode in ("std", "exp"):
            p = subprocess.run([BK, ENVF, "1" if mode == "exp" else "0", path, ctx], capture_output=True, text=True, timeout=60)
            rows = [l.split("\t", 2) for l in p.stdout.splitlines() if l.strip()]
            res["bk_" + mode] = [{"rule": r[0], "line": int(r[1]), "message": r[2] if len(r) > 2 else ""} for r in rows]
            if p.returncode: res["bk_" + mode + "_err"] = p.stderr[-500:]
    return res

rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(C, "corpus.tsv"))]
with ThreadPoolExecutor(2) as ex:
    out = list(ex.map(run_one, rows))
os.makedirs(os.path.join(C, "results"), exist_ok=True)
name = "_".join(which)
with open(os.path.join(C, "results", name + ".jsonl"), "w") as fh:
    for r in out: fh.write(json.dumps(r) + "\n")
print(len(out), "files ->", name)
