#!/usr/bin/env python3
"""The same features and labels as features.py, in Polars as its users write it: one lazy
query over every file, window expressions `.over()` the service, the slot tables joined, and
one collect (streaming engine where a plan allows it).

It is the benchmark's reference (benches/features.py): a data engineer replacing our stages
would reach for Polars. The parity test holds it to the SQL stages' table within 1e-9, as it
holds the pandas one. It writes the pipeline's columns; the one-hot service columns are the
models' input layer's (src/models/table.rs), so unlike features.py it builds none.

The Holt-Winters forecast is a recurrence over each service's slots: Polars has no vector
form of it, so it runs in Python over the slot table (a tenth of the rows), as an expert
would leave it short of writing a plugin; features.py's loop is shared, so both references
compute it alike.

usage: features_polars.py METRICS (folder or file of CSV/CSV.gz) OUT.parquet [--label-rule seed|hpa]
"""
import argparse
import glob
import os
import sys

import numpy as np
import polars as pl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from features import CORE, DAY, HORIZON, SLOT_SECONDS, WEEK, WINDOW, holt_winters_next  # noqa: E402

SERVICE = "service_name"


def files(path):
    if not os.path.isdir(path):
        return [path]
    return sorted(glob.glob(os.path.join(path, "**", "*.csv"), recursive=True)
                  + glob.glob(os.path.join(path, "**", "*.csv.gz"), recursive=True))


def load(path):
    # Every column but the two keys is a number; naming them spares the schema inference.
    schema = {"timestamp": pl.String, SERVICE: pl.String}
    frames = []
    for f in files(path):
        # scan_csv streams a plain file; a gzipped one is read whole (Polars cannot scan it).
        frames.append(pl.read_csv(f, schema_overrides=schema).lazy() if f.endswith(".gz") else pl.scan_csv(f, schema_overrides=schema))
    lf = pl.concat(frames, how="vertical_relaxed")
    ts = pl.col("timestamp")
    # The contract: a timestamp without an offset is UTC; one with an offset is that instant.
    instant = pl.coalesce(
        ts.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", time_unit="us", strict=False).dt.convert_time_zone("UTC").dt.replace_time_zone(None),
        ts.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_unit="us", strict=False),
    )
    numbers = [c for c in lf.collect_schema().names() if c not in ("timestamp", SERVICE)]
    return (lf.with_columns(instant.alias("timestamp"), pl.col(numbers).cast(pl.Float64))
            .with_columns(pl.col("replica_count").cast(pl.Int64))
            .unique([SERVICE, "timestamp"], keep="first", maintain_order=True)
            .sort([SERVICE, "timestamp"], maintain_order=True))


def features(lf):
    c = pl.col
    by = SERVICE
    hour = c("timestamp").dt.hour().cast(pl.Float64)
    per = c("replica_count") + 1
    return lf.select(
        "timestamp", SERVICE, "replica_count", *CORE,
        (2 * np.pi * hour / 24).sin().alias("hour_sin"),
        (2 * np.pi * hour / 24).cos().alias("hour_cos"),
        (c("cpu_usage_percent") / (c("cpu_limit") + 1e-6)).alias("cpu_utilization_ratio"),
        (c("ram_usage_percent") / (c("ram_limit") + 1e-6)).alias("ram_utilization_ratio"),
        c("cpu_usage_percent").diff().over(by).fill_null(0).alias("cpu_change_rate"),
        c("ram_usage_percent").diff().over(by).fill_null(0).alias("ram_change_rate"),
        c("request_count_per_second").diff().over(by).fill_null(0).alias("request_change_rate"),
        c("cpu_usage_percent").rolling_std(WINDOW, min_samples=1).over(by).fill_nan(0).fill_null(0).alias("cpu_rolling_std"),
        c("ram_usage_percent").rolling_std(WINDOW, min_samples=1).over(by).fill_nan(0).fill_null(0).alias("ram_rolling_std"),
        c("request_count_per_second").rolling_max(WINDOW, min_samples=1).over(by).alias("request_rolling_max"),
        c("response_time_ms").rolling_quantile(0.95, "linear", WINDOW, min_samples=1).over(by).alias("response_time_rolling_p95"),
        (c("cpu_usage_percent") / per).alias("cpu_per_replica"),
        (c("ram_usage_percent") / per).alias("ram_per_replica"),
        (c("request_count_per_second") / per).alias("requests_per_replica"),
        ((c("cpu_usage_percent") > 70).cast(pl.Float64) + (c("ram_usage_percent") > 75).cast(pl.Float64)
         + (c("response_time_ms") > 500).cast(pl.Float64) + (c("error_rate") > 0.05).cast(pl.Float64)
         + c("node_cpu_pressure_flag") + c("node_memory_pressure_flag")).alias("system_pressure"),
        (c("timestamp").dt.epoch("us") // (SLOT_SECONDS * 1_000_000)).alias("slot"),
    )


def holt_winters(profile):
    """The slot table with each slot's forecast of the next, one service at a time."""
    parts = []
    for part in profile.partition_by(SERVICE, maintain_order=True):
        hw = holt_winters_next(part["slot"].to_numpy(), part["rate"].to_numpy())
        parts.append(part.with_columns(pl.Series("hw", hw).fill_nan(None)))
    return pl.concat(parts) if parts else profile.with_columns(pl.lit(None, pl.Float64).alias("hw"))


def seasonal(rows):
    c = pl.col
    profile = (rows.group_by(SERVICE, "slot").agg(c("request_count_per_second").mean().alias("rate"))
               .sort(SERVICE, "slot"))
    following = profile.select(SERVICE, (c("slot") - 1).alias("slot"), c("rate").alias("next"))
    profile = (profile.join(following, on=[SERVICE, "slot"], how="left", maintain_order="left")
               .with_columns(pl.max_horizontal("rate", "next").alias("peak")).drop("next")
               .collect())
    profile = holt_winters(profile).lazy()

    def lagged(lf, lag, col, name):
        keyed = profile.select(SERVICE, (c("slot") + lag).alias("slot"), c(col).alias(name))
        return lf.join(keyed, on=[SERVICE, "slot"], how="left", maintain_order="left")

    out = rows
    for lag, col, name in [(DAY, "rate", "request_rate_yesterday"), (DAY, "peak", "request_peak_yesterday"),
                           (WEEK, "rate", "request_rate_last_week"), (WEEK, "peak", "request_peak_last_week"),
                           (0, "hw", "request_rate_holt_winters")]:
        out = lagged(out, lag, col, name)
    names = ["request_rate_yesterday", "request_peak_yesterday", "request_rate_last_week", "request_peak_last_week", "request_rate_holt_winters"]
    return out.with_columns(pl.col(n).fill_null(pl.col("request_count_per_second")) for n in names).drop("slot")


def ahead(col, how):
    """`how` over rows i+1 … i+HORIZON of the same service; null without a full horizon."""
    rev = pl.col(col).reverse()
    window = rev.rolling_max(HORIZON) if how == "max" else rev.rolling_quantile(0.95, "linear", HORIZON)
    return window.reverse().shift(-1).over(SERVICE)


def labels(lf, rule, up_cpu=70, up_ram=75, up_rt=500, down_cpu=30, down_ram=35, target_cpu=60, lo=1, hi=10):
    c = pl.col
    cpu, ram, rt, rc = ahead("cpu_usage_percent", "max"), ahead("ram_usage_percent", "max"), ahead("response_time_ms", "p95"), c("replica_count")
    if rule == "hpa":
        target = (rc * cpu / target_cpu).ceil().clip(lo, hi)
    else:
        target = (pl.when((cpu < down_cpu) & (ram < down_ram)).then(pl.max_horizontal(rc - 1, lo))
                  .when((cpu > up_cpu) | (ram > up_ram) | (rt > up_rt)).then(pl.min_horizontal(rc + 1, hi))
                  .otherwise(rc))
    return lf.with_columns(pl.when(cpu.is_null()).then(rc).otherwise(target).cast(pl.Int64).alias("target_replicas"))


def load_pods(lf, target_cpu=60, tolerance=0.1, holdout_fraction=0.2):
    """Requests in pods of each service's fitted capacity (features.py's load_pods)."""
    c = pl.col
    t = c("timestamp").dt.epoch("us") / 1e6
    first, last = t.min().over(SERVICE), t.max().over(SERVICE)
    x, y = c("request_count_per_second") / c("replica_count"), c("cpu_usage_percent")
    aim = target_cpu * (1 + tolerance)
    fit = (lf.filter((c("replica_count") > 0) & (t <= first + (last - first) * (1 - holdout_fraction)))
           .group_by(SERVICE)
           .agg(pl.cov(x, y).alias("sxy"), x.var().alias("sxx"), x.mean().alias("mx"), y.mean().alias("my"), pl.len().alias("n"))
           .with_columns((c("sxy") / c("sxx")).alias("slope"))
           .with_columns(pl.max_horizontal(c("my") - c("slope") * c("mx"), 0.0).alias("base"))
           .select(SERVICE, pl.when((c("n") >= 2) & (c("sxx") > 0) & (c("slope") > 0) & (aim > c("base")))
                   .then((aim - c("base")) / c("slope")).alias("per_pod")))
    lf = lf.join(fit, on=SERVICE, how="left", maintain_order="left")
    per_pod = c("per_pod").fill_null(float("nan"))
    return lf.with_columns(
        (c("request_count_per_second") / per_pod).alias("load_pods"),
        (c("request_count_per_second_last_5_min") / per_pod).alias("load_pods_last_5_min"),
        (c("request_rolling_max") / per_pod).alias("load_pods_rolling_max"),
        (c("request_change_rate") / per_pod).alias("load_pods_change"),
    ).drop("per_pod")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("metrics")
    ap.add_argument("out")
    ap.add_argument("--label-rule", default="seed", choices=["seed", "hpa"])
    a = ap.parse_args()
    rows = features(load(a.metrics)).collect()
    table = load_pods(labels(seasonal(rows.lazy()), a.label_rule))
    table.collect(engine="streaming").write_parquet(a.out)


if __name__ == "__main__":
    main()
