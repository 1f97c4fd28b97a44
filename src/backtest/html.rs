//! The backtest report page: a summary table and, per series, its values (min and max per
//! pixel column, so a spike never disappears), the labelled windows shaded and the warnings
//! marked. One self-contained HTML file with inline SVG: it opens from disk, offline.

use crate::time::Ts;
use std::fmt::Write;

/// One series to plot.
pub struct Plot<'a> {
    pub title: String,
    pub ts: &'a [Ts],
    pub values: &'a [f64],
    /// Labelled windows or incidents, as time spans.
    pub windows: Vec<(Ts, Ts)>,
    /// Warnings (detections).
    pub marks: Vec<Ts>,
    /// One line under the title (scores of this series).
    pub note: String,
}

const W: f64 = 1000.0;
const H: f64 = 160.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn svg(p: &Plot) -> String {
    let mut out = String::new();
    let (Some(&t0), Some(&t1)) = (p.ts.first(), p.ts.last()) else {
        return "<p>(no data)</p>".into();
    };
    let span = (t1 - t0).max(1) as f64;
    let x = |t: Ts| (t - t0) as f64 / span * W;
    let finite = p.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo < hi {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let y = |v: f64| H - 4.0 - (v - lo) / (hi - lo) * (H - 8.0);
    let _ = write!(
        out,
        r##"<svg viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img"><rect width="{W}" height="{H}" fill="#fff"/>"##
    );
    for (a, b) in &p.windows {
        let (xa, xb) = (x(*a), x(*b));
        let _ = write!(
            out,
            r##"<rect x="{xa:.1}" y="0" width="{:.1}" height="{H}" fill="#fde68a" opacity="0.7"/>"##,
            (xb - xa).max(1.0)
        );
    }
    // min and max per pixel column
    let cols = W as usize;
    let mut bins: Vec<Option<(f64, f64)>> = vec![None; cols + 1];
    for (t, v) in p.ts.iter().zip(p.values) {
        if !v.is_finite() {
            continue;
        }
        let c = (x(*t) as usize).min(cols);
        bins[c] = Some(match bins[c] {
            None => (*v, *v),
            Some((a, b)) => (a.min(*v), b.max(*v)),
        });
    }
    let mut path = String::new();
    for (c, b) in bins.iter().enumerate() {
        if let Some((a, b)) = b {
            let cmd = if path.is_empty() { 'M' } else { 'L' };
            let _ = write!(path, "{cmd}{c} {:.1}L{c} {:.1}", y(*a), y(*b));
        }
    }
    let _ = write!(
        out,
        r##"<path d="{path}" fill="none" stroke="#1d4ed8" stroke-width="1"/>"##
    );
    for m in &p.marks {
        let xm = x(*m);
        let _ = write!(
            out,
            r##"<line x1="{xm:.1}" x2="{xm:.1}" y1="0" y2="{H}" stroke="#dc2626" stroke-width="1.5"/>"##
        );
    }
    out.push_str("</svg>");
    out
}

/// The whole page: `summary` is HTML (a table), then one plot per series.
pub fn page(title: &str, summary: &str, plots: &[Plot]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r##"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{t}</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:24px;color:#111}}
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th:first-child,td:first-child{{text-align:left}}
.plot{{margin:18px 0}}.plot h3{{margin:4px 0;font-size:14px}}.plot p{{margin:2px 0;color:#555;font-size:12px}}
svg{{width:100%;height:160px;border:1px solid #ddd}}
.key span{{display:inline-block;margin-right:16px}}
</style></head><body>
<h1>{t}</h1>
<p class="key"><span style="background:#fde68a">&nbsp;&nbsp;&nbsp;</span> 标注的异常窗口 / labelled windows
<span style="color:#dc2626">|</span> 预警 / warnings <span style="color:#1d4ed8">—</span> 数值 / values</p>
{summary}
"##,
        t = esc(title)
    );
    for p in plots {
        let _ = write!(
            out,
            r#"<div class="plot"><h3>{}</h3><p>{}</p>{}</div>"#,
            esc(&p.title),
            esc(&p.note),
            svg(p)
        );
        out.push('\n');
    }
    out.push_str("</body></html>\n");
    out
}

/// A table from a header and rows (cells are escaped).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_survives_and_windows_and_marks_are_drawn() {
        let ts: Vec<Ts> = (0..100_000).collect();
        let mut values = vec![1.0; 100_000];
        values[54_321] = 50.0;
        let p = Plot {
            title: "s <1>".into(),
            ts: &ts,
            values: &values,
            windows: vec![(50_000, 60_000)],
            marks: vec![54_400],
            note: "score 80".into(),
        };
        let html = page(
            "回测 / backtest",
            &table(&["rule", "n"], &[vec!["a".into(), "1".into()]]),
            &[p],
        );
        assert!(html.contains("s &lt;1&gt;"));
        // the spike's column reaches the top of the plot
        assert!(
            html.contains("L543 4.0"),
            "{}",
            &html[..2000.min(html.len())]
        );
        assert!(html.contains(r##"fill="#fde68a""##));
        assert!(html.contains(r##"stroke="#dc2626""##));
    }
}
