#!/usr/bin/env python3
"""Reference implementation, in vectorised pandas, of the old system's features and labels
exactly as ../shared/docs/seed-semantics.md pins them down.

It is the yardstick for the SQL stages: the parity test runs both on the same CSV files and
compares every column, and the benchmark times both end to end.

usage: features.py METRICS (folder or file of CSV/CSV.gz) OUT.parquet [--label-rule seed|hpa] [--no-one-hot]
`--no-one-hot`: leave out the one-hot service columns, as the pipeline's table does (its models
build them), so the benchmark times both on the same table.
"""
import argparse
import glob
import os
import sys

import numpy as np
import pandas as pd

CORE = [
    "cpu_usage_percent", "cpu_usage_percent_last_5_min", "cpu_usage_percent_slope",
    "ram_usage_percent", "ram_usage_percent_last_5_min", "ram_usage_percent_slope",
    "request_count_per_second", "request_count_per_second_last_5_min", "response_time_ms",
    "cpu_request", "cpu_limit", "ram_request", "ram_limit", "queue_length", "error_rate",
    "pod_restart_count", "node_cpu_pressure_flag", "node_memory_pressure_flag",
]
WINDOW = 10
HORIZON = 10
# Seasonal features (src/features/seasonal.rs): 5-minute slots, lags of a day and a week, the
# lagged slot's peak with the next one, Holt-Winters (damped trend, daily season) on the slots.
SLOT_SECONDS = 300
DAY = 288
WEEK = 7 * DAY
ALPHA, BETA, GAMMA, PHI = 0.2, 0.02, 0.3, 0.9


def load(path):
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "**", "*.csv"), recursive=True)
                       + glob.glob(os.path.join(path, "**", "*.csv.gz"), recursive=True))
    else:
        files = [path]
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    # The contract: a timestamp without an offset is UTC; one with an offset is that instant.
    df["timestamp"] = pd.to_datetime(df["timestamp"], format="ISO8601", utc=True).dt.tz_localize(None)
    df = df.sort_values(["service_name", "timestamp"], kind="mergesort")
    df = df.drop_duplicates(["service_name", "timestamp"], keep="first").reset_index(drop=True)
    return df


def rolling(g, col, how):
    r = g[col].rolling(WINDOW, min_periods=1)
    r = getattr(r, how)() if how != "p95" else r.quantile(0.95, interpolation="linear")
    return r.reset_index(level=0, drop=True).sort_index()


def features(df, one_hot=True):
    g = df.groupby("service_name", sort=False)
    out = df[["timestamp", "service_name", "replica_count"] + CORE].copy()
    hour = df["timestamp"].dt.hour
    out["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    out["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    out["cpu_utilization_ratio"] = df["cpu_usage_percent"] / (df["cpu_limit"] + 1e-6)
    out["ram_utilization_ratio"] = df["ram_usage_percent"] / (df["ram_limit"] + 1e-6)
    out["cpu_change_rate"] = g["cpu_usage_percent"].diff().fillna(0)
    out["ram_change_rate"] = g["ram_usage_percent"].diff().fillna(0)
    out["request_change_rate"] = g["request_count_per_second"].diff().fillna(0)
    out["cpu_rolling_std"] = rolling(g, "cpu_usage_percent", "std").fillna(0)
    out["ram_rolling_std"] = rolling(g, "ram_usage_percent", "std").fillna(0)
    out["request_rolling_max"] = rolling(g, "request_count_per_second", "max")
    out["response_time_rolling_p95"] = rolling(g, "response_time_ms", "p95")
    out["cpu_per_replica"] = df["cpu_usage_percent"] / (df["replica_count"] + 1)
    out["ram_per_replica"] = df["ram_usage_percent"] / (df["replica_count"] + 1)
    out["requests_per_replica"] = df["request_count_per_second"] / (df["replica_count"] + 1)
    out["system_pressure"] = (
        (df["cpu_usage_percent"] > 70).astype(float) + (df["ram_usage_percent"] > 75).astype(float)
        + (df["response_time_ms"] > 500).astype(float) + (df["error_rate"] > 0.05).astype(float)
        + df["node_cpu_pressure_flag"] + df["node_memory_pressure_flag"]
    )
    out = out.fillna(0)
    out = pd.concat([out, seasonal(df)], axis=1)
    if not one_hot:
        return out
    dummies = pd.get_dummies(df["service_name"], prefix="service").astype(float)
    return pd.concat([out, dummies[sorted(dummies.columns)]], axis=1)


def holt_winters_next(slots, rates):
    """For each slot (in order), the forecast of the slot after it from the slots before it."""
    out = np.full(len(slots), np.nan)
    first = None
    for i, (slot, x) in enumerate(zip(slots, rates)):
        target = slot + 1
        if first is not None and target - first >= DAY:
            h = target - last
            damped = sum(PHI ** k for k in range(1, min(h, 64) + 1))
            sv = season[target % DAY]
            out[i] = max(level + damped * trend + (0.0 if np.isnan(sv) else sv), 0.0)
        if first is None or slot - last > WEEK:
            level, trend, season, first, last = x, 0.0, np.full(DAY, np.nan), slot, slot
            season[slot % DAY] = 0.0
            continue
        for _ in range(last + 1, slot):
            level += PHI * trend
            trend *= PHI
        j = slot % DAY
        sv = season[j]
        new = ALPHA * (x - (0.0 if np.isnan(sv) else sv)) + (1 - ALPHA) * (level + PHI * trend)
        trend = BETA * (new - level) + (1 - BETA) * PHI * trend
        season[j] = x - new if np.isnan(sv) else GAMMA * (x - new) + (1 - GAMMA) * sv
        level, last = new, slot
    return out


def seasonal(df):
    slot = (df["timestamp"] - pd.Timestamp(0)) // pd.Timedelta(seconds=SLOT_SECONDS)
    rows = pd.DataFrame({"service_name": df["service_name"], "slot": slot})
    prof = (pd.DataFrame({"service_name": df["service_name"], "slot": slot, "rate": df["request_count_per_second"]})
            .groupby(["service_name", "slot"], sort=True)["rate"].mean().reset_index())
    nxt = prof.assign(slot=prof["slot"] - 1).rename(columns={"rate": "next"})
    prof = prof.merge(nxt, on=["service_name", "slot"], how="left")
    prof["peak"] = prof[["rate", "next"]].max(axis=1)
    prof["hw"] = np.concatenate([holt_winters_next(g["slot"].to_numpy(), g["rate"].to_numpy())
                                 for _, g in prof.groupby("service_name", sort=True)])
    rate = df["request_count_per_second"].to_numpy(dtype=float)
    out = pd.DataFrame(index=df.index)

    def lagged(lag, col):
        keyed = prof.assign(slot=prof["slot"] + lag)[["service_name", "slot", col]]
        v = rows.merge(keyed, on=["service_name", "slot"], how="left")[col].to_numpy(dtype=float)
        return np.where(np.isnan(v), rate, v)

    out["request_rate_yesterday"] = lagged(DAY, "rate")
    out["request_peak_yesterday"] = lagged(DAY, "peak")
    out["request_rate_last_week"] = lagged(WEEK, "rate")
    out["request_peak_last_week"] = lagged(WEEK, "peak")
    out["request_rate_holt_winters"] = lagged(0, "hw")
    return out


def future(g, col, how):
    """`how` over rows i+1 … i+HORIZON of the same service; NaN without a full horizon."""
    def one(s):
        v = s.to_numpy(dtype=float)
        res = np.full(len(v), np.nan)
        if len(v) > HORIZON:
            win = np.lib.stride_tricks.sliding_window_view(v[1:], HORIZON)
            res[: len(win)] = win.max(axis=1) if how == "max" else np.percentile(win, 95, axis=1)
        return pd.Series(res, index=s.index)
    return g[col].transform(one)


def labels(df, rule, up_cpu=70, up_ram=75, up_rt=500, down_cpu=30, down_ram=35, target_cpu=60, lo=1, hi=10):
    g = df.groupby("service_name", sort=False)
    cpu = future(g, "cpu_usage_percent", "max")
    ram = future(g, "ram_usage_percent", "max")
    rt = future(g, "response_time_ms", "p95")
    rc = df["replica_count"].to_numpy()
    if rule == "hpa":
        target = np.clip(np.ceil(rc * cpu.to_numpy() / target_cpu), lo, hi)
    else:
        target = rc.astype(float).copy()
        up = ((cpu > up_cpu) | (ram > up_ram) | (rt > up_rt)).to_numpy()
        target[up] = np.minimum(rc[up] + 1, hi)
        down = ((cpu < down_cpu) & (ram < down_ram)).to_numpy()
        target[down] = np.maximum(rc[down] - 1, lo)
    full = cpu.notna().to_numpy()
    return np.where(full, target, rc).astype(np.int64)


def load_pods(df, out, target_cpu=60, tolerance=0.1, holdout_fraction=0.2):
    """The load features of the pooled forest: request features over what one pod serves at
    target_cpu × (1 + tolerance), from each service's CPU against requests per pod (least
    squares, intercept at least 0) on the rows before the last holdout_fraction of its time;
    NaN where CPU does not rise with load or leaves no headroom."""
    t = df["timestamp"].astype("int64") / 1e9
    span = t.groupby(df["service_name"]).agg(["min", "max"])
    cut = df["service_name"].map(span["min"] + (span["max"] - span["min"]) * (1 - holdout_fraction))
    fit = df[(df["replica_count"] > 0) & (t <= cut)]
    x = fit["request_count_per_second"] / fit["replica_count"]
    y = fit["cpu_usage_percent"]
    per_pod = {}
    for svc, idx in fit.groupby("service_name").groups.items():
        xs, ys = x[idx].to_numpy(), y[idx].to_numpy()
        if len(xs) < 2:
            continue
        sxy = ((xs - xs.mean()) * (ys - ys.mean())).sum()
        sxx = ((xs - xs.mean()) ** 2).sum()
        if sxx <= 0:
            continue
        slope = sxy / sxx
        base = max(ys.mean() - slope * xs.mean(), 0.0)
        aim = target_cpu * (1 + tolerance)
        if slope > 0 and aim > base:
            per_pod[svc] = (aim - base) / slope
    c = df["service_name"].map(per_pod).astype(float)
    for name, src in [("load_pods", "request_count_per_second"), ("load_pods_last_5_min", "request_count_per_second_last_5_min"),
                      ("load_pods_rolling_max", "request_rolling_max"), ("load_pods_change", "request_change_rate")]:
        out[name] = out[src] / c


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics")
    ap.add_argument("out")
    ap.add_argument("--label-rule", default="seed", choices=["seed", "hpa"])
    ap.add_argument("--no-one-hot", action="store_true", help="leave out the one-hot service columns (the pipeline's table)")
    a = ap.parse_args()
    df = load(a.metrics)
    out = features(df, one_hot=not a.no_one_hot)
    out["target_replicas"] = labels(df, a.label_rule)
    load_pods(df, out)
    out.to_parquet(a.out, index=False)


if __name__ == "__main__":
    main()
    # Skip interpreter teardown: pyarrow's thread pools occasionally abort there.
    sys.stdout.flush()
    os._exit(0)
