//! `date: 2024-10` or `date: 2024-10-15`: which files of the `YYYY/MM/metrics_YYYYMMDD.csv`
//! layout to read, as the old `download_data.sh 2024-10` did.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DateFilter {
    #[default]
    All,
    Month {
        year: u32,
        month: u32,
    },
    Day {
        year: u32,
        month: u32,
        day: u32,
    },
}

/// A `date` that names neither a month nor a day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a month (YYYY-MM) or a day (YYYY-MM-DD)")]
pub struct NotADate(pub String);

impl DateFilter {
    pub fn parse(s: &str) -> Result<DateFilter, NotADate> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(DateFilter::All);
        }
        let bad = || NotADate(s.to_string());
        let parts: Vec<&str> = s.split('-').collect();
        let num = |p: &str, len: usize| (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().unwrap());
        match parts.as_slice() {
            [y, m] => {
                let (year, month) = (num(y, 4).ok_or_else(bad)?, num(m, 2).ok_or_else(bad)?);
                if !(1..=12).contains(&month) {
                    return Err(bad());
                }
                Ok(DateFilter::Month { year, month })
            }
            [y, m, d] => {
                let (year, month, day) = (num(y, 4).ok_or_else(bad)?, num(m, 2).ok_or_else(bad)?, num(d, 2).ok_or_else(bad)?);
                chrono::NaiveDate::from_ymd_opt(year as i32, month, day).ok_or_else(bad)?;
                Ok(DateFilter::Day { year, month, day })
            }
            _ => Err(bad()),
        }
    }

    /// Whether a file belongs to the selected period, judged by the `metrics_YYYYMMDD` in its
    /// name or, failing that, a `YYYY/MM/` in its path.
    pub fn keeps(&self, path: &str) -> bool {
        let (year, month, day) = match *self {
            DateFilter::All => return true,
            DateFilter::Month { year, month } => (year, month, None),
            DateFilter::Day { year, month, day } => (year, month, Some(day)),
        };
        let name = path.rsplit('/').next().unwrap_or(path);
        if let Some(stamp) = name_date(name) {
            let want = match day {
                Some(d) => format!("{year:04}{month:02}{d:02}"),
                None => format!("{year:04}{month:02}"),
            };
            return stamp.starts_with(&want);
        }
        // No date in the name: only a month can be told from the folders.
        day.is_none() && path.contains(&format!("{year:04}/{month:02}/"))
    }
}

fn name_date(name: &str) -> Option<&str> {
    let i = name.find("metrics_")? + "metrics_".len();
    let d = name.get(i..i + 8)?;
    d.bytes().all(|b| b.is_ascii_digit()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(DateFilter::parse("").unwrap(), DateFilter::All);
        assert_eq!(DateFilter::parse("2024-10").unwrap(), DateFilter::Month { year: 2024, month: 10 });
        assert!(DateFilter::parse("2024-13").is_err());
        assert!(DateFilter::parse("2024-02-30").is_err());
        assert_eq!(DateFilter::parse(" October "), Err(NotADate("October".into())));
    }

    #[test]
    fn keeps_by_name_then_folder() {
        let m = DateFilter::parse("2024-10").unwrap();
        assert!(m.keeps("metrics/2024/10/metrics_20241015.csv"));
        assert!(m.keeps("metrics_20241001.csv.gz"));
        assert!(!m.keeps("metrics/2024/11/metrics_20241101.csv"));
        assert!(m.keeps("2024/10/other.csv"));
        let d = DateFilter::parse("2024-10-15").unwrap();
        assert!(d.keeps("2024/10/metrics_20241015.csv"));
        assert!(!d.keeps("2024/10/metrics_20241016.csv"));
        assert!(!d.keeps("2024/10/other.csv"));
    }
}
