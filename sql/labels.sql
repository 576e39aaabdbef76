-- target_replicas: what the next `horizon` rows (5 minutes at 30 s) of the same service need.
-- Rows without a full horizon ahead keep their current replica count.
--
-- label_rule 'seed' (default, the old system's): one step up when the future peak CPU or RAM
-- or the future p95 latency passes its threshold; one step down when future peak CPU and RAM
-- are both low (down wins when both hold).
-- label_rule 'hpa': the replicas that would have held the future peak CPU at target_cpu,
-- ceil(replicas × future_peak_cpu / target_cpu), as the HPA formula applied to the future.
-- label_rule 'demand': the pods the load will need once pods asked for now are ready:
-- ceil(peak request rate of the rows lead_start .. horizon_end ahead / what one pod serves at
-- the top of the HPA's tolerance band, target_cpu × (1 + hpa_tolerance)): the pods the HPA
-- itself would not do without at that load, so on steady load the forecast adds none. lead_start is the first row after a pod's start-up (the default pipeline
-- derives it from its one `pod_startup_seconds` param: ceil(start-up / row interval), 2 for 60 s);
-- horizon_end is the window's last row (the default pipeline's demand labels: 6, 2.5 minutes;
-- the HPA's scale-down hold keeps each decision 5 minutes on top). What one pod serves comes from the service's CPU
-- against its requests per pod, fitted (least squares) on the rows before the last
-- holdout_fraction of its time, so the hold-out does not shape its own labels. A service whose
-- CPU does not rise with load gets the 'hpa' label.
-- All are clipped to [min_replicas, max_replicas].
-- The load_pods columns are the load in pods of that fitted capacity (the request rate, its
-- 5-minute mean, its rolling max and its change, over what one pod serves at the band's top):
-- features that name no service, read by the pooled forest (src/models/pooled.rs), which serves
-- services it never saw; NaN for a service whose CPU does not rise with load. A train stage
-- reads them only when its `features` names them.
-- The windows read `features` in its order (service, time), so they stream; the small per-service
-- tables come first in their joins, so the joins hold them, not the rows (labels_demand on 10M
-- rows held 8 GB when the capacity was joined before the windows).
WITH span AS (
    SELECT service_name, min(date_part('epoch', timestamp)) AS first_s, max(date_part('epoch', timestamp)) AS last_s
    FROM features
    GROUP BY service_name
),
capacity AS (
    SELECT
        f.service_name,
        regr_slope(f.cpu_usage_percent, f.request_count_per_second / f.replica_count) AS cpu_per_rps,
        greatest(regr_intercept(f.cpu_usage_percent, f.request_count_per_second / f.replica_count), 0.0) AS idle_cpu
    FROM span s
    JOIN features f ON f.service_name = s.service_name
    WHERE f.replica_count > 0
      AND date_part('epoch', f.timestamp) <= s.first_s + (s.last_s - s.first_s) * (1.0 - ${holdout_fraction})
    GROUP BY f.service_name
),
ahead AS (
    SELECT
        f.*,
        lead(f.timestamp, ${horizon}) OVER by_time IS NOT NULL AS full_horizon,
        lead(f.timestamp, ${horizon_end}) OVER by_time IS NOT NULL AS full_demand_horizon,
        rolling_max(f.cpu_usage_percent) OVER ahead AS future_cpu_max,
        rolling_max(f.ram_usage_percent) OVER ahead AS future_ram_max,
        rolling_quantile(f.response_time_ms, 0.95) OVER ahead AS future_rt_p95,
        rolling_max(f.request_count_per_second) OVER once_ready AS future_rps_max
    FROM features f
    WINDOW
        by_time AS (PARTITION BY f.service_name ORDER BY f.timestamp),
        ahead AS (PARTITION BY f.service_name ORDER BY f.timestamp ROWS BETWEEN 1 FOLLOWING AND ${horizon} FOLLOWING),
        once_ready AS (PARTITION BY f.service_name ORDER BY f.timestamp ROWS BETWEEN ${lead_start} FOLLOWING AND ${horizon_end} FOLLOWING)
),
future AS (
    SELECT
        a.*,
        CASE WHEN c.cpu_per_rps > 0 AND ${target_cpu} > c.idle_cpu
             THEN (${target_cpu} * (1 + ${hpa_tolerance}) - c.idle_cpu) / c.cpu_per_rps END AS rps_per_pod
    FROM capacity c
    RIGHT JOIN ahead a ON a.service_name = c.service_name
),
labelled AS (
    SELECT
        *,
        CAST(CASE
            WHEN ${label_rule} = 'demand' AND NOT full_demand_horizon THEN replica_count
            WHEN NOT full_horizon THEN replica_count
            WHEN ${label_rule} = 'demand' AND rps_per_pod IS NOT NULL THEN
                least(greatest(CAST(ceil(future_rps_max / rps_per_pod) AS BIGINT), ${min_replicas}), ${max_replicas})
            WHEN ${label_rule} IN ('hpa', 'demand') THEN
                least(greatest(CAST(ceil(replica_count * future_cpu_max / ${target_cpu}) AS BIGINT), ${min_replicas}), ${max_replicas})
            WHEN future_cpu_max < ${scale_down_cpu} AND future_ram_max < ${scale_down_ram} THEN
                greatest(replica_count - 1, ${min_replicas})
            WHEN future_cpu_max > ${scale_up_cpu} OR future_ram_max > ${scale_up_ram} OR future_rt_p95 > ${scale_up_response_ms} THEN
                least(replica_count + 1, ${max_replicas})
            ELSE replica_count
        END AS BIGINT) AS target_replicas
    FROM future
)
SELECT
    * EXCEPT (full_horizon, full_demand_horizon, future_cpu_max, future_ram_max, future_rt_p95, future_rps_max, rps_per_pod),
    coalesce(request_count_per_second / rps_per_pod, CAST('NaN' AS DOUBLE)) AS load_pods,
    coalesce(request_count_per_second_last_5_min / rps_per_pod, CAST('NaN' AS DOUBLE)) AS load_pods_last_5_min,
    coalesce(request_rolling_max / rps_per_pod, CAST('NaN' AS DOUBLE)) AS load_pods_rolling_max,
    coalesce(request_change_rate / rps_per_pod, CAST('NaN' AS DOUBLE)) AS load_pods_change
FROM labelled
ORDER BY service_name, timestamp
