//! How much memory the machine has, and sizes as people write them (`8GiB`, `80%`).

/// Total memory of the machine (or of the container's cgroup, when it is smaller).
pub fn machine_bytes() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())))
        .flatten()
        .map(|kib| kib * 1024)
        .unwrap_or(8 << 30);
    // A pod's limit is its memory, whatever the node has.
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|t| t.trim().parse::<u64>().ok());
    cgroup.map_or(total, |c| c.min(total))
}

/// `80%` (of the machine), `8GiB`, `512MiB`, `2G`, `1000000` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a size: write e.g. 8GiB, 512MiB or 80% (of this machine's memory)");
    if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!("`{text}`: a share of the machine's memory is above 0% and at most 100%"));
        }
        return Ok((machine_bytes() as f64 * p / 100.0) as u64);
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().map_err(|_| bad())?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad()),
    };
    Ok((n * scale as f64) as u64)
}

/// A size for people: `1.5 GiB`.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[u]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_people_write_them() {
        assert_eq!(parse_size("8GiB"), Ok(8 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5g"), Ok(3 << 29));
        assert_eq!(parse_size("1000"), Ok(1000));
        let half = parse_size("50%").unwrap();
        assert!(half > 0 && half <= machine_bytes() / 2 + 1);
        assert!(parse_size("lots").unwrap_err().contains("is not a size"));
        assert!(parse_size("150%").is_err());
        assert!(parse_size("8 parsecs").is_err());
        assert_eq!(human(3 << 29), "1.5 GiB");
    }
}
