#!/usr/bin/env python3
"""Compare the pipeline's labelled table with the pandas reference's, column by column.

usage: compare.py OURS.parquet REFERENCE.parquet [--tolerance 1e-9] [--one-hot-in-model PREFIX]
With --one-hot-in-model, the reference's one-hot columns (PREFIX*) are left out: the pipeline
builds them in the models' input layer, not in its tables (src/models/table.rs tests them).
Exit 0 when every column matches (features within the tolerance, labels exactly), else 1
with one line per mismatching column.
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("reference")
    ap.add_argument("--tolerance", type=float, default=1e-9)
    ap.add_argument("--one-hot-in-model", metavar="PREFIX")
    a = ap.parse_args()
    ours = pd.read_parquet(a.ours)
    ref = pd.read_parquet(a.reference)
    if a.one_hot_in_model:
        one_hot = [c for c in ref.columns if c.startswith(a.one_hot_in_model) and c != "service_name"]
        if not one_hot:
            print(f"the reference has no {a.one_hot_in_model}* columns to leave out")
            return 1
        ref = ref.drop(columns=one_hot)
    problems = []
    if list(ours.columns) != list(ref.columns):
        problems.append(f"columns differ:\n  ours: {list(ours.columns)}\n  ref:  {list(ref.columns)}")
    if len(ours) != len(ref):
        problems.append(f"row counts differ: ours {len(ours)}, reference {len(ref)}")
    if problems:
        print("\n".join(problems))
        return 1
    for col in ref.columns:
        o, r = ours[col], ref[col]
        if col == "timestamp":
            bad = (o.astype("datetime64[us]").to_numpy() != r.astype("datetime64[us]").to_numpy()).sum()
        elif col in ("service_name", "replica_count", "target_replicas"):
            bad = (o.to_numpy() != r.to_numpy()).sum()
        else:
            of, rf = o.to_numpy(dtype=float), r.to_numpy(dtype=float)
            # NaN where the other has a number is a mismatch; NaN in both agrees.
            diff = np.where(np.isnan(of) | np.isnan(rf), np.where(np.isnan(of) & np.isnan(rf), 0.0, np.inf), np.abs(of - rf))
            bad = (diff > a.tolerance).sum()
            if bad:
                i = int(np.argmax(diff))
                problems.append(f"{col}: {bad} rows differ by more than {a.tolerance}; worst row {i}: ours {o.iloc[i]!r}, reference {r.iloc[i]!r}")
                continue
        if bad:
            i = int(np.flatnonzero(o.to_numpy() != r.to_numpy())[0])
            problems.append(f"{col}: {bad} rows differ; first row {i}: ours {o.iloc[i]!r}, reference {r.iloc[i]!r}")
    if problems:
        print("\n".join(problems))
        return 1
    print(f"{len(ref)} rows × {len(ref.columns)} columns agree (features within {a.tolerance}, labels exactly)")
    return 0


if __name__ == "__main__":
    rc = main()
    # Skip interpreter teardown: pyarrow's thread pools occasionally abort there
    # ("terminate called without an active exception"), turning a pass into a failure.
    sys.stdout.flush()
    os._exit(rc)
