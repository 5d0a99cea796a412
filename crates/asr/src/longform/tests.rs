use std::cell::RefCell;

use super::*;
use crate::tokenizer::synthetic;

type Respond = dyn Fn(usize, &[TokenId], &GenerateOptions) -> Generation;

/// A model that answers from a script: `respond(window, prompt, options)`.
struct Fake<'a> {
    tokenizer: &'a Tokenizer,
    respond: Box<Respond>,
    windows: RefCell<usize>,
    calls: RefCell<Vec<(usize, Vec<TokenId>, GenerateOptions)>>,
}

impl<'a> Fake<'a> {
    fn new(tokenizer: &'a Tokenizer, respond: Box<Respond>) -> Self {
        Self {
            tokenizer,
            respond,
            windows: RefCell::new(0),
            calls: RefCell::new(Vec::new()),
        }
    }
}

impl WhisperBackend for Fake<'_> {
    type Encoded = usize;
    fn is_multilingual(&self) -> bool {
        false
    }
    fn encode(&self, features: &mut [f32], n_mels: usize) -> Result<usize, AsrError> {
        assert_eq!(features.len(), n_mels * WINDOW_FRAMES);
        let mut w = self.windows.borrow_mut();
        *w += 1;
        Ok(*w - 1)
    }
    fn detect_language(&self, _: &usize) -> Result<(String, f32), AsrError> {
        Ok(("en".into(), 1.0))
    }
    fn generate(
        &self,
        window: &usize,
        prompt: &[TokenId],
        options: &GenerateOptions,
    ) -> Result<Generation, AsrError> {
        self.calls
            .borrow_mut()
            .push((*window, prompt.to_vec(), options.clone()));
        Ok((self.respond)(*window, prompt, options))
    }
    fn align(
        &self,
        _: &usize,
        _: &[TokenId],
        text_tokens: &[TokenId],
        _: usize,
    ) -> Result<Alignment, AsrError> {
        // One encoder frame (20 ms) per token, plus the end token.
        let pairs = (0..=text_tokens.len() as i64)
            .map(|i| (i, 10 * i))
            .collect();
        let _ = self.tokenizer;
        Ok(Alignment {
            pairs,
            text_token_probs: vec![0.9; text_tokens.len()],
        })
    }
    fn encode_batch(&self, _: &mut [f32], _: usize, _: usize) -> Result<usize, AsrError> {
        unreachable!("sequential decoding encodes one window at a time")
    }
    fn detect_language_batch(&self, _: &usize) -> Result<Vec<(String, f32)>, AsrError> {
        unreachable!()
    }
    fn generate_batch(
        &self,
        _: &usize,
        _: &[Vec<TokenId>],
        _: &GenerateOptions,
    ) -> Result<Vec<Generation>, AsrError> {
        unreachable!()
    }
    fn align_batch(
        &self,
        _: &usize,
        _: &[TokenId],
        _: &[Vec<TokenId>],
        _: &[usize],
    ) -> Result<Vec<Alignment>, AsrError> {
        unreachable!()
    }
}

struct Samples(Vec<f32>, usize);

impl AudioSource for Samples {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
        let n = buf.len().min(self.0.len() - self.1);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
    fn duration_hint(&self) -> Option<f64> {
        Some(self.0.len() as f64 / 16_000.0)
    }
}

#[derive(Default)]
struct Log {
    progress: Vec<(f64, f64)>,
    segments: usize,
    cancel: bool,
}

impl TranscribeObserver for Log {
    fn on_progress(&mut self, done: f64, total: f64) {
        self.progress.push((done, total));
    }
    fn on_segment(&mut self, _: &Segment) {
        self.segments += 1;
    }
    fn is_cancelled(&self) -> bool {
        self.cancel
    }
}

fn speech(seconds: usize) -> Vec<f32> {
    (0..seconds * 16_000)
        .map(|i| (i as f32 * 0.05).sin() * 0.3)
        .collect()
}

fn run(
    fake: &Fake,
    tokenizer: &Tokenizer,
    samples: Vec<f32>,
    options: &DecodeOptions,
    log: &mut Log,
) -> Result<Transcript, AsrError> {
    let front_end = MelFrontEnd::new(80);
    let mut source = Samples(samples, 0);
    transcribe_stream(
        fake,
        tokenizer,
        &front_end,
        "fake",
        &mut source,
        options,
        log,
    )
}

fn text(tokenizer: &Tokenizer, s: &str) -> Vec<TokenId> {
    tokenizer.encode(s)
}

fn good(tokens: Vec<TokenId>) -> Generation {
    Generation {
        tokens,
        score: -0.1,
        no_speech_prob: 0.01,
    }
}

#[test]
fn windows_seek_on_timestamps_in_the_original_timeline() {
    let tok = synthetic(false);
    let ts = tok.special().timestamp_begin;
    let hello = text(&tok, " hello");
    let world = text(&tok, " world");
    let (h, w) = (hello.clone(), world.clone());
    // Every window: <0.00> hello <5.00><5.00> world <10.00> and an
    // unfinished segment, so the next window starts 10 s later.
    let fake = Fake::new(
        &tok,
        Box::new(move |_, _, _| {
            let mut t = vec![ts];
            t.extend(&h);
            t.extend([ts + 250, ts + 250]);
            t.extend(&w);
            t.extend([ts + 500, ts + 500]);
            t.extend(&h);
            good(t)
        }),
    );
    let mut log = Log::default();
    let t = run(&fake, &tok, speech(25), &DecodeOptions::default(), &mut log).unwrap();
    let times: Vec<(f64, f64)> = t.segments.iter().map(|s| (s.start, s.end)).collect();
    // Windows at 0 s, 10 s, 20 s (5 s of audio: clipped to it).
    assert_eq!(
        times,
        vec![
            (0.0, 5.0),
            (5.0, 10.0),
            (10.0, 15.0),
            (15.0, 20.0),
            (20.0, 25.0),
            (25.0, 25.0)
        ]
    );
    assert_eq!(t.segments[0].text, " hello");
    assert_eq!(log.segments, 6);
    assert_eq!(t.duration, 25.0);
    // The second window is prompted with the first one's tokens.
    let calls = fake.calls.borrow();
    assert_eq!(calls[0].1, vec![tok.special().sot]);
    assert_eq!(calls[1].1[0], tok.special().sot_prev);
    assert_eq!(calls[1].1.last(), Some(&tok.special().sot));
    // Progress is monotonic and ends at the total.
    assert!(log.progress.windows(2).all(|p| p[0].0 <= p[1].0));
    assert_eq!(log.progress.last(), Some(&(25.0, 25.0)));
}

#[test]
fn silent_windows_give_no_segments_and_no_fallback() {
    let tok = synthetic(false);
    let fake = Fake::new(
        &tok,
        Box::new(|_, _, _| Generation {
            tokens: vec![],
            score: -3.0,
            no_speech_prob: 0.95,
        }),
    );
    let mut log = Log::default();
    let t = run(&fake, &tok, speech(45), &DecodeOptions::default(), &mut log).unwrap();
    assert!(t.segments.is_empty());
    assert_eq!(fake.calls.borrow().len(), 2, "one pass per window");
    assert_eq!(log.progress.last(), Some(&(45.0, 45.0)));
}

#[test]
fn low_log_probability_falls_back_to_sampling() {
    let tok = synthetic(false);
    let ts = tok.special().timestamp_begin;
    let hi = text(&tok, " hi");
    let fake = Fake::new(
        &tok,
        Box::new(move |_, _, o| {
            let mut t = vec![ts];
            t.extend(&hi);
            t.push(ts + 100);
            Generation {
                tokens: t,
                score: if o.sampling_temperature < 0.3 && o.sampling_topk == 0 {
                    -0.2
                } else {
                    -3.0
                },
                no_speech_prob: 0.0,
            }
        }),
    );
    let mut log = Log::default();
    let t = run(&fake, &tok, speech(10), &DecodeOptions::default(), &mut log).unwrap();
    assert_eq!(t.segments.len(), 1);
    assert_eq!(t.segments[0].temperature, 0.2);
    let calls = fake.calls.borrow();
    // Beam search, then best_of = 5 candidates sampled one at a time.
    assert_eq!(calls.len(), 6);
    assert_eq!(calls[0].2.beam_size, 5);
    for (_, _, sampled) in &calls[1..] {
        assert_eq!(
            (
                sampled.beam_size,
                sampled.num_hypotheses,
                sampled.sampling_topk,
                sampled.sampling_temperature
            ),
            (1, 1, 0, 0.2)
        );
    }
}

#[test]
fn a_copied_prompt_is_decoded_again_without_it() {
    let tok = synthetic(false);
    let ts = tok.special().timestamp_begin;
    let sot_prev = tok.special().sot_prev;
    let first = text(
        &tok,
        " the old keeper climbed the stairs to light the lamp again",
    );
    let second = text(&tok, " a small boat drifted toward the shore");
    let (a, b) = (first.clone(), second.clone());
    let fake = Fake::new(
        &tok,
        Box::new(move |window, prompt, _| {
            // Window 1 with a prompt repeats window 0; without, it hears new words.
            let body = if window == 0 || prompt[0] == sot_prev {
                &a
            } else {
                &b
            };
            let mut t = vec![ts];
            t.extend(body);
            t.push(ts + 1500);
            good(t)
        }),
    );
    let mut log = Log::default();
    let t = run(&fake, &tok, speech(60), &DecodeOptions::default(), &mut log).unwrap();
    let texts: Vec<&str> = t.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, vec![tok.decode(&first), tok.decode(&second)]);
    let calls = fake.calls.borrow();
    assert_eq!(calls.len(), 3, "window 1 decoded twice");
    assert_eq!(calls[2].1, vec![tok.special().sot]);
}

#[test]
fn cancelling_stops_before_any_work() {
    let tok = synthetic(false);
    let fake = Fake::new(&tok, Box::new(|_, _, _| good(vec![])));
    let mut log = Log {
        cancel: true,
        ..Log::default()
    };
    let err = run(&fake, &tok, speech(10), &DecodeOptions::default(), &mut log).unwrap_err();
    assert!(matches!(err, AsrError::Cancelled));
    assert_eq!(*fake.windows.borrow(), 0);
}

#[test]
fn vad_filter_skips_leading_silence_keeping_times() {
    let tok = synthetic(false);
    let ts = tok.special().timestamp_begin;
    let hi = text(&tok, " hi");
    let fake = Fake::new(
        &tok,
        Box::new(move |_, _, _| {
            let mut t = vec![ts + 25];
            t.extend(&hi);
            t.push(ts + 100);
            good(t)
        }),
    );
    let mut samples = vec![0.0; 20 * 16_000];
    samples.extend(speech(5));
    let options = DecodeOptions {
        vad_filter: true,
        ..DecodeOptions::default()
    };
    let mut log = Log::default();
    let t = run(&fake, &tok, samples, &options, &mut log).unwrap();
    assert_eq!(t.segments.len(), 1);
    // The window (and a segment without a timestamp pair) starts 0.4 s
    // before the speech at 20 s.
    assert!(
        (t.segments[0].start - 19.6).abs() < 1e-9,
        "{:?}",
        t.segments
    );
    assert_eq!(*fake.windows.borrow(), 1);
}

#[test]
fn word_timestamps_fill_segments() {
    let tok = synthetic(false);
    let ts = tok.special().timestamp_begin;
    let words = text(&tok, " hi hello hi.");
    let fake = Fake::new(
        &tok,
        Box::new(move |_, _, _| {
            let mut t = vec![ts];
            t.extend(&words);
            t.push(ts + 100);
            good(t)
        }),
    );
    let options = DecodeOptions {
        word_timestamps: true,
        ..DecodeOptions::default()
    };
    let mut log = Log::default();
    let t = run(&fake, &tok, speech(3), &options, &mut log).unwrap();
    let s = &t.segments[0];
    let spelled: Vec<&str> = s.words.iter().map(|w| w.word.as_str()).collect();
    assert_eq!(spelled, vec![" hi", " hello", " hi."]);
    assert!(s.words.windows(2).all(|w| w[0].end <= w[1].start));
    assert!(s.words.iter().all(|w| w.start >= s.start && w.end <= s.end));
}
