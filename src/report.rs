//! `yujing report`: how departments respond to warnings ("supervising the supervisors"): per
//! department, warnings by level, time to acknowledge and to handle (median, p90), overdue,
//! escalations, and how complete their feedback is. From the store; the same numbers in the API
//! (`GET /api/v1/report`) and on the dashboard; CSV and an HTML page from the command line.

use crate::store::{Backend, Store, StoreError};
use crate::time::Ts;
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;

/// One warning as one department saw it.
#[derive(Clone, Debug)]
pub struct Case {
    pub department: String,
    pub level: String,
    pub stored_at: Ts,
    pub acked_at: Option<Ts>,
    pub handled_at: Option<Ts>,
    pub closed_at: Option<Ts>,
    pub cleared_at: Option<Ts>,
    pub overdue: bool,
    pub escalations: i64,
    /// Feedback with both measures and result.
    pub feedback: bool,
}

/// A department's figures over the period.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct DepartmentReport {
    pub department: String,
    pub name: String,
    pub warnings: u64,
    /// blue, yellow, orange, red
    pub by_level: BTreeMap<String, u64>,
    pub acknowledged: u64,
    pub handled: u64,
    pub closed: u64,
    /// Minutes from delivery (stored) to acknowledgement / to feedback: median and 90th percentile.
    pub ack_minutes_median: Option<f64>,
    pub ack_minutes_p90: Option<f64>,
    pub handle_minutes_median: Option<f64>,
    pub handle_minutes_p90: Option<f64>,
    /// Missed an acknowledgement or handling deadline.
    pub overdue: u64,
    pub escalations: i64,
    /// Of the warnings it acknowledged, the share with feedback (measures and result), 0..1.
    pub feedback_completeness: Option<f64>,
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    // nearest rank
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some((v[rank - 1] * 10.0).round() / 10.0)
}

/// Department id -> name, as the report shows them.
pub fn department_names(registry: &crate::config::sites::Registry) -> BTreeMap<String, String> {
    registry
        .departments
        .iter()
        .map(|d| (d.id.clone(), d.name.clone()))
        .collect()
}

/// The figures of every department with cases, in department order.
pub fn summarize(cases: &[Case], names: &BTreeMap<String, String>) -> Vec<DepartmentReport> {
    let mut by: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
    for c in cases {
        by.entry(c.department.as_str()).or_default().push(c);
    }
    by.into_iter()
        .map(|(d, cs)| {
            let minutes = |a: Ts, b: Ts| (b - a).max(0) as f64 / 60_000.0;
            let mut ack: Vec<f64> = cs
                .iter()
                .filter_map(|c| c.acked_at.map(|t| minutes(c.stored_at, t)))
                .collect();
            let mut handle: Vec<f64> = cs
                .iter()
                .filter_map(|c| c.handled_at.map(|t| minutes(c.stored_at, t)))
                .collect();
            let acknowledged = cs.iter().filter(|c| c.acked_at.is_some()).count() as u64;
            let with_feedback = cs
                .iter()
                .filter(|c| c.acked_at.is_some() && c.feedback)
                .count() as u64;
            let mut by_level = BTreeMap::new();
            for c in &cs {
                *by_level.entry(c.level.clone()).or_insert(0) += 1;
            }
            DepartmentReport {
                department: d.to_string(),
                name: names.get(d).cloned().unwrap_or_else(|| d.to_string()),
                warnings: cs.len() as u64,
                by_level,
                acknowledged,
                handled: cs.iter().filter(|c| c.handled_at.is_some()).count() as u64,
                closed: cs.iter().filter(|c| c.closed_at.is_some()).count() as u64,
                ack_minutes_median: quantile(&mut ack, 0.5),
                ack_minutes_p90: quantile(&mut ack, 0.9),
                handle_minutes_median: quantile(&mut handle, 0.5),
                handle_minutes_p90: quantile(&mut handle, 0.9),
                overdue: cs.iter().filter(|c| c.overdue).count() as u64,
                escalations: cs.iter().map(|c| c.escalations).sum(),
                feedback_completeness: (acknowledged > 0).then(|| {
                    ((with_feedback as f64 / acknowledged as f64) * 1000.0).round() / 1000.0
                }),
            }
        })
        .collect()
}

/// The cases of warnings stored in `[from, to)`.
pub async fn cases(store: &Store, from: Ts, to: Ts) -> Result<Vec<Case>, StoreError> {
    let field = |name: &str| match store.backend() {
        Backend::Sqlite => format!("json_extract(l.detail, '$.{name}')"),
        Backend::Postgres => format!("(l.detail::json ->> '{name}')"),
    };
    let sql = format!(
        "SELECT d.department, w.level, w.stored_at, w.acked_at, w.handled_at, w.closed_at, w.cleared_at, \
           CASE WHEN w.overdue_step > 0 OR w.handle_overdue > 0 THEN 1 ELSE 0 END AS overdue, \
           (SELECT count(*) FROM transitions t WHERE t.warning_id = w.id AND t.kind = 'escalate') AS escalations, \
           CASE WHEN EXISTS (SELECT 1 FROM timeline l WHERE l.warning_id = w.id AND l.kind = 'feedback' \
                   AND coalesce({measures}, '') <> '' AND coalesce({result}, '') <> '') THEN 1 ELSE 0 END AS feedback \
         FROM warnings w JOIN warning_departments d ON d.warning_id = w.id \
         WHERE w.stored_at >= $1 AND w.stored_at < $2 ORDER BY d.department, w.stored_at",
        measures = field("measures"),
        result = field("result"),
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(from)
        .bind(to)
        .fetch_all(store.reader())
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Case {
                department: r.try_get("department")?,
                level: r.try_get("level")?,
                stored_at: r.try_get("stored_at")?,
                acked_at: r.try_get("acked_at")?,
                handled_at: r.try_get("handled_at")?,
                closed_at: r.try_get("closed_at")?,
                cleared_at: r.try_get("cleared_at")?,
                overdue: r.try_get::<i64, _>("overdue")? != 0,
                escalations: r.try_get("escalations")?,
                feedback: r.try_get::<i64, _>("feedback")? != 0,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

const CSV_HEADER: &str = "department,name,warnings,blue,yellow,orange,red,acknowledged,handled,closed,ack_minutes_median,ack_minutes_p90,handle_minutes_median,handle_minutes_p90,overdue,escalations,feedback_completeness";

/// The report as CSV (one row per department).
pub fn csv(rows: &[DepartmentReport]) -> String {
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let l = |k: &str| r.by_level.get(k).copied().unwrap_or(0);
        out.push_str(&format!(
            "{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.department,
            r.name.replace('"', "\"\""),
            r.warnings,
            l("blue"),
            l("yellow"),
            l("orange"),
            l("red"),
            r.acknowledged,
            r.handled,
            r.closed,
            opt(r.ack_minutes_median),
            opt(r.ack_minutes_p90),
            opt(r.handle_minutes_median),
            opt(r.handle_minutes_p90),
            r.overdue,
            r.escalations,
            opt(r.feedback_completeness),
        ));
    }
    out
}

/// The report as a self-contained HTML page (zh-CN) with bar charts in SVG.
pub fn html(rows: &[DepartmentReport], from: &str, to: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let opt = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_else(|| "—".into());
    let max_ack = rows
        .iter()
        .filter_map(|r| r.ack_minutes_p90)
        .fold(1.0_f64, f64::max);
    let bars: String = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let y = 10 + i * 28;
            let w = |v: Option<f64>| (v.unwrap_or(0.0) / max_ack * 420.0).max(0.0);
            format!(
                "<text x=\"0\" y=\"{}\">{}</text><rect x=\"170\" y=\"{}\" width=\"{:.1}\" height=\"10\" fill=\"#1c5fb8\"><title>中位数 {} 分钟</title></rect><rect x=\"170\" y=\"{}\" width=\"{:.1}\" height=\"6\" fill=\"#b54708\"><title>P90 {} 分钟</title></rect>",
                y + 12,
                esc(&r.name),
                y + 2,
                w(r.ack_minutes_median),
                opt(r.ack_minutes_median),
                y + 14,
                w(r.ack_minutes_p90),
                opt(r.ack_minutes_p90),
            )
        })
        .collect();
    let table: String = rows
        .iter()
        .map(|r| {
            let l = |k: &str| r.by_level.get(k).copied().unwrap_or(0);
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.name),
                r.warnings,
                l("red"),
                l("orange"),
                l("yellow"),
                l("blue"),
                opt(r.ack_minutes_median),
                opt(r.ack_minutes_p90),
                opt(r.handle_minutes_median),
                opt(r.handle_minutes_p90),
                r.overdue,
                r.escalations,
                r.feedback_completeness
                    .map(|f| format!("{:.0}%", f * 100.0))
                    .unwrap_or_else(|| "—".into()),
            )
        })
        .collect();
    format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>部门预警处置考评 {from} – {to}</title>\
<style>body{{font-family:system-ui,\"PingFang SC\",\"Microsoft YaHei\",sans-serif;margin:2em;color:#1b1f24}}table{{border-collapse:collapse}}th,td{{border-bottom:1px solid #d0d7de;padding:.4em .7em;text-align:right}}th:first-child,td:first-child{{text-align:left}}th{{background:#eef1f4}}svg text{{font-size:12px}}</style></head><body>\
<h1>部门预警处置考评</h1><p>统计期间：{from} 至 {to}（按预警送达时间）</p>\
<table><thead><tr><th>部门</th><th>预警数</th><th>红</th><th>橙</th><th>黄</th><th>蓝</th><th>签收用时 中位数/P90（分钟）</th><th>处置用时 中位数/P90（分钟）</th><th>超时</th><th>升级</th><th>反馈完整率</th></tr></thead><tbody>{table}</tbody></table>\
<h2>签收用时（分钟）</h2><svg width=\"620\" height=\"{h}\" role=\"img\" aria-label=\"各部门签收用时\">{bars}</svg>\
<p>蓝条：中位数；橙条：90%分位数。</p></body></html>\n",
        h = 20 + rows.len() * 28,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(d: &str, level: &str, ack: Option<i64>, handle: Option<i64>, fb: bool) -> Case {
        Case {
            department: d.into(),
            level: level.into(),
            stored_at: 0,
            acked_at: ack.map(|m| m * 60_000),
            handled_at: handle.map(|m| m * 60_000),
            closed_at: None,
            cleared_at: None,
            overdue: ack.is_none_or(|m| m > 30),
            escalations: i64::from(level == "red"),
            feedback: fb,
        }
    }

    #[test]
    fn figures_per_department() {
        let cases = vec![
            case("zjj", "yellow", Some(5), Some(60), true),
            case("zjj", "orange", Some(15), Some(120), true),
            case("zjj", "red", Some(45), None, false),
            case("zjj", "blue", None, None, false),
            case("slj", "blue", Some(2), Some(10), true),
        ];
        let names = BTreeMap::from([("zjj".to_string(), "住建局".to_string())]);
        let r = summarize(&cases, &names);
        assert_eq!(r.len(), 2);
        let z = &r[1];
        assert_eq!(
            (z.department.as_str(), z.name.as_str(), z.warnings),
            ("zjj", "住建局", 4)
        );
        assert_eq!(z.by_level.get("red"), Some(&1));
        assert_eq!((z.acknowledged, z.handled), (3, 2));
        assert_eq!(z.ack_minutes_median, Some(15.0));
        assert_eq!(z.ack_minutes_p90, Some(45.0));
        assert_eq!(z.handle_minutes_median, Some(60.0));
        assert_eq!(z.handle_minutes_p90, Some(120.0));
        assert_eq!((z.overdue, z.escalations), (2, 1));
        assert_eq!(z.feedback_completeness, Some(0.667));
        assert_eq!(r[0].name, "slj", "an unnamed department shows its id");
        let c = csv(&r);
        assert!(c.starts_with(CSV_HEADER));
        assert!(
            c.contains("zjj,\"住建局\",4,1,1,1,1,3,2,0,15,45,60,120,2,1,0.667"),
            "{c}"
        );
        let h = html(&r, "2026-11-01", "2026-12-01");
        assert!(h.contains("部门预警处置考评") && h.contains("<svg"));
    }
}
