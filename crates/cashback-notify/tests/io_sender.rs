//! `IoSender` against local HTTP servers: the request it makes and how answers map to results.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cashback_notify::{IoSender, Notice, NotifyConfig, Secret, SendError, Sender, SenderKind, build_sender, render};
use serde_json::{Value, json};

const KEY: &str = "test-subscription-key";
const CF: &str = "RSSMRA85T10A562S";

struct Script {
    calls: AtomicUsize,
    expected_body: Value,
}

/// Checks the request, then answers the n-th call with the n-th scripted answer.
async fn messages(State(script): State<Arc<Script>>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let call = script.calls.fetch_add(1, Ordering::SeqCst);
    if headers.get("ocp-apim-subscription-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        return (StatusCode::UNAUTHORIZED, "missing or wrong subscription key").into_response();
    }
    if body != script.expected_body {
        return (StatusCode::UNPROCESSABLE_ENTITY, format!("unexpected body {body}")).into_response();
    }
    match call {
        0 => (StatusCode::CREATED, Json(json!({"id": "01EM6X4JB9VSCB5H3M3F7MMX2E"}))).into_response(),
        1 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "Too many requests").into_response(),
        2 => {
            let problem =
                format!(r#"{{"title": "Invalid fiscal code", "status": 400, "detail": "{}"}}"#, "x".repeat(1000));
            (StatusCode::BAD_REQUEST, [("content-type", "application/problem+json")], problem).into_response()
        }
        3 => (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "3")], "").into_response(),
        4 => (StatusCode::INTERNAL_SERVER_ERROR, [("retry-after", "9")], "boom").into_response(),
        5 => (StatusCode::OK, Json(json!({"id": "second"}))).into_response(),
        _ => (StatusCode::CREATED, "not json").into_response(),
    }
}

async fn wrong_path(uri: Uri) -> Response {
    (StatusCode::NOT_FOUND, format!("no route {uri}")).into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn retryable(result: Result<String, SendError>) -> (String, Option<Duration>) {
    match result {
        Err(SendError::Retryable { reason, retry_after }) => (reason, retry_after),
        other => panic!("expected Retryable, got {other:?}"),
    }
}

fn permanent(result: Result<String, SendError>) -> String {
    match result {
        Err(SendError::Permanent { reason }) => reason,
        other => panic!("expected Permanent, got {other:?}"),
    }
}

#[tokio::test]
async fn io_answers_map_to_results() {
    let msg = render(CF, &Notice::IbanMissing { award_period_id: 2, amount_cents: 15_000 });
    let script = Arc::new(Script {
        calls: AtomicUsize::new(0),
        expected_body: json!({
            "time_to_live": 7200,
            "content": { "subject": msg.subject, "markdown": msg.markdown },
            "fiscal_code": CF,
        }),
    });
    let router =
        Router::new().route("/api/v1/messages", post(messages)).fallback(wrong_path).with_state(script.clone());
    let base = serve(router).await;
    let config = NotifyConfig {
        io_base_url: Some(format!("{base}/")),
        io_subscription_key: Some(Secret::new(KEY)),
        ttl_seconds: 7200,
        timeout_ms: 5_000,
        ..NotifyConfig::new(SenderKind::Io)
    };
    let sender = build_sender(&config).unwrap();

    assert_eq!(sender.send(&msg).await, Ok("01EM6X4JB9VSCB5H3M3F7MMX2E".to_owned()));

    let (reason, retry_after) = retryable(sender.send(&msg).await);
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
    assert!(reason.contains("429"), "{reason}");

    let reason = permanent(sender.send(&msg).await);
    assert!(reason.contains("400") && reason.contains("Invalid fiscal code"), "{reason}");
    assert!(reason.len() < 300, "the body excerpt is short: {reason}");

    let (reason, retry_after) = retryable(sender.send(&msg).await);
    assert_eq!(retry_after, Some(Duration::from_secs(3)));
    assert!(reason.contains("503") && reason.contains("(empty body)"), "{reason}");

    let (reason, retry_after) = retryable(sender.send(&msg).await);
    assert_eq!(retry_after, None, "Retry-After is honoured on 429 and 503 only");
    assert!(reason.contains("500") && reason.contains("boom"), "{reason}");

    assert_eq!(sender.send(&msg).await, Ok("second".to_owned()));

    let reason = permanent(sender.send(&msg).await);
    assert!(reason.contains("accepted") && reason.contains("no readable id"), "{reason}");

    assert_eq!(script.calls.load(Ordering::SeqCst), 7);

    // Wrong key: the server refuses (401), which is permanent.
    let wrong_key = IoSender::new(&base, "other-key", Duration::from_secs(5)).unwrap().with_ttl_seconds(7200);
    let reason = permanent(wrong_key.send(&msg).await);
    assert!(reason.contains("401"), "{reason}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_retryable_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let sender = IoSender::new(&format!("http://{addr}"), KEY, Duration::from_millis(300)).unwrap();
    let msg = render(CF, &Notice::IbanMissing { award_period_id: 1, amount_cents: 1 });
    let started = Instant::now();
    let (reason, retry_after) = retryable(sender.send(&msg).await);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(reason.contains("within 300 ms"), "{reason}");
    assert_eq!(retry_after, None);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sender = IoSender::new(&format!("http://{addr}"), KEY, Duration::from_secs(5)).unwrap();
    let msg = render(CF, &Notice::IbanMissing { award_period_id: 1, amount_cents: 1 });
    let (reason, _) = retryable(sender.send(&msg).await);
    assert!(reason.starts_with("IO request failed"), "{reason}");
}
