//! Points the linker at the prebuilt CTranslate2 that
//! `scripts/install-ctranslate2.sh` installs (feature `ctranslate2-prebuilt`).

use std::env;
use std::path::PathBuf;

/// The CTranslate2 release whose headers ct2rs vendors and whose wheel we link.
const VERSION: &str = "4.8.4";
const LIBRARY: &str = "libctranslate2-42c542ff.so.4.8.4";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PIPELINE_CT2_LIB_DIR");
    println!("cargo:rerun-if-env-changed=XDG_DATA_HOME");
    println!("cargo:rerun-if-env-changed=HOME");
    if env::var_os("CARGO_FEATURE_CTRANSLATE2_PREBUILT").is_none() {
        return;
    }
    let dir = match env::var_os("PIPELINE_CT2_LIB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_default()
            .join("pipeline-manager/lib")
            .join(format!("ctranslate2-{VERSION}")),
    };
    println!("cargo:rerun-if-changed={}", dir.join(LIBRARY).display());
    if !dir.join("libctranslate2.so").exists() {
        panic!(
            "\n\nThe prebuilt CTranslate2 {VERSION} is not in {}.\n\
             Install it with `bash scripts/install-ctranslate2.sh` (it takes the library \
             from the pinned `ctranslate2` wheel on PyPI), or set PIPELINE_CT2_LIB_DIR to \
             where it is, or build the engine from source with \
             `--no-default-features --features engine-from-source` (about 30 minutes).\n\n",
            dir.display()
        );
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
}
