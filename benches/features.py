#!/usr/bin/env python3
"""Benchmark: ingest + features + labels, ours against the pandas reference, end to end on the
same 1M-row CSV (one file in, the labelled table as Parquet out), in one run.

usage: benches/features.py [--rows 1000000] [--repeat 3] [--smoke]
Prints wall time and peak memory (max RSS) of each, and the ratios. Needs the release build
(cargo build --release) and the venv (scripts/setup.sh). The pipeline is the product's own,
pipelines/train.yaml up to its `labels` stage (`--until labels`), so the bench cannot drift from
it. `--smoke`: 20,000 rows, once (CI runs it so a broken bench fails; its ratios mean little).

Two more lines say where the pipeline's time goes: its start-up (`pipeline --version`: libtorch's
static initialisers run before main), and the same three cached stages with pass-through SQL
(every row read, sorted order kept, written as a cache entry, no feature computed): the cost of
caching each stage, which the features themselves can never go below.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pipeline-target"))
PIPELINE_BIN = os.path.join(TARGET, "release", "pipeline")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")

# The product's pipeline on one CSV, up to the labels: ingest, features, labels.
RUN = ["run", "pipelines/train.yaml", "--until", "labels", "--set", "metrics_uri=metrics.csv", "--force", "--no-progress"]


def measure(cmd, cwd):
    """Wall seconds and peak RSS (MiB) of one child process; its stdout is kept in cwd/stdout.txt."""
    t0 = time.perf_counter()
    with open(os.path.join(cwd, "stdout.txt"), "w") as out:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def stage_seconds(summary):
    """`stage  ran  rows  1.23s` lines of a run summary, as "stage 1.23 s"."""
    found = re.findall(r"^(\S+)\s+ran\s+\d+\s+([\d.]+)s$", summary, re.MULTILINE)
    return ", ".join(f"{name} {seconds} s" for name, seconds in found)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="20,000 rows, once: that the bench runs, not what it measures")
    a = ap.parse_args()
    if a.smoke:
        a.rows, a.repeat = 20_000, 1
    work = tempfile.mkdtemp(prefix="bench-features-")
    try:
        days = -(-a.rows // (7 * 16 * 120))
        subprocess.run([PIPELINE_BIN, "simulate", "--days", str(days), "--layout", "flat", "--out", "days",
                        "--trace", os.path.join(ROOT, "data/traces/worldcup98/wc98_requests_per_minute.csv.gz")],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(work, "metrics.csv"), "w") as out:
            written = 0
            for i, f in enumerate(sorted(glob.glob(os.path.join(work, "days", "*.csv")))):
                with open(f) as fh:
                    header = fh.readline()
                    if i == 0:
                        out.write(header)
                    for line in fh:
                        if written == a.rows:
                            break
                        out.write(line)
                        written += 1
        shutil.rmtree(os.path.join(work, "days"))
        for d in ("sql", "pipelines"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
        # The floor: the same pipeline in a sibling folder whose features and labels SQL pass rows through.
        floor_dir = os.path.join(work, "floor")
        for d in ("sql", "pipelines"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(floor_dir, d))
        os.symlink(os.path.join(work, "metrics.csv"), os.path.join(floor_dir, "metrics.csv"))
        for stage, upstream in (("features", "ingest"), ("labels", "features")):
            with open(os.path.join(floor_dir, "sql", f"{stage}.sql"), "w") as f:
                f.write(f"SELECT * FROM {upstream} ORDER BY service_name, timestamp\n")
        size = os.path.getsize(os.path.join(work, "metrics.csv")) / 2**20
        print(f"input: {written:,} rows, {size:.0f} MiB CSV, {os.cpu_count()} cores; best of {a.repeat}")

        runs = []
        for _ in range(a.repeat):
            runs.append((measure([PIPELINE_BIN, *RUN], work),
                         stage_seconds(open(os.path.join(work, "stdout.txt")).read())))
        ours, stages = min(runs)
        ref_cmd = [PYTHON, os.path.join(ROOT, "tests/reference/features.py"), "metrics.csv", "ref.parquet"]
        ref = min(measure(ref_cmd, work) for _ in range(a.repeat))
        print(f"{'':<22}{'seconds':>10}{'peak MiB':>10}")
        print(f"{'pipeline (DataFusion)':<22}{ours[0]:>10.2f}{ours[1]:>10.0f}")
        print(f"{'pandas reference':<22}{ref[0]:>10.2f}{ref[1]:>10.0f}")
        print(f"speed-up: {ref[0] / ours[0]:.1f}x faster; memory: {ours[1] / ref[1]:.2f}x of pandas'")
        print(f"pipeline stages in its best run: {stages} (the rest is start-up and planning)")
        start = min(measure([PIPELINE_BIN, "--version"], work) for _ in range(a.repeat))
        floor = min((measure([PIPELINE_BIN, *RUN], floor_dir),
                     stage_seconds(open(os.path.join(floor_dir, "stdout.txt")).read())) for _ in range(a.repeat))
        print(f"pipeline start-up alone: {start[0]:.2f} s; the same stages with pass-through SQL: {floor[0][0]:.2f} s "
              f"({floor[1]})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
