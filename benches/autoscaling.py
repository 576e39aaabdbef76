#!/usr/bin/env python3
"""Benchmark: every autoscaling policy against the reactive HPA's frontier, on load the bundled
week is not made of.

usage: benches/autoscaling.py [--days 3] [--lstm-epochs 10] [--rf-trees 50] [--traces ../shared/traces] [--smoke]
(`--smoke`: one day of the World Cup trace bundled in data/traces, tiny models; CI runs it.)

For each trace (World Cup 1998 days well after the bundled week, NAB elb_request_count and NAB
nyc_taxi) it cuts `--days` days into a `time,value` CSV, simulates the seven services on it,
runs the default pipeline (pipelines/train.yaml) in a temporary copy of the project, and prints
one table from the evaluation: per trace and policy, pod-hours, under-provisioned minutes, the
share of requests over capacity and the margin below the HPA frontier (positive: beats the
HPA). Run `cargo build --release` first. Derived traces stay in the temporary folder; the
licence notes of the originals are next to them in ../shared/traces.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

from unseen_traces import BIN, DEFAULT_TRACES, ROOT, TRACES, bundled_traces, cut, pipeline

SHOWN = ["recorded", "hpa", "seasonal_naive", "holt_winters"]


def evaluation(work, sets):
    out = subprocess.run([BIN, "inspect", "evaluate", "--schema", *sets], cwd=work, check=True, capture_output=True, text=True).stdout
    file = next(l.split(None, 1)[1] for l in out.splitlines() if l.startswith("file:"))
    return json.load(open(os.path.join(work, os.path.dirname(file.strip()), "evaluation.json")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--lstm-epochs", type=int, default=10)
    ap.add_argument("--rf-trees", type=int, default=50)
    ap.add_argument("--traces", default=DEFAULT_TRACES)
    ap.add_argument("--smoke", action="store_true", help="one day of the bundled World Cup trace, tiny models: that the bench runs")
    a = ap.parse_args()
    # The policies are what is measured: smaller models than the nightly defaults, no CV.
    sets = ["--set", f"lstm_epochs={a.lstm_epochs}", "--set", f"rf_trees={a.rf_trees}", "--set", "cv_folds=0", "--set", "device=cpu"]
    traces = TRACES
    if a.smoke:
        a.days, a.rf_trees, a.lstm_epochs, traces = 1, 4, 1, TRACES[:1]
        a.traces = bundled_traces()
        sets = ["--set", "lstm_epochs=1", "--set", "rf_trees=4", "--set", "cv_folds=0", "--set", "device=cpu", "--set", "compare_rows=2000", "--set", "lstm_windows=2000"]
    try:
        rows = run_all(a, sets, traces)
    finally:
        if a.smoke:
            shutil.rmtree(a.traces, ignore_errors=True)
    print(f"{a.days} days per trace, {a.rf_trees} trees, {a.lstm_epochs} LSTM-CNN epochs at most; margin: minutes below the HPA frontier")
    print(f"{'trace':<22} {'policy':<34} {'pod-hours':>9} {'under-prov min':>14} {'req over cap':>12} {'margin min':>10} {'margin %':>8}")
    for name, policy, ph, um, share, mm, mp in rows:
        margin = f"{mm:>10.1f} {mp:>7.0f}%" if mm is not None else f"{'-':>10} {'-':>8}"
        print(f"{name:<22} {policy:<34} {ph:>9.1f} {um:>14.1f} {share:>11.2f}% {margin}")


def run_all(a, sets, traces):
    rows = []
    for name, rel, skip in traces:
        work = tempfile.mkdtemp(prefix="bench-autoscaling-")
        try:
            for d in ("pipelines", "sql"):
                shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
            first = cut(os.path.join(a.traces, rel), skip, a.days, os.path.join(work, "trace.csv"))
            pipeline(["simulate", "--days", str(a.days), "--trace", "trace.csv", "--start", first, "--out", "data/metrics"], work)
            pipeline(["run", "--until", "evaluate", "--no-progress", *sets], work)
            ev = evaluation(work, sets)
            models = [p for p in ev["replay"] if p not in SHOWN]
            for policy in SHOWN + sorted(models):
                if policy not in ev["replay"]:
                    continue
                s, m = ev["replay"][policy], ev.get("margins", {}).get(policy)
                share = 100 * s["requests_over_capacity"] / s["requests"] if s["requests"] else 0.0
                rows.append((name, policy, s["pod_hours"], s["under_provisioned_minutes"], share, m and m["minutes"], m and m["percent"]))
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return rows


if __name__ == "__main__":
    main()
