//! 12345 hotline tickets over HTTP: the hotline system posts them (and their updates), operators
//! list them and assign the ones no site could be found for, departments see their sites'.

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::config::service::Role;
use crate::handle::Request;
use crate::hotline::TicketIn;
use crate::store::now_ms;
use crate::store::tickets::{Feed, TicketFilter, TicketRow};
use crate::time::{format_ts, parse_ts};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

fn staff(c: &Caller) -> Result<(), ApiError> {
    match c.role {
        Role::Operator | Role::Admin => Ok(()),
        Role::Department(_) | Role::Ingest => Err(ApiError::Forbidden(format!(
            "{} may not do this: operators and admins may",
            c.name
        ))),
    }
}

fn ticket_json(t: &TicketRow, tz: chrono_tz::Tz) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_else(|_| json!({}));
    v["received_at"] = json!(t.received_at.map(|x| format_ts(x, tz)));
    v["created_at"] = json!(format_ts(t.created_at, tz));
    v["updated_at"] = json!(format_ts(t.updated_at, tz));
    v
}

/// Tell the engine about a ticket that now counts; waits until it has taken it.
async fn count(st: &AppState, t: &TicketRow) -> Result<(), ApiError> {
    let (Some(site), Some(received_at)) = (t.site.clone(), t.received_at) else {
        return Ok(());
    };
    let (done, taken) = tokio::sync::oneshot::channel();
    st.engine
        .send(Request::Ticket {
            site,
            concern: t.concern.to_string(),
            received_at,
            done,
        })
        .await
        .map_err(|_| ApiError::Unavailable("the engine is shutting down".into()))?;
    taken
        .await
        .map_err(|_| ApiError::Unavailable("the engine is shutting down".into()))
}

/// In a cluster: send a ticket to the tickets topic keyed by its site, for the instance that has
/// the site to count it (it is stored already; that instance finds it).
async fn pass_on(st: &AppState, site: &str, payload: &[u8]) -> Result<(), ApiError> {
    let Some(sink) = &st.tickets_out else {
        return Ok(());
    };
    sink.send(site, payload)
        .await
        .map_err(|e| ApiError::Unavailable(format!("cannot pass the ticket on to Kafka: {e}")))
}

/// `POST /api/v1/hotline/tickets`: a new ticket (201) or an update of one (200). Problems do not
/// refuse it: they are in its `problems`.
pub async fn post_ticket(
    State(st): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // the 12345 system's own role (`ingest`) may do this and nothing else
    if !matches!(caller.role, Role::Ingest) {
        staff(&caller)?;
    }
    let t: TicketIn = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not a ticket: {e}")))?;
    let cfg = st.config.borrow().clone();
    let tz = cfg.settings.timezone;
    let feed = match st.tickets_out {
        Some(_) => Feed::Later,
        None => Feed::Now,
    };
    let (row, feed) = crate::hotline::ingest(&st.store, &cfg.registry, tz, t, now_ms(), feed)
        .await
        .map_err(|e| match e {
            crate::hotline::IngestError::Bad(m) => ApiError::BadRequest(m),
            crate::hotline::IngestError::Store(e) => e.into(),
        })?;
    if feed {
        count(&st, &row).await?;
    }
    if let Some(site) = &row.site {
        pass_on(&st, site, &body).await?;
    }
    st.metrics
        .tickets
        .with_label_values(&[if row.updates == 0 { "new" } else { "updated" }])
        .inc();
    if !row.problems.is_empty() {
        st.metrics.tickets.with_label_values(&["flagged"]).inc();
    }
    if row.site.is_none() {
        tracing::info!(ticket = %row.number, "12345 ticket matches no site: waiting for an operator to assign it");
    }
    let status = if row.updates == 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ticket_json(&row, tz))).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    site: Option<String>,
    unmatched: Option<bool>,
    concern: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/hotline/tickets`: newest first; a department sees its sites' tickets.
pub async fn list_tickets(
    State(st): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let cfg = st.config.borrow().clone();
    let tz = cfg.settings.timezone;
    let time = |v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| parse_ts(s, tz).map_err(|e| ApiError::BadRequest(e.to_string())))
            .transpose()
    };
    let sites = caller.department().map(|d| {
        cfg.registry
            .sites
            .iter()
            .filter(|s| s.departments.iter().any(|x| x == d))
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    });
    let unmatched = q.unmatched.unwrap_or(false);
    if unmatched && caller.department().is_some() {
        return Err(ApiError::Forbidden(
            "unmatched tickets are for operators to assign".into(),
        ));
    }
    let rows = st
        .store
        .tickets(&TicketFilter {
            site: q.site,
            unmatched,
            sites,
            from: time(&q.from)?,
            to: time(&q.to)?,
            concern: q.concern,
            limit: q.limit.unwrap_or(200),
        })
        .await?;
    let items: Vec<Value> = rows.iter().map(|t| ticket_json(t, tz)).collect();
    Ok(Json(json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    site: String,
}

/// `POST /api/v1/hotline/tickets/{number}/assign`: an operator gives a ticket its site.
pub async fn assign_ticket(
    State(st): State<AppState>,
    caller: Caller,
    Path(number): Path<String>,
    Json(a): Json<Assign>,
) -> Result<Json<Value>, ApiError> {
    staff(&caller)?;
    let cfg = st.config.borrow().clone();
    if cfg.registry.site(&a.site).is_none() {
        return Err(ApiError::BadRequest(format!("no site `{}`", a.site)));
    }
    let how = match st.tickets_out {
        Some(_) => Feed::Later,
        None => Feed::Now,
    };
    let Some((row, feed)) = st
        .store
        .assign_ticket(&number, &a.site, now_ms(), how)
        .await?
    else {
        return Err(ApiError::NotFound(format!("no ticket {number}")));
    };
    if !feed && row.site.as_deref() != Some(a.site.as_str()) {
        return Err(ApiError::Conflict(format!(
            "ticket {number} already counts for site {}",
            row.site.as_deref().unwrap_or("?")
        )));
    }
    if feed {
        count(&st, &row).await?;
    }
    if row.site.as_deref() == Some(a.site.as_str()) && !row.fed {
        let msg = json!({ "number": number, "site": a.site }).to_string();
        pass_on(&st, &a.site, msg.as_bytes()).await?;
    }
    tracing::info!(ticket = %number, site = %a.site, by = %caller.name, "12345 ticket assigned");
    Ok(Json(ticket_json(&row, cfg.settings.timezone)))
}
