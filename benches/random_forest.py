#!/usr/bin/env python3
"""Benchmark: our Random Forest stage against scikit-learn's RandomForestRegressor with the same
parameters and n_jobs=-1, on the same train/test rows (exported from the split stage), in one run.

usage: benches/random_forest.py [--trees 200]
Prints fit time, batch predict time, single-row latency and exact accuracy of both, and the
ratios. Run `cargo build --release` and `scripts/setup.sh` first; it works in a temp copy of the
project so your cache is untouched.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pipeline-target"))
BIN = os.environ.get("PIPELINE_BIN", os.path.join(TARGET, "release", "pipeline"))
NOT_FEATURES = {"timestamp", "service_name", "replica_count", "target_replicas", "split"}


def run(args, cwd):
    subprocess.run([BIN, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--smoke", action="store_true", help="4 trees: that the bench runs, not what it measures")
    a = ap.parse_args()
    if a.smoke:
        a.trees = 4
    work = tempfile.mkdtemp(prefix="bench-rf-")
    try:
        for d in ("pipelines", "sql", "data"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
        # Every training row on both sides (the default pipeline samples this forest: compare_rows).
        sets = ["--set", f"rf_trees={a.trees}", "--set", "cv_folds=0", "--set", "compare_rows=100000000"]
        run(["run", "--until", "split_shuffled"], work)
        run(["export", "split_shuffled", "split.parquet"], work)
        t0 = time.perf_counter()
        run(["run", "--until", "train_random_forest", "--no-progress", *sets], work)
        ours_wall = time.perf_counter() - t0
        out = subprocess.run([BIN, "inspect", "train_random_forest", "--schema", *sets], cwd=work, check=True, capture_output=True, text=True).stdout
        entry = os.path.join(work, os.path.dirname(next(l.split(None, 1)[1] for l in out.splitlines() if l.startswith("file:"))))
        ours = json.load(open(os.path.join(entry, "model.json")))
        m = ours["metrics"]

        df = pd.read_parquet(os.path.join(work, "split.parquet"))
        # The load features (in pods of a fitted capacity) are read only by a stage that names them.
        features = [c for c in df.columns if c not in NOT_FEATURES and not c.startswith("load_pods")]
        # The service, one-hot, after the table's columns (models::table does the same).
        services = pd.get_dummies(df.service_name, prefix="service", dtype=float)
        df = pd.concat([df, services], axis=1)
        features += sorted(services.columns)
        assert features == ours["features"], f"feature order differs: {[f for f in features if f not in ours['features']]} {[f for f in ours['features'] if f not in features]}"
        train, test = df[df.split == "train"], df[df.split == "test"]
        xtr, ytr = train[features].to_numpy(float), train.target_replicas.to_numpy(float)
        xte, yte = test[features].to_numpy(float), test.target_replicas.to_numpy(float)
        rf = RandomForestRegressor(n_estimators=a.trees, max_depth=15, min_samples_split=10, min_samples_leaf=4,
                                   random_state=42, n_jobs=-1)
        t0 = time.perf_counter(); rf.fit(xtr, ytr); sk_fit = time.perf_counter() - t0
        t0 = time.perf_counter(); pred = rf.predict(xte); sk_batch = time.perf_counter() - t0
        probes = 50
        t0 = time.perf_counter()
        for i in range(probes):
            rf.predict(xte[i:i + 1])
        sk_single_us = (time.perf_counter() - t0) / probes * 1e6
        sk_exact = float(np.mean(np.clip(np.round(pred), 1, 10) == yte))

        print(f"data: {len(ytr):,} train / {len(yte):,} test rows × {len(features)} features, {a.trees} trees, {os.cpu_count()} cores")
        print(f"{'':<26}{'ours':>12}{'scikit-learn':>14}{'ratio':>10}")
        rows = [
            ("fit seconds", m["training_seconds"], sk_fit, m["training_seconds"] / sk_fit, "x sklearn's time"),
            ("batch predict seconds", m["batch_predict_seconds"], sk_batch, m["batch_predict_seconds"] / sk_batch, "x sklearn's time"),
            ("single-row latency µs", m["single_prediction_us"], sk_single_us, sk_single_us / m["single_prediction_us"], "x faster"),
            ("exact accuracy %", 100 * m["test"]["exact_accuracy"], 100 * sk_exact, 100 * (m["test"]["exact_accuracy"] - sk_exact), "points"),
        ]
        for name, o, s, r, unit in rows:
            print(f"{name:<26}{o:>12.4g}{s:>14.4g}{r:>10.3g} {unit}")
        print(f"(our whole train stage, load to model files: {ours_wall:.1f}s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
