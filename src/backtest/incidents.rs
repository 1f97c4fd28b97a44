//! How warnings compare with what really happened: an incident list (site, start, end), the
//! warnings a backtest raised, and per rule or model: precision, recall, lead times, false
//! warnings per site-week.
//!
//! A warning is right when it is raised at an incident's site between `early` before the
//! incident starts and its end; an incident is caught when a right warning of the rule is
//! raised for it. The lead time of a caught incident is its start minus the first such warning
//! (positive: warned ahead).

use super::{quantile, BacktestError};
use crate::time::{Millis, Ts};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    pub site: String,
    pub start: Ts,
    pub end: Ts,
}

/// One raised warning (or model detection).
#[derive(Clone, Debug, PartialEq)]
pub struct Alarm {
    pub rule: String,
    pub site: String,
    pub at: Ts,
}

/// Read an incident list: CSV with columns `site,start,end` (times as readings have them:
/// RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in the local zone, or epoch ms).
pub fn read(path: &Path, tz: Tz) -> Result<Vec<Incident>, BacktestError> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| BacktestError::csv(path, e))?;
    let headers = rd
        .headers()
        .map_err(|e| BacktestError::csv(path, e))?
        .clone();
    let col = |name: &str| -> Result<usize, BacktestError> {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                BacktestError::Input(format!(
                    "{}:1: no `{name}` column (an incident list has site,start,end)",
                    path.display()
                ))
            })
    };
    let (site, start, end) = (col("site")?, col("start")?, col("end")?);
    let mut out = Vec::new();
    for (n, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| BacktestError::csv(path, e))?;
        let at = |i: usize| -> Result<Ts, BacktestError> {
            let v = rec.get(i).unwrap_or("").trim();
            crate::time::parse_ts(v, tz).map_err(|e| {
                BacktestError::Input(format!("{}:{}: `{v}`: {e}", path.display(), n + 2))
            })
        };
        let (s, e) = (at(start)?, at(end)?);
        if e < s {
            return Err(BacktestError::Input(format!(
                "{}:{}: the incident ends before it starts",
                path.display(),
                n + 2
            )));
        }
        out.push(Incident {
            site: rec.get(site).unwrap_or("").trim().to_string(),
            start: s,
            end: e,
        });
    }
    Ok(out)
}

/// The verdict on one rule or model.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verdict {
    pub rule: String,
    pub warnings: usize,
    pub right: usize,
    pub incidents: usize,
    pub caught: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Lead times of caught incidents in minutes: 10th, 50th and 90th percentile.
    pub lead_p10_min: Option<f64>,
    pub lead_p50_min: Option<f64>,
    pub lead_p90_min: Option<f64>,
    /// Wrong warnings per site and week of data.
    pub false_per_site_week: Option<f64>,
}

/// Judge every rule's alarms against the incidents. `span` is each site's first and last
/// reading (the weeks a site could have been warned about); `early` how long before an
/// incident's start a warning still counts as right.
pub fn judge(
    alarms: &[Alarm],
    incidents: &[Incident],
    span: &BTreeMap<String, (Ts, Ts)>,
    early: Millis,
) -> Vec<Verdict> {
    let mut rules: BTreeMap<&str, Vec<&Alarm>> = BTreeMap::new();
    for a in alarms {
        rules.entry(&a.rule).or_default().push(a);
    }
    // incidents at sites with data: the ones a rule could have caught
    let watched: Vec<&Incident> = incidents
        .iter()
        .filter(|i| span.contains_key(&i.site))
        .collect();
    let weeks: f64 = span
        .values()
        .map(|(a, b)| (b - a).max(0) as f64 / (7.0 * 86_400_000.0))
        .sum();
    rules
        .into_iter()
        .map(|(rule, list)| {
            let mut right = 0;
            let mut first: Vec<Option<Ts>> = vec![None; watched.len()];
            for a in &list {
                let mut hit = false;
                for (k, i) in watched.iter().enumerate() {
                    if i.site == a.site && a.at >= i.start - early && a.at <= i.end {
                        hit = true;
                        first[k] = Some(first[k].map_or(a.at, |f: Ts| f.min(a.at)));
                    }
                }
                if hit {
                    right += 1;
                }
            }
            let mut leads: Vec<f64> = watched
                .iter()
                .zip(&first)
                .filter_map(|(i, f)| f.map(|f| (i.start - f) as f64 / 60_000.0))
                .collect();
            leads.sort_by(f64::total_cmp);
            let caught = leads.len();
            let wrong = list.len() - right;
            Verdict {
                rule: rule.to_string(),
                warnings: list.len(),
                right,
                incidents: watched.len(),
                caught,
                precision: (!list.is_empty()).then(|| right as f64 / list.len() as f64),
                recall: (!watched.is_empty()).then(|| caught as f64 / watched.len() as f64),
                lead_p10_min: quantile(&leads, 0.1),
                lead_p50_min: quantile(&leads, 0.5),
                lead_p90_min: quantile(&leads, 0.9),
                false_per_site_week: (weeks > 0.0).then(|| wrong as f64 / weeks),
            }
        })
        .collect()
}

/// Incidents from a column of technician flags: rows whose `flag_col` cell is set (not empty,
/// `NULL` or `NA`) are anomalous; consecutive flagged rows make one incident at `site`. Times
/// are in `time_col` (local time in `tz`, or as readings have them).
pub fn from_flags(
    path: &Path,
    time_col: Option<&str>,
    flag_col: &str,
    site: &str,
    tz: Tz,
) -> Result<Vec<Incident>, BacktestError> {
    let mut rd = csv::Reader::from_path(path).map_err(|e| BacktestError::csv(path, e))?;
    let headers = rd
        .headers()
        .map_err(|e| BacktestError::csv(path, e))?
        .clone();
    let find = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                BacktestError::Input(format!("{}:1: no column `{name}`", path.display()))
            })
    };
    let t = match time_col {
        Some(c) => find(c)?,
        None => 0,
    };
    let f = find(flag_col)?;
    let mut out: Vec<Incident> = Vec::new();
    let mut open = false;
    for (n, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| BacktestError::csv(path, e))?;
        let raw = rec.get(t).unwrap_or("").trim();
        let ts = crate::time::parse_ts(raw, tz)
            .map_err(|e| BacktestError::Input(format!("{}:{}: {e}", path.display(), n + 2)))?;
        let flag = rec.get(f).unwrap_or("").trim();
        let flagged = !(flag.is_empty() || flag.eq_ignore_ascii_case("null") || flag == "NA");
        match (flagged, open) {
            (true, true) => {
                if let Some(last) = out.last_mut() {
                    last.end = ts;
                }
            }
            (true, false) => out.push(Incident {
                site: site.to_string(),
                start: ts,
                end: ts,
            }),
            _ => {}
        }
        open = flagged;
    }
    Ok(out)
}

#[cfg(test)]
mod flag_tests {
    use super::*;

    #[test]
    fn consecutive_flags_make_one_incident() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join("f.csv");
        std::fs::write(
            &p,
            "datetime,stage,stage_qual\n2019-01-01 00:00,1,NULL\n2019-01-01 00:15,9,1\n2019-01-01 00:30,9,1\n2019-01-01 00:45,1,\n2019-01-01 01:00,9,x\n",
        )
        .expect("w");
        let tz: Tz = "UTC".parse().expect("tz");
        let list = from_flags(&p, None, "stage_qual", "r1", tz).expect("flags");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].end - list[0].start, 15 * 60_000);
        assert_eq!(list[1].start, list[1].end);
        assert!(from_flags(&p, None, "nope", "r1", tz).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precision_recall_and_lead_times() {
        let h = 3_600_000;
        let incidents = vec![
            Incident {
                site: "r1".into(),
                start: 10 * h,
                end: 12 * h,
            },
            Incident {
                site: "r1".into(),
                start: 50 * h,
                end: 51 * h,
            },
            // no data at r9: not counted
            Incident {
                site: "r9".into(),
                start: 10 * h,
                end: 11 * h,
            },
        ];
        let a = |at: Ts| Alarm {
            rule: "level".into(),
            site: "r1".into(),
            at,
        };
        // one 30 min ahead (within the 1 h allowance), one inside, one far off
        let alarms = vec![a(10 * h - h / 2), a(11 * h), a(30 * h)];
        let span = BTreeMap::from([("r1".to_string(), (0, 7 * 24 * h))]);
        let v = judge(&alarms, &incidents, &span, h);
        assert_eq!(v.len(), 1);
        let v = &v[0];
        assert_eq!((v.warnings, v.right, v.incidents, v.caught), (3, 2, 2, 1));
        assert_eq!(v.precision, Some(2.0 / 3.0));
        assert_eq!(v.recall, Some(0.5));
        assert_eq!(v.lead_p50_min, Some(30.0));
        assert_eq!(v.false_per_site_week, Some(1.0));
    }
}
