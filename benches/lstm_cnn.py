#!/usr/bin/env python3
"""Benchmark: our LSTM-CNN stage (tch/libtorch) against the same network in PyTorch eager, on the
same windows of the bundled data, same threads and batch size, in one run.

usage: benches/lstm_cnn.py [--epochs 3] [--threads N] [--device cpu|cuda] [--smoke]
Prints seconds per epoch (median) and single-window latency of both, and the ratios. Run
`cargo build --release` and `scripts/setup.sh` first; PyTorch in Python needs the full install
(`scripts/libtorch.sh --cuda`: its Python module loads the CUDA libraries even on a CPU). It works
in a temp copy of the project so your cache is untouched. Both sides train on every training
window with our stage's batch size (the default pipeline samples its windows: `lstm_windows`).
`--smoke`: one epoch, and the PyTorch side skipped when PyTorch is not installed (CI runs it so a
broken bench fails; its figures mean little).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd
try:
    import torch
    from torch import nn
except ImportError:  # --smoke without PyTorch: our side only
    torch = nn = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pipeline-target"))
BIN = os.environ.get("PIPELINE_BIN", os.path.join(TARGET, "release", "pipeline"))
NOT_FEATURES = {"timestamp", "service_name", "replica_count", "target_replicas", "split"}
STEPS = 12


def run(args, cwd):
    subprocess.run([BIN, *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class LstmCnn(nn.Module if nn else object):
    """The seed's architecture, as models::lstm_cnn builds it (Keras BatchNorm settings)."""

    def __init__(self, nf):
        super().__init__()
        bn = lambda n: nn.BatchNorm1d(n, eps=1e-3, momentum=0.01)
        self.conv1, self.bn1 = nn.Conv1d(nf, 64, 3, padding=1), bn(64)
        self.conv2, self.bn2 = nn.Conv1d(64, 128, 3, padding=1), bn(128)
        self.lstm1, self.bn3 = nn.LSTM(nf, 128, batch_first=True), bn(128)
        self.lstm2, self.bn4 = nn.LSTM(128, 64, batch_first=True), bn(64)
        self.fc1, self.bn5 = nn.Linear(128 * (STEPS // 2) + 64, 64), bn(64)
        self.fc2, self.out = nn.Linear(64, 32), nn.Linear(32, 1)
        self.drop, self.drop2 = nn.Dropout(0.3), nn.Dropout(0.15)

    def forward(self, x):
        c = self.drop(self.bn1(torch.relu(self.conv1(x.transpose(1, 2)))))
        c = self.drop(nn.functional.max_pool1d(self.bn2(torch.relu(self.conv2(c))), 2)).flatten(1)
        h, _ = self.lstm1(x)
        h = self.drop(self.bn3(h.transpose(1, 2)).transpose(1, 2))
        _, (last, _) = self.lstm2(h)
        r = self.drop(self.bn4(last[0]))
        z = self.drop(self.bn5(torch.relu(self.fc1(torch.cat([c, r], 1)))))
        return self.out(self.drop2(torch.relu(self.fc2(z)))).squeeze(1)


def windows(df, features):
    """Train / validation / test windows as models::sequences builds them."""
    test = (df.split == "test").to_numpy()
    x = df[features].to_numpy(float)
    y = df.target_replicas.to_numpy(np.float32)
    parts = {"train": [], "val": [], "test": []}
    for _, g in df.groupby("service_name", sort=True):
        rows = g.sort_values("timestamp", kind="stable").index.to_numpy()
        ends = range(STEPS - 1, len(rows))
        train = [rows[e + 1 - STEPS:e + 1] for e in ends if not test[rows[e]]]
        n_val = int(round(len(train) * 0.2))
        parts["train"] += train[:len(train) - n_val]
        parts["val"] += train[len(train) - n_val:]
        parts["test"] += [rows[e + 1 - STEPS:e + 1] for e in ends if test[rows[e]]]
    # The scaler is fitted on the training windows' rows only.
    fit = np.unique(np.concatenate(parts["train"]))
    mean, std = x[fit].mean(0), x[fit].std(0)
    std[std == 0] = 1
    xs = ((x - mean) / std).astype(np.float32)
    return {k: (torch.from_numpy(xs[np.array(v)]), torch.from_numpy(y[np.array(v)[:, -1]])) for k, v in parts.items()}


def pytorch_epochs(data, nf, epochs, device, batch):
    torch.manual_seed(42)
    model = LstmCnn(nf).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.HuberLoss(delta=1.0)
    (xtr, ytr), (xva, yva) = [(a.to(device), b.to(device)) for a, b in (data["train"], data["val"])]
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(ytr)).split(batch):
            if len(idx) < 2:
                continue
            idx = idx.to(device)
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            loss.item()
        model.eval()
        with torch.no_grad():
            for s in range(0, len(yva), 4096):
                loss_fn(model(xva[s:s + 4096]), yva[s:s + 4096]).item()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return model, times


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--smoke", action="store_true", help="one epoch; without PyTorch, our side only")
    a = ap.parse_args()
    if a.smoke:
        a.epochs = 1
    if torch is None and not a.smoke:
        raise SystemExit("PyTorch is not installed (scripts/libtorch.sh --cuda installs it); --smoke runs our side alone")
    if torch is not None:
        torch.set_num_threads(a.threads)
    work = tempfile.mkdtemp(prefix="bench-lstm-")
    try:
        for d in ("pipelines", "sql", "data"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
        sets = ["--set", f"lstm_epochs={a.epochs}", "--set", f"device={a.device}", "--set", "lstm_windows=100000000"]
        run(["run", "--until", "split_temporal"], work)
        run(["export", "split_temporal", "split.parquet"], work)
        run(["run", "--until", "train_lstm_cnn", "--no-progress", *sets], work)
        out = subprocess.run([BIN, "inspect", "train_lstm_cnn", "--schema", *sets], cwd=work, check=True, capture_output=True, text=True).stdout
        entry = os.path.join(work, os.path.dirname(next(l.split(None, 1)[1] for l in out.splitlines() if l.startswith("file:"))))
        ours = json.load(open(os.path.join(entry, "model.json")))
        history = json.load(open(os.path.join(entry, "history.json")))
        m = ours["metrics"]
        batch = ours["params"]["batch_size"]
        if torch is None:
            epoch = statistics.median(e["seconds"] for e in history)
            print(f"ours: {m['train_windows']:,} train windows, batch {batch}, {epoch:.3f} s per epoch, {m['single_prediction_us']:.1f} µs per window; PyTorch side skipped (not installed)")
            return

        df = pd.read_parquet(os.path.join(work, "split.parquet"))
        # The load features (in pods of a fitted capacity) are read only by a stage that names them.
        features = [c for c in df.columns if c not in NOT_FEATURES and not c.startswith("load_pods")]
        # The service, one-hot, after the table's columns (models::table does the same).
        services = pd.get_dummies(df.service_name, prefix="service", dtype=float)
        df = pd.concat([df, services], axis=1)
        features += sorted(services.columns)
        assert features == ours["features"], "feature order differs"
        data = windows(df, features)
        assert len(data["train"][1]) == m["train_windows"], (len(data["train"][1]), m["train_windows"])
        model, times = pytorch_epochs(data, len(features), a.epochs, a.device, batch)

        # Single-window latency on the CPU, one thread, as the server runs it; the raw rows are
        # scaled inside the timing on our side, so scale them here too.
        torch.set_num_threads(1)
        model = model.cpu().eval()
        raw = df[features].to_numpy(float)
        test = (df.split == "test").to_numpy()
        mean, std = raw[~test].mean(0), raw[~test].std(0)
        std[std == 0] = 1
        probes = [raw[i:i + STEPS] for i in range(0, 200 * STEPS, STEPS)]
        with torch.no_grad():
            for p in probes[:20]:
                model(torch.from_numpy(((p - mean) / std).astype(np.float32))[None])
            t0 = time.perf_counter()
            for p in probes:
                model(torch.from_numpy(((p - mean) / std).astype(np.float32))[None])
            py_us = (time.perf_counter() - t0) / len(probes) * 1e6

        ours_epoch = statistics.median(e["seconds"] for e in history)
        py_epoch = statistics.median(times)
        print(f"data: {m['train_windows']:,} train / {m['validation_windows']:,} validation windows of {STEPS} × {len(features)}, "
              f"batch {batch}, {a.threads} threads, device {a.device} (ours ran on {m['device']}), torch {torch.__version__}")
        print(f"{'':<30}{'ours':>12}{'PyTorch':>12}{'ratio':>10}")
        print(f"{'seconds per epoch (median)':<30}{ours_epoch:>12.3f}{py_epoch:>12.3f}{ours_epoch / py_epoch:>10.3f} x PyTorch's time")
        print(f"{'single-window latency µs':<30}{m['single_prediction_us']:>12.1f}{py_us:>12.1f}{py_us / m['single_prediction_us']:>10.2f} x faster")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
