//! The site registry (`sites.yaml`): sites, their kind, department, location and parameters, the
//! enterprises responsible for them, and the devices bound to each.

use super::yaml::{Ctx, Diag, Obj, Pos, Spanned};
use crate::intern::Interner;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SiteKind {
    Environment,
    Construction,
    Water,
    Tourism,
}

impl SiteKind {
    pub const NAMES: [&'static str; 4] = ["environment", "construction", "water", "tourism"];
    pub fn parse(s: &str) -> Option<SiteKind> {
        match s {
            "environment" => Some(SiteKind::Environment),
            "construction" => Some(SiteKind::Construction),
            "water" => Some(SiteKind::Water),
            "tourism" => Some(SiteKind::Tourism),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        SiteKind::NAMES[self as usize]
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Department {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Enterprise {
    pub credit_code: String,
    pub name: String,
    /// Its credit rating where the market regulator has one (A best .. D worst; the site risk
    /// model weighs it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<char>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Site {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_en: Option<String>,
    pub kind: SiteKind,
    pub departments: Vec<String>,
    pub location: Location,
    pub params: BTreeMap<String, f64>,
    pub enterprises: Vec<Enterprise>,
    /// Words of its address that 12345 tickets may name it by (`keywords`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    /// Indexes into [`Registry::devices`].
    #[serde(skip)]
    pub devices: Vec<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Device {
    pub id: String,
    /// Index of its site in [`Registry::sites`].
    #[serde(skip)]
    pub site: u32,
    /// What it measures; rules on other metrics never see it.
    pub metrics: Vec<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The HJ 212 monitor identifier (MN) this device reports under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hj212_mn: Option<String>,
    /// A camera's RTSP URL (without credentials).
    #[serde(skip)]
    pub rtsp_url: Option<String>,
    /// The secret (yujing.toml `[secrets]`) holding the camera's `user:password`.
    #[serde(skip)]
    pub rtsp_secret: Option<String>,
    /// The password (`PW`) its HJ 212 packets must carry: `hj212_pw` in sites.yaml, or
    /// `hj212_pw_secret` naming a secret of yujing.toml.
    #[serde(skip)]
    pub hj212_pw: Option<Password>,
}

/// A password given in sites.yaml or by the name of a secret in yujing.toml `[secrets]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Password {
    Plain(String),
    Secret(String),
}

impl Password {
    /// The password, the secret's looked up in `secrets` (checked when the configuration
    /// was loaded).
    pub fn resolve<'a>(
        &'a self,
        secrets: &'a std::collections::BTreeMap<String, String>,
    ) -> Option<&'a str> {
        match self {
            Password::Plain(p) => Some(p),
            Password::Secret(n) => secrets.get(n).map(String::as_str),
        }
    }
}

impl Device {
    /// A camera: an RTSP URL or the type `camera`.
    pub fn is_camera(&self) -> bool {
        self.rtsp_url.is_some() || self.kind.as_deref() == Some("camera")
    }

    /// The site's 12345 tickets as a device (`<site>.hotline`, type `hotline`): not a thing in
    /// the field, so never offline and never simulated.
    pub fn is_hotline(&self) -> bool {
        self.kind.as_deref() == Some(HOTLINE)
    }
}

/// The type of every site's ticket device.
pub const HOTLINE: &str = "hotline";

/// All sites and devices, indexed for the hot path (device id -> device, site id -> site).
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub sites: Vec<Site>,
    pub devices: Vec<Device>,
    pub departments: Vec<Department>,
    site_index: Interner,
    device_index: Interner,
    /// HJ 212 MN code -> device.
    mn_index: std::collections::HashMap<String, u32>,
    /// Where each site and device was declared, for errors in other files.
    pub site_pos: Vec<Pos>,
}

impl Registry {
    pub fn site(&self, id: &str) -> Option<u32> {
        self.site_index.get(id)
    }
    #[inline]
    pub fn device(&self, id: &str) -> Option<u32> {
        self.device_index.get(id)
    }
    /// The device an HJ 212 monitor reports as (by its MN code).
    pub fn device_by_mn(&self, mn: &str) -> Option<u32> {
        self.mn_index.get(mn).copied()
    }
    /// Add a device (of the site being read, whose index it names); returns its index. A site's
    /// devices must be added one after another, before the next site's.
    pub(crate) fn push_device(&mut self, d: Device) -> u32 {
        let idx = self.devices.len() as u32;
        self.device_index.intern(&d.id);
        if let Some(mn) = &d.hj212_mn {
            self.mn_index.insert(mn.clone(), idx);
        }
        self.devices.push(d);
        idx
    }

    /// Add a site whose devices were just added, and its ticket device; returns its index.
    pub(crate) fn push_site(&mut self, mut s: Site, pos: Pos) -> u32 {
        let idx = self.sites.len() as u32;
        let hotline = self.push_device(Device {
            id: crate::event::device_of(&s.id),
            site: idx,
            metrics: crate::event::CONCERNS
                .iter()
                .map(|c| format!("tickets.{c}"))
                .collect(),
            kind: Some(HOTLINE.into()),
            hj212_mn: None,
            rtsp_url: None,
            rtsp_secret: None,
            hj212_pw: None,
        });
        s.devices.push(hotline);
        self.site_index.intern(&s.id);
        self.site_pos.push(pos);
        self.sites.push(s);
        idx
    }

    /// A site's id from compact memory (the hot path compares it per reading).
    #[inline]
    pub fn site_id(&self, site: u32) -> &str {
        self.site_index.resolve(site)
    }
    /// Whether `id` is the id of site `site` (per reading: cheaper than comparing `site_id`).
    #[inline]
    pub fn site_is(&self, site: u32, id: &str) -> bool {
        self.site_index.is(site, id)
    }
}

const SITE_FIELDS: &[&str] = &[
    "id",
    "name",
    "name_en",
    "kind",
    "department",
    "departments",
    "location",
    "params",
    "enterprises",
    "keywords",
    "devices",
];
/// The health readings every camera's stream gives (see `yujing_connectors::rtsp`).
pub const CAMERA_HEALTH: [&str; 4] = ["fps", "bitrate_kbps", "frame_gap_ms", "stalled"];

const DEVICE_FIELDS: &[&str] = &[
    "id",
    "metrics",
    "type",
    "unit",
    "hj212_mn",
    "hj212_pw",
    "hj212_pw_secret",
    "rtsp_url",
    "rtsp_credentials",
    "note",
];

/// Load `sites.yaml` from its text. All problems are returned at once.
pub fn load(file: &str, text: &str) -> Result<Registry, Vec<Diag>> {
    let ctx = Ctx::new(file);
    let reg = read(&ctx, text);
    let diags = ctx.into_diags();
    if diags.is_empty() {
        Ok(reg)
    } else {
        Err(diags)
    }
}

fn read(ctx: &Ctx, text: &str) -> Registry {
    let mut reg = Registry::default();
    let Some(root) = ctx.parse(text) else {
        return reg;
    };
    let Some(top) = ctx.obj(&root, "sites file", &["departments", "sites"]) else {
        return reg;
    };
    read_departments(ctx, &top, &mut reg);
    let Some(sites) = top.required("sites") else {
        return reg;
    };
    for n in ctx.seq(sites, "sites") {
        read_site(ctx, n, &mut reg);
    }
    reg
}

fn read_departments(ctx: &Ctx, top: &Obj, reg: &mut Registry) {
    if let Some(deps) = top.node("departments") {
        for n in ctx.seq(deps, "departments") {
            let Some(o) = ctx.obj(n, "department", &["id", "name", "name_en"]) else {
                continue;
            };
            let (Some(id), Some(name)) = (o.req_string("id"), o.req_string("name")) else {
                continue;
            };
            if reg.departments.iter().any(|d| d.id == id.v) {
                ctx.err(id.pos, format!("department `{}` is declared twice", id.v));
            }
            reg.departments.push(Department {
                id: id.v,
                name: name.v,
                name_en: o.string("name_en").map(|s| s.v),
            });
        }
    }
}

/// One site of sites.yaml, with its devices, into the registry.
fn read_site(ctx: &Ctx, n: &marked_yaml::Node, reg: &mut Registry) {
    let Some(o) = ctx.obj(n, "site", SITE_FIELDS) else {
        return;
    };
    let Some(id) = o.req_string("id") else {
        return;
    };
    if !valid_id(&id.v) {
        ctx.err(
            id.pos,
            format!(
                "site id `{}` may use only letters, digits, `-`, `_` and `.`",
                id.v
            ),
        );
    }
    if reg.site_index.get(&id.v).is_some() {
        ctx.err(id.pos, format!("site `{}` is declared twice", id.v));
        return;
    }
    let name = o.req_string("name").map(|s| s.v).unwrap_or_default();
    let kind = match o.req_string("kind") {
        Some(k) => match SiteKind::parse(&k.v) {
            Some(kind) => kind,
            None => {
                ctx.err(
                    k.pos,
                    format!(
                        "unknown site kind `{}` (expected one of: {})",
                        k.v,
                        SiteKind::NAMES.join(", ")
                    ),
                );
                SiteKind::Environment
            }
        },
        None => SiteKind::Environment,
    };
    let mut departments: Vec<Spanned<String>> = o.strings("department");
    departments.extend(o.strings("departments"));
    if departments.is_empty() {
        ctx.err(o.pos(), format!("site `{}` needs a `department`", id.v));
    }
    if !reg.departments.is_empty() {
        for d in &departments {
            if !reg.departments.iter().any(|x| x.id == d.v) {
                ctx.err(
                    d.pos,
                    format!(
                        "unknown department `{}` (declare it under `departments`)",
                        d.v
                    ),
                );
            }
        }
    }
    let location = read_location(ctx, &o);
    let params = read_params(ctx, &o);
    let enterprises = read_enterprises(ctx, &o);
    let site_idx = reg.sites.len() as u32;
    let mut devices = Vec::new();
    if let Some(ds) = o.node("devices") {
        for dn in ctx.seq(ds, "devices") {
            devices.extend(read_device(ctx, dn, reg, site_idx));
        }
    }
    reg.push_site(
        Site {
            id: id.v,
            name,
            name_en: o.string("name_en").map(|s| s.v),
            kind,
            departments: departments.into_iter().map(|d| d.v).collect(),
            location,
            params,
            enterprises,
            keywords: o.strings("keywords").into_iter().map(|k| k.v).collect(),
            devices,
        },
        id.pos,
    );
}

fn read_location(ctx: &Ctx, o: &Obj) -> Location {
    o.node("location")
        .and_then(|n| ctx.obj(n, "location", &["lat", "lon", "address"]))
        .map(|l| {
            let lat = l.number("lat");
            let lon = l.number("lon");
            if let Some(lat) = &lat {
                if !(-90.0..=90.0).contains(&lat.v) {
                    ctx.err(lat.pos, "latitude must be within -90..90");
                }
            }
            if let Some(lon) = &lon {
                if !(-180.0..=180.0).contains(&lon.v) {
                    ctx.err(lon.pos, "longitude must be within -180..180");
                }
            }
            Location {
                lat: lat.map(|v| v.v).unwrap_or(0.0),
                lon: lon.map(|v| v.v).unwrap_or(0.0),
                address: l.string("address").map(|s| s.v),
            }
        })
        .unwrap_or_default()
}

/// `params`: free-form numbers (read without the unknown-field check).
fn read_params(ctx: &Ctx, o: &Obj) -> BTreeMap<String, f64> {
    let mut params = BTreeMap::new();
    // params are free-form numbers; read them without the unknown-field check
    if let Some(p) = o.node("params") {
        match p.as_mapping() {
            Some(map) => {
                for (k, v) in map.iter() {
                    if let Some(num) = ctx.number(v, &format!("params.{}", k.as_str())) {
                        params.insert(k.as_str().to_string(), num.v);
                    }
                }
            }
            None => ctx.err(
                o.key_pos("params"),
                "params must be a mapping of names to numbers",
            ),
        }
    }
    params
}

fn read_enterprises(ctx: &Ctx, o: &Obj) -> Vec<Enterprise> {
    let mut enterprises = Vec::new();
    if let Some(es) = o.node("enterprises") {
        for en in ctx.seq(es, "enterprises") {
            let Some(eo) = ctx.obj(en, "enterprise", &["credit_code", "name", "rating"]) else {
                continue;
            };
            if let (Some(code), Some(name)) = (eo.req_string("credit_code"), eo.req_string("name"))
            {
                if let Err(e) = check_credit_code(&code.v) {
                    ctx.err(code.pos, e);
                }
                let rating = eo.string("rating").and_then(|r| {
                    let c = r.v.trim().to_ascii_uppercase();
                    match c.as_str() {
                        "A" | "B" | "C" | "D" => c.chars().next(),
                        _ => {
                            ctx.err(r.pos, format!("rating: `{}` is not A, B, C or D", r.v));
                            None
                        }
                    }
                });
                enterprises.push(Enterprise {
                    credit_code: code.v,
                    name: name.v,
                    rating,
                });
            }
        }
    }
    enterprises
}

/// One device of a site: its id, metrics, camera stream, HJ 212 identity; its index.
fn read_device(
    ctx: &Ctx,
    dn: &marked_yaml::Node,
    reg: &mut Registry,
    site_idx: u32,
) -> Option<u32> {
    let d = ctx.obj(dn, "device", DEVICE_FIELDS)?;
    let did = d.req_string("id")?;
    if !valid_id(&did.v) {
        ctx.err(
            did.pos,
            format!(
                "device id `{}` may use only letters, digits, `-`, `_` and `.`",
                did.v
            ),
        );
    }
    if reg.device_index.get(&did.v).is_some() {
        ctx.err(
            did.pos,
            format!("device `{}` is bound to more than one site", did.v),
        );
        return None;
    }
    let mut metrics: Vec<String> = d.strings("metrics").into_iter().map(|m| m.v).collect();
    let kind = d.string("type").map(|s| s.v);
    let rtsp_url = d.string("rtsp_url");
    if let Some(u) = &rtsp_url {
        match url::Url::parse(&u.v) {
            Ok(url) if url.scheme() == "rtsp" || url.scheme() == "rtsps" => {
                if url.password().is_some() {
                    ctx.err(u.pos, "rtsp_url must not hold a password: name a secret in `rtsp_credentials` (yujing.toml [secrets], value `user:password`)");
                }
            }
            Ok(url) => ctx.err(
                u.pos,
                format!("rtsp_url must start with rtsp://, not {}://", url.scheme()),
            ),
            Err(e) => ctx.err(u.pos, format!("rtsp_url is not a URL: {e}")),
        }
    }
    let camera = rtsp_url.is_some() || kind.as_deref() == Some("camera");
    if camera {
        // the stream's health readings (connectors::rtsp) are every camera's
        for m in CAMERA_HEALTH {
            if !metrics.iter().any(|x| x == m) {
                metrics.push(m.to_string());
            }
        }
    }
    if metrics.is_empty() {
        ctx.err(
            d.pos(),
            format!("device `{}` needs `metrics` (what it measures)", did.v),
        );
    }
    let mn = d.string("hj212_mn");
    if let Some(mn) = &mn {
        if mn.v.is_empty() || mn.v.len() > 24 || !mn.v.bytes().all(|b| b.is_ascii_alphanumeric()) {
            ctx.err(
                mn.pos,
                format!(
                    "hj212_mn `{}` must be 1 to 24 letters and digits (HJ 212-2017 MN)",
                    mn.v
                ),
            );
        } else if reg.mn_index.contains_key(&mn.v) {
            ctx.err(
                mn.pos,
                format!("hj212_mn `{}` is bound to another device too", mn.v),
            );
        }
    }
    let pw = hj212_password(ctx, &d);
    if pw.is_some() && mn.is_none() {
        ctx.err(
            d.pos(),
            format!("device `{}` has an HJ 212 password but no hj212_mn", did.v),
        );
    }
    Some(reg.push_device(Device {
        id: did.v,
        site: site_idx,
        metrics,
        kind,
        hj212_mn: mn.map(|m| m.v),
        rtsp_url: rtsp_url.map(|u| u.v),
        rtsp_secret: d.string("rtsp_credentials").map(|s| s.v),
        hj212_pw: pw,
    }))
}

/// A monitor's HJ 212 password: as written (checked) or the name of a secret.
fn hj212_password(ctx: &Ctx, d: &Obj) -> Option<Password> {
    match (d.string("hj212_pw"), d.string("hj212_pw_secret")) {
        (Some(p), Some(_)) => {
            ctx.err(
                p.pos,
                "give hj212_pw or hj212_pw_secret, not both".to_string(),
            );
            None
        }
        (Some(p), None) => {
            // the standard's PW is 6 characters; vendors use up to 32
            if p.v.is_empty()
                || p.v.len() > 32
                || p.v
                    .bytes()
                    .any(|b| matches!(b, b';' | b'&' | b'=' | b',') || !b.is_ascii_graphic())
            {
                ctx.err(
                    p.pos,
                    "hj212_pw must be 1 to 32 printable ASCII characters without ; & = ,"
                        .to_string(),
                );
            }
            Some(Password::Plain(p.v))
        }
        (None, Some(n)) => Some(Password::Secret(n.v)),
        (None, None) => None,
    }
}

pub(crate) fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Check a unified social credit code (GB 32100-2015): 18 characters, the last a check character.
pub fn check_credit_code(code: &str) -> Result<(), String> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    const WEIGHTS: [u32; 17] = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let b = code.as_bytes();
    if b.len() != 18 {
        return Err(format!(
            "credit code `{code}` must have 18 characters, not {}",
            b.len()
        ));
    }
    let mut sum = 0;
    for (i, c) in b[..17].iter().enumerate() {
        let v = ALPHABET.iter().position(|a| a == c).ok_or_else(|| {
            format!(
                "credit code `{code}` has an invalid character `{}`",
                *c as char
            )
        })?;
        sum += v as u32 * WEIGHTS[i];
    }
    let check = (31 - sum % 31) % 31;
    let expected = ALPHABET[check as usize];
    if b[17] != expected {
        return Err(format!(
            "credit code `{code}` has a wrong check character: expected `{}`",
            expected as char
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITES: &str = r#"
departments:
  - {id: zjj, name: 住房和城乡建设局}
sites:
  - id: cs-01
    name: 城东安置房工地
    kind: construction
    department: zjj
    location: {lat: 30.1, lon: 120.2}
    params: {noise_zone: 2}
    enterprises:
      - {credit_code: 91330100MA27XL3Q2U, name: 某建设有限公司}
    devices:
      - {id: cs-01-pm10, metrics: [pm10, tsp]}
"#;

    #[test]
    fn loads_sites_and_devices() {
        let r = load("sites.yaml", SITES);
        let reg = match r {
            Ok(reg) => reg,
            Err(d) => panic!(
                "{}",
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        };
        assert_eq!(reg.sites.len(), 1);
        let d = reg.device("cs-01-pm10").unwrap();
        assert_eq!(reg.devices[d as usize].site, 0);
        assert_eq!(reg.sites[0].params["noise_zone"], 2.0);
    }

    #[test]
    fn reports_every_error_with_positions() {
        let bad = SITES
            .replace("kind: construction", "kind: factory")
            .replace("department: zjj", "department: nobody")
            .replace("lat: 30.1", "lat: 300");
        let errs = load("sites.yaml", &bad).unwrap_err();
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with("sites.yaml:7:11: unknown site kind `factory`"),
            "{text:?}"
        );
        assert!(text
            .iter()
            .any(|t| t.contains("unknown department `nobody`")));
        assert!(text.iter().any(|t| t.contains("latitude")));
    }

    #[test]
    fn field_devices_are_checked() {
        let with = |devices: &str| {
            SITES.replace("      - {id: cs-01-pm10, metrics: [pm10, tsp]}\n", devices)
        };
        let ok = with("      - {id: d1, metrics: [pm10], hj212_mn: MN001}\n      - {id: c1, type: camera, rtsp_url: \"rtsp://10.0.0.5:554/ch1\", rtsp_credentials: cam}\n");
        let reg = load("sites.yaml", &ok).unwrap_or_else(|d| panic!("{}", d[0]));
        assert_eq!(reg.device_by_mn("MN001"), reg.device("d1"));
        let cam = &reg.devices[reg.device("c1").unwrap() as usize];
        assert!(cam.is_camera());
        assert_eq!(cam.rtsp_secret.as_deref(), Some("cam"));
        assert!(
            cam.metrics.iter().any(|m| m == "fps"),
            "health metrics are every camera's"
        );
        let bad = with("      - {id: d1, metrics: [pm10], hj212_mn: MN001}\n      - {id: d2, metrics: [pm10], hj212_mn: MN001}\n      - {id: d3, metrics: [pm10], hj212_mn: \"MN 2\"}\n      - {id: c1, rtsp_url: \"rtsp://admin:pw@10.0.0.5/ch1\"}\n      - {id: c2, rtsp_url: \"http://10.0.0.5/ch1\"}\n");
        let errs: Vec<String> = load("sites.yaml", &bad)
            .unwrap_err()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(
            errs[0].contains("hj212_mn `MN001` is bound to another device too"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("must be 1 to 24 letters and digits"),
            "{errs:?}"
        );
        assert!(errs[2].contains("must not hold a password"), "{errs:?}");
        assert!(errs[3].contains("must start with rtsp://"), "{errs:?}");
    }

    #[test]
    fn credit_code_check_character() {
        // built with the GB 32100 weights; the last character is the check
        let good = "91330100MA27XL3Q2U";
        assert!(
            check_credit_code(good).is_ok(),
            "{:?}",
            check_credit_code(good)
        );
        assert!(check_credit_code("91330100MA27XL3Q20")
            .unwrap_err()
            .contains("check character"));
        assert!(check_credit_code("123").is_err());
        assert!(check_credit_code("91330100MA27XL3QIK")
            .unwrap_err()
            .contains("invalid character"));
    }
}
