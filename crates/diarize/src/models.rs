//! The two networks on ONNX Runtime: pyannote segmentation-3.0 (powerset
//! speaker activity of a 10 s window) and CAM++ (a speaker embedding of
//! filterbank frames).

use std::path::Path;
use std::sync::Mutex;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use crate::DiarizeError;

/// Samples of one segmentation window (10 s).
pub const WINDOW: usize = 160_000;
/// Width of a CAM++ embedding.
pub const EMBEDDING: usize = 192;
/// Local speakers of a segmentation window.
pub const LOCAL_SPEAKERS: usize = 3;

/// The local speakers of each powerset class, as bits (speaker `s` is bit
/// `s`): {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}.
const POWERSET: [u8; 7] = [0b000, 0b001, 0b010, 0b100, 0b011, 0b101, 0b110];

fn inference<R>(e: ort::Error<R>) -> DiarizeError {
    DiarizeError::Inference(e.to_string())
}

/// One ONNX network with one float input and its first output.
struct Network {
    session: Mutex<Session>,
    input: String,
    output: String,
}

impl Network {
    fn load(environment: &Environment, path: &Path, threads: usize) -> Result<Self, DiarizeError> {
        let model_error = |reason: String| DiarizeError::Model {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(model_error("no such file".into()));
        }
        let mut builder = Session::builder(environment)
            .map_err(inference)?
            .with_inter_threads(1)
            .map_err(inference)?;
        if threads > 0 {
            builder = builder.with_intra_threads(threads).map_err(inference)?;
        }
        let session = builder
            .commit_from_file(path)
            .map_err(|e| model_error(e.to_string()))?;
        let (input, output) = match (session.inputs().first(), session.outputs().first()) {
            (Some(i), Some(o)) if session.inputs().len() == 1 => {
                (i.name().to_string(), o.name().to_string())
            }
            _ => return Err(model_error("expected one input and an output".into())),
        };
        Ok(Self {
            session: Mutex::new(session),
            input,
            output,
        })
    }

    /// Runs the network on `data` of `shape`: the output's shape and values.
    fn run<const N: usize>(
        &self,
        shape: [i64; N],
        data: Vec<f32>,
    ) -> Result<(Vec<i64>, Vec<f32>), DiarizeError> {
        let input = Tensor::from_array((shape, data)).map_err(inference)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs![self.input.as_str() => input])
            .map_err(inference)?;
        let (shape, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(inference)?;
        Ok((shape.to_vec(), values.to_vec()))
    }
}

/// pyannote segmentation-3.0: for each ~17 ms frame of a 10 s window, which
/// of three local speakers talk.
pub struct Segmentation(Network);

impl Segmentation {
    /// Loads the model at `path`.
    pub fn load(
        environment: &Environment,
        path: &Path,
        threads: usize,
    ) -> Result<Self, DiarizeError> {
        Network::load(environment, path, threads).map(Self)
    }

    /// The powerset log-probabilities of `windows` (each [`WINDOW`]
    /// samples, back to back): frames per window, and 7 scores a frame.
    pub fn scores(&self, windows: &[f32]) -> Result<(usize, Vec<f32>), DiarizeError> {
        let batch = windows.len() / WINDOW;
        let (shape, scores) = self
            .0
            .run([batch as i64, 1, WINDOW as i64], windows.to_vec())?;
        let classes = POWERSET.len();
        if shape.len() != 3 || shape[0] as usize != batch || shape[2] as usize != classes {
            return Err(DiarizeError::Inference(format!(
                "segmentation output shape {shape:?}, expected [{batch}, frames, {classes}]"
            )));
        }
        Ok((shape[1] as usize, scores))
    }

    /// Runs `windows` and appends each frame's active local speakers (bits)
    /// to `out`; returns the frames per window.
    pub fn run(&self, windows: &[f32], out: &mut Vec<u8>) -> Result<usize, DiarizeError> {
        let (frames, scores) = self.scores(windows)?;
        let classes = POWERSET.len();
        // pyannote turns powerset scores into speakers by the best class.
        out.extend(scores.chunks_exact(classes).map(|frame| {
            let best = (0..classes)
                .max_by(|&a, &b| frame[a].total_cmp(&frame[b]))
                .unwrap_or(0);
            POWERSET[best]
        }));
        Ok(frames)
    }
}

/// CAM++ speaker embeddings of mean-normalized 80-bin filterbank frames.
pub struct Embedder(Network);

impl Embedder {
    /// Loads the model at `path`.
    pub fn load(
        environment: &Environment,
        path: &Path,
        threads: usize,
    ) -> Result<Self, DiarizeError> {
        Network::load(environment, path, threads).map(Self)
    }

    /// The embedding of `frames` frames of `features`, scaled to unit length.
    pub fn embed(&self, features: &[f32], frames: usize) -> Result<Vec<f32>, DiarizeError> {
        let (_, mut embedding) = self.0.run(
            [1, frames as i64, crate::fbank::MEL_BINS as i64],
            features[..frames * crate::fbank::MEL_BINS].to_vec(),
        )?;
        if embedding.len() != EMBEDDING {
            return Err(DiarizeError::Inference(format!(
                "embedding of {} values, expected {EMBEDDING}",
                embedding.len()
            )));
        }
        normalize(&mut embedding);
        Ok(embedding)
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}
