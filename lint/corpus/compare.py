#!/usr/bin/env python3
"""Tabulate rule hits and compare rbuild with BuildKit line by line."""
import json, collections, sys, os
C = os.environ.get("CORPUS", "/work/lint-corpus")
BK_RULES = ["StageNameCasing", "FromAsCasing", "NoEmptyContinuation", "ConsistentInstructionCasing", "DuplicateStageName", "ReservedStageName", "JSONArgsRecommended", "MaintainerDeprecated", "UndefinedArgInFrom", "WorkdirRelativePath", "UndefinedVar", "MultipleInstructionsDisallowed", "LegacyKeyValueFormat", "RedundantTargetPlatform", "SecretsUsedInArgOrEnv", "InvalidDefaultArgInFrom", "FromPlatformFlagConstDisallowed", "CopyIgnoredFile", "InvalidDefinitionDescription", "ExposeProtoCasing", "ExposeInvalidFormat"]
rb = {(r["repo"], r["file"]): r for r in map(json.loads, open(f"{C}/results/rbuild.jsonl"))}
bk = {(r["repo"], r["file"]): r for r in map(json.loads, open(f"{C}/results/bk.jsonl"))}
def rbf(r, mode):
    v = r["rbuild_" + mode]
    if isinstance(v, dict): return [{"rule": "ERROR", "line": 0, "message": v.get("stderr", "")}]
    return v
out = []
for mode in ("std", "exp"):
    files = collections.Counter(); hits = collections.Counter()
    agree = collections.Counter(); only_rb = collections.defaultdict(list); only_bk = collections.defaultdict(list)
    for key in sorted(rb):
        fr = rbf(rb[key], mode)
        for rule in {f["rule"] for f in fr}: files[rule] += 1
        for f in fr: hits[f["rule"]] += 1
        if key not in bk: continue
        a = collections.Counter((f["rule"], f["line"]) for f in fr if f["rule"] in BK_RULES)
        b = collections.Counter((f["rule"], f["line"]) for f in bk[key]["bk_" + mode] if f["rule"] in BK_RULES)
        for k in a | b:
            m = min(a[k], b[k]); agree[k[0]] += m
            if a[k] > m: only_rb[k[0]].append((key, k[1], a[k] - m))
            if b[k] > m: only_bk[k[0]].append((key, k[1], b[k] - m))
        eb = [f for f in bk[key]["bk_" + mode] if f["rule"] == "ERROR"]
        er = [f for f in fr if f["rule"] in ("ERROR", "DockerfileParseError")]
        if bool(eb) != bool(er): only_bk["(parse error)"].append((key, eb[0]["line"] if eb else 0, er[0]["message"][:80] if er else eb[0]["message"][:80]))
    print(f"== mode {mode}: rule files findings")
    for rule, n in files.most_common(): print(f"  {rule:34} {n:4} {hits[rule]:5}")
    print(f"== mode {mode}: differential (agree / rbuild-only / buildkit-only)")
    for rule in BK_RULES + ["(parse error)"]:
        ro = sum(x[2] for x in only_rb[rule]) if rule in only_rb else 0
        bo = sum(x[2] if isinstance(x[2], int) else 1 for x in only_bk[rule]) if rule in only_bk else 0
        print(f"  {rule:34} {agree[rule]:5} {ro:5} {bo:5}")
    for rule in sorted(set(only_rb) | set(only_bk)):
        for (k, line, n) in only_rb.get(rule, []): print(f"    RB-ONLY {rule} {k[0]}/{k[1]}:{line} x{n}")
        for (k, line, n) in only_bk.get(rule, []): print(f"    BK-ONLY {rule} {k[0]}/{k[1]}:{line} {n}")
