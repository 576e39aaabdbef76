#!/usr/bin/env python3
"""Benchmark: each promoted policy in closed loop on a simulated cluster, against the internal
HPA's frontier, on load it was not trained on.

usage: benches/closed_loop.py [--lstm-epochs 10] [--rf-trees 50] [--startup 60] [--load 1] [--traces ../shared/traces]
                              [--models random_forest,lstm_cnn] [--work DIR] [--worlds all|NAME,...] [--train-days 14] [--risk none|auto|LEVEL]
                              [--warm-up-days 0] [--pipeline FILE] [--rename] [--first-hour] [--drift] [--smoke]

Trains the default pipeline (pipelines/train.yaml) on the bundled week in a temporary copy of
the project, publishes both models (whether or not they beat the HPA: this measures them), serves
each with `pipeline serve`, and for each trace (World Cup 1998 in June, NAB elb_request_count,
NAB nyc_taxi) simulates one unseen day with `pipeline simulate --scaler` (after --warm-up-days
of the same trace that each server sees but nothing judges, so a server has its services'
yesterday for a model reading the seasonal features): the services follow
the server's decisions (new pods ready after --startup seconds, scale-down stabilised over
5 minutes). Prints one table: per trace and policy, pod-hours, under-provisioned minutes, slow
minutes (P95 over 500 ms) and the margin below the internal HPA's frontier (positive: beats it),
also as a share of the minutes a scaler could avoid (less those that even max replicas could
not serve), and the cost axis: the pod-hours saved against the HPA at the same under-provisioned
minutes. `--load F` multiplies every service's load (`pipeline simulate --load`): above 1.4
the traces' busy hours outgrow the services' maxReplicas.
Run `cargo build --release` first; derived traces stay in the temporary folder, the licence
notes of the originals are in ../shared/traces. `--work DIR` keeps the project copy there and
reuses it, so a second run after changing one stage (pipelines/ and sql/ are copied again)
retrains only what changed.

`--worlds all` (or a list of names from `pipeline simulate --list-worlds`): for each cluster
world, simulates --train-days days of the World Cup trace in that world (the internal HPA
scaling), trains on them, telling the pipeline the world's pod start-up once
(`--set pod_startup_seconds=S`), serves, and judges each trace's unseen day in the same world.
Prints one table, world × trace × policy, both margins. The worlds were fixed before any result
(docs/worlds.md); add a world rather than change one.

`--rename`: the judged days' services are the seven under new names (`new-frontend=frontend`,
…: the same services, `pipeline simulate --services NEW=KNOWN`), so no served model was trained
on any name and the forest's version serves them with its pooled forest once the server has
fitted each one's capacity (`serve --capacity-min-minutes`, the reactive HPA until then).
`--first-hour`: the servers see the services' rows only from noon of the judged day (their own
HPA scales them before) and only 12:00-13:00 is judged (`simulate --server-from 12:00 --judge
12:00-13:00`): with `--rename`, the first hour of services no model knows.

`--drift`: trained on the bundled week as usual, each trace's day is judged in the world
`default` (nothing drifts: what the monitor costs) and in `heavier-release` (at noon a release
doubles the CPU per request, which no model saw), and each model is served twice: as is (the
server's forecast-error monitor on, as by default), and with it off (`serve
--drift-window-seconds 0`). The `first fb` column
says when the first fallback came (the monitor letting go of the forecast). With `--worlds`,
each world's models are served with and without the monitor in that world.

`--smoke`: the World Cup day alone, from the copy bundled in data/traces, tiny models (4 trees,
one LSTM-CNN epoch, 2,000 rows and windows for the compared models): CI runs it so a broken
bench fails; its figures mean little.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

from unseen_traces import BIN, DEFAULT_TRACES, ROOT, TRACES, bundled_traces, cut, pipeline

MODELS = ["random_forest", "lstm_cnn"]
# The simulator's seven services (src/simulate/service.rs), renamed by --rename.
SEVEN = ["frontend", "authen", "product", "order", "booking", "profile", "recommender"]


# The release of the world `heavier-release`, minutes into the judged day.
RELEASE_MINUTE = 12 * 60
NO_MONITOR = ["--drift-window-seconds", "0"]


def serve(work, model, extra=()):
    """`pipeline serve` for one promoted model on a free port; (process, base URL)."""
    proc = subprocess.Popen([BIN, "serve", "--addr", "127.0.0.1:0", "--model", model, *extra], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"pipeline serve --model {model}: unexpected first line {line!r}")
    return proc, line.split(" ", 2)[2]


def worlds():
    """{name: pod start-up seconds} of the named worlds, from `pipeline simulate --list-worlds`."""
    out = subprocess.run([BIN, "simulate", "--list-worlds"], check=True, capture_output=True, text=True).stdout
    return {l.split()[0]: float(l.split()[1].rstrip("s")) for l in out.splitlines()[1:]}


def train(work, sets, world=None, startup=None, days=14):
    """Train and publish in `work`: on the bundled week, or on `days` simulated days of `world`."""
    if world is not None:
        metrics = os.path.join(work, "data", "metrics")
        shutil.rmtree(metrics, ignore_errors=True)
        pipeline(["simulate", "--days", str(days), "--seed", "42", "--world", world, "--out", metrics], work)
        sets = [*sets, "--set", f"pod_startup_seconds={startup:g}"]
    pipeline(["run", "--until", "publish", "--no-progress", *sets], work)


def judge(work, a, models, world, startup, rows, label):
    """Each trace's unseen day in `world`, the promoted models served; appends to `rows`."""
    servers = []
    try:
        for name, rel, skip in (TRACES[:1] if a.smoke else TRACES):
            trace = os.path.join(work, f"trace-{name}.csv")
            if not os.path.exists(trace):
                cut(os.path.join(a.traces, rel), skip, 3, trace)
            # Fresh servers per trace: a server keeps each service's recent rows, and every
            # trace's day starts at the same simulated time.
            variants = [(f"served {m}", m, ()) for m in models]
            if a.drift:
                variants += [(f"served {m}, monitor off", m, NO_MONITOR) for m in models]
            servers = [(label, *serve(work, m, extra)) for label, m, extra in variants]
            summary = os.path.join(work, "summary.json")
            args = ["simulate", "--days", "1", "--warm-up-days", str(a.warm_up_days), "--seed", "7", "--trace", trace, "--load", str(a.load), "--out", os.path.join(work, "closed"), "--summary", summary, "--scaler", "hpa"]
            args += ["--world", world] if world else ["--pod-startup-seconds", str(startup)]
            if a.rename:
                args += ["--services", ",".join(f"new-{s}={s}" for s in SEVEN)]
            if a.first_hour:
                args += ["--server-from", "12:00", "--judge", "12:00-13:00"]
            for _, _, url in servers:
                args += ["--scaler", url]
            # The forecast that knew the future: the limit of any forecast in this world.
            args += ["--scaler", "oracle"]
            pipeline(args, work, ok=(0, 1))
            for _, proc, _ in servers:
                proc.kill()
            servers = []
            s = json.load(open(summary))
            labels = ["hpa (internal, 60 %)"] + [v[0] for v in variants] + ["oracle (knew the future)"]
            for policy, r in zip(labels, s["runs"]):
                t, m, av, sv = r["total"], r.get("margin"), r.get("avoidable_margin"), r.get("saving")
                rows.append((label, name, policy, t["pod_hours"], t["under_provisioned_minutes"], t["capacity_bound_minutes"], t["slow_minutes"], t["fallbacks"], m and m["minutes"], m and m["percent"], av and av["percent"], sv, t.get("first_fallback_minute")))
            shutil.rmtree(os.path.join(work, "closed"), ignore_errors=True)
    finally:
        for _, proc, _ in servers:
            proc.kill()


def policies_of(work, models):
    out = {}
    for m in models:
        shown = pipeline(["models", "show", m], work).stdout
        out[m] = next((l.split(":", 1)[1].strip() for l in shown.splitlines() if l.startswith("policy:")), "?")
        # The risk family on the hold-out: how many members lie below the frontier on each axis.
        holdout = next((l.split(":", 1)[1].strip() for l in shown.splitlines() if l.startswith("hold-out:")), "{}")
        family = json.loads(holdout).get("risk_family") or []
        if family and "margin_minutes" in family[0]:
            below = sum(1 for f in family if (f.get("margin_minutes") or 0) > 0)
            cheaper = sum(1 for f in family if (f.get("saving_pod_hours") or 0) > 0)
            calib = ", ".join(f"{100 * f['level']:.0f}%→{100 * f['exceedance']:.1f}%" for f in family)
            out[m] += f"; risk family: {below} of {len(family)} below the frontier at equal cost, {cheaper} cheaper at equal health; observed exceedance {calib}"
    return out


def meets(m_percent, saving):
    """The issue's target for one cell: ≥ 40 % fewer minutes at equal cost, or ≥ 10 % fewer pod-hours at equal health."""
    return (m_percent is not None and m_percent >= 40.0) or (saving is not None and saving.get("percent") is not None and saving["percent"] >= 10.0)


HEADER = f"{'world':<14} {'trace':<22} {'policy':<32} {'pod-hours':>9} {'vs hpa60':>8} {'under-prov min':>14} {'beyond max':>10} {'slow min':>9} {'fallbacks':>9} {'margin min':>10} {'margin %':>8} {'% avoidable':>11} {'saved pod-h':>11} {'saved %':>7} {'target':>6} {'first fb':>8}"


def print_table(rows):
    print(HEADER)
    hpa60 = {(r[0], r[1]): r[3] for r in rows if r[2].startswith("hpa")}
    for world, name, policy, ph, um, cap, slow, fb, mm, mp, ap, sv, ff in rows:
        versus = f"{100.0 * (1.0 - ph / hpa60[(world, name)]):>7.1f}%" if hpa60.get((world, name)) else f"{'-':>8}"
        margin = f"{mm:>10.1f} {mp:>7.0f}% {ap:>10.0f}%" if mm is not None else f"{'-':>10} {'-':>8} {'-':>11}"
        if sv is None:
            saved = f"{'-':>11} {'-':>7}"
        elif sv.get("pod_hours") is None:
            saved = f"{'never':>11} {'-':>7}"
        else:
            saved = f"{sv['pod_hours']:>11.1f} {sv['percent']:>6.1f}%"
        target = "" if not policy.startswith("served") else ("met" if meets(mp, sv) else "no")
        first = "" if ff is None else f"{int(ff // 60):02}:{int(ff % 60):02}"
        print(f"{world or 'bundled':<14} {name:<22} {policy:<32} {ph:>9.1f} {versus} {um:>14.1f} {cap:>10.1f} {slow:>9.1f} {fb:>9} {margin} {saved} {target:>6} {first:>8}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lstm-epochs", type=int, default=10)
    ap.add_argument("--rf-trees", type=int, default=50)
    ap.add_argument("--startup", type=int, default=60)
    ap.add_argument("--load", type=float, default=1.0, help="every service's load times this in the unseen days")
    ap.add_argument("--traces", default=DEFAULT_TRACES)
    ap.add_argument("--models", default=",".join(MODELS), help="the served models, comma-separated")
    ap.add_argument("--work", help="keep the trained project here and reuse it (default: a temporary folder)")
    ap.add_argument("--worlds", help="`all` or NAME,...: train and judge in each cluster world (pipeline simulate --list-worlds)")
    ap.add_argument("--train-days", type=int, default=14, help="simulated days each world trains on (with --worlds)")
    ap.add_argument("--warm-up-days", type=int, default=0, help="days of each trace every server sees before the judged one (its services' yesterday, for a model reading the seasonal features)")
    ap.add_argument("--pipeline", help="train with this pipeline file instead of pipelines/train.yaml (e.g. a variant without some features)")
    ap.add_argument("--rename", action="store_true", help="judge the seven services under names no model was trained on")
    ap.add_argument("--first-hour", action="store_true", help="the servers see the services from noon on; only 12:00-13:00 is judged")
    ap.add_argument("--drift", action="store_true", help="judge in the world heavier-release, each model served with and without the forecast-error monitor")
    ap.add_argument("--risk", default="none", help="the pipeline's `risk`: none, auto or a level (which member of the risk family is served)")
    ap.add_argument("--smoke", action="store_true", help="the bundled World Cup day alone, tiny models: that the bench runs")
    a = ap.parse_args()
    smoke_traces = None
    if a.smoke:
        a.rf_trees, a.lstm_epochs = 4, 1
        a.traces = smoke_traces = bundled_traces()
    models = a.models.split(",")
    sets = ["--set", f"lstm_epochs={a.lstm_epochs}", "--set", f"rf_trees={a.rf_trees}", "--set", "cv_folds=0", "--set", "device=cpu", "--set", "require_beating_hpa=false", "--set", f"risk={a.risk}"]
    if a.smoke:
        sets += ["--set", "compare_rows=2000", "--set", "lstm_windows=2000"]
    work = a.work or tempfile.mkdtemp(prefix="bench-closed-loop-")
    rows = []
    policies = {}
    known = worlds()
    chosen = None if not a.worlds else (list(known) if a.worlds == "all" else a.worlds.split(","))
    for w in chosen or []:
        if w not in known:
            raise SystemExit(f"--worlds: no world `{w}` (there are: {', '.join(known)})")
    def project(at):
        for d in ("pipelines", "sql", "data"):
            shutil.copytree(os.path.join(ROOT, d), os.path.join(at, d), dirs_exist_ok=True)
        if a.pipeline:
            shutil.copyfile(a.pipeline, os.path.join(at, "pipelines", "train.yaml"))
        return at

    try:
        t0 = time.time()
        if chosen is None:
            project(work)
            train(work, sets)
            policies["bundled week"] = policies_of(work, models)
            if a.drift:
                # The monitor's cost where nothing drifts, then what it saves where a release does.
                for w in ("default", "heavier-release"):
                    judge(work, a, models, w, a.startup, rows, w)
            else:
                judge(work, a, models, None, a.startup, rows, "")
        else:
            for w in chosen:
                # A project per world: its own data, cache and registry (publish compares a new
                # version with the one serving, which must be this world's).
                t = time.time()
                at = project(os.path.join(work, w))
                train(at, sets, w, known[w], a.train_days)
                policies[w] = policies_of(at, models)
                mine = []
                judge(at, a, models, w, known[w], mine, w)
                rows += mine
                # As each world is judged, so a long sweep shows what it found so far.
                print(f"{w}: trained and judged in {time.time() - t:.0f} s; served: {policies[w]}", flush=True)
                print_table(mine)
        trained = time.time() - t0
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
        if smoke_traces:
            shutil.rmtree(smoke_traces, ignore_errors=True)
    if chosen is None:
        how = f"in {trained:.0f} s" if trained >= 1 else f"earlier (reused from {work})"
        print(f"trained and judged on the bundled week {how} ({a.rf_trees} trees, {a.lstm_epochs} LSTM-CNN epochs at most); one unseen day per trace at {a.load}x load after {a.warm_up_days} warm-up day(s), pods ready {a.startup} s after they are asked for{'; services renamed' if a.rename else ''}{'; judged 12:00-13:00, the servers seeing the services from 12:00' if a.first_hour else ''}")
    else:
        print(f"{len(chosen)} worlds, each trained on {a.train_days} simulated days of World Cup 1998 ({a.rf_trees} trees, {a.lstm_epochs} LSTM-CNN epochs at most) and judged on one unseen day per trace at {a.load}x load after {a.warm_up_days} warm-up day(s), in {trained:.0f} s")
    for w, ps in policies.items():
        for m, policy in ps.items():
            print(f"{w}: served {m}: {policy}")
    print_table(rows)
    served = [r for r in rows if r[2].startswith("served")]
    if a.drift:
        for m in models:
            for r in (r for r in served if r[2] == f"served {m}"):
                if r[0] != "heavier-release":
                    continue
                plain = next(p for p in served if p[:2] == r[:2] and p[2] == f"served {m}, monitor off")
                after = "never fell back" if r[12] is None else f"first fell back {r[12] - RELEASE_MINUTE:.1f} min after the release"
                print(f"{r[1]}: served {m} with the monitor: {after}; {r[4]:.1f} under-provisioned minutes and {r[3]:.1f} pod-h against {plain[4]:.1f} and {plain[3]:.1f} without")
    for m in models:
        cells = [r for r in served if r[2] in (f"served {m}", f"served {m}, monitor off")]
        met = sum(1 for r in cells if meets(r[9], r[11]))
        beats = sum(1 for r in cells if (r[8] or 0) > 0 or ((r[11] or {}).get("percent") or 0) > 0)
        print(f"served {m}: the target (≥ 40 % fewer minutes at equal cost or ≥ 10 % fewer pod-hours at equal health) met in {met} of {len(cells)} world × trace cells; below the HPA frontier on either axis in {beats}")
    print("beyond max: minutes even all max replicas were under-provisioned (every policy's, out of reach);")
    print("% avoidable: the margin as a share of the HPA's minutes less those")
    print("vs hpa60: pod-hours saved against the internal HPA at 60 % on the same day (the oracle's: the limit of any forecast there)")
    print("saved pod-h: the HPA's pod-hours at the policy's under-provisioned minutes less the policy's (the cost axis;")
    print("  never: no HPA target gets that healthy)")


if __name__ == "__main__":
    main()
