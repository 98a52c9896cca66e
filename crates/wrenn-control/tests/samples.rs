//! What the sampler's rows turn into: stats buckets (the peak of each), daily usage, pruning
//! of old samples; and the event stream's keep-alives.

mod common;

use std::time::Duration;

use common::fake_host::FakeHost;
use common::{Db, Server};
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use wrenn_control::store::{MetricSample, TeamSample};

async fn team_id(s: &Server) -> String {
    s.store.team_by_name("team-a").await.unwrap().unwrap().id
}

fn sample(ts: i64, running: i64, vcpus: i64, memory_mb: i64) -> TeamSample {
    TeamSample {
        ts,
        interval_sec: 60,
        running,
        vcpus,
        memory_mb,
    }
}

async fn get(s: &Server, path: &str) -> Value {
    let r = s.req(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn stats_buckets_show_the_peak_of_their_samples(db: Db) {
    // A sampler that stays quiet during the test (it samples once at start).
    let s = Server::start_with(db, FakeHost::new(8), |c| {
        c.metrics_interval = Duration::from_secs(3600)
    })
    .await;
    let team = team_id(&s).await;
    let from = chrono::Utc::now().timestamp() - 3600;
    // Two samples in the bucket [from+60, from+120), one in [from+2580, from+2640); each
    // sits mid-bucket so a second of drift between here and the handler changes nothing.
    for t in [
        sample(from + 90, 2, 3, 1024),
        sample(from + 100, 5, 2, 4096),
        sample(from + 2610, 1, 1, 512),
    ] {
        s.store.insert_team_sample(&team, &t).await.unwrap();
    }
    let v = get(&s, "/v1/capsules/stats?range=1h").await;
    let labels: Vec<String> = v["series"]["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    let at = |secs: i64| {
        let want = chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        labels
            .iter()
            .position(|l| *l == want)
            .unwrap_or_else(|| panic!("no bucket {want} in {labels:?}"))
    };
    let (a, b) = (at(from + 60), at(from + 2580));
    for (series, want_a, want_b) in [("running", 5, 1), ("vcpus", 3, 1), ("memory_mb", 4096, 512)] {
        assert_eq!(v["series"][series][a], want_a, "{series}: {v}");
        assert_eq!(v["series"][series][b], want_b, "{series}: {v}");
    }
    // Any other bucket is the sampler's own start sample: an empty team.
    for (i, _) in labels
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != a && *i != b)
    {
        assert_eq!(v["series"]["running"][i], 0, "{v}");
    }
    assert_eq!(v["peaks"]["running_count"], 5);
    assert_eq!(v["peaks"]["memory_mb"], 4096);
    assert_eq!(v["current"]["running_count"], 0);
}
both_dbs!(stats_buckets_show_the_peak_of_their_samples);

async fn usage_sums_each_day(db: Db) {
    let s = Server::start_with(db, FakeHost::new(8), |c| {
        c.metrics_interval = Duration::from_secs(3600)
    })
    .await;
    let team = team_id(&s).await;
    // Noon two days ago and yesterday (recent: the sampler prunes samples past 31 days).
    let today = chrono::Utc::now().date_naive();
    let noon = |d: chrono::NaiveDate| d.and_hms_opt(12, 0, 0).unwrap().and_utc().timestamp();
    let (d1, d2) = (today - chrono::Days::new(2), today - chrono::Days::new(1));
    let (day1, day2) = (noon(d1), noon(d2));
    for t in [
        sample(day1, 1, 2, 1024),
        sample(day1 + 60, 1, 2, 1024),
        sample(day2, 1, 4, 512),
    ] {
        s.store.insert_team_sample(&team, &t).await.unwrap();
    }
    let v = get(&s, &format!("/v1/capsules/usage?from={d1}&to={today}")).await;
    let points = v["points"].as_array().unwrap();
    let days: Vec<&str> = points.iter().map(|p| p["date"].as_str().unwrap()).collect();
    let want = [d1, d2, today].map(|d| d.to_string());
    assert_eq!(days, want, "{v}");
    // 60-second samples: vCPUs × 1 minute each, MiB × 1 minute each.
    assert_eq!(points[0]["cpu_minutes"], 4.0, "{v}");
    assert_eq!(points[0]["ram_mb_minutes"], 2048.0, "{v}");
    assert_eq!(points[1]["cpu_minutes"], 4.0, "{v}");
    assert_eq!(points[1]["ram_mb_minutes"], 512.0, "{v}");
    // Today holds only what the sampler itself recorded: an empty team.
    assert_eq!(points[2]["cpu_minutes"], 0.0, "{v}");
}
both_dbs!(usage_sums_each_day);

async fn pruning_drops_only_old_samples(db: Db) {
    let s = Server::start_with(db, FakeHost::new(8), |c| {
        c.metrics_interval = Duration::from_secs(3600)
    })
    .await;
    let team = team_id(&s).await;
    let id = s.create(serde_json::json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = chrono::Utc::now().timestamp();
    // The sampler's first pass (a sample, then a prune of its own) is over before ours start.
    for _ in 0..100 {
        if !s
            .store
            .team_samples(&team, 0, now + 60)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (old, new) = (now - 40 * 86_400, now - 60);
    for ts in [old, new] {
        s.store
            .insert_team_sample(&team, &sample(ts, 1, 1, 512))
            .await
            .unwrap();
        s.store
            .insert_metric(
                &id,
                &MetricSample {
                    ts,
                    cpu_pct: 1.0,
                    mem_bytes: 1,
                    disk_bytes: 1,
                    mem_total_bytes: 2,
                    disk_total_bytes: 2,
                },
            )
            .await
            .unwrap();
    }
    assert_eq!(s.store.metrics_since(&id, 0).await.unwrap().len(), 2);
    s.store.prune_samples(now - 31 * 86_400).await.unwrap();
    let metrics = s.store.metrics_since(&id, 0).await.unwrap();
    assert_eq!(metrics.iter().map(|m| m.ts).collect::<Vec<_>>(), [new]);
    let teams = s.store.team_samples(&team, 0, now + 1).await.unwrap();
    assert!(teams.iter().all(|t| t.ts > old), "{teams:?}");
    assert!(teams.iter().any(|t| t.ts == new), "{teams:?}");
}
both_dbs!(pruning_drops_only_old_samples);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_event_stream_gets_keepalives() {
    let s = Server::start_with(Db::Sqlite, FakeHost::new(8), |c| {
        c.sse_keepalive = Duration::from_millis(200)
    })
    .await;
    let r = s
        .req(Method::GET, "/v1/events/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let keepalives = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with(':') && l.contains("keepalive"))
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while keepalives(&text) < 3 {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("three keep-alives not within 10 s: {text:?}"))
            .expect("stream open")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("\"connected\""), "{text}");
}
