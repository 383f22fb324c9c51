#!/usr/bin/env python3
"""Build the corpus ($CORPUS, default /work/lint-corpus) from repository
snapshots ($MIRROR/OWNER+NAME/repo, bare git dirs): extract each repo's tree
(the build context) and list the sampled Dockerfiles in corpus.tsv."""
import os, re, random, subprocess, sys, tarfile, io
MIRROR = os.environ.get("MIRROR", "/work/.mirror")
OUT = os.environ.get("CORPUS", "/work/lint-corpus")
CAPS = {  # per-repo cap for repos with many near-copies
    "dotnet+dotnet-docker": 20, "jessfraz+dockerfiles": 70,
    "docker-library+python": 12, "docker-library+golang": 8,
    "docker-library+node": 9, "moby+buildkit": 25, "docker+compose": 12,
    "jenkinsci+docker": 8,
}
DF = re.compile(r'(^|/)(Dockerfile|Containerfile)([._-][^/]*)?$|\.[Dd]ockerfile$')
random.seed(17)
def extract(gd, dest):
    """Write the HEAD tree; blobs absent from the snapshot (large files)
    become empty files, since the checks only look at names and ignore files."""
    ents = []
    for line in subprocess.check_output(["git", "--git-dir", gd, "ls-tree", "-r", "-z", "HEAD"]).split(b"\0"):
        if not line: continue
        meta, path = line.split(b"\t", 1)
        mode, typ, sha = meta.split()
        if typ != b"blob": continue
        ents.append((mode, sha, path.decode("utf-8", "surrogateescape")))
    p = subprocess.Popen(["git", "--git-dir", gd, "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    for mode, sha, path in ents:
        p.stdin.write(sha + b"\n"); p.stdin.flush()
        hdr = p.stdout.readline().split()
        data = b""
        if hdr[1] != b"missing":
            n = int(hdr[2]); data = p.stdout.read(n); p.stdout.read(1)
        full = os.path.join(dest, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if mode == b"120000":
            try: os.symlink(data.decode(), full)
            except OSError: pass
        else:
            with open(full, "wb") as fh: fh.write(data)
    p.stdin.close(); p.wait()
rows = []
for name in sorted(os.listdir(MIRROR)):
    gd = os.path.join(MIRROR, name, "repo")
    if os.path.isdir(os.path.join(gd, ".git")): gd = os.path.join(gd, ".git")
    if not os.path.isdir(gd): continue
    commit = subprocess.check_output(["git", "--git-dir", gd, "rev-parse", "HEAD"], text=True).strip()
    files = subprocess.check_output(["git", "--git-dir", gd, "ls-tree", "-r", "--name-only", "HEAD"], text=True).splitlines()
    dfs = [f for f in files if DF.search(f) and not f.endswith((".template", ".md", ".j2", ".tmpl", ".go", ".sh", ".dockerignore", ".txt", ".yml", ".yaml", ".json"))]
    if not dfs: continue
    # skip templated files (jinja/mustache placeholders)
    dfs = [f for f in dfs if "/testfiles" not in f and "dockerfile-templates" not in f and "/vendor/" not in f and not f.startswith("vendor/")]
    keep = []
    for f in dfs:
        try: txt = subprocess.check_output(["git", "--git-dir", gd, "show", f"HEAD:{f}"], stderr=subprocess.DEVNULL)
        except subprocess.CalledProcessError: continue
        if b"{{" in txt or b"{%" in txt or len(txt) == 0 or len(txt) > 200_000: continue
        keep.append(f)
    cap = CAPS.get(name)
    if cap and len(keep) > cap:
        # vary: at most one file per parent dir first, then random
        by_dir = {}
        for f in keep: by_dir.setdefault(os.path.dirname(f), []).append(f)
        pool = [random.choice(v) for v in by_dir.values()]
        random.shuffle(pool)
        keep = sorted(pool[:cap])
    dest = os.path.join(OUT, "repos", name)
    if not os.path.isdir(dest):
        os.makedirs(dest)
        extract(gd, dest)
    for f in keep: rows.append((name, commit, f))
with open(os.path.join(OUT, "corpus.tsv"), "w") as fh:
    for r in rows: fh.write("\t".join(r) + "\n")
print(len(rows), "files")
