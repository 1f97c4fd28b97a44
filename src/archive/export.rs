//! Export the store's tickets, warnings and transitions (and the site list) to the archive:
//! every day with a row stored or changed since the last export is written again whole.

use super::tables::{write_parquet, Rows, Table};
use super::{day_bounds, day_dir, day_of, ArchiveError};
use crate::config::sites::Registry;
use crate::store::Store;
use crate::time::Ts;
use chrono::NaiveDate;
use chrono_tz::Tz;
use std::collections::BTreeSet;
use std::path::Path;

/// Rows stored this long before an export may still be committing: the next export looks
/// back this far again (rewriting a day twice is harmless).
const SLACK_MS: Ts = 10_000;

/// The file remembering up to when the store has been exported (store clock, ms).
fn mark_file(dir: &Path) -> std::path::PathBuf {
    dir.join("exported-until")
}

/// Where the last export got to, if any.
pub fn exported_until(dir: &Path) -> Option<Ts> {
    std::fs::read_to_string(mark_file(dir))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// What one export wrote.
#[derive(Debug, Default, PartialEq)]
pub struct Exported {
    /// Day files written, over the three tables.
    pub days: usize,
    pub rows: usize,
}

/// Export what changed in the store since the last export (everything the first time); `now`
/// is the store's clock. Day folders are written before the mark moves, so a crash in between
/// only means writing them again.
pub async fn export(
    store: &Store,
    dir: &Path,
    tz: Tz,
    registry: &Registry,
    now: Ts,
) -> Result<Exported, ArchiveError> {
    let since = exported_until(dir);
    let changed = store.changed_since(since).await?;
    let days =
        |times: &[Ts]| -> BTreeSet<NaiveDate> { times.iter().map(|t| day_of(*t, tz)).collect() };
    let mut out = Exported::default();
    for day in days(&changed.warnings) {
        let (from, to) = day_bounds(day, tz);
        let list = store.warnings_between(from, to).await?;
        let mut b = Rows::new(Table::Warnings);
        for w in &list {
            let c = &mut b.cols;
            c[0].text(Some(&w.id));
            c[1].text(Some(&w.rule));
            c[2].text(Some(&w.site));
            c[3].text(Some(&w.site_kind));
            c[4].text(Some(&w.subject));
            c[5].text(Some(&w.level));
            c[6].text(Some(&w.status));
            c[7].int(w.seq);
            c[8].text(Some(&w.title));
            c[9].text(Some(&w.message));
            c[10].text(Some(&w.departments.join(",")));
            c[11].time(Some(w.raised_at));
            c[12].time(Some(w.stored_at));
            c[13].time(Some(w.updated_at));
            c[14].time(w.ack_due);
            c[15].time(w.handle_due);
            c[16].time(w.acked_at);
            c[17].time(w.handled_at);
            c[18].time(w.closed_at);
            c[19].time(w.cleared_at);
            c[20].int(w.overdue_step);
            c[21].text(w.supervisor.as_deref());
        }
        out.rows += put(dir, Table::Warnings, day, b)?;
        out.days += 1;
    }
    for day in days(&changed.transitions) {
        let (from, to) = day_bounds(day, tz);
        let list = store.transitions_between(from, to).await?;
        let mut b = Rows::new(Table::Transitions);
        for t in &list {
            let c = &mut b.cols;
            c[0].text(Some(&t.warning_id));
            c[1].int(t.seq);
            c[2].text(Some(&t.kind));
            c[3].text(Some(&t.level));
            c[4].text(Some(&t.rule));
            c[5].text(Some(&t.site));
            c[6].time(Some(t.at));
            c[7].time(Some(t.stored_at));
        }
        out.rows += put(dir, Table::Transitions, day, b)?;
        out.days += 1;
    }
    for day in days(&changed.tickets) {
        let (from, to) = day_bounds(day, tz);
        let list = store.tickets_between(from, to).await?;
        let mut b = Rows::new(Table::Tickets);
        for t in &list {
            let c = &mut b.cols;
            c[0].text(Some(&t.number));
            c[1].text(t.channel.as_deref());
            c[2].text(t.category.as_deref());
            c[3].text(Some(t.concern.as_ref()));
            c[4].time(t.received_at);
            c[5].text(t.site.as_deref());
            c[6].text(t.matched_by.as_deref());
            c[7].text(t.credit_code.as_deref());
            c[8].text(t.enterprise.as_deref());
            c[9].text(t.industry.as_deref());
            c[10].text(t.department.as_deref());
            c[11].text(t.address.as_deref());
            c[12].text(t.content.as_deref());
            c[13].text(t.status.as_deref());
            c[14].text(t.result.as_deref());
            c[15].time(Some(t.created_at));
            c[16].time(Some(t.updated_at));
        }
        out.rows += put(dir, Table::Tickets, day, b)?;
        out.days += 1;
    }
    write_sites(dir, registry)?;
    let mark = mark_file(dir);
    let tmp = mark.with_extension("tmp");
    std::fs::write(&tmp, (now - SLACK_MS).to_string()).map_err(|e| ArchiveError::io(&tmp, e))?;
    std::fs::rename(&tmp, &mark).map_err(|e| ArchiveError::io(&mark, e))?;
    Ok(out)
}

/// Write one day of a table (or remove its file when the day has no rows any more).
fn put(dir: &Path, table: Table, day: NaiveDate, rows: Rows) -> Result<usize, ArchiveError> {
    let file = day_dir(dir, table, day).join("part-0.parquet");
    let n = rows.len();
    if n == 0 {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArchiveError::io(&file, e)),
        }
        return Ok(0);
    }
    write_parquet(&file, &rows.finish()?)?;
    Ok(n)
}

/// The site list as the configuration has it now.
pub fn write_sites(dir: &Path, registry: &Registry) -> Result<(), ArchiveError> {
    let mut b = Rows::new(Table::Sites);
    for s in &registry.sites {
        let c = &mut b.cols;
        c[0].text(Some(&s.id));
        c[1].text(Some(&s.name));
        c[2].text(Some(s.kind.as_str()));
        c[3].text(Some(&s.departments.join(",")));
        c[4].float(s.location.lat);
        c[5].float(s.location.lon);
        c[6].text(s.location.address.as_deref());
    }
    write_parquet(&dir.join("sites").join("sites.parquet"), &b.finish()?)
}
