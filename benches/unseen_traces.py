"""What the autoscaling benchmarks share: the binary, the traces the bundled week is not made
of, cutting days from them, and running the pipeline. The licence notes of the traces are next
to them in ../shared/traces; derived cuts stay in the benchmarks' temporary folders."""
import gzip
import os
import shutil
import subprocess
import tempfile

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "pipeline-target"))
BIN = os.environ.get("PIPELINE_BIN", os.path.join(TARGET, "release", "pipeline"))
DEFAULT_TRACES = os.path.join(ROOT, "..", "shared", "traces")

# (name, file under the traces folder, days to skip from the trace's start)
TRACES = [
    ("wc98 June", "worldcup98/wc98_requests_per_minute.csv", 40),
    ("nab elb_request_count", "nab/realAWSCloudwatch/elb_request_count_8c0756.csv", 0),
    ("nab nyc_taxi", "nab/realKnownCause/nyc_taxi.csv", 7),
]


def bundled_traces():
    """A temporary traces folder holding the World Cup trace bundled in data/traces (the first of
    TRACES), for a bench's `--smoke` on a machine without ../shared/traces; the caller removes it."""
    folder = tempfile.mkdtemp(prefix="bench-traces-")
    os.makedirs(os.path.join(folder, "worldcup98"))
    src = os.path.join(ROOT, "data", "traces", "worldcup98", "wc98_requests_per_minute.csv.gz")
    with gzip.open(src) as f, open(os.path.join(folder, TRACES[0][1]), "wb") as out:
        shutil.copyfileobj(f, out)
    return folder


def cut(src, skip_days, days, dst):
    """The trace's days [skip, skip + days) as `time,value`, from the first midnight; returns
    the first day as YYYY-MM-DD."""
    df = pd.read_csv(src)
    df.columns = ["time", "value"]
    df["time"] = pd.to_datetime(df["time"])
    start = df["time"].iloc[0].normalize() + pd.Timedelta(days=skip_days + 1)
    part = df[(df["time"] >= start) & (df["time"] < start + pd.Timedelta(days=days))]
    if len(part) < 10:
        raise SystemExit(f"{src}: fewer than 10 points in days {skip_days + 1}..{skip_days + days}")
    part.to_csv(dst, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return start.strftime("%Y-%m-%d")


def pipeline(args, cwd, ok=(0,)):
    """Runs `pipeline ARGS` in `cwd`; stops the benchmark with its stderr unless it exits in `ok`."""
    done = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode not in ok:
        raise SystemExit(f"pipeline {' '.join(args)} failed ({done.returncode}) in {cwd}:\n{done.stderr[-4000:]}")
    return done
