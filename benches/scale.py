#!/usr/bin/env python3
"""Benchmark: the default pipeline stage by stage on N simulated rows, for memory and speed at
scale: per stage wall time, peak RSS and rows/s, each stage in its own process.

usage: benches/scale.py [--rows 1000000] [--services 200] [--stages ingest,features,...]
                        [--models] [--max-train-rows 200000] [--keep DIR] [--before BIN] [--smoke]

Rows come from `pipeline simulate` (the World Cup trace, 06:00-22:00, 1,920 rows per service
and day), as many days as N rows need. Stages run in order with `pipeline run --only STAGE`, so
each one's peak RSS is its own (os.wait4 of that process). Without --models the run stops after
the splits; with --models the rest of the default pipeline runs too (the other labels and
splits, the four forests and the LSTM-CNN, evaluate, report, publish), the models small (10
trees, 1 epoch) and on a sample of --max-train-rows rows (their `max_train_rows`). PIPELINE_BIN picks
the binary; --before BIN runs each stage with that binary too (e.g. a build of an older commit),
just before ours on the same rows, and prints both and the ratio of their peak RSS.
`--smoke`: 20,000 rows of 10 services, every stage (CI runs it so a broken bench fails).
"""
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pipeline-target"))
BIN = os.environ.get("PIPELINE_BIN", os.path.join(TARGET, "release", "pipeline"))
ROWS_PER_SERVICE_DAY = 16 * 120

DATA_STAGES = ["ingest", "features", "labels", "split_temporal", "split_shuffled"]
# With --models, the rest of the default pipeline, in an order its dependencies allow.
LABEL_STAGES = ["service_summary", "labels_hpa", "split_temporal_hpa", "labels_demand", "split_temporal_demand"]
MODEL_STAGES = ["train_random_forest", "train_random_forest_temporal", "train_random_forest_hpa", "train_random_forest_demand", "train_random_forest_pooled", "train_lstm_cnn"]
SCORE_STAGES = ["evaluate", "report", "publish"]


def run(cmd, cwd):
    """Wall seconds and peak RSS (MiB) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    out, err = p.stdout.read().decode(), p.stderr.read().decode()
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out}\n{err}")
    return wall, usage.ru_maxrss / 1024, out


def stage_rows(project, stage, sets):
    # A stage with no table (report) has no rows to count.
    out = subprocess.run([BIN, "inspect", stage, "--rows", "0", *sets], cwd=project, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("rows:"):
            return int(line.split()[1].replace(",", ""))
    return None


def cap_models(pipeline, rows):
    """Give the model stages `max_train_rows: rows` (after their `model:` line, or in place of
    the one they have)."""
    with open(pipeline) as f:
        lines = f.read().split("\n")
    stage = None
    for i, line in enumerate(lines):
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip()[:-1]
        if stage in MODEL_STAGES and line.startswith("    model: "):
            if lines[i + 1].startswith("    max_train_rows: "):
                lines[i + 1] = f"    max_train_rows: {rows}"
            else:
                lines.insert(i + 1, f"    max_train_rows: {rows}")
            stage = None
    with open(pipeline, "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--models", action="store_true", help="also train both models, small")
    ap.add_argument("--max-train-rows", type=int, default=200_000, help="the models' max_train_rows")
    ap.add_argument("--stages", help="comma-separated stages instead of the defaults")
    ap.add_argument("--keep", help="build the project here and keep it")
    ap.add_argument("--before", help="another build of pipeline to run each stage with first, for before/after figures")
    ap.add_argument("--smoke", action="store_true", help="20,000 rows of 10 services, every stage: that the bench runs")
    a = ap.parse_args()
    if a.smoke:
        a.rows, a.services, a.models, a.max_train_rows = 20_000, 10, True, 5_000

    project = a.keep or tempfile.mkdtemp(prefix="scale-")
    os.makedirs(project, exist_ok=True)
    for d in ["pipelines", "sql"]:
        shutil.copytree(os.path.join(ROOT, d), os.path.join(project, d), dirs_exist_ok=True)
    shutil.copytree(os.path.join(ROOT, "data", "traces"), os.path.join(project, "data", "traces"), dirs_exist_ok=True)
    cap_models(os.path.join(project, "pipelines", "train.yaml"), a.max_train_rows)
    days = math.ceil(a.rows / (a.services * ROWS_PER_SERVICE_DAY))
    services = ",".join(f"svc{i:03d}" for i in range(a.services))
    metrics = os.path.join(project, "metrics")
    if not os.path.isdir(metrics):
        wall, rss, _ = run([BIN, "simulate", "--days", str(days), "--services", services, "--out", metrics, "--layout", "s3"], project)
        print(f"simulate: {days} days x {a.services} services in {wall:.1f} s")

    stages = a.stages.split(",") if a.stages else DATA_STAGES + (LABEL_STAGES + MODEL_STAGES + SCORE_STAGES if a.models else [])
    sets = ["--set", "metrics_uri=metrics", "--set", "rf_trees=10", "--set", "cv_folds=2", "--set", "lstm_epochs=1"]
    print(f"binary: {BIN}" + (f", before: {a.before}" if a.before else ""))
    if a.before:
        print(f"{'stage':<28} {'rows':>11} {'before s':>9} {'MiB':>7} {'after s':>8} {'MiB':>7} {'RSS after/before':>17} {'rows/s':>11}")
    else:
        print(f"{'stage':<28} {'rows':>11} {'wall s':>8} {'peak RSS MiB':>13} {'rows/s':>11}")
    peak, total = (0.0, ""), 0.0
    for stage in stages:
        if a.before:
            before_wall, before_rss, _ = run([a.before, "run", "--only", stage, "--force", *sets], project)
        wall, rss, _ = run([BIN, "run", "--only", stage, "--force", *sets], project)
        rows = stage_rows(project, stage, sets)
        peak, total = max(peak, (rss, stage)), total + wall
        rate = f"{rows / wall:,.0f}" if rows else "-"
        if a.before:
            print(f"{stage:<28} {rows or 0:>11,} {before_wall:>9.1f} {before_rss:>7,.0f} {wall:>8.1f} {rss:>7,.0f} {rss / before_rss:>17.2f} {rate:>11}", flush=True)
        else:
            print(f"{stage:<28} {rows or 0:>11,} {wall:>8.1f} {rss:>13,.0f} {rate:>11}", flush=True)
    print(f"run: {total:.1f} s in {len(stages)} stages, peak RSS {peak[0]:,.0f} MiB ({peak[1]})")
    if not a.keep:
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
