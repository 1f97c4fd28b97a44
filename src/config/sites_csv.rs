//! The site registry as CSV (`sites.csv`), for registries kept in spreadsheets: one row per
//! device, the site's columns repeated (or left empty after its first row).
//!
//! ```csv
//! site,name,kind,department,lat,lon,device,type,metrics,param:warning_level_m,param:guaranteed_level_m
//! rv-01,城关水文站,water,slj;yjj,29.04,119.67,rv-01-level,water_level_gauge,water_level,42.5,44.0
//! rv-01,,,,,,rv-01-rain,rain_gauge,rainfall,,
//! ```
//!
//! Columns: `site`, `device` and `metrics` are required; `name`, `name_en`, `kind`, `department`
//! (several separated by `;`), `lat`, `lon`, `address`, `type`, `credit_code` + `enterprise`, and
//! `param:<name>` for site parameters are optional. Metrics are separated by `;`. Every problem is
//! reported as `file:line:col`. Departments are not checked against a list (the YAML form has one).

use super::sites::{
    check_credit_code, valid_id, Device, Enterprise, Location, Registry, Site, SiteKind,
};
use super::yaml::{Diag, Pos};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Columns that describe the site (repeated on each of its rows, or left empty after the first).
const SITE_COLUMNS: &[&str] = &[
    "name",
    "name_en",
    "kind",
    "department",
    "lat",
    "lon",
    "address",
];
/// Columns that describe the row's device.
const DEVICE_COLUMNS: &[&str] = &[
    "site",
    "device",
    "type",
    "metrics",
    "credit_code",
    "enterprise",
    "rating",
];

struct Row {
    line: usize,
    cells: Vec<(String, usize)>,
}

struct Pending {
    site: Site,
    pos: Pos,
    devices: Vec<Device>,
    /// Where each site column was first given, to point at contradictions.
    seen: BTreeMap<String, (String, usize)>,
}

/// Load `sites.csv` from its text. All problems are returned at once.
pub fn load(file: &str, text: &str) -> Result<Registry, Vec<Diag>> {
    let file: Arc<str> = Arc::from(file);
    let mut diags = Vec::new();
    let mut err = |line: usize, col: usize, msg: String| {
        diags.push(Diag {
            file: file.clone(),
            pos: Pos { line, col },
            msg,
        })
    };
    let lines: Vec<&str> = text.lines().collect();
    // columns count characters, as editors do
    let char_col = |line: usize, byte: usize| -> usize {
        lines
            .get(line.saturating_sub(1))
            .and_then(|l| l.get(..byte.min(l.len())))
            .map(|p| p.chars().count() + 1)
            .unwrap_or(byte + 1)
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for rec in rdr.byte_records() {
        match rec {
            Ok(r) => {
                let line = r.position().map(|p| p.line() as usize).unwrap_or(0);
                let cells = (0..r.len())
                    .map(|i| {
                        let col = r
                            .range(i)
                            .map(|rg| char_col(line, rg.start + i))
                            .unwrap_or(1);
                        (String::from_utf8_lossy(&r[i]).trim().to_string(), col)
                    })
                    .collect();
                rows.push(Row { line, cells });
            }
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                err(line, 1, format!("CSV syntax error: {e}"));
            }
        }
    }
    let Some((header, body)) = rows.split_first() else {
        err(1, 1, "the file is empty: it needs a header row".into());
        return Err(diags);
    };
    let names: Vec<String> = header
        .cells
        .iter()
        .map(|c| c.0.to_ascii_lowercase())
        .collect();
    for (i, n) in names.iter().enumerate() {
        let known: Vec<&str> = SITE_COLUMNS.iter().chain(DEVICE_COLUMNS).copied().collect();
        if !known.contains(&n.as_str()) && !n.starts_with("param:") {
            let hint = super::yaml::suggest(n, &known)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            err(
                header.line,
                header.cells[i].1,
                format!(
                    "unknown column `{n}` (site columns, device columns, or `param:<name>`){hint}"
                ),
            );
        }
    }
    let col = |name: &str| names.iter().position(|n| n == name);
    for required in ["site", "device", "metrics"] {
        if col(required).is_none() {
            err(
                header.line,
                1,
                format!("the header has no `{required}` column"),
            );
        }
    }
    let (Some(c_site), Some(c_device), Some(c_metrics)) =
        (col("site"), col("device"), col("metrics"))
    else {
        return Err(diags);
    };
    let mut order: Vec<String> = Vec::new();
    let mut pending: BTreeMap<String, Pending> = BTreeMap::new();
    let mut device_ids: BTreeMap<String, usize> = BTreeMap::new();
    for row in body {
        if row.cells.iter().all(|c| c.0.is_empty()) {
            continue;
        }
        let cell = |i: Option<usize>| {
            i.and_then(|i| row.cells.get(i))
                .map(|c| (c.0.as_str(), c.1))
                .unwrap_or(("", 1))
        };
        let (sid, scol) = cell(Some(c_site));
        if sid.is_empty() {
            err(row.line, scol, "empty `site`".into());
            continue;
        }
        if !valid_id(sid) {
            err(
                row.line,
                scol,
                format!("site id `{sid}` may use only letters, digits, `-`, `_` and `.`"),
            );
        }
        let p = pending.entry(sid.to_string()).or_insert_with(|| {
            order.push(sid.to_string());
            Pending {
                site: Site {
                    id: sid.to_string(),
                    name: String::new(),
                    name_en: None,
                    kind: SiteKind::Environment,
                    departments: Vec::new(),
                    location: Location::default(),
                    params: BTreeMap::new(),
                    enterprises: Vec::new(),
                    keywords: Vec::new(),
                    devices: Vec::new(),
                },
                pos: Pos {
                    line: row.line,
                    col: scol,
                },
                devices: Vec::new(),
                seen: BTreeMap::new(),
            }
        });
        // site columns: the first value given wins; a different one later is an error
        for name in SITE_COLUMNS.iter().copied().chain(
            names
                .iter()
                .filter(|n| n.starts_with("param:"))
                .map(String::as_str),
        ) {
            let (v, c) = cell(col(name));
            if v.is_empty() {
                continue;
            }
            if let Some((first, line)) = p.seen.get(name) {
                if first != v {
                    err(
                        row.line,
                        c,
                        format!("site `{sid}` has {name} `{first}` on line {line}, `{v}` here"),
                    );
                }
                continue;
            }
            p.seen.insert(name.to_string(), (v.to_string(), row.line));
            let number = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite());
            match name {
                "name" => p.site.name = v.to_string(),
                "name_en" => p.site.name_en = Some(v.to_string()),
                "kind" => match SiteKind::parse(v) {
                    Some(k) => p.site.kind = k,
                    None => err(
                        row.line,
                        c,
                        format!(
                            "unknown site kind `{v}` (expected one of: {})",
                            SiteKind::NAMES.join(", ")
                        ),
                    ),
                },
                "department" => {
                    p.site.departments = v
                        .split(';')
                        .map(|d| d.trim().to_string())
                        .filter(|d| !d.is_empty())
                        .collect()
                }
                "lat" | "lon" => match number(v) {
                    Some(x) if name == "lat" && (-90.0..=90.0).contains(&x) => {
                        p.site.location.lat = x
                    }
                    Some(x) if name == "lon" && (-180.0..=180.0).contains(&x) => {
                        p.site.location.lon = x
                    }
                    _ => err(
                        row.line,
                        c,
                        format!(
                            "{name} `{v}` is not a {}",
                            if name == "lat" {
                                "latitude (-90..90)"
                            } else {
                                "longitude (-180..180)"
                            }
                        ),
                    ),
                },
                "address" => p.site.location.address = Some(v.to_string()),
                param => match number(v) {
                    Some(x) => {
                        p.site
                            .params
                            .insert(param.trim_start_matches("param:").to_string(), x);
                    }
                    None => err(row.line, c, format!("{param}: `{v}` is not a number")),
                },
            }
        }
        let (code, ccol) = cell(col("credit_code"));
        if !code.is_empty() && !p.site.enterprises.iter().any(|e| e.credit_code == code) {
            if let Err(e) = check_credit_code(code) {
                err(row.line, ccol, e);
            }
            let (rating, rcol) = cell(col("rating"));
            let rating = match rating.trim().to_ascii_uppercase().as_str() {
                "" => None,
                r @ ("A" | "B" | "C" | "D") => r.chars().next(),
                other => {
                    err(
                        row.line,
                        rcol,
                        format!("rating: `{other}` is not A, B, C or D"),
                    );
                    None
                }
            };
            p.site.enterprises.push(Enterprise {
                credit_code: code.to_string(),
                name: cell(col("enterprise")).0.to_string(),
                rating,
            });
        }
        let (did, dcol) = cell(Some(c_device));
        if did.is_empty() {
            err(row.line, dcol, format!("empty `device` for site `{sid}`"));
            continue;
        }
        if !valid_id(did) {
            err(
                row.line,
                dcol,
                format!("device id `{did}` may use only letters, digits, `-`, `_` and `.`"),
            );
        }
        if let Some(first) = device_ids.insert(did.to_string(), row.line) {
            err(
                row.line,
                dcol,
                format!("device `{did}` is listed twice (first on line {first})"),
            );
            continue;
        }
        let (m, mcol) = cell(Some(c_metrics));
        let metrics: Vec<String> = m
            .split(';')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect();
        if metrics.is_empty() {
            err(
                row.line,
                mcol,
                format!("device `{did}` needs `metrics` (what it measures, separated by `;`)"),
            );
        }
        let kind = Some(cell(col("type")).0)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        p.devices.push(Device {
            id: did.to_string(),
            site: 0,
            metrics,
            kind,
            hj212_mn: None,
            rtsp_url: None,
            rtsp_secret: None,
            hj212_pw: None,
        });
    }
    let mut reg = Registry::default();
    for sid in order {
        let Some(mut p) = pending.remove(&sid) else {
            continue;
        };
        if p.site.departments.is_empty() {
            err(
                p.pos.line,
                p.pos.col,
                format!("site `{sid}` needs a `department`"),
            );
        }
        if p.site.name.is_empty() {
            p.site.name = sid.clone();
        }
        let site_idx = reg.sites.len() as u32;
        for mut d in p.devices {
            d.site = site_idx;
            let idx = reg.push_device(d);
            p.site.devices.push(idx);
        }
        reg.push_site(p.site, p.pos);
    }
    if diags.is_empty() {
        Ok(reg)
    } else {
        diags.sort();
        Err(diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "site,name,kind,department,lat,lon,device,type,metrics,param:warning_level_m,credit_code,enterprise
rv-01,城关水文站,water,slj;yjj,29.04,119.67,rv-01-level,gauge,water_level,42.5,,
rv-01,,,,,,rv-01-rain,rain_gauge,rainfall,,,
cs-01,工地,construction,zjj,29.1,119.7,cs-01-dust,dust,pm10;tsp,,91330100MA27XL3Q2U,某公司
";

    #[test]
    fn loads_sites_from_rows_of_devices() {
        let reg = load("sites.csv", CSV).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(reg.sites.len(), 2);
        let rv = &reg.sites[0];
        assert_eq!(
            (rv.id.as_str(), rv.kind, rv.departments.len()),
            ("rv-01", SiteKind::Water, 2)
        );
        assert_eq!(rv.params["warning_level_m"], 42.5);
        assert_eq!(rv.devices.len(), 3, "two devices and the ticket device");
        let d = reg.device("cs-01-dust").expect("device");
        assert_eq!(reg.devices[d as usize].metrics, vec!["pm10", "tsp"]);
        assert_eq!(reg.devices[d as usize].site, 1);
        assert_eq!(reg.sites[1].enterprises.len(), 1);
    }

    #[test]
    fn every_error_has_a_line_and_column() {
        let bad = CSV.replace("water,slj", "lake,slj").replace(
            ",,,,,,rv-01-rain,rain_gauge,rainfall,,,",
            ",other name,,,,,rv-01-level,x,,,,",
        );
        let errs: Vec<String> = load("sites.csv", &bad)
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert!(
            errs.iter()
                .any(|e| e.starts_with("sites.csv:2:13: unknown site kind `lake`")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("sites.csv:3:7: site `rv-01` has name `城关水文站` on line 2")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("device `rv-01-level` is listed twice (first on line 2)")),
            "{errs:?}"
        );
        let errs = load("s.csv", "site,device,metrix\n").unwrap_err();
        assert!(
            errs.iter()
                .any(|d| d.msg.contains("did you mean `metrics`")),
            "{errs:?}"
        );
    }
}
