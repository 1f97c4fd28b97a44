//! 12345 citizen-hotline tickets: validation, the concern a category stands for, and matching a
//! ticket to a site. A ticket with problems (a bad credit code, a missing field, an absurd time)
//! is kept and flagged, never dropped; one no site can be found for waits for an operator.
//!
//! Matching, in order: the credit code of an enterprise responsible for exactly one site
//! (sites.yaml `enterprises`); the ticket's own `site`; a site whose address `keywords` appear
//! in the ticket's address or content (exactly one site). A matched ticket counts in rules as a
//! reading of the site's `<site>.hotline` device, metric `tickets.<concern>`, value 1, at the
//! time it was received.

use crate::config::sites::{check_credit_code, Registry};
use crate::event::{concern_of, Ticket};
use crate::time::{parse_ts, Ts};
use serde::Deserialize;

/// A ticket as the hotline system sends it (`POST /api/v1/hotline/tickets`, a Kafka message).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketIn {
    pub number: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    /// ISO-8601 (local time without an offset) or epoch milliseconds.
    #[serde(default)]
    pub received_at: Option<serde_json::Value>,
    #[serde(default)]
    pub credit_code: Option<String>,
    #[serde(default)]
    pub enterprise: Option<String>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub result: Option<String>,
    /// A site id, when the hotline system knows it.
    #[serde(default)]
    pub site: Option<String>,
}

/// Check and match a ticket. `Err` only when it cannot be kept at all (no number).
pub fn check(t: TicketIn, reg: &Registry, tz: chrono_tz::Tz, now: Ts) -> Result<Ticket, String> {
    let number = t.number.trim().to_string();
    if number.is_empty() || number.len() > 64 {
        return Err("`number` must be 1 to 64 characters: tickets are kept by their number".into());
    }
    let mut problems = Vec::new();
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    for (field, v) in [("category", &t.category), ("content", &t.content)] {
        if blank(v) {
            problems.push(format!("missing `{field}`"));
        }
    }
    let received_at = match &t.received_at {
        None => {
            problems.push("missing `received_at`".into());
            None
        }
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => match parse_ts(s, tz) {
            Ok(ts) => Some(ts),
            Err(e) => {
                problems.push(format!("`received_at`: {e}"));
                None
            }
        },
        Some(_) => {
            problems.push("`received_at` is neither a time nor epoch milliseconds".into());
            None
        }
    };
    let received_at = received_at.filter(|ts| {
        // 2000-01-01 .. an hour from now
        let sane = *ts >= 946_684_800_000 && *ts <= now + 3_600_000;
        if !sane {
            problems.push(format!(
                "`received_at` {ts} is before 2000 or in the future"
            ));
        }
        sane
    });
    let credit_code = t
        .credit_code
        .as_deref()
        .map(|c| c.trim().to_uppercase())
        .filter(|c| !c.is_empty());
    let code_ok = match &credit_code {
        Some(c) => match check_credit_code(c) {
            Ok(()) => true,
            Err(e) => {
                problems.push(e);
                false
            }
        },
        None => false,
    };
    if let Some(d) = t.department.as_deref().filter(|d| !d.is_empty()) {
        if !reg.departments.is_empty() && !reg.departments.iter().any(|x| x.id == d) {
            problems.push(format!("unknown department `{d}`"));
        }
    }
    // matching
    let mut site = None;
    let mut matched_by = None;
    if code_ok {
        if let Some(code) = &credit_code {
            let sites: Vec<&str> = reg
                .sites
                .iter()
                .filter(|s| s.enterprises.iter().any(|e| &e.credit_code == code))
                .map(|s| s.id.as_str())
                .collect();
            if sites.len() == 1 {
                site = Some(sites[0].to_string());
                matched_by = Some("credit_code");
            }
        }
    }
    if site.is_none() {
        if let Some(s) = t.site.as_deref().filter(|s| !s.is_empty()) {
            if reg.site(s).is_some() {
                site = Some(s.to_string());
                matched_by = Some("site");
            } else {
                problems.push(format!("unknown site `{s}`"));
            }
        }
    }
    if site.is_none() {
        let text = format!(
            "{} {}",
            t.address.as_deref().unwrap_or(""),
            t.content.as_deref().unwrap_or("")
        );
        let hits: Vec<&str> = reg
            .sites
            .iter()
            .filter(|s| {
                s.keywords
                    .iter()
                    .any(|k| !k.is_empty() && text.contains(k.as_str()))
            })
            .map(|s| s.id.as_str())
            .collect();
        match hits.as_slice() {
            [one] => {
                site = Some(one.to_string());
                matched_by = Some("keyword");
            }
            [] => {}
            many => problems.push(format!(
                "the address matches several sites ({}): assign it by hand",
                many.join(", ")
            )),
        }
    }
    let concern = concern_of(t.category.as_deref().unwrap_or(""));
    Ok(Ticket {
        number,
        channel: t.channel,
        category: t.category,
        concern: concern.into(),
        received_at,
        credit_code,
        enterprise: t.enterprise,
        industry: t.industry,
        department: t.department,
        address: t.address,
        content: t.content,
        status: t.status,
        result: t.result,
        site,
        matched_by: matched_by.map(Into::into),
        problems,
    })
}

/// Why a ticket could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Bad(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Take a ticket (HTTP or Kafka): an update is checked together with what the ticket said
/// before; the result is stored. Returns the stored row and whether it is now to be counted.
pub async fn ingest(
    store: &crate::store::Store,
    reg: &Registry,
    tz: chrono_tz::Tz,
    t: TicketIn,
    now: Ts,
    feed: crate::store::tickets::Feed<'_>,
) -> Result<(crate::store::tickets::TicketRow, bool), IngestError> {
    let t = prepare(store, reg, tz, t, now).await?;
    Ok(store.put_ticket(&t, now, feed).await?)
}

/// Check a ticket together with what it said before (an update), matching it to a site; not
/// stored yet.
pub async fn prepare(
    store: &crate::store::Store,
    reg: &Registry,
    tz: chrono_tz::Tz,
    mut t: TicketIn,
    now: Ts,
) -> Result<Ticket, IngestError> {
    if let Some(old) = store.ticket(t.number.trim()).await? {
        let old = old.ticket;
        let keep = |new: &mut Option<String>, old: Option<String>| {
            if new.is_none() {
                *new = old;
            }
        };
        keep(&mut t.channel, old.channel);
        keep(&mut t.category, old.category);
        keep(&mut t.credit_code, old.credit_code);
        keep(&mut t.enterprise, old.enterprise);
        keep(&mut t.industry, old.industry);
        keep(&mut t.department, old.department);
        keep(&mut t.address, old.address);
        keep(&mut t.content, old.content);
        keep(&mut t.status, old.status);
        keep(&mut t.result, old.result);
        keep(&mut t.site, old.site);
        if t.received_at.is_none() {
            t.received_at = old.received_at.map(|ms| serde_json::json!(ms));
        }
    }
    check(t, reg, tz, now).map_err(IngestError::Bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registry {
        let text = "departments:
  - {id: zjj, name: 住建局}
sites:
  - id: cs-01
    name: 城东工地
    kind: construction
    department: zjj
    keywords: [城东安置房, 东湖路]
    enterprises:
      - {credit_code: 91330100MA27XL3Q2U, name: 某建设有限公司}
    devices:
      - {id: cs-01-noise, metrics: [noise]}
  - id: cs-02
    name: 城西工地
    kind: construction
    department: zjj
    keywords: [西山路]
    devices:
      - {id: cs-02-noise, metrics: [noise]}
";
        crate::config::sites::load("sites.yaml", text).unwrap_or_else(|d| panic!("{}", d[0]))
    }

    fn ticket(json: &str) -> Ticket {
        let t: TicketIn = serde_json::from_str(json).expect("json");
        check(t, &reg(), chrono_tz::Asia::Shanghai, 1_800_000_000_000).expect("kept")
    }

    #[test]
    fn matches_by_credit_code_then_site_then_keywords() {
        let t = ticket(
            r#"{"number":"A1","category":"夜间施工噪声","received_at":"2026-11-28T23:10:00","credit_code":"91330100ma27xl3q2u","content":"半夜打桩"}"#,
        );
        assert_eq!(
            (t.site.as_deref(), t.matched_by.as_deref()),
            (Some("cs-01"), Some("credit_code"))
        );
        assert_eq!(t.concern, "noise");
        assert!(t.problems.is_empty(), "{:?}", t.problems);
        let t = ticket(
            r#"{"number":"A2","category":"扬尘","received_at":1795000000000,"site":"cs-02","content":"灰很大"}"#,
        );
        assert_eq!(
            (
                t.site.as_deref(),
                t.matched_by.as_deref(),
                t.concern.as_ref()
            ),
            (Some("cs-02"), Some("site"), "dust")
        );
        let t = ticket(
            r#"{"number":"A3","category":"噪音扰民","received_at":1795000000000,"address":"东湖路88号","content":"吵"}"#,
        );
        assert_eq!(
            (t.site.as_deref(), t.matched_by.as_deref()),
            (Some("cs-01"), Some("keyword"))
        );
    }

    #[test]
    fn problems_are_flagged_and_the_ticket_kept() {
        let t = ticket(
            r#"{"number":"B1","received_at":"not a time","credit_code":"91330100MA27XL3Q20","department":"nobody","site":"cs-99"}"#,
        );
        let p = t.problems.join(" | ");
        for want in [
            "missing `category`",
            "missing `content`",
            "received_at",
            "check character",
            "unknown department",
            "unknown site `cs-99`",
        ] {
            assert!(p.contains(want), "{want} in {p}");
        }
        assert_eq!(t.site, None);
        assert_eq!(t.concern, "other");
        let t = ticket(
            r#"{"number":"B2","category":"噪声","content":"西山路和东湖路都很吵","received_at":4102444800000}"#,
        );
        assert!(
            t.problems.iter().any(|p| p.contains("several sites")),
            "{:?}",
            t.problems
        );
        assert!(
            t.problems.iter().any(|p| p.contains("in the future")),
            "{:?}",
            t.problems
        );
        let no: TicketIn = serde_json::from_str(r#"{"number":"  "}"#).unwrap();
        assert!(check(no, &reg(), chrono_tz::UTC, 0).is_err());
    }

    #[test]
    fn categories_to_concerns() {
        assert_eq!(concern_of("建筑施工噪声"), "noise");
        assert_eq!(concern_of("工地扬尘"), "dust");
        assert_eq!(concern_of("河道排污"), "water");
        assert_eq!(concern_of("景区拥挤"), "crowding");
        assert_eq!(concern_of("餐饮油烟"), "smoke");
        assert_eq!(concern_of("工厂异味"), "odor");
        assert_eq!(concern_of("咨询"), "other");
    }
}
