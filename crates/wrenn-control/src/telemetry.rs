//! Prometheus metrics (`GET /metrics`): HTTP requests, capsules by status, lifecycle durations.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template (`/v1/capsules/{id}`).
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of a latency observation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
}

/// Labels of the capsule gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Capsule status.
    pub status: String,
}

/// Labels of a lifecycle duration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `success` or `error`.
    pub outcome: &'static str,
}

/// The lifecycle operations that are timed.
#[derive(Clone, Copy, Debug)]
pub enum LifecycleOp {
    /// Capsule create.
    Create,
    /// Pause.
    Pause,
    /// Resume.
    Resume,
}

/// All metrics and their registry.
pub struct Telemetry {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    capsules: Family<StatusLabels, Gauge>,
    create: Family<OutcomeLabels, Histogram>,
    pause: Family<OutcomeLabels, Histogram>,
    resume: Family<OutcomeLabels, Histogram>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn lifecycle_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

impl Telemetry {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wrenn");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let capsules = Family::<StatusLabels, Gauge>::default();
        let mk = || {
            Family::<OutcomeLabels, Histogram>::new_with_constructor(
                lifecycle_histogram as fn() -> Histogram,
            )
        };
        let (create, pause, resume) = (mk(), mk(), mk());
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register("capsules", "Capsules by status", capsules.clone());
        registry.register(
            "capsule_create_duration_seconds",
            "Time to create a capsule",
            create.clone(),
        );
        registry.register(
            "capsule_pause_duration_seconds",
            "Time to pause a capsule",
            pause.clone(),
        );
        registry.register(
            "capsule_resume_duration_seconds",
            "Time to resume a capsule",
            resume.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            capsules,
            create,
            pause,
            resume,
        }
    }

    /// Records one HTTP request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one lifecycle operation.
    pub fn observe_lifecycle(&self, op: LifecycleOp, ok: bool, took: Duration) {
        let family = match op {
            LifecycleOp::Create => &self.create,
            LifecycleOp::Pause => &self.pause,
            LifecycleOp::Resume => &self.resume,
        };
        family
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "success" } else { "error" },
            })
            .observe(took.as_secs_f64());
    }

    /// Sets the capsule gauge from counts by status (statuses absent are set to 0).
    pub fn set_capsule_counts(&self, counts: &[(String, i64)]) {
        for status in crate::core::status::CapsuleStatus::ALL.map(|s| s.as_str()) {
            let n = counts
                .iter()
                .find(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            self.capsules
                .get_or_create(&StatusLabels {
                    status: status.to_owned(),
                })
                .set(n);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &reg) {
                tracing::warn!(error = %e, "encoding metrics failed");
            }
        }
        out
    }
}
