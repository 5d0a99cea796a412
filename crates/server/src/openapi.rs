//! The API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`.
//! It is derived from the handlers' `#[utoipa::path]` attributes and from
//! the types they serialize (core's model types with its `openapi`
//! feature, the views of this crate), so it changes with the code.
//!
//! Some routes are described by stub functions below instead: those whose
//! answers are not one serialized type (event streams, the dashboard's
//! static files, stored audio), and the webhook routes, whose handlers
//! send the store's `WebhookDelivery` (derived with the store's `openapi`
//! feature) inside a small JSON envelope.
//! The request forms are here too: handlers read them field by field as
//! they stream, so they never deserialize into a type.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use pipeline_core::render::OutputFormat;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::ErrorBody;
use crate::AppState;
use pipeline_store::{DeliveryStatus, WebhookDelivery};

/// The name of the API-key security scheme.
const API_KEY: &str = "api_key";

/// Every documented route and the schemas they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pipeline-manager",
        description = "Audio in, transcripts out: every file is a set of tracked jobs \
                       (TRANSCRIPTION, then PROCESSING). Errors are \
                       `{\"error\": {\"code\", \"message\"}}`.",
    ),
    paths(
        crate::routes::healthz,
        crate::routes::readyz,
        crate::metrics::metrics,
        openapi_json,
        crate::routes::upload,
        crate::routes::list_audio,
        crate::routes::get_audio,
        crate::routes::delete_audio,
        crate::routes::audio_jobs,
        crate::routes::transcript,
        audio_file,
        crate::routes::retry,
        crate::routes::cancel_job,
        crate::routes::status,
        webhook_deliveries,
        retry_webhook_delivery,
        audio_events,
        all_events,
        crate::openai::transcriptions,
        dashboard_index,
        dashboard_asset,
    ),
    // Schemas that only parameters name are not collected by themselves.
    components(schemas(ErrorBody, OutputFormat)),
    modifiers(&ApiKeys, &Refinements),
    tags(
        (name = "audio", description = "Files, their jobs, transcripts and outputs"),
        (name = "jobs", description = "Single jobs"),
        (name = "webhooks", description = "Deliveries of job events to webhook URLs"),
        (name = "events", description = "Live progress as server-sent events"),
        (name = "openai", description = "OpenAI-compatible transcription"),
        (name = "health", description = "Health, readiness, status and metrics"),
        (name = "dashboard", description = "The web dashboard's static files"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme and gives every operation that needs a key
/// its 401, so that no keyed route can forget it.
struct ApiKeys;

impl Modify for ApiKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Components::new)
            .add_security_scheme(
                API_KEY,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "A key from `pipeline-manager api-key create` \
                             (not needed when `server.auth = false`).",
                        ))
                        .build(),
                ),
            );
        let unauthorized = ResponseBuilder::new()
            .description("No API key, or one that is unknown or revoked")
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ApiError")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    operation
                        .responses
                        .responses
                        .entry("401".to_string())
                        .or_insert_with(|| unauthorized.clone().into());
                }
            }
        }
    }
}

/// What the derive cannot say: a parameter is absent or has a value (a
/// query string or header cannot carry null, though an `Option` field makes
/// the derived schema nullable), and the upload's `webhook_secret` needs
/// its `webhook_url`.
struct Refinements;

impl Modify for Refinements {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() {
                        if let SchemaType::Array(types) = &schema.schema_type {
                            let kept: Vec<Type> = types
                                .iter()
                                .filter(|t| **t != Type::Null)
                                .cloned()
                                .collect();
                            schema.schema_type = match kept.as_slice() {
                                [one] => SchemaType::Type(one.clone()),
                                _ => SchemaType::Array(kept),
                            };
                        }
                    }
                }
            }
        }
        let form = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("UploadForm"));
        if let Some(RefOr::T(Schema::Object(form))) = form {
            form.extensions.get_or_insert_with(Default::default).insert(
                "dependentRequired".to_string(),
                serde_json::json!({"webhook_secret": ["webhook_url"]}),
            );
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> + '_ {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
    ]
    .into_iter()
    .flatten()
}

/// The document as this server answers: without keys when `server.auth`
/// is off, so that it promises no 401 the server never sends.
pub fn document(auth: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if !auth {
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                operation.security = None;
                operation.responses.responses.remove("401");
            }
        }
        if let Some(components) = doc.components.as_mut() {
            components.security_schemes.clear();
        }
    }
    doc
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health", responses(
    (status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value)))]
pub async fn openapi_json(State(state): State<AppState>) -> Response {
    Json(document(state.auth)).into_response()
}

/// The form of `POST /api/v1/audio`.
#[derive(serde::Deserialize, ToSchema)]
// The handler refuses fields it does not know.
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The audio (wav, mp3, flac, ogg, m4a, ...).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Language code (`en`, `de`, `yue`); detected when absent or empty.
    #[serde(default)]
    #[schema(pattern = r"^([a-z]{2,3})?$")]
    language: String,
    /// `transcribe` (the default) or `translate` (to English; multilingual
    /// models only).
    #[serde(default)]
    #[schema(
        pattern = r"^ *(?:[tT][rR][aA][nN][sS][cC][rR][iI][bB][eE]|[tT][rR][aA][nN][sS][lL][aA][tT][eE]) *$"
    )]
    task: String,
    /// `sequential` (30 s windows in turn) or `batched` (speech chunks found
    /// by the Silero VAD, decoded `batch_size` at a time); `model.mode` when
    /// absent or empty.
    #[serde(default)]
    #[schema(
        pattern = r"^ *(?:[sS][eE][qQ][uU][eE][nN][tT][iI][aA][lL]|[bB][aA][tT][cC][hH][eE][dD]) *$"
    )]
    mode: String,
    /// Chunks decoded at once in batched mode, 1 to 64; `model.batch_size`
    /// when absent or empty.
    #[serde(default)]
    #[schema(pattern = r"^ *(?:[1-9]|[1-5][0-9]|6[0-4]) *$")]
    batch_size: String,
    /// Text the model takes as what was said before (names, spellings, style).
    #[serde(default)]
    initial_prompt: String,
    /// Names and jargon to spell as given, put in every window's prompt.
    #[serde(default)]
    hotwords: String,
    /// The channel to transcribe: `mix` (all, the default), `left`, `right`,
    /// or a number from 0 to 31.
    #[serde(default)]
    #[schema(
        pattern = r"^ *(?:[mM][iI][xX]|[lL][eE][fF][tT]|[rR][iI][gG][hH][tT]|[0-9]|[12][0-9]|3[01])? *$"
    )]
    channel: String,
    /// The audio track to transcribe, from 0 among the file's audio tracks;
    /// the file's default audio track when absent or empty.
    #[serde(default)]
    #[schema(pattern = r"^ *(?:default|[0-9]|[1-9][0-9]|1[01][0-9]|12[0-7])? *$")]
    audio_track: String,
    /// Comma-separated outputs to render (any case): txt, srt, vtt, json,
    /// tsv, rttm. When absent, `processing.formats`, with rttm added for a
    /// diarized file.
    #[serde(default)]
    #[schema(
        pattern = r"^ *\.?(?:[tT][xX][tT]|[sS][rR][tT]|[vV][tT][tT]|[jJ][sS][oO][nN]|[tT][sS][vV]|[rR][tT][tT][mM]) *(?:, *\.?(?:[tT][xX][tT]|[sS][rR][tT]|[vV][tT][tT]|[jJ][sS][oO][nN]|[tT][sS][vV]|[rR][tT][tT][mM]) *)*$"
    )]
    formats: String,
    /// An http:// or https:// URL that receives the file's job events.
    #[serde(default)]
    // Narrower than what is accepted (no user or IPv6 host), so that every
    // URL the pattern allows is one the server takes.
    #[schema(
        format = "uri",
        pattern = r"^https?://[^/?#@:\s\[\]]+(:[0-9]{1,4})?([/?#].*)?$"
    )]
    webhook_url: String,
    /// Signs the events sent to `webhook_url` (HMAC-SHA256); without it
    /// they are sent unsigned. Needs `webhook_url`.
    #[serde(default)]
    webhook_secret: String,
    /// `true` adds a DIARIZATION job (who speaks when) beside TRANSCRIPTION:
    /// speakers in every output and the transcript; `false` leaves it out;
    /// `diarization.enabled` when absent or empty. Also 1/0, yes/no, on/off.
    #[serde(default)]
    #[schema(
        pattern = r"^ *(?:[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|1|0|[yY][eE][sS]|[nN][oO]|[oO][nN]|[oO][fF][fF])? *$"
    )]
    diarize: String,
    /// Exactly this many speakers, 1 to 64; implies `diarize`. Not with
    /// `min_speakers` or `max_speakers` (422 `invalid_speakers`).
    #[serde(default)]
    #[schema(pattern = r"^ *(?:[1-9]|[1-5][0-9]|6[0-4])? *$")]
    speakers: String,
    /// At least this many speakers, 1 to 64; implies `diarize`.
    #[serde(default)]
    #[schema(pattern = r"^ *(?:[1-9]|[1-5][0-9]|6[0-4])? *$")]
    min_speakers: String,
    /// At most this many speakers, 1 to 64, not below `min_speakers`;
    /// implies `diarize`.
    #[serde(default)]
    #[schema(pattern = r"^ *(?:[1-9]|[1-5][0-9]|6[0-4])? *$")]
    max_speakers: String,
}

/// The form of `POST /v1/audio/transcriptions`, as OpenAI's.
#[derive(serde::Deserialize, ToSchema)]
// The handler ignores fields it does not know, so that OpenAI's clients
// may send newer ones; the contract lists those they send today.
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TranscriptionForm {
    /// The audio (wav, mp3, flac, ogg, m4a, ...).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Ignored: the server's model transcribes.
    #[schema(required = false)]
    model: String,
    /// `json` unless given.
    #[schema(required = false)]
    response_format: crate::openai::ResponseFormat,
    /// Language code; detected when absent or empty.
    #[schema(required = false)]
    language: String,
    /// `word` adds word timestamps to verbose_json.
    #[serde(rename = "timestamp_granularities[]")]
    #[schema(required = false)]
    timestamp_granularities: Vec<Granularity>,
    /// Ignored.
    #[schema(required = false)]
    prompt: String,
    /// Ignored: decoding follows the server's settings.
    #[schema(required = false)]
    temperature: f64,
}

/// What `timestamp_granularities[]` may ask for.
#[derive(serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum Granularity {
    Word,
    Segment,
}

/// `GET /api/v1/webhooks/deliveries`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookDeliveries {
    /// Newest first.
    deliveries: Vec<WebhookDelivery>,
}

/// `POST /api/v1/webhooks/deliveries/{id}/retry`'s answer.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookRetried {
    delivery: WebhookDelivery,
}

/// `GET /api/v1/webhooks/deliveries?status=&limit=`: newest first.
#[utoipa::path(get, path = "/api/v1/webhooks/deliveries", tag = "webhooks",
    params(("status" = Option<DeliveryStatus>, Query, description = "Only deliveries in this status (any case)"),
        ("limit" = Option<u32>, Query, format = Int64, maximum = 4_294_967_295_u32,
            description = "At most this many: 50 unless given, at most 500 (larger values are lowered)")),
    security(("api_key" = [])), responses(
    (status = 200, description = "Deliveries, newest first", body = WebhookDeliveries),
    (status = 400, description = "A malformed parameter", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
#[allow(dead_code)]
fn webhook_deliveries() {}

/// `POST /api/v1/webhooks/deliveries/{id}/retry`: queued for the relay now.
#[utoipa::path(post, path = "/api/v1/webhooks/deliveries/{id}/retry", tag = "webhooks",
    params(("id" = i64, Path, description = "The delivery's id")),
    security(("api_key" = [])), responses(
    (status = 202, description = "Queued to be sent again", body = WebhookRetried),
    (status = 400, description = "The id is not a number", body = ErrorBody),
    (status = 404, description = "No such delivery", body = ErrorBody),
    (status = 409, description = "Delivered already (`already_delivered`)", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
#[allow(dead_code)]
fn retry_webhook_delivery() {}

/// `GET /api/v1/audio/{id}/events`: the file's events so far (after
/// `Last-Event-ID` when given), then live: `job` for every transition,
/// `segment` for each transcript segment as the engine produces it, and
/// `progress` when a running job's progress changes.
#[utoipa::path(get, path = "/api/v1/audio/{id}/events", tag = "events",
    params(("id" = Uuid, Path, description = "The audio file's id"),
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (`<event>:<segment>`)")),
    security(("api_key" = [])), responses(
    (status = 200, description = "An endless event stream", body = String,
        content_type = "text/event-stream"),
    (status = 400, description = "The id is not a uuid", body = ErrorBody),
    (status = 404, description = "No such file", body = ErrorBody),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
#[allow(dead_code)]
fn audio_events() {}

/// `GET /api/v1/events`: every file's events from now (or after
/// `Last-Event-ID`).
#[utoipa::path(get, path = "/api/v1/events", tag = "events",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (`<event>:<segment>`)")),
    security(("api_key" = [])), responses(
    (status = 200, description = "An endless event stream", body = String,
        content_type = "text/event-stream"),
    (status = 503, description = "The database is unreachable", body = ErrorBody)))]
#[allow(dead_code)]
fn all_events() {}

/// `GET /api/v1/audio/{id}/file`: the stored audio as uploaded; one byte
/// range is answered 206.
#[utoipa::path(get, path = "/api/v1/audio/{id}/file", tag = "audio",
    params(("id" = Uuid, Path, description = "The audio file's id"),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag (the content's digest) a client holds")),
    security(("api_key" = [])), responses(
    (status = 200, description = "The whole file", content(
        ("audio/wav"), ("audio/mpeg"), ("audio/flac"), ("audio/ogg"), ("audio/mp4"),
        ("audio/aac"), ("audio/webm"), ("application/octet-stream"))),
    (status = 206, description = "The range asked for", content(
        ("audio/wav"), ("audio/mpeg"), ("audio/flac"), ("audio/ogg"), ("audio/mp4"),
        ("audio/aac"), ("audio/webm"), ("application/octet-stream"))),
    (status = 304, description = "The client's copy is current"),
    (status = 400, description = "The id is not a uuid", body = ErrorBody),
    (status = 404, description = "No such file, or its audio is gone from storage", body = ErrorBody),
    (status = 416, description = "The range starts past the end"),
    (status = 503, description = "The database or storage is unavailable", body = ErrorBody)))]
#[allow(dead_code)]
fn audio_file() {}

/// `GET /`: the web dashboard (it asks for an API key and sends it with
/// its API calls).
#[utoipa::path(get, path = "/", tag = "dashboard", responses(
    (status = 200, description = "The dashboard page", body = String, content_type = "text/html")))]
#[allow(dead_code)]
fn dashboard_index() {}

/// `GET /assets/{name}`: the dashboard's script, style sheet and icon.
#[utoipa::path(get, path = "/assets/{name}", tag = "dashboard",
    params(("name" = String, Path, description = "`app.js`, `style.css` or `favicon.svg`")),
    responses(
    (status = 200, description = "The file", content(
        ("text/javascript"), ("text/css"), ("image/svg+xml"))),
    (status = 404, description = "No such asset", body = ErrorBody)))]
#[allow(dead_code)]
fn dashboard_asset() {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// (METHOD, path) of every `.route(...)` in this crate's sources: the
    /// router cannot list its routes, and this way a route added anywhere
    /// in the crate fails the test until it is documented.
    fn routed() -> BTreeSet<(String, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut routes = BTreeSet::new();
        for entry in std::fs::read_dir(&src).expect("src dir") {
            let path = entry.expect("dir entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source");
            for call in text.split(".route(").skip(1) {
                let Some(rest) = call.trim_start().strip_prefix('"') else {
                    continue;
                };
                let Some((route, rest)) = rest.split_once('"') else {
                    continue;
                };
                if !route.starts_with('/') {
                    continue;
                }
                // The method routers up to this call's closing parenthesis.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                let methods = &rest[..end];
                for method in ["get", "post", "put", "patch", "delete"] {
                    let called = methods.match_indices(&format!("{method}(")).any(|(i, _)| {
                        i == 0
                            || !methods[..i]
                                .chars()
                                .next_back()
                                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    });
                    if called {
                        routes.insert((method.to_uppercase(), route.to_string()));
                    }
                }
            }
        }
        routes
    }

    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
        ops
    }

    #[test]
    fn the_document_lists_every_route_of_the_router() {
        let text = serde_json::to_string(&document(true)).expect("serializes");
        let doc: Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(doc["openapi"], "3.1.0");
        let routed = routed();
        assert!(
            routed.contains(&("POST".to_string(), "/api/v1/audio".to_string())),
            "the route scan found {routed:?}"
        );
        assert_eq!(documented(&doc), routed);
    }

    fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    found.push(target);
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(document(true)).expect("serializes");
        let mut found = Vec::new();
        refs(&doc, &mut found);
        assert!(!found.is_empty());
        for target in found {
            let name = target
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{target} is not a local schema"));
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "{target} is not in the document"
            );
        }
    }

    #[test]
    fn keyed_routes_promise_401_and_the_rest_need_no_key() {
        let doc = serde_json::to_value(document(true)).expect("serializes");
        let open = [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/openapi.json",
            "/",
        ];
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                let keyed = op["security"].as_array().is_some_and(|s| !s.is_empty());
                let public = open.contains(&path.as_str()) || path.starts_with("/assets/");
                assert_eq!(keyed, !public, "{method} {path}");
                assert_eq!(op["responses"]["401"].is_object(), keyed, "{method} {path}");
            }
        }
        assert_eq!(
            doc["components"]["securitySchemes"][API_KEY]["scheme"],
            "bearer"
        );
        let open_doc = serde_json::to_value(document(false)).expect("serializes");
        assert!(!open_doc.to_string().contains("\"401\""));
        assert!(!open_doc.to_string().contains("\"security\""));
    }

    #[tokio::test]
    async fn error_responses_are_the_shape_the_handlers_send() {
        let response = crate::ApiError::not_found("no such thing").into_response();
        assert_eq!(response.status(), axum::http::StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(body["error"]["code"], "not_found");
        let doc = serde_json::to_value(document(true)).expect("serializes");
        let schema = &doc["components"]["schemas"]["ApiError"];
        assert_eq!(schema["required"], serde_json::json!(["error"]));
        let detail = &doc["components"]["schemas"]["ErrorDetail"];
        assert_eq!(detail["required"], serde_json::json!(["code", "message"]));
        let keys = |v: &Value| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
        assert_eq!(keys(&body["error"]), keys(&detail["properties"]));
    }
}
