//! The Silero VAD v6 model on ONNX Runtime, in the form faster-whisper runs
//! it: windows of 512 samples with the previous window's last 64 samples in
//! front, many windows per call, the LSTM state carried from call to call.

use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use crate::{VadError, WINDOW_SAMPLES};

/// Samples of the previous window fed in front of each window.
const CONTEXT: usize = 64;
/// Width of the LSTM state.
const STATE: usize = 128;
/// Windows per call (about 8 s). Fixed, so that the probabilities of a
/// file do not depend on how its samples were read.
const WINDOWS_PER_CALL: usize = 256;

/// The runtime loaded into this process: ONNX Runtime can be loaded once
/// per process, so the first library that loads is the one every model
/// runs on. A failure is not kept: installing the library fixes the next try.
static RUNTIME: Mutex<Option<Environment>> = Mutex::new(None);

/// Loads ONNX Runtime from `library` once per process; every later call
/// gets the same environment (the models of other crates share it).
pub fn load_runtime(library: &Path) -> Result<Environment, VadError> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(environment) = slot.as_ref() {
        return Ok(environment.clone());
    }
    let failed = |reason: String| VadError::Runtime {
        path: library.to_path_buf(),
        reason,
    };
    if !library.is_file() {
        return Err(failed("no such file".into()));
    }
    let environment = ort::init_from(library)
        .map_err(|e| failed(e.to_string()))?
        .with_name("pipeline-vad")
        .build()
        .map_err(|e| failed(e.to_string()))?;
    *slot = Some(environment.clone());
    Ok(environment)
}

/// A loaded Silero VAD model, shared by a worker's threads.
pub struct Silero {
    session: Mutex<Session>,
}

impl std::fmt::Debug for Silero {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Silero").finish_non_exhaustive()
    }
}

impl Silero {
    /// Loads `model` (silero_vad_v6.onnx) on the ONNX Runtime `library`.
    pub fn load(library: &Path, model: &Path) -> Result<Self, VadError> {
        let environment = load_runtime(library)?;
        let model_error = |reason: String| VadError::Model {
            path: model.to_path_buf(),
            reason,
        };
        if !model.is_file() {
            return Err(model_error("no such file".into()));
        }
        // One thread, as faster-whisper runs it: the model is small, and
        // the cores belong to the speech model.
        let inference = |e: String| VadError::Inference(e);
        let builder = Session::builder(&environment).map_err(|e| inference(e.to_string()))?;
        let builder = builder
            .with_intra_threads(1)
            .map_err(|e| inference(e.to_string()))?;
        let session = builder
            .with_inter_threads(1)
            .map_err(|e| inference(e.to_string()))?
            .commit_from_file(model)
            .map_err(|e| model_error(e.to_string()))?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if names != ["input", "h", "c"] {
            return Err(model_error(format!(
                "inputs are {names:?}, not Silero VAD v6's [\"input\", \"h\", \"c\"]"
            )));
        }
        Ok(Self {
            session: Mutex::new(session),
        })
    }

    /// A new stream with a fresh state.
    pub fn stream(&self) -> SileroStream<'_> {
        SileroStream {
            model: self,
            h: vec![0.0; STATE],
            c: vec![0.0; STATE],
            context: [0.0; CONTEXT],
            pending: Vec::with_capacity(WINDOWS_PER_CALL * WINDOW_SAMPLES),
            rows: Vec::with_capacity(WINDOWS_PER_CALL * (WINDOW_SAMPLES + CONTEXT)),
        }
    }
}

/// Speech probabilities of one audio stream, one per 512-sample window.
pub struct SileroStream<'a> {
    model: &'a Silero,
    h: Vec<f32>,
    c: Vec<f32>,
    context: [f32; CONTEXT],
    pending: Vec<f32>,
    rows: Vec<f32>,
}

impl SileroStream<'_> {
    /// Takes 16 kHz samples; the probabilities of the windows completed go to `out`.
    pub fn push(&mut self, mut samples: &[f32], out: &mut Vec<f32>) -> Result<(), VadError> {
        let block = WINDOWS_PER_CALL * WINDOW_SAMPLES;
        while !samples.is_empty() {
            let take = (block - self.pending.len()).min(samples.len());
            self.pending.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.pending.len() == block {
                self.run(out)?;
            }
        }
        Ok(())
    }

    /// Ends the stream: the last window is padded with zeros, and a stream
    /// that ends on a window boundary gets one silent window more, as
    /// faster-whisper pads it.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), VadError> {
        let padded = (self.pending.len() / WINDOW_SAMPLES + 1) * WINDOW_SAMPLES;
        self.pending.resize(padded, 0.0);
        self.run(out)
    }

    fn run(&mut self, out: &mut Vec<f32>) -> Result<(), VadError> {
        let windows = self.pending.len() / WINDOW_SAMPLES;
        if windows == 0 {
            return Ok(());
        }
        self.rows.clear();
        for window in self.pending.chunks_exact(WINDOW_SAMPLES) {
            self.rows.extend_from_slice(&self.context);
            self.rows.extend_from_slice(window);
            self.context
                .copy_from_slice(&window[WINDOW_SAMPLES - CONTEXT..]);
        }
        self.pending.clear();
        let failed = |e: ort::Error| VadError::Inference(e.to_string());
        let input = Tensor::from_array((
            [windows as i64, (WINDOW_SAMPLES + CONTEXT) as i64],
            std::mem::take(&mut self.rows),
        ))
        .map_err(failed)?;
        let h = Tensor::from_array(([1i64, 1, STATE as i64], self.h.clone())).map_err(failed)?;
        let c = Tensor::from_array(([1i64, 1, STATE as i64], self.c.clone())).map_err(failed)?;
        let mut session = self
            .model
            .session
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session
            .run(ort::inputs!["input" => input, "h" => h, "c" => c])
            .map_err(failed)?;
        let (_, probs) = outputs["speech_probs"]
            .try_extract_tensor::<f32>()
            .map_err(failed)?;
        if probs.len() != windows {
            return Err(VadError::Inference(format!(
                "{} probabilities for {windows} windows",
                probs.len()
            )));
        }
        out.extend_from_slice(probs);
        let (_, hn) = outputs["hn"].try_extract_tensor::<f32>().map_err(failed)?;
        let (_, cn) = outputs["cn"].try_extract_tensor::<f32>().map_err(failed)?;
        if hn.len() != STATE || cn.len() != STATE {
            return Err(VadError::Inference("unexpected LSTM state size".into()));
        }
        self.h.copy_from_slice(hn);
        self.c.copy_from_slice(cn);
        Ok(())
    }
}
