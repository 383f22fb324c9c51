#!/usr/bin/env python3
"""Differential over rbuild's own golden Dockerfiles (lint/tests/rules),
no context, experimental rules on: covers the rules the corpus never fires."""
import glob, json, os, subprocess, collections, sys
sys.path.insert(0, os.path.dirname(__file__))
RB = os.environ.get("RBUILD", "target/debug/rbuild")
BKR = ["StageNameCasing", "FromAsCasing", "NoEmptyContinuation", "ConsistentInstructionCasing", "DuplicateStageName", "ReservedStageName", "JSONArgsRecommended", "MaintainerDeprecated", "UndefinedArgInFrom", "WorkdirRelativePath", "UndefinedVar", "MultipleInstructionsDisallowed", "LegacyKeyValueFormat", "RedundantTargetPlatform", "SecretsUsedInArgOrEnv", "InvalidDefaultArgInFrom", "FromPlatformFlagConstDisallowed", "CopyIgnoredFile", "InvalidDefinitionDescription", "ExposeProtoCasing", "ExposeInvalidFormat"]
agree = collections.Counter(); diffs = []
for f in sorted(glob.glob("lint/tests/rules/*/*.Dockerfile")):
    for mode in ("0", "1"):
        extra = ["--build-arg", "BUILDKIT_DOCKERFILE_CHECK=experimental=all"] if mode == "1" else []
        p = subprocess.run([RB, "check", "--format", "json", "-f", f] + extra + ["/nonexistent-context"], capture_output=True, text=True)
        try: rb = json.loads(p.stdout)
        except Exception: rb = [{"rule": "ERROR", "line": 0}]
        q = subprocess.run([os.environ.get("BK", "/tmp/lintdiff-bk"), os.environ.get("BK_ENV", "/tmp/lintdiff-env.txt"), mode, f], capture_output=True, text=True)
        bk = [dict(rule=l.split("\t")[0], line=int(l.split("\t")[1])) for l in q.stdout.splitlines() if l]
        a = collections.Counter((x["rule"], x["line"]) for x in rb if x["rule"] in BKR)
        b = collections.Counter((x["rule"], x["line"]) for x in bk if x["rule"] in BKR)
        for k in a | b:
            m = min(a[k], b[k]); agree[k[0]] += m
            if a[k] != b[k]: diffs.append((os.path.relpath(f, "lint/tests/rules"), mode, k, a[k], b[k]))
print("agree:", dict(agree))
for d in diffs: print("DIFF", *d)
