//! Capsule metrics, team stats and usage.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{Duration as ChronoDuration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{ApiQuery, Params};
use super::views::rfc3339_secs;
use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::state::AppState;

/// `?range=` query.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    range: Option<String>,
}

/// `?from=&to=` query.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    from: Option<String>,
    to: Option<String>,
}

fn range_secs(range: &str, allowed: &[&str]) -> Result<i64, ApiError> {
    if !allowed.contains(&range) {
        return Err(ApiError::invalid(format!(
            "range must be one of {}",
            allowed.join(", ")
        )));
    }
    let (n, unit) = range.split_at(range.len() - 1);
    let n: i64 = n.parse().map_err(|_| ApiError::invalid("bad range"))?;
    Ok(match unit {
        "m" => n * 60,
        "h" => n * 3600,
        _ => n * 86400,
    })
}

/// `GET /v1/capsules/{id}/metrics`.
pub async fn capsule_metrics(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = params.capsule_id()?;
    let range = q.range.unwrap_or_else(|| "10m".into());
    let secs = range_secs(&range, &["5m", "10m", "1h", "2h", "6h", "12h", "24h"])?;
    let row = state.team_capsule(&auth, id).await?;
    let since = Utc::now().timestamp() - secs;
    let points: Vec<Value> = state
        .store
        .metrics_since(&row.id, since)
        .await?
        .iter()
        .map(|s| {
            json!({"timestamp_unix": s.ts, "cpu_pct": s.cpu_pct, "mem_bytes": s.mem_bytes, "disk_bytes": s.disk_bytes})
        })
        .collect();
    Ok(Json(
        json!({"sandbox_id": row.id, "range": range, "points": points}),
    ))
}

/// `GET /v1/capsules/stats`.
pub async fn stats(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<RangeQuery>,
) -> Result<Json<Value>, ApiError> {
    let range = q.range.unwrap_or_else(|| "5m".into());
    let secs = range_secs(&range, &["5m", "1h", "6h", "24h", "30d"])?;
    let live = state.store.list_team_capsules(&auth.team_id).await?;
    let running: Vec<_> = live
        .iter()
        .filter(|c| c.status == crate::core::status::CapsuleStatus::Running)
        .collect();
    let cur_running = running.len() as i64;
    let cur_vcpus: i64 = running.iter().map(|c| c.vcpus).sum();
    let cur_mem: i64 = running.iter().map(|c| c.memory_mb).sum();
    let now = Utc::now().timestamp();
    let from = now - secs;
    let samples = state
        .store
        .team_samples(&auth.team_id, from, now + 1)
        .await?;
    // At most 60 buckets; each shows the peak of its samples.
    let bucket = (secs / 60).max(1);
    let mut buckets: BTreeMap<i64, (i64, i64, i64)> = BTreeMap::new();
    for s in &samples {
        let b = from + ((s.ts - from) / bucket) * bucket;
        let e = buckets.entry(b).or_default();
        e.0 = e.0.max(s.running);
        e.1 = e.1.max(s.vcpus);
        e.2 = e.2.max(s.memory_mb);
    }
    let peak = |f: fn(&(i64, i64, i64)) -> i64, cur: i64| {
        buckets.values().map(f).max().unwrap_or(0).max(cur)
    };
    Ok(Json(json!({
        "range": range,
        "current": {"running_count": cur_running, "vcpus_reserved": cur_vcpus, "memory_mb_reserved": cur_mem},
        "peaks": {
            "running_count": peak(|b| b.0, cur_running),
            "vcpus": peak(|b| b.1, cur_vcpus),
            "memory_mb": peak(|b| b.2, cur_mem),
        },
        "series": {
            "labels": buckets.keys().map(|t| rfc3339_secs(*t)).collect::<Vec<_>>(),
            "running": buckets.values().map(|b| b.0).collect::<Vec<_>>(),
            "vcpus": buckets.values().map(|b| b.1).collect::<Vec<_>>(),
            "memory_mb": buckets.values().map(|b| b.2).collect::<Vec<_>>(),
        },
    })))
}

fn parse_date(s: &str, what: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(format!("{what} must be a date YYYY-MM-DD, not {s:?}")))
}

/// `GET /v1/capsules/usage`.
pub async fn usage(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let today = Utc::now().date_naive();
    let to = match &q.to {
        Some(s) => parse_date(s, "to")?,
        None => today,
    };
    let from = match &q.from {
        Some(s) => parse_date(s, "from")?,
        None => to - ChronoDuration::days(29),
    };
    if from > to {
        return Err(ApiError::invalid("from must not be after to"));
    }
    if (to - from).num_days() > 366 {
        return Err(ApiError::invalid("at most 366 days per request"));
    }
    let start = from
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0);
    let end = (to + ChronoDuration::days(1))
        .and_hms_opt(0, 0, 0)
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0);
    let samples = state.store.team_samples(&auth.team_id, start, end).await?;
    let mut days: BTreeMap<NaiveDate, (f64, f64)> = BTreeMap::new();
    let mut d = from;
    while d <= to {
        days.insert(d, (0.0, 0.0));
        d += ChronoDuration::days(1);
    }
    for s in samples {
        let Some(day) = chrono::DateTime::from_timestamp(s.ts, 0).map(|t| t.date_naive()) else {
            continue;
        };
        if let Some(e) = days.get_mut(&day) {
            e.0 += (s.vcpus * s.interval_sec) as f64 / 60.0;
            e.1 += (s.memory_mb * s.interval_sec) as f64 / 60.0;
        }
    }
    let points: Vec<Value> = days
        .iter()
        .map(|(d, (cpu, ram))| json!({"date": d.to_string(), "cpu_minutes": cpu, "ram_mb_minutes": ram}))
        .collect();
    Ok(Json(
        json!({"from": from.to_string(), "to": to.to_string(), "points": points}),
    ))
}
