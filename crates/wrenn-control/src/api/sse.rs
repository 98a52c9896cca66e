//! `GET /v1/events/stream`: Server-Sent Events of the caller's team.

use std::convert::Infallible;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::views;
use crate::auth::Auth;
use crate::state::AppState;

/// The event stream: `connected` first, then the team's events, keep-alive comments between.
pub async fn stream(
    State(state): State<AppState>,
    auth: Auth,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let team = auth.team_id.clone();
    let rx = BroadcastStream::new(state.events.subscribe());
    let first = stream::once(async { Ok(Event::default().data(views::connected().to_string())) });
    let rest = rx.filter_map(move |msg| {
        let team = team.clone();
        async move {
            match msg {
                Ok(ev) if ev.team_id == team => {
                    let payload = views::event(&ev);
                    let name = payload["event"].as_str().unwrap_or("message").to_owned();
                    Some(Ok(Event::default().event(name).data(payload.to_string())))
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "SSE subscriber lagged; events dropped");
                    None
                }
            }
        }
    });
    let stream = first.chain(rest).take_until(Box::pin(state.stopped()));
    Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(state.config.sse_keepalive)
            .text("keepalive"),
    )
}
