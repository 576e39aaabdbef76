-- One row per service: how much data there is and the range of its load and replicas.
SELECT
    service_name,
    count(*)                        AS rows,
    min(timestamp)                  AS first_seen,
    max(timestamp)                  AS last_seen,
    avg(cpu_usage_percent)          AS mean_cpu_percent,
    max(request_count_per_second)   AS peak_requests_per_second,
    min(replica_count)              AS min_replicas,
    max(replica_count)              AS max_replicas
FROM ingest
GROUP BY service_name
ORDER BY service_name
