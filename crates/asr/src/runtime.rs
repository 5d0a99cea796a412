//! What CTranslate2 chose on this machine: its CPU kernels (ISA), its GEMM
//! backend and the GPUs it sees, so that a user can tell why a machine is
//! slow or why `device = "cuda"` cannot work.
//!
//! ct2rs binds none of these, so they are called by their C++ names in the
//! pinned CTranslate2 4.8.4 (the same in the wheel's library and in a build
//! from source). Every function called here is a plain getter that returns
//! an enum, a count or a static string; the two that can throw (on an
//! invalid `CT2_FORCE_CPU_ISA` or `CT2_USE_MKL`) are not called when those
//! variables hold what CTranslate2 would reject.

use serde::Serialize;

/// The CTranslate2 release this build links.
pub const CTRANSLATE2_VERSION: &str = "4.8.4";

#[cfg(feature = "ctranslate2")]
mod ffi {
    use std::ffi::{c_char, c_int};

    extern "C" {
        /// `ctranslate2::cpu::get_cpu_isa()`, an `enum class CpuIsa`.
        #[link_name = "_ZN11ctranslate23cpu11get_cpu_isaEv"]
        pub fn get_cpu_isa() -> c_int;
        /// `ctranslate2::cpu::get_gemm_backend(ComputeType)`, an `enum class GemmBackend`.
        #[link_name = "_ZN11ctranslate23cpu16get_gemm_backendENS_11ComputeTypeE"]
        pub fn get_gemm_backend(compute_type: c_int) -> c_int;
        /// `ctranslate2::cpu::cpu_vendor()`, a static C string.
        #[link_name = "_ZN11ctranslate23cpu10cpu_vendorEv"]
        pub fn cpu_vendor() -> *const c_char;
        /// `ctranslate2::get_gpu_count()`: 0 without CUDA or a driver.
        #[link_name = "_ZN11ctranslate213get_gpu_countEv"]
        pub fn get_gpu_count() -> c_int;
    }
}

/// What CTranslate2 runs on here.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRuntime {
    /// The CTranslate2 release.
    pub ctranslate2: &'static str,
    /// Where the library came from: the `ctranslate2` wheel, or built from source.
    pub library: &'static str,
    /// CPU vendor as CTranslate2 read it (`GenuineIntel`, `AuthenticAMD`).
    pub cpu_vendor: String,
    /// Instruction set of the CPU kernels CTranslate2 dispatched to.
    pub cpu_isa: String,
    /// GEMM backend for the given compute type (`MKL`, `DNNL`, ...).
    pub gemm_backend: String,
    /// CUDA devices CTranslate2 can use.
    pub cuda_devices: usize,
}

#[cfg(feature = "ctranslate2")]
fn library() -> &'static str {
    if cfg!(feature = "ctranslate2-prebuilt") {
        "prebuilt (ctranslate2 wheel: oneMKL, oneDNN)"
    } else {
        "built from source (oneDNN)"
    }
}

/// Number of CUDA devices CTranslate2 sees (0 in a build without it).
pub fn cuda_devices() -> usize {
    #[cfg(feature = "ctranslate2")]
    // SAFETY: a getter that catches CUDA's errors and returns 0.
    return usize::try_from(unsafe { ffi::get_gpu_count() }).unwrap_or(0);
    #[cfg(not(feature = "ctranslate2"))]
    0
}

/// Reads what CTranslate2 chose for a compute type (`int8`, `float32`, ...;
/// `default` and `auto` are reported as the int8 our models are stored in);
/// `None` in a build without CTranslate2.
pub fn engine_runtime(compute_type: &str) -> Option<EngineRuntime> {
    #[cfg(feature = "ctranslate2")]
    return Some(read_runtime(compute_type));
    #[cfg(not(feature = "ctranslate2"))]
    {
        let _ = compute_type;
        None
    }
}

#[cfg(feature = "ctranslate2")]
fn read_runtime(compute_type: &str) -> EngineRuntime {
    use ct2rs::sys::ComputeType;
    use std::ffi::CStr;

    let compute_type = match crate::parse_compute_type(compute_type) {
        Ok(t) if t != ComputeType::DEFAULT && t != ComputeType::AUTO => t.repr,
        _ => ComputeType::INT8.repr,
    };
    // SAFETY: returns a pointer to a static, NUL-terminated buffer filled
    // once by cpu_features.
    let vendor = unsafe { CStr::from_ptr(ffi::cpu_vendor()) }
        .to_string_lossy()
        .into_owned();
    let cpu_isa = match std::env::var("CT2_FORCE_CPU_ISA") {
        Ok(v) if !matches!(v.as_str(), "" | "AVX512" | "AVX2" | "AVX" | "GENERIC") => {
            format!("invalid CT2_FORCE_CPU_ISA={v:?}")
        }
        // SAFETY: with a valid (or no) CT2_FORCE_CPU_ISA the getter cannot
        // throw; an ISA the CPU lacks falls back to what it has.
        _ => isa_name(unsafe { ffi::get_cpu_isa() }).to_string(),
    };
    let use_mkl = std::env::var("CT2_USE_MKL").unwrap_or_default();
    // CTranslate2's own `string_to_bool`: only these three are true.
    let gemm_backend = if cfg!(not(feature = "ctranslate2-prebuilt"))
        && matches!(use_mkl.as_str(), "1" | "true" | "TRUE")
    {
        "CT2_USE_MKL is set but this build has no MKL".to_string()
    } else {
        // SAFETY: throws only for CT2_USE_MKL=1 without MKL, excluded above.
        backend_name(unsafe { ffi::get_gemm_backend(compute_type) }).to_string()
    };
    EngineRuntime {
        ctranslate2: CTRANSLATE2_VERSION,
        library: library(),
        cpu_vendor: vendor,
        cpu_isa,
        gemm_backend,
        cuda_devices: cuda_devices(),
    }
}

#[cfg(feature = "ctranslate2")]
fn isa_name(isa: std::ffi::c_int) -> &'static str {
    // The order of `enum class CpuIsa` on x86 and on ARM64 builds.
    match (isa, cfg!(target_arch = "aarch64")) {
        (0, _) => "GENERIC",
        (1, true) => "NEON",
        (1, false) => "AVX",
        (2, false) => "AVX2",
        (3, false) => "AVX512",
        _ => "unknown",
    }
}

#[cfg(feature = "ctranslate2")]
fn backend_name(backend: std::ffi::c_int) -> &'static str {
    match backend {
        0 => "none",
        1 => "MKL",
        2 => "DNNL",
        3 => "Accelerate",
        4 => "OpenBLAS",
        5 => "Ruy",
        _ => "unknown",
    }
}

#[cfg(all(test, feature = "ctranslate2"))]
mod tests {
    use super::*;

    #[test]
    fn the_linked_library_reports_a_known_isa_and_backend() {
        let runtime = engine_runtime("int8").expect("a build with CTranslate2");
        assert_ne!(runtime.cpu_isa, "unknown", "{runtime:?}");
        assert!(
            ["MKL", "DNNL"].contains(&runtime.gemm_backend.as_str()),
            "{runtime:?}"
        );
        assert!(!runtime.cpu_vendor.is_empty(), "{runtime:?}");
    }
}
