#!/usr/bin/env python3
"""Soak test of the decision path (not part of the test suite).

usage: benches/soak.py [--minutes 30] [--services 200] [--every 30] [--flood-rate 50]

Runs `pipeline serve --prometheus` against a real Prometheus that scrapes an exporter serving
kube-state-metrics-, cAdvisor- and ingress-nginx-style series for --services Deployments (load
on a daily-like wave, one in ten services without CPU or memory limits, one in twenty-five in a
rolling update's surge for a few steps now and then), restarts Prometheus twice (at a third and
two thirds of the run), and floods the server with bad rows the whole time (invalid JSON, rows
from the future, made-up service names, names no Deployment can have, half-sent requests).

Prints one line per step: how many of the cluster's services have a fresh decision (/scale's age
within a step), the decisions the server made (the flood's made-up names included), its fallbacks by reason,
the rows it refused, Prometheus failures, the server's RSS and the p99 latency of /scale and of
one decision; then a summary. Needs `prometheus` on PATH (Debian package) and a release build.
"""

import argparse
import http.server
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("PIPELINE_BIN", os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release", "pipeline"))
MIB = 1048576.0
BASE = 1e6
NS = "soak"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The exporter's view of --services Deployments: counters integrate a smooth load."""

    def __init__(self, services):
        # The bundled week's services first, so a model trained on it decides for them; the rest
        # are services it never saw (the reactive HPA decides, fallback `unknown_service`).
        known = ["authen", "booking", "frontend", "order", "product", "profile", "recommender"]
        self.names = (known + [f"svc-{i:03d}" for i in range(len(known), services)])[:services]
        self.t0 = time.time()
        self.lock = threading.Lock()
        self.counters = {n: [BASE, BASE, BASE, BASE] for n in self.names}  # cpu s, requests, errors, latency sum
        self.last = self.t0

    def load(self, i, t):
        # Each service its own phase and size; a 20-minute wave stands in for a day.
        return (5 + 3 * (i % 7)) * (1.2 + math.sin(2 * math.pi * (t - self.t0) / 1200 + i))

    def exposition(self):
        now = time.time()
        lines = []
        with self.lock:
            dt = now - self.last
            self.last = now
            for i, n in enumerate(self.names):
                rps = self.load(i, now)
                c = self.counters[n]
                c[0] += dt * rps * 0.01  # 10 ms of CPU per request
                c[1] += dt * rps
                c[2] += dt * rps * 0.002
                c[3] += dt * rps * 0.08
        step = int((now - self.t0) // 30)
        for i, n in enumerate(self.names):
            c = self.counters[n]
            surge = i % 25 == 0 and step % 10 == 3
            replicas = 4 + i % 5
            lines.append(f'kube_deployment_labels{{namespace="{NS}",deployment="{n}",label_autoscale="true"}} 1')
            lines.append(f'kube_deployment_status_replicas{{namespace="{NS}",deployment="{n}"}} {replicas + (2 if surge else 0)}')
            limits = i % 10 != 0
            for k in range(replicas):
                pod = f"{n}-5d8f7c-p{k:03d}"
                lab = f'namespace="{NS}",pod="{pod}",container="app"'
                lines.append(f'container_cpu_usage_seconds_total{{{lab},node="node-{k % 3}"}} {c[0] / replicas}')
                lines.append(f"container_memory_working_set_bytes{{{lab},node=\"node-{k % 3}\"}} {200 * MIB}")
                lines.append(f'kube_pod_container_resource_requests{{{lab},resource="cpu",unit="core"}} 0.25')
                lines.append(f'kube_pod_container_resource_requests{{{lab},resource="memory",unit="byte"}} {256 * MIB}')
                if limits:
                    lines.append(f'kube_pod_container_resource_limits{{{lab},resource="cpu",unit="core"}} 0.5')
                    lines.append(f'kube_pod_container_resource_limits{{{lab},resource="memory",unit="byte"}} {512 * MIB}')
                lines.append(f'kube_pod_info{{namespace="{NS}",pod="{pod}",node="node-{k % 3}"}} 1')
            ing = f'exported_namespace="{NS}",ingress="{n}",service="{n}"'
            lines.append(f'nginx_ingress_controller_requests{{{ing},status="200"}} {c[1]}')
            lines.append(f'nginx_ingress_controller_requests{{{ing},status="500"}} {c[2]}')
            for le, share in (("0.05", 0.5), ("0.1", 0.9), ("+Inf", 1.0)):
                lines.append(f'nginx_ingress_controller_request_duration_seconds_bucket{{{ing},le="{le}"}} {c[1] * share}')
            lines.append(f"nginx_ingress_controller_request_duration_seconds_sum{{{ing}}} {c[3]}")
        for k in range(3):
            lines.append(f'container_cpu_usage_seconds_total{{id="/",node="node-{k}"}} {BASE + (now - self.t0)}')
            lines.append(f'kube_node_status_allocatable{{node="node-{k}",resource="cpu",unit="core"}} 16')
        return "\n".join(lines) + "\n"


def serve_exporter(cluster):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = cluster.exposition().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


class Prometheus:
    def __init__(self, work, exporter_port):
        self.work, self.port = work, free_port()
        with open(os.path.join(work, "prometheus.yml"), "w") as f:
            f.write(f"global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: cluster\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.work}/prometheus.yml", f"--storage.tsdb.path={self.work}/data", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.work, "prometheus.log"), "a"))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        raise SystemExit("prometheus did not start; see " + self.work + "/prometheus.log")

    def restart(self):
        self.proc.kill()
        self.proc.wait()
        time.sleep(3)
        self.start()


def flood(base, stop, counts, rate):
    """Bad rows and bad clients, `rate` a second, until `stop` is set."""
    good = {"timestamp": "", "service_name": "svc-000"}
    for n in ["cpu_usage_percent", "cpu_usage_percent_last_5_min", "cpu_usage_percent_slope", "ram_usage_percent",
              "ram_usage_percent_last_5_min", "ram_usage_percent_slope", "request_count_per_second",
              "request_count_per_second_last_5_min", "response_time_ms", "replica_count", "is_holiday", "is_weekend",
              "cpu_request", "cpu_limit", "ram_request", "ram_limit", "queue_length", "error_rate", "pod_restart_count",
              "node_cpu_pressure_flag", "node_memory_pressure_flag"]:
        good[n] = 1
    host, port = base.split("//")[1].split(":")
    i = 0
    while not stop.is_set():
        i += 1
        kind = i % 5
        try:
            if kind == 4:
                # Half a request, left hanging (the server's header timeout closes it).
                s = socket.create_connection((host, int(port)), timeout=2)
                s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
                threading.Timer(15, s.close).start()
                counts["half"] += 1
            else:
                row = dict(good)
                row["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                if kind == 0:
                    body = b"{not json"
                elif kind == 1:
                    row["timestamp"] = "9999-12-31T23:59:59"
                    body = json.dumps(row).encode()
                elif kind == 2:
                    row["service_name"] = f"made-up-{random.getrandbits(40):x}"
                    body = json.dumps(row).encode()
                else:
                    row["service_name"] = "Not_A_Deployment_" + "x" * 300
                    body = json.dumps(row).encode()
                req = urllib.request.Request(base + "/predict", data=body, headers={"Content-Type": "application/json"})
                try:
                    urllib.request.urlopen(req, timeout=5).read()
                except urllib.error.HTTPError as e:
                    e.read()
                counts["sent"] += 1
        except Exception:
            counts["errors"] += 1
        time.sleep(1.0 / rate)


def metrics(base):
    text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    out = {"decisions": 0.0, "fallbacks": {}, "buckets": []}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        v = float(value)
        # Every decision is timed, so the histogram's count is the decisions made; the per-service
        # counters start again for a service evicted at --max-services.
        if name == "autoscaler_decision_latency_seconds_count":
            out["decisions"] = v
        elif name.startswith("autoscaler_fallbacks_total{"):
            out["fallbacks"][name.split('reason="')[1].split('"')[0]] = v
        elif name == "autoscaler_rejected_rows_total":
            out["rejected"] = v
        elif name == "autoscaler_prometheus_failures_total":
            out["pull_failures"] = v
        elif name == "autoscaler_services":
            out["services"] = v
        elif name.startswith("autoscaler_decision_latency_seconds_bucket"):
            le = name.split('le="')[1].split('"')[0]
            out["buckets"].append((float("inf") if le == "+Inf" else float(le), v))
    return out


def p99_from_buckets(now, before):
    """The p99 of the decisions made between two scrapes of the histogram (its bucket bound)."""
    d = [(le, n - dict(before).get(le, 0)) for le, n in now]
    total = d[-1][1] if d else 0
    if total == 0:
        return float("nan")
    for le, n in d:
        if n >= 0.99 * total:
            return le
    return float("inf")


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--every", type=int, default=30)
    ap.add_argument("--flood-rate", type=float, default=50)
    ap.add_argument("--registry", default=os.path.join(ROOT, "artifacts", "models"), help="serve the model promoted here (default: this project's)")
    a = ap.parse_args()
    if not shutil.which("prometheus"):
        raise SystemExit("needs `prometheus` on PATH (Debian package prometheus)")
    work = tempfile.mkdtemp(prefix="soak-")
    cluster = Cluster(a.services)
    prom = Prometheus(work, serve_exporter(cluster))
    with open(os.path.join(ROOT, "pipelines", "collect.yaml")) as f:
        config = f.read().replace("namespace: default", f"namespace: {NS}")
    with open(os.path.join(work, "collect.yaml"), "w") as f:
        f.write(config)
    time.sleep(15)  # a few scrapes, so rates have a window
    server = subprocess.Popen([BIN, "serve", "--addr", "127.0.0.1:0", "--prometheus", f"http://127.0.0.1:{prom.port}",
                               "--collect-config", os.path.join(work, "collect.yaml"), "--every", f"{a.every}s",
                               "--registry", a.registry, "--max-services", "1000", "--header-timeout", "10s"],
                              stdout=subprocess.PIPE, stderr=open(os.path.join(work, "server.log"), "w"), text=True)
    line = server.stdout.readline()
    if not line.startswith("listening on "):
        raise SystemExit(f"pipeline serve did not start: {line!r}; see {work}/server.log")
    base = line.split("listening on ")[1].strip()
    stop = threading.Event()
    counts = {"sent": 0, "half": 0, "errors": 0}
    threading.Thread(target=flood, args=(base, stop, counts, a.flood_rate), daemon=True).start()

    steps = int(a.minutes * 60 // a.every)
    restarts = {steps // 3, 2 * steps // 3}
    print(f"{a.services} services, {a.minutes:g} min, a step every {a.every} s, Prometheus restarted at steps {sorted(restarts)}; work dir {work}")
    print(f"{'step':>4} {'min':>5} {'fresh':>5} {'decided':>8} {'fallbacks (this step)':<42} {'refused':>8} {'prom fail':>9} {'services':>8} {'RSS MiB':>8} {'p99 /scale ms':>13} {'p99 decide ms':>13}")
    before = metrics(base)
    rows = []
    t_start = time.time()
    for step in range(1, steps + 1):
        if step in restarts:
            prom.restart()
        scale_ms = []
        deadline = t_start + step * a.every
        while time.time() < deadline - 0.5:
            svc = cluster.names[random.randrange(len(cluster.names))]
            t0 = time.perf_counter()
            try:
                urllib.request.urlopen(f"{base}/scale/{svc}", timeout=5).read()
            except urllib.error.HTTPError as e:
                e.read()
            except Exception:
                pass
            scale_ms.append(1000 * (time.perf_counter() - t0))
            time.sleep(0.05)
        time.sleep(max(0.0, deadline - time.time()))
        # The services of the cluster whose decision is fresh (made from this step's or the last
        # step's rows): the flood's made-up names are decided too, and counted apart.
        fresh = 0
        for svc in cluster.names:
            try:
                body = json.loads(urllib.request.urlopen(f"{base}/scale/{svc}", timeout=5).read())
                fresh += body.get("ageSeconds", 1e9) <= a.every + 1
            except Exception:
                pass
        now = metrics(base)
        fb = {k: int(v - before["fallbacks"].get(k, 0)) for k, v in now["fallbacks"].items() if v - before["fallbacks"].get(k, 0) > 0}
        scale_ms.sort()
        r = {
            "step": step, "minute": (time.time() - t_start) / 60, "decided": int(now["decisions"] - before["decisions"]), "fresh": fresh,
            "fallbacks": fb, "refused": int(now.get("rejected", 0) - before.get("rejected", 0)),
            "pull_failures": int(now.get("pull_failures", 0) - before.get("pull_failures", 0)), "services": int(now.get("services", 0)),
            "rss": rss_mib(server.pid), "p99_scale": scale_ms[int(0.99 * (len(scale_ms) - 1))] if scale_ms else float("nan"),
            "p99_decide": 1000 * p99_from_buckets(now["buckets"], before["buckets"]),
        }
        rows.append(r)
        fbs = ", ".join(f"{k} {v}" for k, v in sorted(fb.items())) or "-"
        print(f"{step:>4} {r['minute']:>5.1f} {r['fresh']:>5} {r['decided']:>8} {fbs:<42} {r['refused']:>8} {r['pull_failures']:>9} {r['services']:>8} {r['rss']:>8.1f} {r['p99_scale']:>13.2f} {r['p99_decide']:>13.3f}", flush=True)
        before = now
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}); see {work}/server.log")
    stop.set()
    server.terminate()
    server.wait(timeout=60)
    prom.proc.kill()
    rss = [r["rss"] for r in rows]
    settled = rss[len(rss) // 6:] or rss
    fresh = [r["fresh"] for r in rows]
    decided = [r["decided"] for r in rows]
    print()
    print(f"services with a fresh decision per step: min {min(fresh)}, median {sorted(fresh)[len(fresh) // 2]}, max {max(fresh)} of {a.services}")
    print(f"steps where some service's decision was stale: {sum(f < a.services for f in fresh)} (Prometheus restarts: {len(restarts)})")
    print(f"decisions per step, the flood's made-up names included: min {min(decided)}, median {sorted(decided)[len(decided) // 2]}, max {max(decided)}")
    total_fb = {}
    for r in rows:
        for k, v in r["fallbacks"].items():
            total_fb[k] = total_fb.get(k, 0) + v
    print(f"fallbacks by reason: {total_fb or 'none'}")
    print(f"bad rows and clients sent: {counts['sent']} rows, {counts['half']} half-sent requests; client errors {counts['errors']}")
    print(f"RSS: start {rss[0]:.1f} MiB, after the first sixth {settled[0]:.1f}, end {rss[-1]:.1f}, max {max(rss):.1f}; "
          f"growth after the first sixth {settled[-1] - settled[0]:+.1f} MiB")
    print(f"p99 of /scale: worst step {max(r['p99_scale'] for r in rows):.2f} ms; p99 of a decision: worst step {max(r['p99_decide'] for r in rows):.3f} ms")
    print(f"server exit code on SIGTERM: {server.returncode}")


if __name__ == "__main__":
    sys.exit(main())
