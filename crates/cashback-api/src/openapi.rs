//! The served OpenAPI document: the `utoipa` annotations of the handlers, completed with the
//! answers every operation can give whatever its handler does (checked by API fuzzing,
//! `scripts/schemathesis.sh`):
//!
//! * every error is `application/problem+json` ([`Problem`](crate::error::Problem)), including
//!   the extractors' and the router's own rejections (see [`problem_bodies`]);
//! * an operation with parameters or a body can answer 400; with a body also 413 (body limit);
//!   with a path parameter 404 (an empty or unroutable segment);
//! * a secured operation answers 401 (no or bad credential) and 429 (per-identity rate limit);
//!   an API-key operation 403 (a key of another kind); a citizen operation 503/504 when the
//!   identity service fails or times out;
//! * every API operation answers 503 (load shedding, request timeout, busy store); 429 and 503
//!   carry `Retry-After` (whole seconds).

use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use utoipa::OpenApi;

use crate::ApiDoc;
use crate::error::ApiError;

const PROBLEM_JSON: &str = "application/problem+json";
const PROBLEM_REF: &str = "#/components/schemas/Problem";
/// Operations outside the API stack (no load shedding, no identity), documented as they are.
const OUTSIDE_API: &[&str] = &["/health"];
/// Optional query parameters read with serde (`Query<T>`), where an empty value is malformed
/// (400). Every other optional query parameter is read with [`crate::winning::Params`], which
/// takes an empty value as absent: those are documented with `allowEmptyValue`.
const STRICT_QUERY: &[(&str, &str)] =
    &[("get_citizen_v2", "flagTechnicalAccount"), ("pm_delete_instrument", "fiscalCode"), ("file_report", "limit")];

/// The document as served at [`crate::OPENAPI_PATH`] (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
        complete(&mut doc);
        doc
    })
}

fn problem_response(description: &str) -> Value {
    json!({ "description": description, "content": { PROBLEM_JSON: { "schema": { "$ref": PROBLEM_REF } } } })
}

fn describe(code: u16) -> &'static str {
    match code {
        400 => "malformed parameter or body (the field is named)",
        401 => "no credential, or an unknown, expired or revoked one",
        403 => "not allowed to this caller (e.g. an API key of another kind)",
        404 => "not found",
        413 => "request body over the size limit",
        429 => "over this caller's rate limit; retry after `Retry-After` seconds",
        503 => "overloaded, timed out or the database is busy; retry after `Retry-After` seconds",
        504 => "the identity service timed out",
        _ => "error",
    }
}

fn retry_after() -> Value {
    json!({ "description": "seconds to wait before retrying", "required": true,
        "schema": { "type": "integer", "minimum": 1 } })
}

/// Adds the common answers to every operation and makes every error body a problem+json.
pub fn complete(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            if !["get", "put", "post", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            complete_operation(path, op);
        }
    }
}

fn complete_operation(path: &str, op: &mut Value) {
    let schemes: Vec<String> = op
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(|m| m.keys().cloned())
        .collect();
    let bearer = schemes.iter().any(|s| s == "bearer");
    let api_key = schemes.iter().any(|s| s == "apiKey");
    let has_params = op.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());
    let has_body = op.get("requestBody").is_some();
    let outside = OUTSIDE_API.contains(&path);
    let op_id = op.get("operationId").and_then(Value::as_str).unwrap_or("").to_owned();
    for p in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
        let optional_query = p.get("in") == Some(&json!("query")) && p.get("required") != Some(&json!(true));
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if optional_query && !STRICT_QUERY.contains(&(op_id.as_str(), name)) {
            p["allowEmptyValue"] = json!(true);
        }
    }
    let mut add: Vec<u16> = Vec::new();
    if has_params || has_body || path.contains('{') {
        add.push(400);
    }
    if bearer || api_key {
        add.extend([401, 429]);
    }
    if api_key {
        add.push(403);
    }
    if path.contains('{') {
        add.push(404);
    }
    if has_body {
        add.push(413);
    }
    if !outside {
        add.push(503);
    }
    if bearer {
        add.push(504);
    }
    // An optional body is absent, not `null`: `Option<T>` bodies are documented as T.
    if let Some(content) = op.pointer_mut("/requestBody/content").and_then(Value::as_object_mut) {
        for media in content.values_mut() {
            let Some(schema) = media.get_mut("schema") else { continue };
            let inner = schema.get("oneOf").and_then(Value::as_array).and_then(|alts| {
                let rest: Vec<&Value> = alts.iter().filter(|a| a.get("type") != Some(&json!("null"))).collect();
                (rest.len() == 1 && rest.len() < alts.len()).then(|| rest[0].clone())
            });
            if let Some(inner) = inner {
                *schema = inner;
            }
        }
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { return };
    for code in add {
        responses.entry(code.to_string()).or_insert_with(|| problem_response(describe(code)));
    }
    for (code, resp) in responses.iter_mut() {
        let Ok(code) = code.parse::<u16>() else { continue };
        let Some(resp) = resp.as_object_mut() else { continue };
        // `description` is required in a Response Object.
        resp.entry("description").or_insert_with(|| json!(if code < 400 { "OK" } else { describe(code) }));
        if code < 400 || outside {
            continue;
        }
        let content = resp.entry("content").or_insert_with(|| Value::Object(Map::new()));
        if let Some(content) = content.as_object_mut() {
            // Errors are problem+json whatever the annotation said (or did not say).
            let schema = content
                .values()
                .filter_map(|c| c.get("schema"))
                .find(|s| s.get("$ref").and_then(Value::as_str) == Some(PROBLEM_REF))
                .cloned();
            content.clear();
            content.insert(
                PROBLEM_JSON.to_owned(),
                json!({ "schema": schema.unwrap_or_else(|| json!({ "$ref": PROBLEM_REF })) }),
            );
        }
        if code == 429 || code == 503 {
            let headers = resp.entry("headers").or_insert_with(|| Value::Object(Map::new()));
            if let Some(h) = headers.as_object_mut() {
                h.entry("Retry-After").or_insert_with(retry_after);
            }
        }
    }
}

/// Makes every error answer a problem+json: the rejections of axum's extractors (text/plain)
/// and of the router (405, empty) are rewritten with their status, text and other headers
/// (`Allow`, `Retry-After`, `Connection`) kept. Answers already in problem+json pass as they are.
pub async fn problem_bodies(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem =
        resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.ok().map(|b| String::from_utf8_lossy(&b).trim().to_owned());
    let detail = text.filter(|t| !t.is_empty()).unwrap_or_else(|| status.canonical_reason().unwrap_or("Error").into());
    let mut out = ApiError::new(status, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    out
}

// ---------------------------------------------------------------------------------------------
// Schemas of the identifiers and texts the API validates, for parameters
// (`("fiscalCode" = inline(FiscalCodeSchema), Path)`) and body fields
// (`#[schema(schema_with = FiscalCodeSchema::schema)]`). A pattern says what JSON Schema can
// say; the custom `format` names the rest (check characters, calendar dates), which the API
// fuzzing hooks (`scripts/schemathesis_hooks.py`) know how to generate.
// ---------------------------------------------------------------------------------------------

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};

fn string(description: &str, format: Option<&str>, pattern: &str, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .format(format.map(|f| SchemaFormat::Custom(f.to_owned())))
        .pattern(Some(pattern))
        .examples([example])
}

fn or_null(schema: RefOr<Schema>) -> RefOr<Schema> {
    Schema::from(OneOfBuilder::new().item(schema).item(ObjectBuilder::new().schema_type(Type::Null))).into()
}

fn nullable_string(max: Option<usize>) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
        .max_length(max)
}

macro_rules! doc_schema {
    ($(#[$m:meta])* $name:ident => $build:expr) => {
        $(#[$m])*
        pub struct $name;
        impl $name {
            /// The schema (for `#[schema(schema_with = …)]`).
            pub fn schema() -> RefOr<Schema> {
                Schema::from($build).into()
            }
            /// The schema, or `null` (an `Option` field: serde takes `null` as absent).
            pub fn or_null() -> RefOr<Schema> {
                or_null($name::schema())
            }
        }
        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $name::schema()
            }
        }
        impl utoipa::ToSchema for $name {}
    };
}

/// Pattern of a fiscal code (the check character and the birth day are checked too).
pub const FISCAL_CODE_PATTERN: &str =
    "^[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]$";

doc_schema!(
    /// An action of the audit trail.
    AuditActionSchema => string_enum(&cashback_store::audit::AuditAction::ALL.map(|a| a.as_str()))
);
doc_schema!(
    /// An Italian fiscal code.
    FiscalCodeSchema => string(
        "Italian fiscal code: 16 characters, valid birth date and check character",
        Some("fiscal-code"),
        FISCAL_CODE_PATTERN,
        "RSSMRA85T10A562S",
    )
);
doc_schema!(
    /// A hashed PAN.
    HpanSchema => string(
        "hpan: SHA-256 of PAN + salt, 64 lower-case hex",
        None,
        "^[0-9a-f]{64}$",
        "c3b4f5a3b39d7d4c4e9b6a2d2f7e7c1b9e5b3a8f0d6c2e4a1b7f9d3c5e8a6b2d",
    )
);
doc_schema!(
    /// A clear PAN.
    PanSchema => string(
        "clear PAN: 12 to 19 digits passing the Luhn check",
        Some("pan"),
        "^[0-9]{12,19}$",
        "4111111111111111",
    )
);
doc_schema!(
    /// A SEPA IBAN.
    IbanSchema => string(
        "SEPA IBAN with valid check digits (mod 97; Italian and San Marino BBAN layout)",
        Some("iban"),
        "^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$",
        "IT60X0542811101000000123456",
    )
);
doc_schema!(
    /// The holder of a payout account: a person's fiscal code or a company's VAT number.
    AccountHolderSchema => string(
        "the account holder's fiscal code, or a company's 11-digit VAT number",
        Some("account-holder"),
        "^([0-9]{11}|[A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z])$",
        "RSSMRA85T10A562S",
    )
);
doc_schema!(
    /// An acquirer transaction file name.
    FileNameSchema => string(
        "CSTAR.<ABI>.TRNLOG.<yyyymmdd>.<hhmmss>.<nnn>.csv[.pgp] (a valid date and time)",
        Some("acquirer-file-name"),
        "^CSTAR\\.[A-Za-z0-9]{5}\\.TRNLOG\\.[0-9]{8}\\.[0-9]{6}\\.[0-9]{3}\\.csv(\\.pgp)?$",
        "CSTAR.99999.TRNLOG.20201208.103000.001.csv",
    )
);
doc_schema!(
    /// An ABI code (white space around it ignored; empty = none).
    AbiSchema => string(
        "ABI code: 5 ASCII letters or digits",
        None,
        "^\\s*([A-Za-z0-9]{5})?\\s*$",
        "99999",
    )
);
doc_schema!(
    /// The SAS scope served.
    RtdScopeSchema => string_enum(&["rtd"])
);
doc_schema!(
    /// A calendar date.
    DateSchema => ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("YYYY-MM-DD"))
        .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Date)))
        .examples(["2021-01-15"])
);

/// A text of 1 to `max` characters once trimmed (white space around it is ignored);
/// `no_control`: without control characters.
fn trimmed_text(max: usize, no_control: bool) -> ObjectBuilder {
    let (c, first) =
        if no_control { ("[^\\x00-\\x1f\\x7f-\\x9f]", "[^\\s\\x00-\\x1f\\x7f-\\x9f]") } else { ("[\\s\\S]", "\\S") };
    let what = if no_control { ", no control characters" } else { "" };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!("1 to {max} characters once trimmed{what}")))
        .pattern(Some(format!("^\\s*{first}({c}{{0,{}}}{first})?\\s*$", max - 2)))
        .examples(["Rossi"])
}

doc_schema!(
    /// A name of at most 100 characters.
    Name100Schema => trimmed_text(100, true)
);
doc_schema!(
    /// A name of at most 20 characters.
    Name20Schema => trimmed_text(20, true)
);
doc_schema!(
    /// A free text: 1 to 2000 characters once trimmed.
    Text2000Schema => trimmed_text(2000, false)
);

/// The IBAN `PATCH` body: the citizen app's fields; issuers may add a technical account and
/// their card id; the HB v2 body names the citizen in `id` (HB v1 ignores it).
fn citizen_patch(issuer: bool, v2: bool) -> ObjectBuilder {
    let mut b = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("payoffInstr", IbanSchema::schema())
        .property("payoffInstrType", PayoffTypeSchema::schema())
        .property("accountHolderCF", AccountHolderSchema::schema())
        .property("accountHolderName", Name100Schema::schema())
        .property("accountHolderSurname", Name100Schema::schema())
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)));
    for f in ["payoffInstr", "payoffInstrType", "accountHolderCF", "accountHolderName", "accountHolderSurname"] {
        b = b.required(f);
    }
    if issuer {
        b = b
            .property("technicalAccountHolder", Name100Schema::or_null())
            .property("issuerCardId", Name20Schema::or_null())
            .property(
                "id",
                if v2 {
                    FiscalCodeSchema::schema()
                } else {
                    nullable_string(None).description(Some("ignored (HB v2 only)")).into()
                },
            );
        if v2 {
            b = b.required("id");
        }
    }
    b
}

doc_schema!(
    /// The citizen app's IBAN `PATCH` body.
    CitizenPatchIoSchema => citizen_patch(false, false)
);
doc_schema!(
    /// The issuers' v1 IBAN `PATCH` body.
    CitizenPatchHbSchema => citizen_patch(true, false)
);
doc_schema!(
    /// The issuers' v2 IBAN `PATCH` body.
    CitizenPatchHbV2Schema => citizen_patch(true, true)
);

/// A string enumeration.
pub fn string_enum(values: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values.iter().copied()))
}

doc_schema!(
    /// The opt-in status.
    OptInSchema => string_enum(&["NOREQ", "ACCEPTED", "DENIED"])
);
doc_schema!(
    /// The payout instrument type.
    PayoffTypeSchema => string_enum(&["IBAN"])
);
doc_schema!(
    /// A card's type.
    CardTypeSchema => string_enum(&["PP", "DEB", "CRD"])
);
doc_schema!(
    /// A card's brand.
    CardBrandSchema => string_enum(&["VISA", "MASTERCARD", "MAESTRO", "VISA_ELECTRON", "AMEX", "OTHER", "PAGOBANCOMAT"])
);
doc_schema!(
    /// A complaint's kind.
    ComplaintKindSchema => string_enum(&["MISSING_TRANSACTION", "WRONG_AMOUNT", "PAYMENT_NOT_RECEIVED"])
);
doc_schema!(
    /// A complaint's status.
    ComplaintStatusSchema => string_enum(&["OPEN", "ACCEPTED", "REJECTED"])
);

/// Longest operator note, in characters.
pub const NOTE_MAX: usize = 2_000;

doc_schema!(
    /// An operator's decision on a complaint: ACCEPT with a correction, or REJECT without one.
    DecisionBodySchema => OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("decision", string_enum(&["ACCEPT"]))
                .property(
                    "correctionCents",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
                        .minimum(Some(1))
                        .maximum(Some(1_000_000))
                        .description(Some("the correction paid in the next payout file, euro-cents")),
                )
                .property("note", nullable_string(Some(NOTE_MAX)))
                .required("decision")
                .required("correctionCents")
                .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("decision", string_enum(&["REJECT"]))
                .property("correctionCents", ObjectBuilder::new().schema_type(Type::Null))
                .property("note", nullable_string(Some(NOTE_MAX)))
                .required("decision")
                .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false))),
        )
);

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::Query;
    use axum::http::{Method, Request, StatusCode, header};
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut v = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (m, op) in item.as_object().unwrap() {
                v.push((m.clone(), path.clone(), op));
            }
        }
        v
    }

    #[test]
    fn every_error_is_a_problem_and_every_operation_has_the_common_answers() {
        let doc = document();
        let ops = operations(doc);
        assert!(ops.len() > 60, "{} operations", ops.len());
        for (m, path, op) in ops {
            let responses = op["responses"].as_object().unwrap();
            let secured = op.get("security").is_some();
            for (code, r) in responses {
                assert!(r.get("description").is_some(), "{m} {path} {code}: no description");
                let code: u16 = code.parse().unwrap();
                if code >= 400 && path != "/health" {
                    let content = r["content"].as_object().unwrap();
                    assert_eq!(content.keys().collect::<Vec<_>>(), [PROBLEM_JSON], "{m} {path} {code}");
                    assert_eq!(content[PROBLEM_JSON]["schema"]["$ref"], PROBLEM_REF, "{m} {path} {code}");
                }
                if code == 429 || code == 503 && path != "/health" {
                    assert_eq!(r["headers"]["Retry-After"]["required"], true, "{m} {path} {code}");
                }
            }
            if secured {
                for code in ["401", "429", "503"] {
                    assert!(responses.contains_key(code), "{m} {path}: no {code}");
                }
            }
            if path.contains('{') {
                assert!(responses.contains_key("400") && responses.contains_key("404"), "{m} {path}");
            }
            // An optional body is absent, not null.
            if let Some(content) = op.pointer("/requestBody/content").and_then(Value::as_object) {
                for media in content.values() {
                    let alts = media["schema"].get("oneOf").and_then(Value::as_array);
                    assert!(!alts.into_iter().flatten().any(|a| a["type"] == "null"), "{m} {path}: nullable body");
                }
            }
        }
        // Query parameters are documented in the query (not as path parameters).
        let login = &doc["paths"]["/bpd/pagopa/api/v1/login"]["post"]["parameters"][0];
        assert_eq!((login["in"].as_str(), login["required"].as_bool()), (Some("query"), Some(true)));
        let pm = &doc["paths"]["/bpd/pm/payment-instrument/{hpan}"]["delete"]["parameters"];
        assert!(pm.as_array().unwrap().iter().any(|p| p["name"] == "fiscalCode" && p["in"] == "query"));
        // Empty values: taken as absent by `Params`, malformed for serde-read parameters.
        let limit = doc["paths"]["/bpd/io/winning-transactions/v2"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["allowEmptyValue"], true);
        let flag = &doc["paths"]["/bpd/hb/citizens/v2"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "flagTechnicalAccount")
            .unwrap();
        assert!(flag.get("allowEmptyValue").is_none());
        assert!(doc["components"]["schemas"].get("ComplaintStatusSchema").is_some());
    }

    #[test]
    fn the_examples_are_valid_values() {
        let example = |s: RefOr<Schema>| serde_json::to_value(&s).unwrap()["examples"][0].as_str().unwrap().to_owned();
        cashback_domain::FiscalCode::parse(&example(FiscalCodeSchema::schema())).unwrap();
        cashback_domain::FiscalCode::parse(&example(AccountHolderSchema::schema())).unwrap();
        cashback_domain::Iban::parse(&example(IbanSchema::schema())).unwrap();
        cashback_domain::Pan::parse(&example(PanSchema::schema()), "pan").unwrap();
        cashback_domain::Hpan::parse(&example(HpanSchema::schema())).unwrap();
        cashback_domain::FileName::parse(&example(FileNameSchema::schema())).unwrap();
        assert!(cashback_domain::acquirer::is_abi(&example(AbiSchema::schema())));
        // 1 to 100 characters once trimmed, none of them a control character.
        let name = serde_json::to_value(Name100Schema::schema()).unwrap();
        assert_eq!(
            name["pattern"],
            "^\\s*[^\\s\\x00-\\x1f\\x7f-\\x9f]([^\\x00-\\x1f\\x7f-\\x9f]{0,98}[^\\s\\x00-\\x1f\\x7f-\\x9f])?\\s*$"
        );
    }

    #[derive(serde::Deserialize)]
    struct Q {
        #[allow(dead_code)]
        n: u32,
    }

    #[tokio::test]
    async fn rejections_of_extractors_and_router_become_problems() {
        let app = Router::new()
            .route("/q", get(|Query(_): Query<Q>| async { "ok" }))
            .layer(axum::middleware::from_fn(problem_bodies));
        let resp = app.clone().oneshot(Request::get("/q?n=x").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 400);
        assert!(v["detail"].as_str().unwrap().contains("query string"), "{v}");

        let resp =
            app.clone().oneshot(Request::builder().method(Method::POST).uri("/q").body(Body::empty()).unwrap()).await;
        let resp = resp.unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert!(resp.headers()[header::ALLOW].to_str().unwrap().contains("GET"));

        let ok = app.oneshot(Request::get("/q?n=1").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_ne!(ok.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    }
}
