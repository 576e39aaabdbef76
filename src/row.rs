//! The collector's 23-column metrics row: names, types, and what counts as a valid value.
//! Ingest, the simulator and the server all read the schema from here.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// How a numeric column may be checked beyond "is a finite number".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any finite number (slopes go negative).
    Signed,
    /// A finite number ≥ 0 (usages, rates, limits, counts).
    NonNegative,
    /// 0 or 1; `True`/`False` as Python writes booleans are accepted too.
    Flag,
    /// A whole number ≥ 0 (replica_count).
    Count,
    /// A fraction from 0 to 1 (error_rate); above 1 it was written as a percentage.
    Fraction,
    /// Cores per pod, ≥ 0; past [`MAX_CORES`] it was written in millicores.
    Cores,
    /// MiB per pod, ≥ 0; past [`MAX_MIB`] it was written in bytes.
    Mebibytes,
}

/// More cores than any node has: a request or limit above this was written in millicores.
pub const MAX_CORES: f64 = 512.0;
/// 1 TiB per pod: a request or limit above this was written in bytes (or KiB).
pub const MAX_MIB: f64 = 1_048_576.0;

pub const TIMESTAMP: &str = "timestamp";
pub const SERVICE: &str = "service_name";
pub const REPLICAS: &str = "replica_count";

/// The numeric columns in the collector's order (timestamp and service_name come first).
pub const NUMERIC: [(&str, Kind); 21] = [
    ("cpu_usage_percent", Kind::NonNegative),
    ("cpu_usage_percent_last_5_min", Kind::NonNegative),
    ("cpu_usage_percent_slope", Kind::Signed),
    ("ram_usage_percent", Kind::NonNegative),
    ("ram_usage_percent_last_5_min", Kind::NonNegative),
    ("ram_usage_percent_slope", Kind::Signed),
    ("request_count_per_second", Kind::NonNegative),
    ("request_count_per_second_last_5_min", Kind::NonNegative),
    ("response_time_ms", Kind::NonNegative),
    ("replica_count", Kind::Count),
    ("is_holiday", Kind::Flag),
    ("is_weekend", Kind::Flag),
    ("cpu_request", Kind::Cores),
    ("cpu_limit", Kind::Cores),
    ("ram_request", Kind::Mebibytes),
    ("ram_limit", Kind::Mebibytes),
    ("queue_length", Kind::NonNegative),
    ("error_rate", Kind::Fraction),
    ("pod_restart_count", Kind::NonNegative),
    ("node_cpu_pressure_flag", Kind::Flag),
    ("node_memory_pressure_flag", Kind::Flag),
];

/// The unit contract: what each column means and in which unit, for everything that writes or
/// reads a row (the collector, the simulator, ingest's checks, the server). The Units table of
/// docs/data-contract.md is this table (a test keeps them equal).
pub const CONTRACT: [(&str, &str, &str); 23] = [
    ("timestamp", "ISO 8601", "when the row was taken: UTC without an offset, or the wall clock with its offset (`2026-10-25T02:30:00+01:00`)"),
    ("service_name", "text", "the Deployment (and ingress backend Service) name"),
    (
        "cpu_usage_percent",
        "% of request",
        "CPU used by the ready pods over their summed CPU request, as the HPA computes utilisation (above 100 up to limit/request)",
    ),
    ("cpu_usage_percent_last_5_min", "% of request", "mean of the service's last 10 rows (this one included)"),
    ("cpu_usage_percent_slope", "% per row", "least-squares slope over the same 10 rows"),
    (
        "ram_usage_percent",
        "% of limit",
        "working-set memory of the pods over their summed memory limit (where the OOM killer acts), or over their request where they have no limit",
    ),
    ("ram_usage_percent_last_5_min", "% of limit", "mean of the last 10 rows"),
    ("ram_usage_percent_slope", "% per row", "least-squares slope over the last 10 rows"),
    ("request_count_per_second", "requests/s", "requests reaching the service through the ingress, all pods together"),
    ("request_count_per_second_last_5_min", "requests/s", "mean of the last 10 rows"),
    ("response_time_ms", "ms", "P95 latency of those requests"),
    ("replica_count", "pods", "the Deployment's current replicas"),
    ("is_holiday", "0/1", "the day is in the collector's holiday list"),
    ("is_weekend", "0/1", "Saturday or Sunday in the collector's time zone"),
    ("cpu_request", "cores per pod", "CPU request of one pod, all containers"),
    ("cpu_limit", "cores per pod", "CPU limit of one pod, all containers; its CPU request where the pod has no limit"),
    ("ram_request", "MiB per pod", "memory request of one pod, all containers"),
    ("ram_limit", "MiB per pod", "memory limit of one pod, all containers; its memory request where the pod has no limit"),
    ("queue_length", "requests", "requests waiting or in flight"),
    ("error_rate", "fraction 0–1", "share of requests answered 5xx"),
    ("pod_restart_count", "restarts", "container restarts of the service's pods"),
    ("node_cpu_pressure_flag", "0/1", "a node running one of its pods is CPU-saturated"),
    ("node_memory_pressure_flag", "0/1", "a node running one of its pods reports MemoryPressure"),
];

/// All 23 column names in the collector's order.
pub fn column_names() -> Vec<&'static str> {
    let mut names = vec![TIMESTAMP, SERVICE];
    names.extend(NUMERIC.iter().map(|(n, _)| *n));
    names
}

/// The typed table that ingest writes: timestamps in microseconds, UTC (a row's offset applied),
/// `replica_count` as an integer, every other metric as Float64.
pub fn schema() -> SchemaRef {
    let mut fields = vec![Field::new(TIMESTAMP, DataType::Timestamp(TimeUnit::Microsecond, None), false), Field::new(SERVICE, DataType::Utf8, false)];
    for (name, kind) in NUMERIC {
        let dt = if kind == Kind::Count { DataType::Int64 } else { DataType::Float64 };
        fields.push(Field::new(name, dt, false));
    }
    Arc::new(Schema::new(fields))
}

/// Why one field of a metrics row is not valid; its text is the quarantine reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("empty")]
    Empty,
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("NaN")]
    NaN,
    #[error("`{0}` is not finite")]
    NotFinite(String),
    #[error("{0} is negative")]
    Negative(f64),
    #[error("{0} is not a 0/1 flag")]
    NotAFlag(f64),
    #[error("{0} is not a whole number ≥ 0")]
    NotACount(f64),
    #[error("empty timestamp")]
    EmptyTimestamp,
    #[error("`{0}` is not an ISO-8601 timestamp")]
    NotATimestamp(String),
    /// A value the column's unit cannot have, and the unit it was most likely written in.
    #[error("{value} is not {unit} (it looks like {likely}): a data-contract violation, see the units in docs/data-contract.md")]
    OtherUnit { value: f64, unit: &'static str, likely: &'static str },
}

/// Parse one numeric field, or say why it is not valid.
pub fn parse_value(raw: &str, kind: Kind) -> Result<f64, ValueError> {
    if let Some(v) = plain_decimal(raw.as_bytes()) {
        return within_kind(v, kind);
    }
    let t = raw.trim();
    if t.is_empty() {
        return Err(ValueError::Empty);
    }
    if kind == Kind::Flag {
        match t {
            "True" | "true" => return Ok(1.0),
            "False" | "false" => return Ok(0.0),
            _ => {}
        }
    }
    let v: f64 = t.parse().map_err(|_| ValueError::NotANumber(shorten(t)))?;
    if v.is_nan() {
        return Err(ValueError::NaN);
    }
    if v.is_infinite() {
        return Err(ValueError::NotFinite(t.to_string()));
    }
    within_kind(v, kind)
}

/// A finite value, checked against what its column allows.
fn within_kind(v: f64, kind: Kind) -> Result<f64, ValueError> {
    match kind {
        Kind::Signed => {}
        Kind::NonNegative if v < 0.0 => return Err(ValueError::Negative(v)),
        Kind::Flag if v != 0.0 && v != 1.0 => return Err(ValueError::NotAFlag(v)),
        Kind::Count if v < 0.0 || v.fract() != 0.0 => return Err(ValueError::NotACount(v)),
        Kind::Fraction | Kind::Cores | Kind::Mebibytes if v < 0.0 => return Err(ValueError::Negative(v)),
        Kind::Fraction if v > 1.0 => return Err(ValueError::OtherUnit { value: v, unit: "a fraction 0–1", likely: "a percentage" }),
        Kind::Cores if v > MAX_CORES => return Err(ValueError::OtherUnit { value: v, unit: "cores per pod", likely: "millicores" }),
        Kind::Mebibytes if v > MAX_MIB => return Err(ValueError::OtherUnit { value: v, unit: "MiB per pod", likely: "bytes" }),
        _ => {}
    }
    Ok(v)
}

/// `-12.345`, `7`, `0.5`: what collectors write, read without the general float parser (21
/// fields a row made it a fifth of ingest). Exact: a mantissa below 2^53 divided by a power of
/// ten up to 10^22 is one correctly rounded operation on two exact doubles, the same number
/// `str::parse` gives. Anything else (exponents, spaces, long mantissas) returns None.
fn plain_decimal(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22];
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    let (mut mantissa, mut count, mut decimals) = (0u64, 0usize, None);
    for (i, &c) in digits.iter().enumerate() {
        match c {
            // Past 19 digits a u64 wraps (in release builds, silently): the general parser reads those.
            b'0'..=b'9' if count == 19 => return None,
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
            }
            b'.' if decimals.is_none() => decimals = Some(digits.len() - i - 1),
            _ => return None,
        }
    }
    let decimals = decimals.unwrap_or(0);
    if count == 0 || mantissa > 1 << 53 || decimals >= POW10.len() {
        return None;
    }
    let v = mantissa as f64 / POW10[decimals];
    Some(if negative { -v } else { v })
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 { format!("{}…", s.chars().take(40).collect::<String>()) } else { s.to_string() }
}

/// Parse what Python's `datetime.isoformat()` writes, with or without microseconds, with a
/// space or `T`, and with an optional zone (`Z`, `+02:00`). The contract: a timestamp without
/// a zone is UTC; one with a zone is converted to UTC. Returns microseconds since the epoch
/// (UTC) and whether a zone was present.
pub fn parse_timestamp(raw: &str) -> Result<(i64, bool), ValueError> {
    use chrono::{DateTime, NaiveDateTime};
    let t = raw.trim();
    if t.is_empty() {
        return Err(ValueError::EmptyTimestamp);
    }
    if let Some(us) = fast_isoformat(t.as_bytes()) {
        return Ok((us, false));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok((dt.and_utc().timestamp_micros(), false));
        }
    }
    let zoned = t.strip_suffix('Z').map(|s| format!("{s}+00:00"));
    let t2 = zoned.as_deref().unwrap_or(t);
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(t2, fmt) {
            return Ok((dt.naive_utc().and_utc().timestamp_micros(), true));
        }
    }
    Err(ValueError::NotATimestamp(shorten(t)))
}

/// The collector's exact shape, `YYYY-MM-DDTHH:MM:SS[.ffffff]`, read without chrono's
/// format machinery: ingest parses one per row.
fn fast_isoformat(b: &[u8]) -> Option<i64> {
    if !(b.len() == 19 || (b.len() > 20 && b.len() <= 26 && b[19] == b'.')) {
        return None;
    }
    if b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> { b[r].iter().try_fold(0u32, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as u32)) };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    let mut micros = 0i64;
    if b.len() > 19 {
        let frac = &b[20..];
        micros = num(20..b.len())? as i64 * 10i64.pow(6 - frac.len() as u32);
    }
    let days = date.signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days();
    Some(((days * 86_400 + (h * 3600 + m * 60 + s) as i64) * 1_000_000) + micros)
}

/// A service is a Deployment, named as Kubernetes names it (a DNS-1123 subdomain: at most 253
/// characters, lowercase letters, digits, `-` and `.`, each dot-separated part starting and
/// ending with a letter or digit). Anything else is no service a cluster has, and a name is
/// state the server keeps: refused before it is kept.
pub fn check_service_name(name: &str) -> Result<(), String> {
    const MAX: usize = 253;
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX {
        return Err(format!("is {} characters long; a Kubernetes name has at most {MAX}", name.len()));
    }
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty() && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-') && b[0] != b'-' && b[b.len() - 1] != b'-'
    };
    if !name.split('.').all(part_ok) {
        let shown: String = name.chars().take(60).collect();
        return Err(format!(
            "`{shown}{}` is not a Kubernetes Deployment name (DNS-1123: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)",
            if shown.len() < name.len() { "…" } else { "" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals_read_as_the_float_parser_reads_them() {
        let mut cases: Vec<String> = [
            "0",
            "-0.0",
            "7",
            "0.1",
            "0.3",
            "72.15",
            "-12.345",
            "1.",
            ".5",
            "9007199254740993",
            "9007199254740992",
            "0.0000000000000000000001",
            "123456789012345678.9",
            "4503599627370497.5",
            "18446744073709551617",
            "18446744073709551616.5",
            "-99999999999999999999",
            "1844674407370955161.7",
        ]
        .map(String::from)
        .to_vec();
        // Decimals of every length, as collectors round them.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = (x % 19 + 1) as usize;
            let mantissa = (x >> 5) % 10u64.pow(digits as u32);
            let point = (x >> 40) as usize % (digits + 1);
            let s = format!("{mantissa:0digits$}");
            cases.push(format!("{}{}.{}", if x & 1 == 1 { "-" } else { "" }, &s[..digits - point], &s[digits - point..]));
        }
        for c in &cases {
            let ours = plain_decimal(c.as_bytes());
            let std: f64 = c.parse().unwrap();
            if let Some(v) = ours {
                assert_eq!(v.to_bits(), std.to_bits(), "{c}");
            }
        }
        assert!(cases.iter().filter(|c| plain_decimal(c.as_bytes()).is_some()).count() > 15_000);
        for other in ["1e5", " 5", "5 ", "+5", "-", ".", "", "1.2.3", "NaN", "inf", "0x10"] {
            assert_eq!(plain_decimal(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn timestamps_as_python_writes_them() {
        let (a, z) = parse_timestamp("2025-10-06T06:00:00.937643").unwrap();
        assert!(!z);
        let (b, _) = parse_timestamp("2025-10-06T06:00:00").unwrap();
        assert_eq!(a - b, 937_643);
        let (c, z) = parse_timestamp("2025-10-06T08:00:00+02:00").unwrap();
        assert!(z);
        assert_eq!(c, b);
        assert_eq!(parse_timestamp("2025-10-06T06:00:00Z").unwrap().0, b);
        assert_eq!(parse_timestamp("yesterday"), Err(ValueError::NotATimestamp("yesterday".into())));
        // The fast path and chrono agree, including a short fraction.
        let (d, _) = parse_timestamp("2025-10-06T06:00:00.5").unwrap();
        assert_eq!(d - b, 500_000);
        assert_eq!(parse_timestamp("2025-10-06 06:00:00").unwrap().0, b);
        assert!(parse_timestamp("2025-02-30T06:00:00").is_err());
    }

    #[test]
    fn values_are_checked_by_kind() {
        assert_eq!(parse_value(" 75.5 ", Kind::NonNegative), Ok(75.5));
        assert_eq!(parse_value("True", Kind::Flag), Ok(1.0));
        assert_eq!(parse_value("NaN", Kind::Signed), Err(ValueError::NaN));
        assert_eq!(parse_value("", Kind::Signed), Err(ValueError::Empty));
        assert_eq!(parse_value("abc", Kind::Signed).unwrap_err().to_string(), "`abc` is not a number");
        assert_eq!(parse_value("-1", Kind::NonNegative), Err(ValueError::Negative(-1.0)));
        assert_eq!(parse_value("-1", Kind::Signed), Ok(-1.0));
        assert_eq!(parse_value("2.5", Kind::Count).unwrap_err().to_string(), "2.5 is not a whole number ≥ 0");
        assert_eq!(parse_value("3.0", Kind::Count), Ok(3.0));
    }

    #[test]
    fn values_in_other_units_are_named_as_such() {
        assert_eq!(parse_value("0.05", Kind::Fraction), Ok(0.05));
        assert_eq!(
            parse_value("5", Kind::Fraction).unwrap_err().to_string(),
            "5 is not a fraction 0–1 (it looks like a percentage): a data-contract violation, see the units in docs/data-contract.md"
        );
        assert_eq!(parse_value("500", Kind::Cores), Ok(500.0));
        assert!(matches!(parse_value("1500", Kind::Cores), Err(ValueError::OtherUnit { likely: "millicores", .. })));
        assert_eq!(parse_value("512", Kind::Mebibytes), Ok(512.0));
        assert!(matches!(parse_value("536870912", Kind::Mebibytes), Err(ValueError::OtherUnit { likely: "bytes", .. })));
        assert_eq!(parse_value("-1", Kind::Mebibytes), Err(ValueError::Negative(-1.0)));
    }

    #[test]
    fn the_docs_state_the_unit_contract() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/data-contract.md")).unwrap();
        for (name, unit, meaning) in CONTRACT {
            let row = format!("| `{name}` | {unit} | {meaning} |");
            assert!(doc.contains(&row), "docs/data-contract.md lacks the contract row:\n{row}");
        }
        let names: Vec<&str> = CONTRACT.iter().map(|c| c.0).collect();
        assert_eq!(names, column_names());
    }

    #[test]
    fn schema_has_23_columns() {
        assert_eq!(schema().fields().len(), 23);
        assert_eq!(column_names().len(), 23);
    }
}
