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
    let mut e = Errs {
        file: Arc::from(file),
        diags: Vec::new(),
    };
    let rows = read_rows(text, &mut e);
    let Some((header, body)) = rows.split_first() else {
        e.err(1, 1, "the file is empty: it needs a header row".into());
        return Err(e.diags);
    };
    let names = header_names(header, &mut e);
    let col = |name: &str| names.iter().position(|n| n == name);
    for required in ["site", "device", "metrics"] {
        if col(required).is_none() {
            e.err(
                header.line,
                1,
                format!("the header has no `{required}` column"),
            );
        }
    }
    let (Some(site), Some(device), Some(metrics)) = (col("site"), col("device"), col("metrics"))
    else {
        return Err(e.diags);
    };
    let cols = Required {
        site,
        device,
        metrics,
    };
    let mut sites = Sites::default();
    for row in body {
        sites.row(row, &names, cols, &mut e);
    }
    let reg = sites.registry(&mut e);
    if e.diags.is_empty() {
        Ok(reg)
    } else {
        e.diags.sort();
        Err(e.diags)
    }
}

/// Problems, each at a line and column of the file.
struct Errs {
    file: Arc<str>,
    diags: Vec<Diag>,
}

impl Errs {
    fn err(&mut self, line: usize, col: usize, msg: String) {
        self.diags.push(Diag {
            file: self.file.clone(),
            pos: Pos { line, col },
            msg,
        })
    }
}

/// The required columns' indexes.
#[derive(Clone, Copy)]
struct Required {
    site: usize,
    device: usize,
    metrics: usize,
}

/// The rows as cells with their columns (counted in characters, as editors do).
fn read_rows(text: &str, e: &mut Errs) -> Vec<Row> {
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
            Err(bad) => {
                let line = bad.position().map(|p| p.line() as usize).unwrap_or(0);
                e.err(line, 1, format!("CSV syntax error: {bad}"));
            }
        }
    }
    rows
}

/// The header's column names (lower case); unknown ones are errors.
fn header_names(header: &Row, e: &mut Errs) -> Vec<String> {
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
            e.err(
                header.line,
                header.cells[i].1,
                format!(
                    "unknown column `{n}` (site columns, device columns, or `param:<name>`){hint}"
                ),
            );
        }
    }
    names
}

/// A row's cell and its column; empty past the row's end.
fn cell(row: &Row, i: Option<usize>) -> (&str, usize) {
    i.and_then(|i| row.cells.get(i))
        .map(|c| (c.0.as_str(), c.1))
        .unwrap_or(("", 1))
}

/// Sites as their rows come in, in the order first seen, and the device ids seen.
#[derive(Default)]
struct Sites {
    order: Vec<String>,
    pending: BTreeMap<String, Pending>,
    device_ids: BTreeMap<String, usize>,
}

impl Sites {
    /// One row: its site's columns (first value wins), its enterprise, its device.
    fn row(&mut self, row: &Row, names: &[String], cols: Required, e: &mut Errs) {
        let col = |name: &str| names.iter().position(|n| n == name);
        if row.cells.iter().all(|c| c.0.is_empty()) {
            return;
        }
        let cell = |i: Option<usize>| cell(row, i);
        let (sid, scol) = cell(Some(cols.site));
        if sid.is_empty() {
            e.err(row.line, scol, "empty `site`".into());
            return;
        }
        if !valid_id(sid) {
            e.err(
                row.line,
                scol,
                format!("site id `{sid}` may use only letters, digits, `-`, `_` and `.`"),
            );
        }
        let p = self.pending.entry(sid.to_string()).or_insert_with(|| {
            self.order.push(sid.to_string());
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
                    e.err(
                        row.line,
                        c,
                        format!("site `{sid}` has {name} `{first}` on line {line}, `{v}` here"),
                    );
                }
                continue;
            }
            p.seen.insert(name.to_string(), (v.to_string(), row.line));
            site_column(&mut p.site, name, v, (row.line, c), e);
        }
        enterprise(&mut p.site, row, names, e);
        if let Some(d) = device(&mut self.device_ids, row, names, cols, sid, e) {
            p.devices.push(d);
        }
    }

    /// The registry, sites in the order first seen.
    fn registry(mut self, e: &mut Errs) -> Registry {
        let mut reg = Registry::default();
        for sid in self.order {
            let Some(mut p) = self.pending.remove(&sid) else {
                continue;
            };
            if p.site.departments.is_empty() {
                e.err(
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
        reg
    }
}

/// The row's device, unless its id is empty or taken.
fn device(
    device_ids: &mut BTreeMap<String, usize>,
    row: &Row,
    names: &[String],
    cols: Required,
    sid: &str,
    e: &mut Errs,
) -> Option<Device> {
    let line = row.line;
    let col = |name: &str| names.iter().position(|n| n == name);
    let cell = |i: Option<usize>| cell(row, i);
    let (did, dcol) = cell(Some(cols.device));
    if did.is_empty() {
        e.err(line, dcol, format!("empty `device` for site `{sid}`"));
        return None;
    }
    if !valid_id(did) {
        e.err(
            line,
            dcol,
            format!("device id `{did}` may use only letters, digits, `-`, `_` and `.`"),
        );
    }
    if let Some(first) = device_ids.insert(did.to_string(), line) {
        e.err(
            line,
            dcol,
            format!("device `{did}` is listed twice (first on line {first})"),
        );
        return None;
    }
    let (m, mcol) = cell(Some(cols.metrics));
    let metrics: Vec<String> = m
        .split(';')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    if metrics.is_empty() {
        e.err(
            line,
            mcol,
            format!("device `{did}` needs `metrics` (what it measures, separated by `;`)"),
        );
    }
    let kind = Some(cell(col("type")).0)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Some(Device {
        id: did.to_string(),
        site: 0,
        metrics,
        kind,
        hj212_mn: None,
        rtsp_url: None,
        rtsp_secret: None,
        hj212_pw: None,
    })
}

/// One site column's value into the site.
fn site_column(site: &mut Site, name: &str, v: &str, (line, c): (usize, usize), e: &mut Errs) {
    let number = |v: &str| v.parse::<f64>().ok().filter(|x| x.is_finite());
    match name {
        "name" => site.name = v.to_string(),
        "name_en" => site.name_en = Some(v.to_string()),
        "kind" => match SiteKind::parse(v) {
            Some(k) => site.kind = k,
            None => e.err(
                line,
                c,
                format!(
                    "unknown site kind `{v}` (expected one of: {})",
                    SiteKind::NAMES.join(", ")
                ),
            ),
        },
        "department" => {
            site.departments = v
                .split(';')
                .map(|d| d.trim().to_string())
                .filter(|d| !d.is_empty())
                .collect()
        }
        "lat" | "lon" => match number(v) {
            Some(x) if name == "lat" && (-90.0..=90.0).contains(&x) => site.location.lat = x,
            Some(x) if name == "lon" && (-180.0..=180.0).contains(&x) => site.location.lon = x,
            _ => e.err(
                line,
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
        "address" => site.location.address = Some(v.to_string()),
        param => match number(v) {
            Some(x) => {
                site.params
                    .insert(param.trim_start_matches("param:").to_string(), x);
            }
            None => e.err(line, c, format!("{param}: `{v}` is not a number")),
        },
    }
}

/// The row's enterprise (`credit_code`, `enterprise`, `rating`), if new to the site.
fn enterprise(site: &mut Site, row: &Row, names: &[String], e: &mut Errs) {
    let line = row.line;
    let col = |name: &str| names.iter().position(|n| n == name);
    let cell = |i: Option<usize>| cell(row, i);
    let (code, ccol) = cell(col("credit_code"));
    if !code.is_empty() && !site.enterprises.iter().any(|e| e.credit_code == code) {
        if let Err(msg) = check_credit_code(code) {
            e.err(line, ccol, msg);
        }
        let (rating, rcol) = cell(col("rating"));
        let rating = match rating.trim().to_ascii_uppercase().as_str() {
            "" => None,
            r @ ("A" | "B" | "C" | "D") => r.chars().next(),
            other => {
                e.err(line, rcol, format!("rating: `{other}` is not A, B, C or D"));
                None
            }
        };
        site.enterprises.push(Enterprise {
            credit_code: code.to_string(),
            name: cell(col("enterprise")).0.to_string(),
            rating,
        });
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
