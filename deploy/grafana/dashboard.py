#!/usr/bin/env python3
"""The autoscaler's Grafana dashboard, built with Grafana's own SDK (grafana-foundation-sdk).

usage: deploy/grafana/dashboard.py [OUT.json]   (default: print it)

deploy/grafana/autoscaler.json is this script's output, committed so a team can import it
(Dashboards → New → Import) or load it with a provisioning ConfigMap without Python;
tests/cli/deploy.rs checks that it is current and runs every panel's query against a real
Prometheus holding the series the server and the collector export.

Per service ($service): actual, forecast, reactive and decided replicas; which term decided;
fallbacks by reason; the forecast's error against the demand that came; CPU against the target;
request rate; P95 latency; the age of its last row. For the autoscaler itself: decision latency,
Prometheus read failures and rejected rows, and the collector's steps, skipped steps and rows.
"""
import json
import sys

from grafana_foundation_sdk.builders import dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SERVICE = 'service=~"$service"'


def query(expr, legend, ref):
    return prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)


IDS = iter(range(1, 1000))


def row(title):
    return dashboard.Row(title).id(next(IDS))


def panel(title, description, unit, queries, width=12):
    p = timeseries.Panel().id(next(IDS)).title(title).description(description).unit(unit).datasource(DATASOURCE).height(8).span(width)
    for i, (expr, legend) in enumerate(queries):
        p = p.with_target(query(expr, legend, chr(ord("A") + i)))
    return p


def build():
    d = (
        dashboard.Dashboard("Autoscaler")
        .uid("autoscale-pipeline")
        .description("Decisions of `pipeline serve` per service, and the health of the server and the collector (deploy/grafana/dashboard.py).")
        .tags(["autoscaling", "kubernetes"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("service")
            .label("Service")
            .datasource(DATASOURCE)
            .query("label_values(autoscaler_current_replicas, service)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
        )
    )
    d = d.with_row(row("Decisions"))
    d = d.with_panel(panel(
        "Replicas: actual, forecast, reactive, decided",
        "What the service runs (its last row), the model's forecast, the reactive HPA's recommendation and the decision served to KEDA.",
        "none",
        [
            (f"autoscaler_current_replicas{{{SERVICE}}}", "{{service}} actual"),
            (f"autoscaler_forecast_replicas{{{SERVICE}}}", "{{service}} forecast"),
            (f"autoscaler_reactive_replicas{{{SERVICE}}}", "{{service}} reactive HPA"),
            (f"autoscaler_predicted_replicas{{{SERVICE}}}", "{{service}} decided"),
        ],
        width=24,
    ))
    d = d.with_panel(panel(
        "Who decided",
        "Decisions per second by the term that set the replicas: the forecast, the reactive HPA (also every fallback), or both alike.",
        "ops",
        [(f"sum by (service, term) (rate(autoscaler_decisions_by_term_total{{{SERVICE}}}[$__rate_interval]))", "{{service}} {{term}}")],
    ))
    d = d.with_panel(panel(
        "Fallbacks by reason",
        "Decisions the reactive HPA made because the model could not: warming_up (a new service's first --capacity-min-minutes), unknown_service, forecast_drift, model_error, no_model.",
        "ops",
        [(f"sum by (service, reason) (rate(autoscaler_fallbacks_total{{{SERVICE}}}[$__rate_interval]))", "{{service}} {{reason}}")],
    ))
    d = d.with_panel(panel(
        "Forecast error",
        "Each forecast against the demand that came once its window passed (the last half hour): mean error in pods, and the share that fell short by a pod or more.",
        "none",
        [
            (f"autoscaler_forecast_error_pods{{{SERVICE}}}", "{{service}} mean error (pods)"),
            (f"autoscaler_forecast_short_ratio{{{SERVICE}}}", "{{service}} short share"),
        ],
        width=24,
    ))
    d = d.with_row(row("The service"))
    d = d.with_panel(panel(
        "CPU against target",
        "CPU utilisation in the service's last row, and the target of the HPA the served policy runs.",
        "percentunit",
        [
            (f"autoscaler_cpu_utilization_ratio{{{SERVICE}}}", "{{service}} CPU"),
            (f"autoscaler_target_cpu_utilization_ratio{{{SERVICE}}}", "{{service}} target"),
        ],
        width=8,
    ))
    d = d.with_panel(panel("Request rate", "Requests per second in the service's last row.", "reqps", [(f"autoscaler_requests_per_second{{{SERVICE}}}", "{{service}}")], width=8))
    d = d.with_panel(panel("P95 latency", "P95 response time in the service's last row.", "s", [(f"autoscaler_latency_p95_seconds{{{SERVICE}}}", "{{service}}")], width=8))
    d = d.with_row(row("The autoscaler"))
    d = d.with_panel(panel(
        "Age of the last row",
        "Seconds since each service's last row; decisions go stale (KEDA falls back) after --max-decision-age.",
        "s",
        [(f"time() - autoscaler_last_row_timestamp_seconds{{{SERVICE}}}", "{{service}}")],
        width=8,
    ))
    d = d.with_panel(panel(
        "Decision latency (p99)",
        "The server's time to decide one row.",
        "s",
        [("histogram_quantile(0.99, sum by (le) (rate(autoscaler_decision_latency_seconds_bucket[$__rate_interval])))", "p99")],
        width=8,
    ))
    d = d.with_panel(panel(
        "Server: Prometheus failures, rejected rows",
        "Steps at which the server's reads of Prometheus failed (serve --prometheus), and rows refused as invalid.",
        "ops",
        [
            ("rate(autoscaler_prometheus_failures_total[$__rate_interval])", "Prometheus failures"),
            ("rate(autoscaler_rejected_rows_total[$__rate_interval])", "rejected rows"),
        ],
        width=8,
    ))
    d = d.with_panel(panel(
        "Collector: steps, skipped steps, rows",
        "`pipeline collect --metrics-addr`: steps taken, steps skipped because Prometheus did not answer (never invented), and rows written.",
        "ops",
        [
            ("rate(autoscaler_collector_steps_total[$__rate_interval])", "steps"),
            ("rate(autoscaler_collector_skipped_steps_total[$__rate_interval])", "skipped steps"),
            ("rate(autoscaler_collector_rows_total[$__rate_interval])", "rows"),
        ],
        width=24,
    ))
    return d.build()


def main():
    text = json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
