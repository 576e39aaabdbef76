#!/usr/bin/env python3
"""Benchmark: ingest + features + labels, ours against Polars and pandas, end to end on the same
CSV (one file in, the labelled table as Parquet out), in one run, at each size asked for.

usage: benches/features.py [--rows 1000000,10000000] [--services 200] [--repeat 3] [--smoke]
Prints wall time and peak memory (max RSS) of each, and our speed and memory as ratios of
Polars' and pandas'. Needs the release build (cargo build --release) and the venv
(scripts/setup.sh). Ours is the product's own pipeline, pipelines/train.yaml up to its `labels`
stage (`--until labels`), so the bench cannot drift from it. The references compute the same
table: tests/reference/features_polars.py (lazy Polars, one query, window expressions over the
service; the parity test holds it to our table within 1e-9) and tests/reference/features.py
(vectorised pandas) with `--no-one-hot`. After the timed runs the bench checks that our table
and Polars' agree within 1e-9 on this input (tests/reference/compare.py).

The input: `pipeline simulate`'s seven services on the World Cup 1998 trace, each copied under
numbered names (frontend-00, frontend-01, ...) with its request rate scaled per copy, until
there are `--services` services, `rows / services` rows each (a row every 30 s), in time order
as a collector writes them. `--smoke`: 20,000 rows of 20 services, once (CI runs it so a broken
bench fails; its ratios mean little).

Two more lines say where the pipeline's time goes: its start-up (`pipeline --version`: libtorch's
static initialisers run before main), and the same three cached stages with pass-through SQL
(every row read, sorted order kept, written as a cache entry, no feature computed): the cost of
caching each stage, which the features themselves can never go below.
"""
import argparse
import glob
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pipeline-target"))
PIPELINE_BIN = os.environ.get("PIPELINE_BIN", os.path.join(TARGET, "release", "pipeline"))
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


SIMULATED = 7  # services `pipeline simulate` writes
ROWS_PER_DAY = 1920  # per service: 16 hours of a row every 30 s


def make_input(work, rows, services):
    """metrics.csv: `rows` rows of `services` services (see the module's doc); the row count written."""
    import polars as pl

    per_service = -(-rows // services)
    days = -(-per_service // ROWS_PER_DAY)
    subprocess.run([PIPELINE_BIN, "simulate", "--days", str(days), "--layout", "flat", "--out", "days",
                    "--trace", os.path.join(ROOT, "data/traces/worldcup98/wc98_requests_per_minute.csv.gz")],
                   cwd=work, check=True, stdout=subprocess.DEVNULL)
    # Strings and numbers as simulate wrote them, so the copies parse as the originals do.
    base = pl.read_csv(sorted(glob.glob(os.path.join(work, "days", "*.csv"))), infer_schema=False)
    copies = -(-services // SIMULATED)
    load = ["request_count_per_second", "request_count_per_second_last_5_min"]
    frames = []
    for j in range(copies):
        scale = 1.0 + 0.5 * j / copies
        frames.append(base.with_columns(
            (pl.col("service_name") + f"-{j:02d}").alias("service_name"),
            *[(pl.col(c).cast(pl.Float64) * scale).round(4).cast(pl.String).alias(c) for c in load]))
    table = (pl.concat(frames)
             .filter(pl.col("service_name").is_in(pl.col("service_name").unique().sort().head(services).implode()))
             .sort("timestamp", "service_name")
             .with_columns(pl.int_range(pl.len()).over("service_name").alias("nth"))
             .filter(pl.col("nth") < per_service).drop("nth")
             .head(rows))
    table.write_csv(os.path.join(work, "metrics.csv"))
    shutil.rmtree(os.path.join(work, "days"))
    return table.height


def floor_project(work):
    """The same pipeline in a sibling folder whose features and labels SQL pass rows through."""
    floor_dir = os.path.join(work, "floor")
    for d in ("sql", "pipelines"):
        shutil.copytree(os.path.join(ROOT, d), os.path.join(floor_dir, d))
    os.symlink(os.path.join(work, "metrics.csv"), os.path.join(floor_dir, "metrics.csv"))
    for stage, upstream in (("features", "ingest"), ("labels", "features")):
        with open(os.path.join(floor_dir, "sql", f"{stage}.sql"), "w") as f:
            f.write(f"SELECT * FROM {upstream} ORDER BY service_name, timestamp\n")
    return floor_dir


def one_size(rows, services, repeat):
    work = tempfile.mkdtemp(prefix="bench-features-")
    try:
        # In a process of its own: a child forked from a bench holding the input would report
        # the bench's memory as its own peak (Linux carries the high-water mark through fork).
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            written = pool.apply(make_input, (work, rows, services))
        for d in ("sql", "pipelines"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
        floor_dir = floor_project(work)
        size = os.path.getsize(os.path.join(work, "metrics.csv")) / 2**20
        print(f"\ninput: {written:,} rows of {services} services, {size:.0f} MiB CSV, {os.cpu_count()} cores; best of {repeat}", flush=True)

        runs = []
        for _ in range(repeat):
            runs.append((measure([PIPELINE_BIN, *RUN], work),
                         stage_seconds(open(os.path.join(work, "stdout.txt")).read())))
        ours, stages = min(runs)
        reference = os.path.join(ROOT, "tests", "reference")
        polars = min(measure([PYTHON, os.path.join(reference, "features_polars.py"), "metrics.csv", "polars.parquet"], work)
                     for _ in range(repeat))
        pandas = min(measure([PYTHON, os.path.join(reference, "features.py"), "metrics.csv", "pandas.parquet", "--no-one-hot"], work)
                     for _ in range(repeat))
        print(f"{'':<24}{'seconds':>10}{'peak MiB':>10}{'our speed':>11}{'our memory':>12}")
        print(f"{'pipeline (DataFusion)':<24}{ours[0]:>10.2f}{ours[1]:>10.0f}")
        for name, (t, m) in (("Polars (lazy)", polars), ("pandas (vectorised)", pandas)):
            print(f"{name:<24}{t:>10.2f}{m:>10.0f}{t / ours[0]:>10.2f}x{ours[1] / m:>11.2f}x")
        print(f"(our speed: their seconds over ours, above 1 when we are faster; our memory: our peak over theirs)")
        print(f"pipeline stages in its best run: {stages} (the rest is start-up and planning)")
        start = min(measure([PIPELINE_BIN, "--version"], work) for _ in range(repeat))
        floor = min((measure([PIPELINE_BIN, *RUN], floor_dir),
                     stage_seconds(open(os.path.join(floor_dir, "stdout.txt")).read())) for _ in range(repeat))
        print(f"pipeline start-up alone: {start[0]:.2f} s; the same stages with pass-through SQL: {floor[0][0]:.2f} s "
              f"({floor[1]})")
        subprocess.run([PIPELINE_BIN, "export", "labels", "ours.parquet", "--set", "metrics_uri=metrics.csv"],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
        same = subprocess.run([PYTHON, os.path.join(reference, "compare.py"), "ours.parquet", "polars.parquet", "--tolerance", "1e-9"],
                              cwd=work, capture_output=True, text=True)
        print(f"our table against Polars': {same.stdout.strip()}", flush=True)
        if same.returncode != 0:
            sys.exit("the tables differ: the comparison above is not of equal work")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000000", help="rows of input, or several sizes comma-separated (1000000,10000000)")
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="20,000 rows of 20 services, once: that the bench runs, not what it measures")
    a = ap.parse_args()
    sizes = [int(r) for r in a.rows.split(",")]
    if a.smoke:
        sizes, a.services, a.repeat = [20_000], 20, 1
    for rows in sizes:
        one_size(rows, a.services, a.repeat)


if __name__ == "__main__":
    main()
