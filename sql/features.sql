-- Features of the old system, exactly (../shared/docs/seed-semantics.md): 18 core metrics as read,
-- 15 engineered ones. The 0/1 column per service is the models' input layer's (src/models/table.rs),
-- so this table stays as narrow with 200 services as with 2. Every window is over ROWS of one service
-- ordered by time (not a time range), so a window may straddle the night gap, as before.
-- Values a window cannot produce (first row, single-row std) become 0.
--
-- Then five seasonal features, on 5-minute slots of time (src/features/seasonal.rs, which the
-- server shares): the mean request rate of the service's slot a day and a week before the row's,
-- the peak of that slot and the next (the demand label's window lies within them), and the
-- Holt-Winters forecast of the slot after the row's from the slots before it. Slots are joined by
-- number, so gaps never shift them; a row whose lagged slot had no rows (the first day, the first
-- week) or whose forecast has less than a day behind it gets its own request rate instead.
WITH seed AS (
SELECT
    timestamp,
    service_name,
    replica_count,

    -- core
    cpu_usage_percent,
    cpu_usage_percent_last_5_min,
    cpu_usage_percent_slope,
    ram_usage_percent,
    ram_usage_percent_last_5_min,
    ram_usage_percent_slope,
    request_count_per_second,
    request_count_per_second_last_5_min,
    response_time_ms,
    cpu_request,
    cpu_limit,
    ram_request,
    ram_limit,
    queue_length,
    error_rate,
    pod_restart_count,
    node_cpu_pressure_flag,
    node_memory_pressure_flag,

    -- engineered: time of day, as written in the timestamp
    sin(2 * pi() * date_part('hour', timestamp) / 24) AS hour_sin,
    cos(2 * pi() * date_part('hour', timestamp) / 24) AS hour_cos,

    cpu_usage_percent / (cpu_limit + 1e-6) AS cpu_utilization_ratio,
    ram_usage_percent / (ram_limit + 1e-6) AS ram_utilization_ratio,

    coalesce(cpu_usage_percent - lag(cpu_usage_percent) OVER by_time, 0) AS cpu_change_rate,
    coalesce(ram_usage_percent - lag(ram_usage_percent) OVER by_time, 0) AS ram_change_rate,
    coalesce(request_count_per_second - lag(request_count_per_second) OVER by_time, 0) AS request_change_rate,

    coalesce(rolling_stddev(cpu_usage_percent) OVER last_10, 0) AS cpu_rolling_std,
    coalesce(rolling_stddev(ram_usage_percent) OVER last_10, 0) AS ram_rolling_std,
    rolling_max(request_count_per_second) OVER last_10 AS request_rolling_max,
    rolling_quantile(response_time_ms, 0.95) OVER last_10 AS response_time_rolling_p95,

    cpu_usage_percent / (replica_count + 1) AS cpu_per_replica,
    ram_usage_percent / (replica_count + 1) AS ram_per_replica,
    request_count_per_second / (replica_count + 1) AS requests_per_replica,

    CAST(cpu_usage_percent > 70 AS DOUBLE)
      + CAST(ram_usage_percent > 75 AS DOUBLE)
      + CAST(response_time_ms > 500 AS DOUBLE)
      + CAST(error_rate > 0.05 AS DOUBLE)
      + node_cpu_pressure_flag
      + node_memory_pressure_flag AS system_pressure,
    CAST(floor(date_part('epoch', timestamp) / 300) AS BIGINT) AS slot
FROM ingest
WINDOW
    by_time AS (PARTITION BY service_name ORDER BY timestamp),
    last_10 AS (PARTITION BY service_name ORDER BY timestamp ROWS BETWEEN 9 PRECEDING AND CURRENT ROW)
),
slots AS (
    SELECT service_name, CAST(floor(date_part('epoch', timestamp) / 300) AS BIGINT) AS slot, avg(request_count_per_second) AS rate
    FROM ingest
    GROUP BY service_name, slot
),
profile AS (
    SELECT
        service_name,
        slot,
        rate,
        -- The slot and the next one (seasonal::PEAK_SLOTS).
        max(rate) OVER (PARTITION BY service_name ORDER BY slot RANGE BETWEEN CURRENT ROW AND 1 FOLLOWING) AS peak,
        holt_winters_next(rate, slot) OVER (PARTITION BY service_name ORDER BY slot) AS holt_winters
    FROM slots
),
-- Each slot with the slots a day and a week before it, by number, so the rows join one small
-- table once.
lagged AS (
    SELECT p.service_name, p.slot, d.rate AS rate_yesterday, d.peak AS peak_yesterday,
           w.rate AS rate_last_week, w.peak AS peak_last_week, p.holt_winters
    FROM profile p
    LEFT JOIN profile d ON d.service_name = p.service_name AND d.slot = p.slot - 288
    LEFT JOIN profile w ON w.service_name = p.service_name AND w.slot = p.slot - 2016
)
-- The small slot table comes first in the join, so the join holds it and the rows stream past
-- in their order.
SELECT
    s.* EXCEPT (slot),
    coalesce(l.rate_yesterday, s.request_count_per_second) AS request_rate_yesterday,
    coalesce(l.peak_yesterday, s.request_count_per_second) AS request_peak_yesterday,
    coalesce(l.rate_last_week, s.request_count_per_second) AS request_rate_last_week,
    coalesce(l.peak_last_week, s.request_count_per_second) AS request_peak_last_week,
    coalesce(l.holt_winters, s.request_count_per_second) AS request_rate_holt_winters
FROM lagged l
RIGHT JOIN seed s ON l.service_name = s.service_name AND l.slot = s.slot
ORDER BY s.service_name, s.timestamp
