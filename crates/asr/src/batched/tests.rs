use std::cell::RefCell;

use super::*;
use crate::longform::{Alignment, GenerateOptions, Generation};
use crate::mel::MelFrontEnd;
use crate::tokenizer::{synthetic, Tokenizer};
use crate::{DecodeMode, DecodeOptions};

/// Speeches known in advance, given out once the stream has passed them.
struct Known {
    speeches: Vec<Speech>,
    read: usize,
}

impl SpeechFinder for Known {
    fn push(&mut self, samples: &[f32], out: &mut Vec<Speech>) -> Result<(), AsrError> {
        self.read += samples.len();
        while self.speeches.first().is_some_and(|s| s.end <= self.read) {
            out.push(self.speeches.remove(0));
        }
        Ok(())
    }
    fn finish(&mut self, out: &mut Vec<Speech>) -> Result<(), AsrError> {
        out.append(&mut self.speeches);
        Ok(())
    }
    fn keep_from(&self) -> usize {
        self.speeches
            .first()
            .map_or(self.read, |s| s.start.min(self.read))
    }
}

type Respond = dyn Fn(usize, &GenerateOptions) -> Generation;

/// A model whose windows are numbered in encoding order.
struct Fake {
    respond: Box<Respond>,
    encoded: RefCell<usize>,
    batches: RefCell<Vec<usize>>,
    generated: RefCell<Vec<(usize, f32)>>,
}

impl Fake {
    fn new(respond: Box<Respond>) -> Self {
        Self {
            respond,
            encoded: RefCell::new(0),
            batches: RefCell::new(Vec::new()),
            generated: RefCell::new(Vec::new()),
        }
    }
    fn number(&self, n: usize) -> Vec<usize> {
        let mut next = self.encoded.borrow_mut();
        let ids = (*next..*next + n).collect();
        *next += n;
        ids
    }
}

impl WhisperBackend for Fake {
    type Encoded = Vec<usize>;
    fn is_multilingual(&self) -> bool {
        false
    }
    fn encode(&self, _: &mut [f32], _: usize) -> Result<Vec<usize>, AsrError> {
        Ok(self.number(1))
    }
    fn detect_language(&self, _: &Vec<usize>) -> Result<(String, f32), AsrError> {
        Ok(("en".into(), 1.0))
    }
    fn generate(
        &self,
        window: &Vec<usize>,
        _: &[TokenId],
        options: &GenerateOptions,
    ) -> Result<Generation, AsrError> {
        self.generated
            .borrow_mut()
            .push((window[0], options.sampling_temperature));
        Ok((self.respond)(window[0], options))
    }
    fn align(
        &self,
        _: &Vec<usize>,
        _: &[TokenId],
        _: &[TokenId],
        _: usize,
    ) -> Result<Alignment, AsrError> {
        Ok(Alignment::default())
    }
    fn encode_batch(
        &self,
        features: &mut [f32],
        batch: usize,
        n_mels: usize,
    ) -> Result<Vec<usize>, AsrError> {
        assert_eq!(features.len(), batch * n_mels * WINDOW_FRAMES);
        self.batches.borrow_mut().push(batch);
        Ok(self.number(batch))
    }
    fn detect_language_batch(&self, w: &Vec<usize>) -> Result<Vec<(String, f32)>, AsrError> {
        Ok(vec![("en".into(), 1.0); w.len()])
    }
    fn generate_batch(
        &self,
        windows: &Vec<usize>,
        prompts: &[Vec<TokenId>],
        options: &GenerateOptions,
    ) -> Result<Vec<Generation>, AsrError> {
        assert_eq!(windows.len(), prompts.len());
        windows
            .iter()
            .map(|w| self.generate(&vec![*w], &prompts[0], options))
            .collect()
    }
    fn align_batch(
        &self,
        windows: &Vec<usize>,
        _: &[TokenId],
        _: &[Vec<TokenId>],
        _: &[usize],
    ) -> Result<Vec<Alignment>, AsrError> {
        Ok(vec![Alignment::default(); windows.len()])
    }
}

struct Silence(usize);

impl AudioSource for Silence {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
        let n = buf.len().min(self.0);
        buf[..n].iter_mut().for_each(|s| *s = 0.01);
        self.0 -= n;
        Ok(n)
    }
    fn duration_hint(&self) -> Option<f64> {
        None
    }
}

fn seconds(from: f64, to: f64) -> Speech {
    let at = |s: f64| (s * SAMPLE_RATE as f64) as usize;
    Speech {
        start: at(from),
        end: at(to),
    }
}

fn run(
    fake: &Fake,
    tokenizer: &Tokenizer,
    speeches: Vec<Speech>,
    total_seconds: usize,
    options: &DecodeOptions,
) -> Transcript {
    let front_end = MelFrontEnd::new(80);
    let form = LongForm::new(fake, tokenizer, &front_end, options);
    let mut finder = Known { speeches, read: 0 };
    let mut audio = Silence(total_seconds * SAMPLE_RATE);
    transcribe_batched(
        &form,
        "fake",
        &mut audio,
        &mut finder,
        &mut crate::NoObserver,
    )
    .unwrap()
}

fn options(batch_size: usize) -> DecodeOptions {
    DecodeOptions {
        mode: DecodeMode::Batched,
        batch_size,
        ..DecodeOptions::default()
    }
}

fn words(tok: &Tokenizer, parts: &[(&str, u32, u32)], closed: bool) -> Vec<TokenId> {
    let ts = tok.special().timestamp_begin;
    let mut t = Vec::new();
    for (i, (text, from, to)) in parts.iter().enumerate() {
        t.push(ts + from);
        t.extend(tok.encode(text));
        if closed || i + 1 < parts.len() {
            t.push(ts + to);
        }
    }
    t
}

fn good(tokens: Vec<TokenId>) -> Generation {
    Generation {
        tokens,
        score: -0.1,
        no_speech_prob: 0.01,
    }
}

#[test]
fn chunks_join_speeches_and_times_return_to_the_file() {
    let tok = synthetic(false);
    let closed = words(&tok, &[(" hi", 0, 200), (" there", 200, 400)], true);
    let open = words(&tok, &[(" hi", 0, 200), (" there", 200, 400)], false);
    let fake = Fake::new(Box::new(move |window, _| {
        good(if window == 0 {
            closed.clone()
        } else {
            open.clone()
        })
    }));
    let speeches = vec![
        seconds(2.0, 6.0),
        seconds(7.0, 11.0),
        seconds(40.0, 65.0),
        seconds(70.0, 75.0),
    ];
    let t = run(&fake, &tok, speeches, 100, &options(8));
    let times: Vec<(f64, f64)> = t.segments.iter().map(|s| (s.start, s.end)).collect();
    // Chunk 0 is 2-6 s and 7-11 s: 4 s into it is the join, 6 s as an
    // end and 7 s as a start. Chunk 1 is 40-65 s and 70-75 s; its text
    // after the last pair runs to the chunk's end.
    assert_eq!(
        times,
        vec![(2.0, 6.0), (7.0, 11.0), (40.0, 44.0), (44.0, 75.0)]
    );
    assert_eq!(*fake.batches.borrow(), vec![2], "both chunks in one batch");
    assert_eq!(t.duration, 100.0);
    let texts: Vec<&str> = t.segments.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(texts, vec![" hi", " there", " hi", " there"]);
}

#[test]
fn full_batches_go_as_soon_as_they_fill() {
    let tok = synthetic(false);
    let reply = words(&tok, &[(" hi", 0, 100)], false);
    let fake = Fake::new(Box::new(move |_, _| good(reply.clone())));
    let speeches = (0..5)
        .map(|i| seconds(i as f64 * 40.0, i as f64 * 40.0 + 20.0))
        .collect();
    let t = run(&fake, &tok, speeches, 200, &options(2));
    assert_eq!(*fake.batches.borrow(), vec![2, 2, 1]);
    assert_eq!(t.segments.len(), 5);
    assert!(t.segments.windows(2).all(|w| w[0].end <= w[1].start));
}

#[test]
fn failing_chunks_fall_back_together_and_silence_decodes_nothing() {
    let tok = synthetic(false);
    let reply = words(&tok, &[(" hi", 0, 100)], false);
    // Beyond window 0 (the first chunk), beam search is unlikely; the
    // sampled candidates come from one call.
    let fake = Fake::new(Box::new(move |window, o| {
        let mut g = good(reply.clone());
        if o.sampling_topk == 1 {
            if window > 0 {
                g.score = -3.0;
            }
        } else {
            assert_eq!(o.num_hypotheses, 5, "best_of candidates in one call");
        }
        g
    }));
    let speeches = vec![
        seconds(0.0, 20.0),
        seconds(40.0, 60.0),
        seconds(80.0, 100.0),
    ];
    let t = run(&fake, &tok, speeches, 100, &options(8));
    assert_eq!(t.segments.len(), 3);
    // The batch, then chunks 1 and 2 encoded again together (windows 3
    // and 4) and sampled at the first sampled temperature, in one call.
    assert_eq!(*fake.batches.borrow(), vec![3, 2]);
    let generated = fake.generated.borrow();
    assert_eq!(
        generated[..],
        [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.2), (4, 0.2)]
    );
    let temperatures: Vec<f32> = t.segments.iter().map(|s| s.temperature).collect();
    assert_eq!(temperatures, vec![0.0, 0.2, 0.2]);

    let quiet = Fake::new(Box::new(|_, _| unreachable!("nothing to decode")));
    let t = run(&quiet, &tok, Vec::new(), 90, &options(8));
    assert!(t.segments.is_empty());
    assert_eq!(t.duration, 90.0);
}

#[test]
fn the_fallback_encodes_its_chunks_again_only_when_some_passed() {
    let tok = synthetic(false);
    let reply = words(&tok, &[(" hi", 0, 100)], false);
    // Chunk 0 passes its beam search; chunk 2 (window 4 once encoded for
    // the fallback) passes at 0.4; chunk 1 passes nowhere.
    let fake = Fake::new(Box::new(move |window, o| {
        let mut g = good(reply.clone());
        let passes = window == 0 || (window == 4 && o.sampling_temperature >= 0.4);
        if !passes {
            g.score = -3.0;
        }
        g
    }));
    let speeches = vec![
        seconds(0.0, 20.0),
        seconds(40.0, 60.0),
        seconds(80.0, 100.0),
    ];
    let t = run(&fake, &tok, speeches, 100, &options(8));
    assert_eq!(t.segments.len(), 3);
    // The batch, the two failed chunks once for 0.2 and 0.4, then chunk 1
    // alone once for 0.6 to 1.0.
    assert_eq!(*fake.batches.borrow(), vec![3, 2, 1]);
    let sampled: Vec<(usize, f32)> = fake.generated.borrow()[3..].to_vec();
    assert_eq!(
        sampled,
        [
            (3, 0.2),
            (4, 0.2),
            (3, 0.4),
            (4, 0.4),
            (5, 0.6),
            (5, 0.8),
            (5, 1.0)
        ]
    );
    assert_eq!(t.segments[0].temperature, 0.0);
    assert_eq!(t.segments[2].temperature, 0.4);
}

#[test]
fn what_the_model_leaves_out_at_a_chunks_end_is_decoded_again() {
    let tok = synthetic(false);
    let first = words(&tok, &[(" hi", 0, 200)], true);
    let rest = words(&tok, &[(" there", 0, 100)], false);
    let fake = Fake::new(Box::new(move |window, _| {
        good(if window == 0 {
            first.clone()
        } else {
            rest.clone()
        })
    }));
    let t = run(&fake, &tok, vec![seconds(10.0, 30.0)], 40, &options(8));
    let times: Vec<(f64, f64)> = t.segments.iter().map(|s| (s.start, s.end)).collect();
    assert_eq!(times, vec![(10.0, 14.0), (14.0, 30.0)]);
    assert_eq!(*fake.batches.borrow(), vec![1, 1]);
}
