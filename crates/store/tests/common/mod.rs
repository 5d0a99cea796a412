//! Helpers shared by the store's test binaries.
#![allow(dead_code)]

use pipeline_core::JobType;
use pipeline_store::{Backend, NewAudio, NewJob, Store};
use std::time::Duration;
use uuid::Uuid;

pub const LEASE: Duration = Duration::from_secs(60);

/// A fresh store on each backend: a SQLite file in a temporary folder, and
/// a new database on the PostgreSQL server.
pub async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = format!("sqlite://{}/pipeline.db", dir.path().display());
    let sqlite = Store::connect(&sqlite_url).await.expect("sqlite store");
    let mut stores = vec![(sqlite, Some(dir))];
    stores.push((postgres_store().await, None));
    stores
}

pub async fn postgres_store() -> Store {
    let base = pipeline_testkit::postgres_base();
    sqlx::any::install_default_drivers();
    // A schema per test keeps tests apart at a fraction of a database's cost.
    let schema = format!("pm_test_{}", Uuid::new_v4().simple());
    let pool = sqlx::AnyPool::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {base} is required for these tests: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .expect("create test schema");
    pool.close().await;
    let store = Store::connect(&pipeline_testkit::with_schema(&base, &schema))
        .await
        .expect("postgres store");
    assert_eq!(store.backend(), Backend::Postgres);
    store
}

pub fn new_audio(sha: &str) -> NewAudio {
    NewAudio {
        id: Uuid::new_v4(),
        original_name: "talk.mp3".into(),
        sha256: sha.into(),
        size_bytes: 1234,
        container: "mp3".into(),
        codec: "mp3".into(),
        duration_seconds: 12.5,
        sample_rate: 44_100,
        channels: 2,
        storage_key: format!("audio/{sha}"),
        options: serde_json::json!({"language": "en"}),
        settings_key: "settings".into(),
        webhooks: Vec::new(),
    }
}

pub fn pipeline_jobs() -> Vec<NewJob> {
    vec![
        NewJob::new(JobType::Transcription, 3),
        NewJob::new(JobType::Processing, 3),
    ]
}
