//! HTTP layer of the cashback platform. Only this crate knows HTTP and JSON.
//!
//! Request flow: tower stack (request id → trace → metrics → panic catcher → load shedding with
//! a *global* concurrency limit → timeout → body limit) → auth extractor → handler → `core` use
//! case → `Store` trait. Errors are `ApiError`, rendered as problem+json.

pub mod audit;
pub mod auth;
pub mod close;
pub mod console;
pub mod console_api;
pub mod core;
pub mod dto;
pub mod error;
pub mod hb;
pub mod iban_check;
pub mod io;
pub mod openapi;
pub mod ops;
pub mod privacy;
pub mod ranking;
pub mod rate;
pub mod rtd;
pub mod state;
pub mod tls;
pub mod winning;

use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;

use crate::error::ApiError;
pub use crate::state::{AppState, SharedState};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(title = "cashback", description = "Drop-in backend of the national cashback programme: IO citizen app, issuer (HB), Payment Manager and acquirer (RTD) APIs."),
    paths(
        io::get_citizen_v1, io::get_citizen_v2, io::put_citizen_v1, io::put_citizen_v2, io::delete_citizen, io::patch_citizen,
        io::delete_citizen_v2, io::patch_citizen_v2,
        io::get_instrument, io::put_instrument, io::delete_instrument, io::count_instruments, io::award_periods_v1, io::award_periods_v2,
        hb::put_citizen_v1, hb::put_citizen_v2, hb::get_citizen_v1, hb::get_citizen_v2, hb::patch_citizen_v1, hb::patch_citizen_v2,
        hb::delete_citizen_v1, hb::delete_citizen_v2, hb::put_card, hb::get_card_v1, hb::get_card_v2, hb::delete_card_v1, hb::delete_card_v2,
        hb::award_periods_v1, hb::award_periods_v2, hb::pm_delete_instrument, hb::dev_login, hb::dev_user, health,
        rtd::salt, rtd::hashed_pans, rtd::public_key, rtd::sas, rtd::upload, rtd::file_report_list, rtd::file_report,
        winning::io_total_cashback, winning::io_ranking_v2, winning::io_ranking_milestone, winning::io_ranking_v1,
        winning::io_transactions_v2, winning::io_count_by_day, winning::io_transactions_v1,
        winning::hb_ranking_v1, winning::hb_ranking_v2, winning::hb_total_cashback, winning::hb_total_cashback_v2,
        ops::award_periods, ops::period_ranking, close::io_awards, close::io_complaints, close::io_file_complaint, close::ops_complaints,
        close::ops_decide_complaint, close::ops_close_summary, close::ops_outbox,
        console_api::io_instruments, console_api::ops_stats, console_api::ops_files, console_api::ops_file,
        console_api::ops_ranking_history, console_api::ops_payout_files, audit::ops_audit,
        privacy::io_export, privacy::ops_export
    ),
    components(schemas(openapi::ComplaintStatusSchema, openapi::AuditActionSchema)),
    modifiers(&SecuritySchemes),
    tags((name = "io", description = "Citizen app (Bearer token)"), (name = "hb", description = "Issuers (Ocp-Apim-Subscription-Key)"),
        (name = "pm", description = "Payment Manager"),
        (name = "rtd", description = "Acquirers (Ocp-Apim-Subscription-Key bound to an ABI code)"), (name = "dev", description = "Development mode only"), (name = "ops", description = "Operations (health, metrics; operators' views with an `operator` API key)"))
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Ocp-Apim-Subscription-Key",
                "API key of an issuer, acquirer, Payment Manager or operator credential. A key bound to a client \
                 certificate (mutual TLS) is accepted only on a TLS connection that presented it: none → 401, \
                 another → 403.",
            ))),
        );
    }
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(st): State<SharedState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), st.store.ping()).await {
        Ok(Ok(())) => axum::Json(Health { status: "UP", database: st.store.backend() }).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Health { status: "DOWN", database: st.store.backend() }))
            .into_response(),
    }
}

async fn metrics_endpoint(State(st): State<SharedState>) -> Response {
    match &st.metrics {
        Some(h) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn openapi_endpoint() -> Response {
    axum::Json(openapi::document()).into_response()
}

/// Count and time every request by route template (never by raw path: bounded label sets).
async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("cashback_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("cashback_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}

async fn handle_layer_error(err: tower::BoxError) -> Response {
    if err.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("cashback_http_shed_total").increment(1);
        ApiError::unavailable("the service is overloaded, retry shortly", 1).into_response()
    } else if err.is::<tower::timeout::error::Elapsed>() {
        metrics::counter!("cashback_http_timeouts_total").increment(1);
        ApiError::unavailable("the request took too long, retry shortly", 1).into_response()
    } else {
        ApiError::internal("internal error").into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

/// The whole HTTP application.
pub fn router(state: SharedState) -> Router {
    let limits = state.limits.clone();
    // One concurrency budget for the whole router (API and acquirer routes share it).
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.concurrency_max));
    metrics::gauge!("cashback_http_concurrency_max").set(limits.concurrency_max as f64);
    metrics::gauge!("cashback_http_request_timeout_seconds").set(limits.request_timeout.as_secs_f64());
    metrics::gauge!("cashback_http_body_bytes_max").set(limits.body_bytes_max as f64);
    let request_id = HeaderName::from_static("x-request-id");
    let mut api = Router::new()
        // IO (citizen app)
        .route(
            "/bpd/io/citizen",
            get(io::get_citizen_v1).put(io::put_citizen_v1).delete(io::delete_citizen).patch(io::patch_citizen),
        )
        .route(
            "/bpd/io/citizen/v2",
            get(io::get_citizen_v2).put(io::put_citizen_v2).delete(io::delete_citizen_v2).patch(io::patch_citizen_v2),
        )
        .route("/bpd/io/payment-instruments", get(console_api::io_instruments))
        .route("/bpd/io/citizen/export", get(privacy::io_export))
        .route("/bpd/io/payment-instruments/number", get(io::count_instruments))
        .route("/bpd/io/payment-instruments/number/", get(io::count_instruments))
        .route(
            "/bpd/io/payment-instruments/{id}",
            get(io::get_instrument).put(io::put_instrument).delete(io::delete_instrument),
        )
        .route("/bpd/io/award-periods", get(io::award_periods_v1))
        .route("/bpd/io/award-periods/v2", get(io::award_periods_v2))
        .route("/bpd/io/citizen/ranking", get(winning::io_ranking_v1))
        .route("/bpd/io/citizen/v2/ranking", get(winning::io_ranking_v2))
        .route("/bpd/io/citizen/v2/ranking/milestone", get(winning::io_ranking_milestone))
        .route("/bpd/io/winning-transactions", get(winning::io_transactions_v1))
        .route("/bpd/io/winning-transactions/total-cashback", get(winning::io_total_cashback))
        .route("/bpd/io/winning-transactions/v2", get(winning::io_transactions_v2))
        .route("/bpd/io/winning-transactions/v2/countbyday", get(winning::io_count_by_day))
        // HB (issuers)
        .route(
            "/bpd/hb/citizens/v2",
            get(hb::get_citizen_v2).put(hb::put_citizen_v2).patch(hb::patch_citizen_v2).delete(hb::delete_citizen_v2),
        )
        .route(
            "/bpd/hb/citizens/{fiscalCode}",
            get(hb::get_citizen_v1).put(hb::put_citizen_v1).patch(hb::patch_citizen_v1).delete(hb::delete_citizen_v1),
        )
        .route("/bpd/hb/payment-instruments/card", put(hb::put_card))
        .route("/bpd/hb/payment-instruments/v2", get(hb::get_card_v2).delete(hb::delete_card_v2))
        .route("/bpd/hb/payment-instruments/{pan}", get(hb::get_card_v1).delete(hb::delete_card_v1))
        .route("/bpd/hb/award-periods", get(hb::award_periods_v1))
        .route("/bpd/hb/award-periods/v2", get(hb::award_periods_v2))
        // Static `v2` wins over the `{fiscalCode}` capture (matchit prefers static segments).
        .route("/bpd/hb/citizens/v2/ranking", get(winning::hb_ranking_v2))
        .route("/bpd/hb/citizens/{fiscalCode}/ranking", get(winning::hb_ranking_v1))
        .route("/bpd/hb/winning-transactions/total-cashback", get(winning::hb_total_cashback))
        .route("/bpd/hb/winning-transactions/v2/total-cashback", get(winning::hb_total_cashback_v2))
        // Operators
        .route("/bpd/ops/award-periods", get(ops::award_periods))
        .route("/bpd/ops/award-periods/{awardPeriodId}/ranking", get(ops::period_ranking))
        .route("/bpd/ops/award-periods/{awardPeriodId}/close", get(close::ops_close_summary))
        .route("/bpd/ops/complaints", get(close::ops_complaints))
        .route("/bpd/ops/complaints/{complaintId}/decision", post(close::ops_decide_complaint))
        .route("/bpd/ops/notifications", get(close::ops_outbox))
        .route("/bpd/ops/award-periods/{awardPeriodId}/ranking/history", get(console_api::ops_ranking_history))
        .route("/bpd/ops/stats", get(console_api::ops_stats))
        .route("/bpd/ops/files", get(console_api::ops_files))
        .route("/bpd/ops/files/{name}", get(console_api::ops_file))
        .route("/bpd/ops/payout-files", get(console_api::ops_payout_files))
        .route("/bpd/ops/audit", get(audit::ops_audit))
        .route("/bpd/ops/citizens/{fiscalCode}/export", get(privacy::ops_export))
        .route("/bpd/io/awards", get(close::io_awards))
        .route("/bpd/io/complaints", get(close::io_complaints).post(close::io_file_complaint))
        // Payment Manager
        .route("/bpd/pm/payment-instrument/{hpan}", axum::routing::delete(hb::pm_delete_instrument));
    if state.dev {
        api = api
            .route("/bpd/pagopa/api/v1/login", post(hb::dev_login))
            .route("/bpd/pagopa/api/v1/user", get(hb::dev_user));
    }
    let api = api.fallback(not_found).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(handle_layer_error))
            .load_shed()
            .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(in_flight.clone()))
            .timeout(limits.request_timeout)
            .layer(axum::extract::DefaultBodyLimit::max(limits.body_bytes_max)),
    );
    // Acquirer files: large bodies and long runs, so their own body limit and timeout; the
    // number of files ingested at once is bounded inside (503 + Retry-After beyond it).
    let rtd = Router::new()
        .route("/rtd/payment-instrument-manager/salt", get(rtd::salt))
        .route("/rtd/payment-instrument-manager/hashed-pans", get(rtd::hashed_pans))
        .route("/rtd/csv-transaction/publickey", get(rtd::public_key))
        .route("/rtd/csv-transaction/{scope}/sas", post(rtd::sas))
        .route("/pagopastorage/{container}/{file}", put(rtd::upload))
        .route("/rtd/file-reporter/v2/file-report", get(rtd::file_report_list))
        .route("/rtd/file-reporter/files/{name}", get(rtd::file_report))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(handle_layer_error))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::with_semaphore(in_flight.clone()))
                .timeout(state.rtd.config.upload_timeout)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        );
    // Operations endpoints sit outside load shedding: they must answer under overload.
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_endpoint))
        .route(OPENAPI_PATH, get(openapi_endpoint))
        .merge(console::routes())
        .merge(rtd)
        .merge(api)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str()).unwrap_or("-");
                    // The raw URI is not logged: HB paths carry clear PANs.
                    tracing::info_span!("http", method = %req.method(), route, request_id = %id)
                }))
                .layer(middleware::from_fn(record_metrics))
                .layer(middleware::from_fn(audit::scope))
                .layer(middleware::from_fn(openapi::problem_bodies))
                .layer(CatchPanicLayer::custom(|_| ApiError::internal("internal error").into_response())),
        )
        .with_state(state)
}
