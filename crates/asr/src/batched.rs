//! Batched decoding, as faster-whisper's `BatchedInferencePipeline` does it
//! (transcribe.py, v1.2.1): voice activity detection finds the speech,
//! speeches are joined into chunks of at most 30 s (the silence between them
//! left out), and `batch_size` chunks go through one encoder call and one
//! beam search. No chunk is conditioned on another's text.
//!
//! Beyond faster-whisper: the audio is streamed (speeches are taken as the
//! detector settles them, and a batch is decoded as soon as it is full, so
//! an hour is never held whole); timestamps stay on, so chunks split into
//! sentences, and text after the last timestamp pair is kept; the chunks of
//! a batch that fail the compression-ratio or log-probability threshold go
//! through the temperature fallback together; stretches of a chunk the
//! model passed over are decoded again; the no-speech gate drops chunks the
//! model hears nothing in.

use pipeline_vad::Speech;

use crate::buffer::SampleWindow;
use crate::decode::{
    assign_words, build_prompt, split_segments_by_timestamps, word_timings, RawSegment,
    FRAMES_PER_SECOND,
};
use crate::longform::{finish_segment, is_silent, Decoded, Fallback, LongForm, WhisperBackend};
use crate::mel::{HOP_LENGTH, SAMPLE_RATE, WINDOW_FRAMES, WINDOW_SAMPLES};
use crate::tokenizer::TokenId;
use crate::{AsrError, AudioSource, Segment, TranscribeObserver, Transcript};

/// Samples given to the speech detector at a time (1 s).
const STEP: usize = SAMPLE_RATE;
/// Audio of a chunk that no segment covers and is decoded again (a sentence).
const MIN_GAP_SECONDS: f64 = 2.0;
/// How many times the audio a decoding passed over is decoded again.
const MAX_REDECODES: usize = 2;

/// Finds speech in a stream as it is read.
pub trait SpeechFinder {
    /// Takes the next samples; the speeches now settled go to `out`, in order.
    fn push(&mut self, samples: &[f32], out: &mut Vec<Speech>) -> Result<(), AsrError>;

    /// Ends the stream; the last speeches go to `out`.
    fn finish(&mut self, out: &mut Vec<Speech>) -> Result<(), AsrError>;

    /// The first sample a speech not yet given out may cover.
    fn keep_from(&self) -> usize;
}

impl SpeechFinder for pipeline_vad::Vad<'_> {
    fn push(&mut self, samples: &[f32], out: &mut Vec<Speech>) -> Result<(), AsrError> {
        Ok(pipeline_vad::Vad::push(self, samples, out)?)
    }

    fn finish(&mut self, out: &mut Vec<Speech>) -> Result<(), AsrError> {
        Ok(pipeline_vad::Vad::finish(self, out)?)
    }

    fn keep_from(&self) -> usize {
        pipeline_vad::Vad::keep_from(self)
    }
}

/// Speeches joined into one window of at most 30 s.
#[derive(Debug)]
struct Chunk {
    pieces: Vec<Speech>,
    samples: Vec<f32>,
}

impl Chunk {
    fn first_sample(&self) -> usize {
        self.pieces.first().map_or(0, |p| p.start)
    }

    fn end_seconds(&self) -> f64 {
        self.pieces.last().map_or(0.0, |p| p.end as f64) / SAMPLE_RATE as f64
    }

    /// Mel frames of the chunk's audio, at most one window.
    fn frames(&self) -> usize {
        (self.samples.len() / HOP_LENGTH).min(WINDOW_FRAMES)
    }

    /// The audio between `from` and `to` seconds into the chunk, as a chunk.
    fn part(&self, from: f64, to: f64) -> Chunk {
        let at = |t: f64| ((t.max(0.0) * SAMPLE_RATE as f64) as usize).min(self.samples.len());
        let (from, to) = (at(from), at(to));
        let mut pieces = Vec::new();
        let mut before = 0;
        for piece in &self.pieces {
            let len = piece.end - piece.start;
            let (lo, hi) = (from.max(before), to.min(before + len));
            if lo < hi {
                pieces.push(Speech {
                    start: piece.start + (lo - before),
                    end: piece.start + (hi - before),
                });
            }
            before += len;
        }
        Chunk {
            pieces,
            samples: self.samples[from..to.max(from)].to_vec(),
        }
    }

    /// The stretches of at least [`MIN_GAP_SECONDS`] that no segment in
    /// `covered` (seconds into the chunk) accounts for, when the segments
    /// cover at least 1 s: speech the model passed over.
    fn gaps(&self, covered: &[(f64, f64)]) -> Vec<Chunk> {
        let total: f64 = covered.iter().map(|(a, b)| (b - a).max(0.0)).sum();
        if total < 1.0 {
            return Vec::new();
        }
        let duration = self.samples.len() as f64 / SAMPLE_RATE as f64;
        let mut spans = covered.to_vec();
        spans.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut gaps = Vec::new();
        let mut at = 0.0f64;
        for (start, end) in spans.into_iter().chain([(duration, duration)]) {
            if start - at >= MIN_GAP_SECONDS {
                gaps.push(self.part(at, start));
            }
            at = at.max(end);
        }
        gaps
    }

    /// The time in the file of `local` seconds into the chunk; an end that
    /// falls on a join between two speeches belongs to the earlier one.
    fn original(&self, local: f64, is_end: bool) -> f64 {
        let sample = (local.max(0.0) * SAMPLE_RATE as f64).round() as usize;
        let mut before = 0;
        for (i, piece) in self.pieces.iter().enumerate() {
            let len = piece.end - piece.start;
            let inside = sample < before + len || (is_end && sample == before + len);
            if inside || i + 1 == self.pieces.len() {
                let into = sample.saturating_sub(before).min(len);
                return (piece.start + into) as f64 / SAMPLE_RATE as f64;
            }
            before += len;
        }
        0.0
    }
}

/// Joins speeches into chunks as collect_chunks does: a speech that would
/// make the chunk longer than the window starts the next one.
struct Collector {
    current: Option<Chunk>,
}

impl Collector {
    fn add(&mut self, speech: Speech, samples: &[f32]) -> Option<Chunk> {
        let fresh = || Chunk {
            pieces: vec![speech],
            samples: samples.to_vec(),
        };
        match &mut self.current {
            Some(chunk) if chunk.samples.len() + samples.len() > WINDOW_SAMPLES => {
                self.current.replace(fresh())
            }
            Some(chunk) => {
                chunk.pieces.push(speech);
                chunk.samples.extend_from_slice(samples);
                None
            }
            None => {
                self.current = Some(fresh());
                None
            }
        }
    }
}

/// The state of one batched transcription.
struct Batched<'f, 'a, B> {
    form: &'f LongForm<'a, B>,
    language: Option<String>,
    language_probability: f32,
    initial: Vec<TokenId>,
    hotwords: Vec<TokenId>,
    segments: Vec<Segment>,
    reported: f64,
    hint: Option<f64>,
}

/// Transcribes a whole stream in batches of speech chunks found by `speech`.
pub(crate) fn transcribe_batched<B: WhisperBackend>(
    form: &LongForm<'_, B>,
    model_name: &str,
    audio: &mut dyn AudioSource,
    speech: &mut dyn SpeechFinder,
    observer: &mut dyn TranscribeObserver,
) -> Result<Transcript, AsrError> {
    let options = form.options;
    if options.beam_size == 0 || options.best_of == 0 || options.batch_size == 0 {
        return Err(AsrError::InvalidOption(
            "beam_size, best_of and batch_size must be at least 1".into(),
        ));
    }
    let (language, language_probability) = form.initial_language()?;
    let mut state = Batched {
        form,
        language,
        language_probability,
        initial: form.initial_prompt_tokens(),
        hotwords: form.hotword_tokens(),
        segments: Vec::new(),
        reported: 0.0,
        hint: audio.duration_hint().filter(|d| d.is_finite() && *d > 0.0),
    };
    let batch_size = options.batch_size;
    // From the first sample a speech may still need to the last read.
    let mut window = SampleWindow::new(audio);
    let mut spans = Vec::new();
    let mut collector = Collector { current: None };
    let mut ready: Vec<Chunk> = Vec::new();
    let mut read = 0usize;
    loop {
        if observer.is_cancelled() {
            return Err(AsrError::Cancelled);
        }
        let before = read;
        window.fill_to(before + STEP)?;
        read = window.samples_read();
        if read == before {
            break;
        }
        speech.push(window.slice(before, read), &mut spans)?;
        for span in spans.drain(..) {
            ready.extend(collector.add(span, window.slice(span.start, span.end)));
        }
        window.discard_before(speech.keep_from());
        while ready.len() >= batch_size {
            let batch: Vec<Chunk> = ready.drain(..batch_size).collect();
            state.decode(batch, observer)?;
        }
        // Everything before the first speech not yet decoded is done.
        let pending = ready.first().or(collector.current.as_ref());
        let done = pending.map_or_else(|| speech.keep_from().min(read), Chunk::first_sample);
        state.report(observer, done as f64 / SAMPLE_RATE as f64, read);
    }
    speech.finish(&mut spans)?;
    for span in spans.drain(..) {
        ready.extend(collector.add(span, window.slice(span.start, span.end)));
    }
    drop(window);
    ready.extend(collector.current.take());
    let mut rest = ready.into_iter().peekable();
    while rest.peek().is_some() {
        if observer.is_cancelled() {
            return Err(AsrError::Cancelled);
        }
        let batch: Vec<Chunk> = rest.by_ref().take(batch_size).collect();
        state.decode(batch, observer)?;
    }
    let duration = read as f64 / SAMPLE_RATE as f64;
    observer.on_progress(duration, duration);
    Ok(Transcript {
        language: state.language.unwrap_or_else(|| "en".to_string()),
        language_probability: state.language_probability,
        duration,
        model: model_name.to_string(),
        segments: state.segments,
        speakers: Vec::new(),
    })
}

impl<B: WhisperBackend> Batched<'_, '_, B> {
    fn report(&mut self, observer: &mut dyn TranscribeObserver, done: f64, read: usize) {
        if done < self.reported + 1.0 {
            return;
        }
        self.reported = done;
        let total = self
            .hint
            .unwrap_or(read as f64 / SAMPLE_RATE as f64)
            .max(done);
        observer.on_progress(done, total);
    }

    /// Decodes one batch of chunks and adds their segments, in order.
    fn decode(
        &mut self,
        chunks: Vec<Chunk>,
        observer: &mut dyn TranscribeObserver,
    ) -> Result<(), AsrError> {
        let pieces = self.decode_pieces(&chunks, 0)?;
        let chunk_ends = chunks.iter().map(Chunk::end_seconds);
        for (found, chunk_end) in pieces.into_iter().zip(chunk_ends) {
            for piece in found {
                let floor = self.segments.last().map_or(0.0, |s| s.start);
                let segment = finish_segment(
                    self.segments.len(),
                    &piece.raw,
                    piece.text,
                    &piece.decoded,
                    floor,
                    chunk_end,
                );
                observer.on_segment(&segment);
                self.segments.push(segment);
            }
        }
        if let Some(last) = chunks.last() {
            let done = last.end_seconds();
            let read = (done * SAMPLE_RATE as f64) as usize;
            self.report(observer, done, read);
        }
        Ok(())
    }

    /// Each chunk's segments in the file's timeline, in order; the stretches
    /// a decoding passed over decoded again, `depth` times at most so far.
    fn decode_pieces(
        &mut self,
        chunks: &[Chunk],
        depth: usize,
    ) -> Result<Vec<Vec<Piece>>, AsrError> {
        let form = self.form;
        let (backend, tokenizer, options) = (form.backend, form.tokenizer, form.options);
        let n_mels = form.front_end.n_mels();
        let mut features = Vec::with_capacity(chunks.len() * n_mels * WINDOW_FRAMES);
        for chunk in chunks {
            features.extend(form.front_end.window_features(&chunk.samples));
        }
        let encoded = backend.encode_batch(&mut features, chunks.len(), n_mels)?;
        drop(features);
        let language = match &self.language {
            Some(code) => code.clone(),
            None => {
                let (code, probability) = backend
                    .detect_language_batch(&encoded)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| {
                        AsrError::Backend("language detection returned nothing".into())
                    })?;
                self.language = Some(code.clone());
                self.language_probability = probability;
                code
            }
        };
        let multilingual = backend.is_multilingual();
        let sot = tokenizer.sot_sequence(multilingual, &language, options.task)?;
        let prompt = build_prompt(
            tokenizer,
            &sot,
            &self.initial,
            &self.hotwords,
            options.without_timestamps,
        );
        let first_temperature = options.temperatures.first().copied().unwrap_or(0.0);
        let generations = backend.generate_batch(
            &encoded,
            &vec![prompt.clone(); chunks.len()],
            &form.generate_options(first_temperature),
        )?;
        check_batch(generations.len(), chunks.len())?;
        let mut decoded: Vec<Decoded> = generations
            .into_iter()
            .map(|generation| form.decoded(generation, first_temperature))
            .collect();
        if options.temperatures.len() > 1 {
            self.fall_back(chunks, &prompt, &mut decoded)?;
        }
        let results: Vec<Option<Decoded>> = decoded
            .into_iter()
            .map(|d| (!is_silent(&d, options)).then_some(d))
            .collect();

        let timestamp_begin = tokenizer.special().timestamp_begin;
        let eot = tokenizer.special().eot;
        let mut raws: Vec<Vec<RawSegment>> = chunks
            .iter()
            .zip(&results)
            .map(|(chunk, result)| match result {
                Some(decoded) => chunk_segments(&decoded.tokens, timestamp_begin, eot, chunk),
                None => Vec::new(),
            })
            .collect();
        if options.word_timestamps {
            // A chunk's encoder output is the same whichever temperature
            // found its text, so one alignment call serves the whole batch.
            let texts: Vec<Vec<TokenId>> = raws.iter().map(|raw| text_tokens(raw, eot)).collect();
            if texts.iter().any(|t| !t.is_empty()) {
                let frames: Vec<usize> = chunks.iter().map(Chunk::frames).collect();
                let alignments = backend.align_batch(&encoded, &sot, &texts, &frames)?;
                for ((raw, text), alignment) in raws.iter_mut().zip(&texts).zip(alignments) {
                    if text.is_empty() {
                        continue;
                    }
                    let timings = word_timings(
                        tokenizer,
                        &language,
                        text,
                        &alignment.pairs,
                        &alignment.text_token_probs,
                    );
                    assign_words(raw, timings, eot, 0.0);
                }
            }
        }
        drop(encoded);

        let mut out: Vec<Vec<Piece>> = chunks
            .iter()
            .zip(raws)
            .zip(&results)
            .map(|((chunk, raw), result)| match result {
                Some(decoded) => self.pieces(chunk, raw, decoded),
                None => Vec::new(),
            })
            .collect();
        // The model sometimes passes over a sentence, most often at the
        // start or the end of a chunk; the sequential loop would seek there
        // and decode again, so those stretches are decoded again here, the
        // whole batch's together, and their segments put in their place.
        if !options.without_timestamps && depth < MAX_REDECODES {
            let mut gaps = Vec::new();
            let mut owners = Vec::new();
            for (i, (chunk, found)) in chunks.iter().zip(&out).enumerate() {
                if found.is_empty() {
                    continue;
                }
                let covered: Vec<(f64, f64)> = found.iter().map(|p| p.local).collect();
                for gap in chunk.gaps(&covered) {
                    gaps.push(gap);
                    owners.push(i);
                }
            }
            let batch_size = options.batch_size.max(1);
            for (group, owners) in gaps.chunks(batch_size).zip(owners.chunks(batch_size)) {
                let again = self.decode_pieces(group, depth + 1)?;
                for (&owner, pieces) in owners.iter().zip(again) {
                    out[owner].extend(pieces);
                }
            }
            if !gaps.is_empty() {
                for found in &mut out {
                    found.sort_by(|a, b| a.raw.start.total_cmp(&b.raw.start));
                }
            }
        }
        Ok(out)
    }

    /// Decodes again, at each higher temperature in turn, the chunks whose
    /// beam search failed the compression-ratio or log-probability check:
    /// the failed chunks of the batch in one call per temperature, with
    /// their `best_of` candidates in it, so that a batch with several
    /// failures costs little more than one with a single failure.
    fn fall_back(
        &self,
        chunks: &[Chunk],
        prompt: &[TokenId],
        decoded: &mut [Decoded],
    ) -> Result<(), AsrError> {
        let form = self.form;
        let (backend, options) = (form.backend, form.options);
        let n_mels = form.front_end.n_mels();
        let mut pending: Vec<(usize, Fallback)> = Vec::new();
        for (i, first) in decoded.iter().enumerate() {
            let mut fallback = Fallback::default();
            if fallback.offer(first.clone(), options).is_none() {
                pending.push((i, fallback));
            }
        }
        // The failed chunks' encoder output and how many chunks it holds,
        // kept across temperatures: pending only shrinks, in order, so the
        // same count is the same chunks and they need no second encoding.
        let mut held: Option<(B::Encoded, usize)> = None;
        for &temperature in &options.temperatures[1..] {
            if pending.is_empty() {
                break;
            }
            let encoded = match held.take().filter(|(_, n)| *n == pending.len()) {
                Some((encoded, _)) => encoded,
                None => {
                    let mut features = Vec::with_capacity(pending.len() * n_mels * WINDOW_FRAMES);
                    for (i, _) in &pending {
                        features.extend(form.front_end.window_features(&chunks[*i].samples));
                    }
                    backend.encode_batch(&mut features, pending.len(), n_mels)?
                }
            };
            let mut generate = form.generate_options(temperature);
            // The candidates as one batch, as faster-whisper samples them:
            // at most batch_size x best_of sequences, which is what the
            // batch's beam search (batch_size x beam_size) already held.
            if temperature > 0.0 {
                generate.num_hypotheses = options.best_of.max(1);
            }
            let generations = backend.generate_batch(
                &encoded,
                &vec![prompt.to_vec(); pending.len()],
                &generate,
            )?;
            check_batch(generations.len(), pending.len())?;
            held = Some((encoded, pending.len()));
            let mut failed = Vec::with_capacity(pending.len());
            for ((i, mut fallback), generation) in pending.into_iter().zip(generations) {
                match fallback.offer(form.decoded(generation, temperature), options) {
                    Some(passed) => decoded[i] = passed,
                    None => failed.push((i, fallback)),
                }
            }
            pending = failed;
        }
        for (i, fallback) in pending {
            decoded[i] = fallback.finish(options)?;
        }
        Ok(())
    }

    /// A chunk's segments with text, moved to the file's timeline.
    fn pieces(&self, chunk: &Chunk, raws: Vec<RawSegment>, decoded: &Decoded) -> Vec<Piece> {
        let tokenizer = self.form.tokenizer;
        let mut pieces = Vec::new();
        for mut raw in raws {
            let text = tokenizer.decode(&raw.tokens);
            if raw.start == raw.end || !text.chars().any(char::is_alphanumeric) {
                continue;
            }
            let local = (raw.start, raw.end);
            raw.start = chunk.original(raw.start, false);
            raw.end = chunk.original(raw.end, true);
            for word in &mut raw.words {
                word.start = chunk.original(word.start, false);
                word.end = chunk.original(word.end, true);
            }
            if let (Some(first), Some(last)) = (raw.words.first(), raw.words.last()) {
                raw.start = first.start;
                raw.end = last.end;
            }
            pieces.push(Piece {
                raw,
                local,
                text,
                decoded: decoded.clone(),
            });
        }
        pieces
    }
}

/// A segment found in a chunk, in the file's timeline.
struct Piece {
    raw: RawSegment,
    /// Where it lies in the chunk, in seconds.
    local: (f64, f64),
    text: String,
    decoded: Decoded,
}

/// Fails when a batch call returned another number of results than asked.
fn check_batch(got: usize, asked: usize) -> Result<(), AsrError> {
    if got == asked {
        return Ok(());
    }
    Err(AsrError::Backend(format!(
        "{got} results for a batch of {asked}"
    )))
}

/// The text tokens of a chunk's segments, timestamps left out.
fn text_tokens(segments: &[RawSegment], eot: TokenId) -> Vec<TokenId> {
    segments
        .iter()
        .flat_map(|s| s.tokens.iter().copied().filter(|t| *t < eot))
        .collect()
}

/// A chunk's tokens split at timestamp pairs, in seconds into the chunk.
/// Unlike a sequential window, nothing decodes the rest again, so text after
/// the last pair becomes a segment to the end of the chunk.
fn chunk_segments(
    tokens: &[TokenId],
    timestamp_begin: TokenId,
    eot: TokenId,
    chunk: &Chunk,
) -> Vec<RawSegment> {
    let frames = chunk.frames();
    let duration = frames as f64 / FRAMES_PER_SECOND;
    let (mut segments, _, _) =
        split_segments_by_timestamps(tokens, timestamp_begin, 0.0, frames, duration, 0);
    let used: usize = segments.iter().map(|s| s.tokens.len()).sum();
    let rest = &tokens[used.min(tokens.len())..];
    if rest.iter().any(|t| *t < eot) {
        let start = segments.last().map_or(0.0, |s| s.end);
        segments.push(RawSegment {
            seek: 0,
            start,
            end: duration.max(start),
            tokens: rest.to_vec(),
            words: Vec::new(),
        });
    }
    segments
}

#[cfg(test)]
mod tests;
