#!/usr/bin/env python3
"""Benchmark: each promoted policy in closed loop on a simulated cluster, against the internal
HPA's frontier, on load it was not trained on.

usage: benches/closed_loop.py [--lstm-epochs 10] [--rf-trees 50] [--startup 60] [--load 1] [--traces ../shared/traces]
                              [--models random_forest,lstm_cnn] [--work DIR]

Trains the default pipeline (pipelines/train.yaml) on the bundled week in a temporary copy of
the project, publishes both models (whether or not they beat the HPA: this measures them), serves
each with `pipeline serve`, and for each trace (World Cup 1998 in June, NAB elb_request_count,
NAB nyc_taxi) simulates one unseen day with `pipeline simulate --scaler`: the services follow
the server's decisions (new pods ready after --startup seconds, scale-down stabilised over
5 minutes). Prints one table: per trace and policy, pod-hours, under-provisioned minutes, slow
minutes (P95 over 500 ms) and the margin below the internal HPA's frontier (positive: beats it),
also as a share of the minutes a scaler could avoid (less those that even max replicas could
not serve), and the cost axis: the pod-hours saved against the HPA at the same under-provisioned
minutes. `--load F` multiplies every service's load (`pipeline simulate --load`): above 1.4
the traces' busy hours outgrow the services' maxReplicas.
Run `cargo build --release` first; derived traces stay in the temporary folder, the licence
notes of the originals are in ../shared/traces. `--work DIR` keeps the project copy there and
reuses it, so a second run after changing one stage (pipelines/ and sql/ are copied again)
retrains only what changed.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

from unseen_traces import BIN, DEFAULT_TRACES, ROOT, TRACES, cut, pipeline

MODELS = ["random_forest", "lstm_cnn"]


def serve(work, model):
    """`pipeline serve` for one promoted model on a free port; (process, base URL)."""
    proc = subprocess.Popen([BIN, "serve", "--addr", "127.0.0.1:0", "--model", model], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"pipeline serve --model {model}: unexpected first line {line!r}")
    return proc, line.split(" ", 2)[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lstm-epochs", type=int, default=10)
    ap.add_argument("--rf-trees", type=int, default=50)
    ap.add_argument("--startup", type=int, default=60)
    ap.add_argument("--load", type=float, default=1.0, help="every service's load times this in the unseen days")
    ap.add_argument("--traces", default=DEFAULT_TRACES)
    ap.add_argument("--models", default=",".join(MODELS), help="the served models, comma-separated")
    ap.add_argument("--work", help="keep the trained project here and reuse it (default: a temporary folder)")
    a = ap.parse_args()
    models = a.models.split(",")
    sets = ["--set", f"lstm_epochs={a.lstm_epochs}", "--set", f"rf_trees={a.rf_trees}", "--set", "cv_folds=0", "--set", "device=cpu", "--set", "require_beating_hpa=false"]
    work = a.work or tempfile.mkdtemp(prefix="bench-closed-loop-")
    servers = []
    rows = []
    try:
        for d in ("pipelines", "sql", "data"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d), dirs_exist_ok=True)
        t0 = time.time()
        pipeline(["run", "--until", "publish", "--no-progress", *sets], work)
        trained = time.time() - t0
        policies = {}
        for m in models:
            shown = pipeline(["models", "show", m], work).stdout
            policies[m] = next((l.split(":", 1)[1].strip() for l in shown.splitlines() if l.startswith("policy:")), "?")
        for name, rel, skip in TRACES:
            trace = os.path.join(work, f"trace-{len(rows)}.csv")
            cut(os.path.join(a.traces, rel), skip, 3, trace)
            # Fresh servers per trace: a server keeps each service's recent rows, and every
            # trace's day starts at the same simulated time.
            servers = [(m, *serve(work, m)) for m in models]
            summary = os.path.join(work, "summary.json")
            args = ["simulate", "--days", "1", "--seed", "7", "--trace", trace, "--pod-startup-seconds", str(a.startup), "--load", str(a.load), "--out", os.path.join(work, "closed"), "--summary", summary, "--scaler", "hpa"]
            for _, _, url in servers:
                args += ["--scaler", url]
            pipeline(args, work, ok=(0, 1))
            for _, proc, _ in servers:
                proc.kill()
            servers = []
            s = json.load(open(summary))
            labels = ["hpa (internal, 60 %)"] + [f"served {m}" for m in models]
            for label, r in zip(labels, s["runs"]):
                t, m, av, sv = r["total"], r.get("margin"), r.get("avoidable_margin"), r.get("saving")
                rows.append((name, label, t["pod_hours"], t["under_provisioned_minutes"], t["capacity_bound_minutes"], t["slow_minutes"], t["fallbacks"], m and m["minutes"], m and m["percent"], av and av["percent"], sv))
            shutil.rmtree(os.path.join(work, "closed"), ignore_errors=True)
    finally:
        for _, proc, _ in servers:
            proc.kill()
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    how = f"in {trained:.0f} s" if trained >= 1 else f"earlier (reused from {work})"
    print(f"trained on the bundled week {how} ({a.rf_trees} trees, {a.lstm_epochs} LSTM-CNN epochs at most); one unseen day per trace at {a.load}x load, pods ready {a.startup} s after they are asked for")
    for m, policy in policies.items():
        print(f"served {m}: {policy}")
    print(f"{'trace':<22} {'policy':<22} {'pod-hours':>9} {'under-prov min':>14} {'beyond max':>10} {'slow min':>9} {'fallbacks':>9} {'margin min':>10} {'margin %':>8} {'% avoidable':>11} {'saved pod-h':>11} {'saved %':>7}")
    for name, policy, ph, um, cap, slow, fb, mm, mp, ap, sv in rows:
        margin = f"{mm:>10.1f} {mp:>7.0f}% {ap:>10.0f}%" if mm is not None else f"{'-':>10} {'-':>8} {'-':>11}"
        if sv is None:
            saved = f"{'-':>11} {'-':>7}"
        elif sv.get("pod_hours") is None:
            saved = f"{'never':>11} {'-':>7}"
        else:
            saved = f"{sv['pod_hours']:>11.1f} {sv['percent']:>6.1f}%"
        print(f"{name:<22} {policy:<22} {ph:>9.1f} {um:>14.1f} {cap:>10.1f} {slow:>9.1f} {fb:>9} {margin} {saved}")
    print("beyond max: minutes even all max replicas were under-provisioned (every policy's, out of reach);")
    print("% avoidable: the margin as a share of the HPA's minutes less those")
    print("saved pod-h: the HPA's pod-hours at the policy's under-provisioned minutes less the policy's (the cost axis;")
    print("  never: no HPA target gets that healthy)")


if __name__ == "__main__":
    main()
