//! Long-form decoding as faster-whisper's `generate_segments` does it:
//! sequential 30 s windows read from a stream, seeking on timestamps, the
//! previous text as prompt, temperature fallback, a no-speech gate, word
//! timestamps, and a guard against the model copying its prompt. Written
//! against [`WhisperBackend`] so that it is tested without a model.

use crate::buffer::SampleWindow;
use crate::decode::{
    assign_words, avg_logprob, build_prompt, compression_ratio, last_end, looks_repeated,
    split_segments_by_timestamps, suppressed_tokens, word_timings, RawSegment, FRAMES_PER_SECOND,
    MAX_LENGTH, TIME_PRECISION,
};
use crate::mel::{MelFrontEnd, HOP_LENGTH, SAMPLE_RATE, WINDOW_FRAMES, WINDOW_SAMPLES};
use crate::tokenizer::{TokenId, Tokenizer};
use crate::vad::{self, SilenceSkipper};
use crate::{AsrError, AudioSource, DecodeOptions, Segment, TranscribeObserver, Transcript, Word};

/// Median filter width of the alignment heads' attention, as faster-whisper uses.
pub const MEDIAN_FILTER_WIDTH: i64 = 7;

/// Decoding settings of one `generate` call (CTranslate2's `WhisperOptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Beam width; 1 with sampling.
    pub beam_size: usize,
    /// Beam search patience factor.
    pub patience: f32,
    /// Exponent of the length normalization of scores.
    pub length_penalty: f32,
    /// Penalty on tokens already generated.
    pub repetition_penalty: f32,
    /// Forbidden repeated n-gram size (0: off).
    pub no_repeat_ngram_size: usize,
    /// Longest prompt plus output, in tokens.
    pub max_length: usize,
    /// Sample from the top K (0: the whole distribution, 1: greedy).
    pub sampling_topk: usize,
    /// Sampling temperature.
    pub sampling_temperature: f32,
    /// Hypotheses returned, best first.
    pub num_hypotheses: usize,
    /// Latest first timestamp, in timestamp steps.
    pub max_initial_timestamp_index: usize,
    /// Forbid a blank first token.
    pub suppress_blank: bool,
    /// Token ids never generated.
    pub suppress_tokens: Vec<i32>,
}

/// What one `generate` call returned for the best hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// Generated tokens, without the prompt or the end token.
    pub tokens: Vec<TokenId>,
    /// Length-normalized log probability.
    pub score: f32,
    /// Probability of the no-speech token at the first step.
    pub no_speech_prob: f32,
}

/// The alignment of text tokens with encoder frames.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alignment {
    /// (text token index, encoder frame index) along the DTW path.
    pub pairs: Vec<(i64, i64)>,
    /// Probability of each text token.
    pub text_token_probs: Vec<f32>,
}

/// The model operations long-form decoding needs: the batch forms, which
/// the one-window forms call unless a backend has its own.
pub trait WhisperBackend {
    /// The encoder's output for one window, reused by every decoding pass.
    type Encoded;

    /// Whether the model knows languages besides English.
    fn is_multilingual(&self) -> bool;

    /// Runs the encoder on `[n_mels][3000]` features.
    fn encode(&self, features: &mut [f32], n_mels: usize) -> Result<Self::Encoded, AsrError> {
        self.encode_batch(features, 1, n_mels)
    }

    /// The most likely language code and its probability.
    fn detect_language(&self, encoded: &Self::Encoded) -> Result<(String, f32), AsrError> {
        self.detect_language_batch(encoded)?
            .into_iter()
            .next()
            .ok_or_else(|| AsrError::Backend("language detection returned nothing".into()))
    }

    /// Decodes from `prompt`.
    fn generate(
        &self,
        encoded: &Self::Encoded,
        prompt: &[TokenId],
        options: &GenerateOptions,
    ) -> Result<Generation, AsrError> {
        self.generate_batch(encoded, &[prompt.to_vec()], options)?
            .into_iter()
            .next()
            .ok_or_else(|| AsrError::Backend("generation returned no result".into()))
    }

    /// Aligns `text_tokens` (after `start_sequence`) with the first `num_frames` mel frames.
    fn align(
        &self,
        encoded: &Self::Encoded,
        start_sequence: &[TokenId],
        text_tokens: &[TokenId],
        num_frames: usize,
    ) -> Result<Alignment, AsrError> {
        Ok(self
            .align_batch(
                encoded,
                start_sequence,
                &[text_tokens.to_vec()],
                &[num_frames],
            )?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    /// Runs the encoder on `batch` windows of `[n_mels][3000]` features, back to back.
    fn encode_batch(
        &self,
        features: &mut [f32],
        batch: usize,
        n_mels: usize,
    ) -> Result<Self::Encoded, AsrError>;

    /// The most likely language of each window of a batch.
    fn detect_language_batch(
        &self,
        encoded: &Self::Encoded,
    ) -> Result<Vec<(String, f32)>, AsrError>;

    /// Decodes each window of a batch from its prompt.
    fn generate_batch(
        &self,
        encoded: &Self::Encoded,
        prompts: &[Vec<TokenId>],
        options: &GenerateOptions,
    ) -> Result<Vec<Generation>, AsrError>;

    /// Aligns each window's text tokens with its first `num_frames[i]` mel frames.
    fn align_batch(
        &self,
        encoded: &Self::Encoded,
        start_sequence: &[TokenId],
        text_tokens: &[Vec<TokenId>],
        num_frames: &[usize],
    ) -> Result<Vec<Alignment>, AsrError>;
}

/// The temperature fallback's record of one window: every decoding that
/// failed the checks, to choose from when no temperature passes.
#[derive(Debug, Default)]
pub(crate) struct Fallback {
    failed: Vec<Decoded>,
    last_temperature: f32,
}

impl Fallback {
    /// Takes the decoding at the next temperature; gives it back when it
    /// passes the compression-ratio and log-probability checks.
    pub(crate) fn offer(&mut self, decoded: Decoded, options: &DecodeOptions) -> Option<Decoded> {
        self.last_temperature = decoded.temperature;
        if !needs_fallback(&decoded, options) {
            return Some(decoded);
        }
        self.failed.push(decoded);
        None
    }

    /// When no temperature passed: the likeliest decoding among those under
    /// the compression-ratio threshold, or among all when none is.
    pub(crate) fn finish(self, options: &DecodeOptions) -> Result<Decoded, AsrError> {
        let below = |d: &Decoded| {
            options
                .compression_ratio_threshold
                .is_none_or(|threshold| d.compression_ratio <= threshold)
        };
        let any_below = self.failed.iter().any(below);
        let mut best = self
            .failed
            .into_iter()
            .filter(|d| !any_below || below(d))
            .max_by(|a, b| a.avg_logprob.total_cmp(&b.avg_logprob))
            .ok_or_else(|| AsrError::Backend("no decoding result".into()))?;
        // The last temperature tried decides whether the prompt is reset.
        best.temperature = self.last_temperature;
        Ok(best)
    }
}

/// What one decoding pass of a window produced.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) tokens: Vec<TokenId>,
    pub(crate) avg_logprob: f32,
    pub(crate) no_speech_prob: f32,
    pub(crate) temperature: f32,
    pub(crate) compression_ratio: f32,
}

/// Transcribes a whole stream with `backend`.
pub fn transcribe_stream<B: WhisperBackend>(
    backend: &B,
    tokenizer: &Tokenizer,
    front_end: &MelFrontEnd,
    model_name: &str,
    audio: &mut dyn AudioSource,
    options: &DecodeOptions,
    observer: &mut dyn TranscribeObserver,
) -> Result<Transcript, AsrError> {
    LongForm::new(backend, tokenizer, front_end, options).run(model_name, audio, observer)
}

pub(crate) struct LongForm<'a, B> {
    pub(crate) backend: &'a B,
    pub(crate) tokenizer: &'a Tokenizer,
    pub(crate) front_end: &'a MelFrontEnd,
    pub(crate) options: &'a DecodeOptions,
    pub(crate) suppress: Vec<i32>,
}

impl<'a, B: WhisperBackend> LongForm<'a, B> {
    /// Decoding with `options` on `backend`.
    pub(crate) fn new(
        backend: &'a B,
        tokenizer: &'a Tokenizer,
        front_end: &'a MelFrontEnd,
        options: &'a DecodeOptions,
    ) -> Self {
        Self {
            backend,
            tokenizer,
            front_end,
            options,
            suppress: suppressed_tokens(tokenizer, &options.suppress_tokens),
        }
    }

    /// The `generate` settings at `temperature`: beam search at 0, sampling above.
    pub(crate) fn generate_options(&self, temperature: f32) -> GenerateOptions {
        let options = self.options;
        let sampling = temperature > 0.0;
        GenerateOptions {
            beam_size: if sampling {
                1
            } else {
                options.beam_size.max(1)
            },
            patience: options.patience,
            length_penalty: options.length_penalty,
            repetition_penalty: options.repetition_penalty,
            no_repeat_ngram_size: options.no_repeat_ngram_size,
            max_length: MAX_LENGTH,
            sampling_topk: if sampling { 0 } else { 1 },
            sampling_temperature: if sampling { temperature } else { 1.0 },
            num_hypotheses: 1,
            max_initial_timestamp_index: (f64::from(options.max_initial_timestamp) / TIME_PRECISION)
                .round()
                .max(0.0) as usize,
            suppress_blank: options.suppress_blank,
            suppress_tokens: self.suppress.clone(),
        }
    }

    /// The language to decode in and its probability, when it is known
    /// before decoding: English-only models write English whatever they are
    /// told; `None` is detected from the audio.
    pub(crate) fn initial_language(&self) -> Result<(Option<String>, f32), AsrError> {
        match (&self.options.language, self.backend.is_multilingual()) {
            (_, false) => Ok((Some("en".to_string()), 1.0)),
            (Some(code), true) => {
                let code = code.trim().to_ascii_lowercase();
                if self.tokenizer.language_token(&code).is_none() {
                    return Err(AsrError::InvalidOption(format!(
                        "unknown language code {code:?}"
                    )));
                }
                Ok((Some(code), 1.0))
            }
            (None, true) => Ok((None, 0.0)),
        }
    }

    /// The tokens of `hotwords`, which every window's prompt carries.
    pub(crate) fn hotword_tokens(&self) -> Vec<TokenId> {
        match self.options.hotwords.as_deref().map(str::trim) {
            Some(words) if !words.is_empty() => self.tokenizer.encode(&format!(" {words}")),
            _ => Vec::new(),
        }
    }

    /// The tokens of `initial_prompt`, which every window sees as earlier text.
    pub(crate) fn initial_prompt_tokens(&self) -> Vec<TokenId> {
        match self.options.initial_prompt.as_deref().map(str::trim) {
            Some(initial) if !initial.is_empty() => self.tokenizer.encode(&format!(" {initial}")),
            _ => Vec::new(),
        }
    }

    /// A generation with the measures the thresholds look at.
    pub(crate) fn decoded(&self, generation: Generation, temperature: f32) -> Decoded {
        let text = self.tokenizer.decode(&generation.tokens);
        Decoded {
            compression_ratio: compression_ratio(text.trim()),
            avg_logprob: avg_logprob(
                generation.score,
                generation.tokens.len(),
                self.options.length_penalty,
            ),
            tokens: generation.tokens,
            no_speech_prob: generation.no_speech_prob,
            temperature,
        }
    }

    /// Decodes a window at each temperature in turn until the result passes
    /// the compression-ratio and log-probability thresholds.
    pub(crate) fn generate_with_fallback(
        &self,
        encoded: &B::Encoded,
        prompt: &[TokenId],
    ) -> Result<Decoded, AsrError> {
        let options = self.options;
        let temperatures: &[f32] = if options.temperatures.is_empty() {
            &[0.0]
        } else {
            &options.temperatures
        };
        let mut fallback = Fallback::default();
        for &temperature in temperatures {
            let sampling = temperature > 0.0;
            let generate_options = self.generate_options(temperature);
            // faster-whisper samples its `best_of` candidates as one batch;
            // CTranslate2 then runs the whole prompt for each of them at
            // once, and that step's attention over a full prompt was the
            // largest allocation of a long file (+24 to +38 MiB over the
            // rest). One candidate at a time keeps it to beam search's size,
            // for a slower fallback on the few windows that need one.
            let candidates = if sampling { options.best_of.max(1) } else { 1 };
            let mut generation = self.backend.generate(encoded, prompt, &generate_options)?;
            for _ in 1..candidates {
                let other = self.backend.generate(encoded, prompt, &generate_options)?;
                if other.score > generation.score {
                    generation = other;
                }
            }
            if let Some(passed) = fallback.offer(self.decoded(generation, temperature), options) {
                return Ok(passed);
            }
        }
        fallback.finish(options)
    }

    /// Word timings of a window's segments through the backend's alignment.
    pub(crate) fn add_word_timestamps(
        &self,
        segments: &mut [RawSegment],
        encoded: &B::Encoded,
        sot_sequence: &[TokenId],
        language: &str,
        num_frames: usize,
        last_speech_timestamp: f64,
    ) -> Result<(), AsrError> {
        let eot = self.tokenizer.special().eot;
        let text_tokens: Vec<TokenId> = segments
            .iter()
            .flat_map(|s| s.tokens.iter().copied().filter(|t| *t < eot))
            .collect();
        if text_tokens.is_empty() {
            return Ok(());
        }
        let alignment = self
            .backend
            .align(encoded, sot_sequence, &text_tokens, num_frames)?;
        let timings = word_timings(
            self.tokenizer,
            language,
            &text_tokens,
            &alignment.pairs,
            &alignment.text_token_probs,
        );
        assign_words(segments, timings, eot, last_speech_timestamp);
        Ok(())
    }

    pub(crate) fn run(
        &self,
        model_name: &str,
        audio: &mut dyn AudioSource,
        observer: &mut dyn TranscribeObserver,
    ) -> Result<Transcript, AsrError> {
        let options = self.options;
        let tokenizer = self.tokenizer;
        if options.beam_size == 0 || options.best_of == 0 {
            return Err(AsrError::InvalidOption(
                "beam_size and best_of must be at least 1".into(),
            ));
        }
        let multilingual = self.backend.is_multilingual();
        let timestamp_begin = tokenizer.special().timestamp_begin;
        let (mut language, mut language_probability) = self.initial_language()?;
        let mut all_tokens = self.initial_prompt_tokens();
        let hotwords = self.hotword_tokens();
        let mut prompt_reset_since = 0usize;
        let mut last_speech_timestamp = 0.0f64;
        let mut segments: Vec<Segment> = Vec::new();
        let mut window = SampleWindow::new(audio);
        let hint = window.duration_hint().filter(|d| d.is_finite() && *d > 0.0);
        let mut reported = 0.0f64;
        let skipper = options.vad_filter.then(SilenceSkipper::default);

        // Seek in mel frames (10 ms) in the original timeline.
        let mut seek = 0usize;
        loop {
            if observer.is_cancelled() {
                return Err(AsrError::Cancelled);
            }
            let start_sample = seek * HOP_LENGTH;
            window.discard_before(start_sample);
            window.fill_to(start_sample + WINDOW_SAMPLES)?;
            let content_frames = if window.at_eof() {
                window.samples_read() / HOP_LENGTH
            } else {
                usize::MAX
            };
            if seek >= content_frames {
                break;
            }
            if let Some(skipper) = &skipper {
                let held = window.slice(start_sample, start_sample + WINDOW_SAMPLES);
                let skip_frames = skipper.leading_silence_frames(held);
                if skip_frames > 0 {
                    seek = (seek + skip_frames).min(content_frames);
                    reported = report(observer, seek, content_frames, hint, reported);
                    continue;
                }
            }
            let segment_size = WINDOW_FRAMES.min(content_frames - seek);
            let segment_duration = segment_size as f64 / FRAMES_PER_SECOND;
            let time_offset = seek as f64 / FRAMES_PER_SECOND;
            let samples = window.slice(start_sample, start_sample + segment_size * HOP_LENGTH);
            if vad::is_silent(samples) {
                seek += segment_size;
                reported = report(observer, seek, content_frames, hint, reported);
                continue;
            }
            let mut features = self.front_end.window_features(samples);
            let encoded = self
                .backend
                .encode(&mut features, self.front_end.n_mels())?;

            let language_code = match &language {
                Some(code) => code.clone(),
                None => {
                    let (code, probability) = self.backend.detect_language(&encoded)?;
                    language_probability = probability;
                    language = Some(code.clone());
                    code
                }
            };
            let sot_sequence =
                tokenizer.sot_sequence(multilingual, &language_code, options.task)?;
            let previous = &all_tokens[prompt_reset_since.min(all_tokens.len())..];
            let prompt = build_prompt(
                tokenizer,
                &sot_sequence,
                previous,
                &hotwords,
                options.without_timestamps,
            );
            let mut decoded = self.generate_with_fallback(&encoded, &prompt)?;
            let mut reset_prompt = false;
            if !previous.is_empty()
                && looks_repeated(
                    &tokenizer.decode(&decoded.tokens),
                    &tokenizer.decode(previous),
                )
            {
                // Conditioned on its previous text, the model sometimes writes
                // that text again instead of what was said: decode the window
                // once more without it, and stop conditioning on it.
                let bare = build_prompt(
                    tokenizer,
                    &sot_sequence,
                    &[],
                    &hotwords,
                    options.without_timestamps,
                );
                decoded = self.generate_with_fallback(&encoded, &bare)?;
                reset_prompt = true;
            }

            if is_silent(&decoded, options) {
                seek += segment_size;
                reported = report(observer, seek, content_frames, hint, reported);
                continue;
            }

            let previous_seek = seek;
            let (mut current, next_seek, single_timestamp_ending) = split_segments_by_timestamps(
                &decoded.tokens,
                timestamp_begin,
                time_offset,
                segment_size,
                segment_duration,
                seek,
            );
            seek = next_seek;
            if options.word_timestamps {
                self.add_word_timestamps(
                    &mut current,
                    &encoded,
                    &sot_sequence,
                    &language_code,
                    segment_size,
                    last_speech_timestamp,
                )?;
                if !single_timestamp_ending {
                    if let Some(end) = last_end(&current) {
                        if end > time_offset {
                            seek = (end * FRAMES_PER_SECOND).round() as usize;
                        }
                    }
                }
                if let Some(end) = last_end(&current) {
                    last_speech_timestamp = end;
                }
            }
            // A window must always move the seek forward, or a degenerate
            // decoding (a lone <|0.00|> pair) would repeat it forever.
            if seek <= previous_seek {
                seek = previous_seek + segment_size;
            }

            let window_end = time_offset + segment_duration;
            for raw in current {
                let text = tokenizer.decode(&raw.tokens);
                // Beyond faster-whisper: a segment without a letter or digit
                // (" . .", what noise decodes to) is never speech.
                if raw.start == raw.end || !text.chars().any(char::is_alphanumeric) {
                    continue;
                }
                all_tokens.extend_from_slice(&raw.tokens);
                let floor = segments.last().map_or(0.0, |s: &Segment| s.start);
                let segment =
                    finish_segment(segments.len(), &raw, text, &decoded, floor, window_end);
                observer.on_segment(&segment);
                segments.push(segment);
            }
            if reset_prompt
                || !options.condition_on_previous_text
                || decoded.temperature > options.prompt_reset_on_temperature
            {
                prompt_reset_since = all_tokens.len();
            }
            reported = report(observer, seek, content_frames, hint, reported);
        }
        debug_assert!(window.peak_len() <= WINDOW_SAMPLES + SAMPLE_RATE);
        let duration = window.samples_read() as f64 / SAMPLE_RATE as f64;
        observer.on_progress(duration, duration);
        Ok(Transcript {
            language: language.unwrap_or_else(|| "en".to_string()),
            language_probability,
            duration,
            model: model_name.to_string(),
            segments,
            speakers: Vec::new(),
        })
    }
}

/// Whether a decoding fails the compression-ratio or log-probability
/// threshold; a silent window never does (retrying it is useless).
pub(crate) fn needs_fallback(decoded: &Decoded, options: &DecodeOptions) -> bool {
    let repetitive = options
        .compression_ratio_threshold
        .is_some_and(|threshold| decoded.compression_ratio > threshold);
    let unlikely = options
        .log_prob_threshold
        .is_some_and(|threshold| decoded.avg_logprob < threshold);
    let silent = options.log_prob_threshold.is_some() && is_silent(decoded, options);
    (repetitive || unlikely) && !silent
}

/// The no-speech gate: the model thinks nothing is said, and what it wrote
/// is unlikely.
pub(crate) fn is_silent(decoded: &Decoded, options: &DecodeOptions) -> bool {
    let Some(threshold) = options.no_speech_threshold else {
        return false;
    };
    decoded.no_speech_prob > threshold
        && options
            .log_prob_threshold
            .is_none_or(|lp| decoded.avg_logprob <= lp)
}

/// Reports progress in seconds, never backwards; returns what was reported.
fn report(
    observer: &mut dyn TranscribeObserver,
    seek: usize,
    content_frames: usize,
    hint: Option<f64>,
    reported: f64,
) -> f64 {
    let done = (seek.min(content_frames) as f64 / FRAMES_PER_SECOND).max(reported);
    let known_total =
        (content_frames != usize::MAX).then(|| content_frames as f64 / FRAMES_PER_SECOND);
    let total = known_total.or(hint).unwrap_or(done).max(done);
    observer.on_progress(done, total);
    done
}

/// Turns a raw segment into the transcript's form, keeping times ordered and
/// inside the audio: starts never go back, nothing ends after the window's audio.
pub(crate) fn finish_segment(
    id: usize,
    raw: &RawSegment,
    text: String,
    decoded: &Decoded,
    floor: f64,
    window_end: f64,
) -> Segment {
    let start = raw.start.max(floor).min(window_end);
    let end = raw.end.max(start).min(window_end);
    let mut previous_end = start;
    let words = raw
        .words
        .iter()
        .map(|w| {
            let w_start = w.start.max(previous_end).min(end);
            let w_end = w.end.max(w_start).min(end);
            previous_end = w_end;
            Word {
                start: w_start,
                end: w_end,
                word: w.word.clone(),
                probability: w.probability,
                speaker: None,
            }
        })
        .collect();
    Segment {
        id: u32::try_from(id).unwrap_or(u32::MAX),
        start,
        end,
        text,
        avg_logprob: decoded.avg_logprob,
        no_speech_prob: decoded.no_speech_prob,
        compression_ratio: decoded.compression_ratio,
        temperature: decoded.temperature,
        words,
        speaker: None,
    }
}

#[cfg(test)]
mod tests;
