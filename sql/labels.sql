-- target_replicas: what the next `horizon` rows (5 minutes at 30 s) of the same service need.
-- Rows without a full horizon ahead keep their current replica count.
--
-- label_rule 'seed' (default, the old system's): one step up when the future peak CPU or RAM
-- or the future p95 latency passes its threshold; one step down when future peak CPU and RAM
-- are both low (down wins when both hold).
-- label_rule 'hpa': the replicas that would have held the future peak CPU at target_cpu,
-- ceil(replicas × future_peak_cpu / target_cpu), as the HPA formula applied to the future.
-- Both are clipped to [min_replicas, max_replicas].
WITH future AS (
    SELECT
        *,
        lead(timestamp, ${horizon}) OVER by_time IS NOT NULL AS full_horizon,
        rolling_max(cpu_usage_percent) OVER ahead AS future_cpu_max,
        rolling_max(ram_usage_percent) OVER ahead AS future_ram_max,
        rolling_quantile(response_time_ms, 0.95) OVER ahead AS future_rt_p95
    FROM features
    WINDOW
        by_time AS (PARTITION BY service_name ORDER BY timestamp),
        ahead AS (PARTITION BY service_name ORDER BY timestamp ROWS BETWEEN 1 FOLLOWING AND ${horizon} FOLLOWING)
),
labelled AS (
    SELECT
        *,
        CAST(CASE
            WHEN NOT full_horizon THEN replica_count
            WHEN ${label_rule} = 'hpa' THEN
                least(greatest(CAST(ceil(replica_count * future_cpu_max / ${target_cpu}) AS BIGINT), ${min_replicas}), ${max_replicas})
            WHEN future_cpu_max < ${scale_down_cpu} AND future_ram_max < ${scale_down_ram} THEN
                greatest(replica_count - 1, ${min_replicas})
            WHEN future_cpu_max > ${scale_up_cpu} OR future_ram_max > ${scale_up_ram} OR future_rt_p95 > ${scale_up_response_ms} THEN
                least(replica_count + 1, ${max_replicas})
            ELSE replica_count
        END AS BIGINT) AS target_replicas
    FROM future
)
SELECT * EXCEPT (full_horizon, future_cpu_max, future_ram_max, future_rt_p95)
FROM labelled
ORDER BY service_name, timestamp
