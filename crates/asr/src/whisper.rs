//! Whisper on CTranslate2 through the low-level `ct2rs::sys::Whisper`
//! binding; the decoding itself is in [`crate::longform`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};

use crate::batched::transcribe_batched;
use crate::longform::{
    Alignment, GenerateOptions, Generation, LongForm, WhisperBackend, MEDIAN_FILTER_WIDTH,
};
use crate::mel::{MelFrontEnd, WINDOW_FRAMES};
use crate::model::check_model_dir;
use crate::tokenizer::{TokenId, Tokenizer};
use crate::{
    AsrError, AudioSource, DecodeMode, DecodeOptions, EngineOptions, TranscribeObserver,
    Transcriber, Transcript,
};

/// The seed of CTranslate2's sampling (any fixed value).
const SAMPLING_SEED: u32 = 0x5eed;

/// A Whisper model loaded once and shared by a worker's threads.
pub struct WhisperEngine {
    /// One CTranslate2 model per replica (see [`WhisperEngine::load`]).
    replicas: Vec<Whisper>,
    /// How many transcriptions use each replica now.
    users: Mutex<Vec<usize>>,
    tokenizer: Tokenizer,
    front_end: MelFrontEnd,
    multilingual: bool,
    name: String,
    dir: PathBuf,
    /// How the models sampling runs on are loaded: as the replicas, on
    /// fewer threads (see [`sampler_threads`]).
    sampler_config: Config,
    /// Where the speech detector of batched mode comes from.
    vad_files: Option<(PathBuf, PathBuf)>,
    /// The speech detector, loaded by the first batched transcription.
    silero: Mutex<Option<Arc<pipeline_vad::Silero>>>,
}

impl std::fmt::Debug for WhisperEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperEngine")
            .field("dir", &self.dir)
            .field("multilingual", &self.multilingual)
            .field("n_mels", &self.front_end.n_mels())
            .finish()
    }
}

/// Parses a CTranslate2 compute type name.
pub fn parse_compute_type(name: &str) -> Result<ComputeType, AsrError> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "default" => ComputeType::DEFAULT,
        "auto" => ComputeType::AUTO,
        "float32" => ComputeType::FLOAT32,
        "int8" => ComputeType::INT8,
        "int8_float32" => ComputeType::INT8_FLOAT32,
        "int8_float16" => ComputeType::INT8_FLOAT16,
        "int8_bfloat16" => ComputeType::INT8_BFLOAT16,
        "int16" => ComputeType::INT16,
        "float16" => ComputeType::FLOAT16,
        "bfloat16" => ComputeType::BFLOAT16,
        other => {
            return Err(AsrError::InvalidOption(format!(
                "unknown compute type {other:?} (use int8, int8_float32, float32, int16, \
                 float16, bfloat16, int8_float16, int8_bfloat16, auto or default)"
            )))
        }
    })
}

impl WhisperEngine {
    /// Loads a faster-whisper model directory (config.json, model.bin,
    /// tokenizer.json, vocabulary.txt).
    pub fn load(dir: &Path, options: &EngineOptions) -> Result<Self, AsrError> {
        check_model_dir(dir)?;
        let tokenizer = Tokenizer::from_dir(dir)?;
        let compute_type = parse_compute_type(&options.compute_type)?;
        let threads = if options.threads == 0 {
            pipeline_core::cores()
        } else {
            options.threads
        };
        let config = Config {
            device: choose_device(&options.device)?,
            compute_type,
            device_indices: vec![0],
            num_threads_per_replica: threads,
            ..Config::default()
        };
        let sampler_config = Config {
            num_threads_per_replica: sampler_threads(threads, pipeline_core::cores()),
            ..config.clone()
        };
        // The temperature fallback samples. CTranslate2 seeds one generator
        // per thread at its first draw, from this seed; sampling runs on a
        // model of its own (see `Ct2Backend::generate_batch`), so that every
        // sampled window starts from the seed.
        ct2rs::set_random_seed(SAMPLING_SEED);
        // Each replica is a model of its own, loaded from the directory,
        // never CTranslate2's replicas of one model (`device_indices` of
        // `[0, 0]`): those are made by `Model::copy_to`, which on the CPU
        // copies every weight to a new buffer, the GEMM weights that oneMKL
        // packed at load time included. oneMKL's packed format must not be
        // moved (it depends on where the data lies), and the moved copy made
        // `mkl_blas_gemm_s8u8s32_compute` (`sgemm_compute` with float32)
        // divide by zero: SIGFPE in any worker running two jobs at once, on
        // a Xeon with AVX-512. A load of its own packs each replica's
        // weights where they stay; the memory is the same as the copy's.
        let replicas = (0..options.replicas.max(1))
            .map(|_| {
                load_whisper(dir, &config).map_err(|e| AsrError::InvalidModel {
                    path: dir.to_path_buf(),
                    reason: format!("CTranslate2 could not load it: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let model = &replicas[0];
        let n_mels = model.n_mels();
        if n_mels == 0 {
            return Err(AsrError::InvalidModel {
                path: dir.to_path_buf(),
                reason: "the model reports 0 mel bins".to_string(),
            });
        }
        let multilingual = model.is_multilingual();
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            users: Mutex::new(vec![0; replicas.len()]),
            replicas,
            tokenizer,
            front_end: MelFrontEnd::new(n_mels),
            multilingual,
            name,
            dir: dir.to_path_buf(),
            vad_files: options.onnxruntime.clone().zip(options.vad_model.clone()),
            sampler_config,
            silero: Mutex::new(None),
        })
    }

    /// The replica the fewest transcriptions use now, held until the
    /// lease is dropped: `replicas` jobs at once each get one of their own.
    fn lease(&self) -> Lease<'_> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let index = (0..users.len()).min_by_key(|&i| users[i]).unwrap_or(0);
        users[index] += 1;
        Lease {
            engine: self,
            index,
        }
    }

    /// The speech detector, loaded on first use; a failure is not kept, so
    /// installing the files fixes the next transcription.
    fn silero(&self) -> Result<Arc<pipeline_vad::Silero>, AsrError> {
        let mut slot = self.silero.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(silero) = slot.as_ref() {
            return Ok(Arc::clone(silero));
        }
        let Some((runtime, model)) = &self.vad_files else {
            return Err(AsrError::InvalidOption(
                "batched mode needs the Silero VAD: set vad.onnxruntime and vad.model".into(),
            ));
        };
        let silero = Arc::new(pipeline_vad::Silero::load(runtime, model)?);
        *slot = Some(Arc::clone(&silero));
        Ok(silero)
    }

    /// Whether the model knows languages other than English.
    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The directory the model was loaded from.
    pub fn model_dir(&self) -> &Path {
        &self.dir
    }

    /// Mel bins the model expects.
    pub fn n_mels(&self) -> usize {
        self.front_end.n_mels()
    }
}

/// One transcription's hold on a replica.
struct Lease<'a> {
    engine: &'a WhisperEngine,
    index: usize,
}

impl Lease<'_> {
    fn model(&self) -> &Whisper {
        &self.engine.replicas[self.index]
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut users = self.engine.users.lock().unwrap_or_else(|p| p.into_inner());
        users[self.index] -= 1;
    }
}

/// The CTranslate2 device for `model.device`, refusing CUDA on a machine
/// where CTranslate2 sees no CUDA device (before it fails deep inside).
pub fn choose_device(name: &str) -> Result<Device, AsrError> {
    let gpus = crate::runtime::cuda_devices;
    match name.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(Device::CPU),
        "cuda" if gpus() > 0 => Ok(Device::CUDA),
        "cuda" => Err(AsrError::InvalidOption(
            "model.device = \"cuda\", but CTranslate2 sees no CUDA device on this machine \
             (no NVIDIA GPU, or no driver); use device = \"cpu\" or \"auto\""
                .to_string(),
        )),
        "auto" if gpus() > 0 => Ok(Device::CUDA),
        "auto" => Ok(Device::CPU),
        other => Err(AsrError::InvalidOption(format!(
            "unknown device {other:?} (use cpu, cuda or auto)"
        ))),
    }
}

/// Hands the pages that a window's decoding freed back to the system.
///
/// Beam search over a prompt of up to 224 tokens needs tens of MiB of
/// scratch per window. glibc keeps the freed pages, scattered between live
/// allocations, so the resident size drifted up with the number of windows
/// and one hour of audio peaked 16-30% above one minute. Trimming after each
/// window keeps the peak at the live data plus one window's scratch, for a
/// few milliseconds per 30 s window.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system; it takes
    // the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Threads of the model a transcription samples on, beside a replica of
/// `threads`: what the cores leave, so that the two OpenMP teams together
/// stay within the cores (libgomp's barriers sleep instead of spinning
/// beyond them, as [`load_whisper`] says), one at least.
fn sampler_threads(threads: usize, cores: usize) -> usize {
    threads.min((cores + 1).saturating_sub(threads)).max(1)
}

/// Loads a model on a thread of its own that ends with the load.
///
/// Loading runs OpenMP loops (the weights' conversion to the compute type)
/// on the loading thread, which gives that thread an OpenMP pool of its own
/// that outlives the load while the thread lives. With it, libgomp manages
/// more threads than there are cores, and then it barely spins at its
/// barriers: each parallel region of the decoder ends in futex sleeps and
/// wake-ups, tens of thousands a second on two cores. A thread that ends
/// takes its pool with it.
fn load_whisper(dir: &Path, config: &Config) -> Result<Whisper, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| Whisper::new(dir, config.clone()).map_err(|e| e.to_string()))
            .join()
            .unwrap_or_else(|_| Err("the loading thread panicked".to_string()))
    })
}

fn backend_error(e: impl std::fmt::Display) -> AsrError {
    AsrError::Backend(e.to_string())
}

/// The CTranslate2 model as long-form decoding sees it.
struct Ct2Backend<'a> {
    model: &'a Whisper,
    tokenizer: &'a Tokenizer,
    /// The model directory and settings a sampling model is loaded with.
    dir: &'a Path,
    sampler_config: &'a Config,
    /// The model this transcription samples on, loaded at its first
    /// sampled window (see `generate_batch`).
    sampler: OnceLock<Whisper>,
}

impl WhisperBackend for Ct2Backend<'_> {
    type Encoded = StorageView<'static>;

    fn is_multilingual(&self) -> bool {
        self.model.is_multilingual()
    }

    fn encode_batch(
        &self,
        features: &mut [f32],
        batch: usize,
        n_mels: usize,
    ) -> Result<Self::Encoded, AsrError> {
        let shape = [batch, n_mels, WINDOW_FRAMES];
        let view = StorageView::new(&shape, features, Device::CPU).map_err(backend_error)?;
        self.model.encode(&view, false).map_err(backend_error)
    }

    fn detect_language_batch(
        &self,
        encoded: &Self::Encoded,
    ) -> Result<Vec<(String, f32)>, AsrError> {
        self.model
            .detect_language(encoded)
            .map_err(backend_error)?
            .into_iter()
            .map(language_of)
            .collect()
    }

    fn generate_batch(
        &self,
        encoded: &Self::Encoded,
        prompts: &[Vec<TokenId>],
        options: &GenerateOptions,
    ) -> Result<Vec<Generation>, AsrError> {
        let prompts: Vec<Vec<&str>> = prompts
            .iter()
            .map(|p| self.prompt_strings(p))
            .collect::<Result<_, _>>()?;
        let result = if options.sampling_topk == 1 {
            self.model
                .generate(encoded, &prompts, &whisper_options(options))
        } else {
            // Sampling (the temperature fallback) draws from CTranslate2's
            // generator of the thread it runs on, seeded once at that
            // thread's first draw: on a long-lived model the draws depend on
            // everything it sampled before, and the same audio gave other
            // words from one file to the next. A model loaded for this
            // transcription has a thread of its own that starts from the
            // seed, and its later draws follow from this file's own windows
            // only, so the same file samples the same words in any worker,
            // any run. One load per transcription that falls back, not one
            // per sampled candidate (five per fallback temperature).
            let sampler = match self.sampler.get() {
                Some(sampler) => sampler,
                None => {
                    let fresh =
                        load_whisper(self.dir, self.sampler_config).map_err(backend_error)?;
                    self.sampler.get_or_init(|| fresh)
                }
            };
            sampler.generate(encoded, &prompts, &whisper_options(options))
        };
        // A batch's scratch is needed again by the next batch: handing it
        // back would only fault it in again (a third of the time went to the
        // kernel with it). One window's is trimmed, as before.
        if prompts.len() == 1 {
            release_freed_memory();
        }
        Ok(result
            .map_err(backend_error)?
            .into_iter()
            .map(generation)
            .collect())
    }

    fn align_batch(
        &self,
        encoded: &Self::Encoded,
        start_sequence: &[TokenId],
        text_tokens: &[Vec<TokenId>],
        num_frames: &[usize],
    ) -> Result<Vec<Alignment>, AsrError> {
        let start: Vec<usize> = start_sequence.iter().map(|t| *t as usize).collect();
        let text: Vec<Vec<usize>> = text_tokens
            .iter()
            .map(|row| row.iter().map(|t| *t as usize).collect())
            .collect();
        let results = self
            .model
            .align(encoded, &start, &text, num_frames, MEDIAN_FILTER_WIDTH)
            .map_err(backend_error)?;
        Ok(results
            .into_iter()
            .map(|r| Alignment {
                pairs: r
                    .alignments
                    .iter()
                    .map(|a| (a.token_x, a.frame_x))
                    .collect(),
                text_token_probs: r.text_token_probs,
            })
            .collect())
    }
}

impl Ct2Backend<'_> {
    fn prompt_strings<'t>(&'t self, prompt: &[TokenId]) -> Result<Vec<&'t str>, AsrError> {
        prompt
            .iter()
            .map(|id| {
                self.tokenizer.token(*id).ok_or_else(|| {
                    AsrError::Backend(format!("token id {id} outside the vocabulary"))
                })
            })
            .collect()
    }
}

fn whisper_options(options: &GenerateOptions) -> WhisperOptions {
    WhisperOptions {
        beam_size: options.beam_size,
        patience: options.patience,
        length_penalty: options.length_penalty,
        repetition_penalty: options.repetition_penalty,
        no_repeat_ngram_size: options.no_repeat_ngram_size,
        max_length: options.max_length,
        sampling_topk: options.sampling_topk,
        sampling_temperature: options.sampling_temperature,
        num_hypotheses: options.num_hypotheses,
        return_scores: true,
        return_logits_vocab: false,
        return_no_speech_prob: true,
        max_initial_timestamp_index: options.max_initial_timestamp_index,
        suppress_blank: options.suppress_blank,
        suppress_tokens: options.suppress_tokens.clone(),
    }
}

/// The likeliest of a result's hypotheses (several when sampled candidates
/// come from one call).
fn generation(result: ct2rs::sys::WhisperGenerationResult) -> Generation {
    let best = (0..result.sequences_ids.len())
        .max_by(|&a, &b| {
            let score = |i: usize| result.scores.get(i).copied().unwrap_or(f32::NEG_INFINITY);
            // The first of equal scores, as one candidate at a time kept it.
            score(a).total_cmp(&score(b)).then(b.cmp(&a))
        })
        .unwrap_or(0);
    let tokens = result
        .sequences_ids
        .get(best)
        .map(|seq| {
            seq.iter()
                .filter_map(|t| TokenId::try_from(*t).ok())
                .collect()
        })
        .unwrap_or_default();
    Generation {
        tokens,
        score: result
            .scores
            .get(best)
            .copied()
            .unwrap_or(f32::NEG_INFINITY),
        no_speech_prob: result.no_speech_prob,
    }
}

fn language_of(results: Vec<ct2rs::sys::DetectionResult>) -> Result<(String, f32), AsrError> {
    let best = results
        .into_iter()
        .next()
        .ok_or_else(|| AsrError::Backend("language detection returned nothing".into()))?;
    let (token, probability) = detection_parts(&best);
    let code = token
        .strip_prefix("<|")
        .and_then(|t| t.strip_suffix("|>"))
        .unwrap_or(&token)
        .to_string();
    Ok((code, probability))
}

/// The (token, probability) of a language detection result. The binding's
/// fields are private, so they are read from its `Debug` form, which cxx
/// generates from the struct definition.
fn detection_parts(result: &ct2rs::sys::DetectionResult) -> (String, f32) {
    let debug = format!("{result:?}");
    let language = debug
        .split("language: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("en")
        .to_string();
    let probability = debug
        .split("probability: ")
        .nth(1)
        .and_then(|rest| rest.trim_end_matches(['}', ' ']).parse().ok())
        .unwrap_or(0.0);
    (language, probability)
}

impl Transcriber for WhisperEngine {
    fn model_name(&self) -> &str {
        &self.name
    }

    fn transcribe(
        &self,
        audio: &mut dyn AudioSource,
        options: &DecodeOptions,
        observer: &mut dyn TranscribeObserver,
    ) -> Result<Transcript, AsrError> {
        let lease = self.lease();
        let backend = Ct2Backend {
            model: lease.model(),
            tokenizer: &self.tokenizer,
            dir: &self.dir,
            sampler_config: &self.sampler_config,
            sampler: OnceLock::new(),
        };
        let form = LongForm::new(&backend, &self.tokenizer, &self.front_end, options);
        match options.mode {
            DecodeMode::Sequential => form.run(&self.name, audio, observer),
            DecodeMode::Batched => {
                let silero = self.silero()?;
                let mut vad = pipeline_vad::Vad::new(&silero, &options.vad)?;
                transcribe_batched(&form, &self.name, audio, &mut vad, observer)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampler_takes_the_cores_the_replica_leaves() {
        assert_eq!(sampler_threads(2, 2), 1);
        assert_eq!(sampler_threads(1, 2), 1);
        assert_eq!(sampler_threads(16, 16), 1);
        assert_eq!(sampler_threads(12, 16), 5);
        assert_eq!(sampler_threads(8, 16), 8);
        assert_eq!(sampler_threads(4, 16), 4);
        assert_eq!(sampler_threads(32, 16), 1, "more threads than cores");
    }

    #[test]
    fn compute_types_parse() {
        assert_eq!(parse_compute_type("int8").ok(), Some(ComputeType::INT8));
        assert_eq!(
            parse_compute_type("INT8_FLOAT32").ok(),
            Some(ComputeType::INT8_FLOAT32)
        );
        assert_eq!(
            parse_compute_type("float32").ok(),
            Some(ComputeType::FLOAT32)
        );
        assert!(matches!(
            parse_compute_type("int4"),
            Err(AsrError::InvalidOption(_))
        ));
    }
}
