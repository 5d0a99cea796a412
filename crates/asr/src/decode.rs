//! The parts of faster-whisper's long-form decoding that need no model:
//! splitting a window's tokens at timestamps, the fallback measures, word
//! timing post-processing, and the repetition check. Kept apart from the
//! CTranslate2 code so that they are unit-tested without a model.

use std::collections::HashSet;
use std::io::Write;

use crate::tokenizer::{TokenId, Tokenizer};

/// Seconds per timestamp token.
pub const TIME_PRECISION: f64 = 0.02;
/// Mel frames per second.
pub const FRAMES_PER_SECOND: f64 = 100.0;
/// Mel frames per timestamp step (the encoder halves the frame rate).
pub const INPUT_STRIDE: usize = 2;
/// Encoder positions per second, the unit of alignment times.
pub const TOKENS_PER_SECOND: f64 = 50.0;
/// The decoder's context in tokens.
pub const MAX_LENGTH: usize = 448;
/// Punctuation merged into the following word.
pub const PREPEND_PUNCTUATIONS: &str = "\"'“¿([{-";
/// Punctuation merged into the preceding word.
pub const APPEND_PUNCTUATIONS: &str = "\"'.。,，!！?？:：”)]}、";

/// A piece of a window between two timestamps, before it becomes a [`crate::Segment`].
#[derive(Debug, Clone, PartialEq)]
pub struct RawSegment {
    /// The window's first mel frame.
    pub seek: usize,
    /// Start in seconds in the original timeline.
    pub start: f64,
    /// End in seconds in the original timeline.
    pub end: f64,
    /// Its tokens, timestamps included.
    pub tokens: Vec<TokenId>,
    /// Its words, when word timestamps were computed.
    pub words: Vec<WordTiming>,
}

/// One word with its tokens and times, as the aligner produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTiming {
    /// The word's text, with its leading space.
    pub word: String,
    /// The word's tokens.
    pub tokens: Vec<TokenId>,
    /// Start in seconds.
    pub start: f64,
    /// End in seconds.
    pub end: f64,
    /// Mean probability of the word's tokens.
    pub probability: f32,
}

/// Splits a window's tokens into segments at consecutive timestamp pairs and
/// returns them with the next seek (in frames) and whether the tokens ended
/// on a single timestamp; faster-whisper's `_split_segments_by_timestamps`.
pub fn split_segments_by_timestamps(
    tokens: &[TokenId],
    timestamp_begin: TokenId,
    time_offset: f64,
    segment_size: usize,
    segment_duration: f64,
    seek: usize,
) -> (Vec<RawSegment>, usize, bool) {
    let is_ts = |t: TokenId| t >= timestamp_begin;
    let position = |t: TokenId| f64::from(t.saturating_sub(timestamp_begin));
    let n = tokens.len();
    let single_timestamp_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
    let consecutive: Vec<usize> = (1..n)
        .filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1]))
        .collect();
    let mut segments = Vec::new();
    let mut next_seek = seek;
    if !consecutive.is_empty() {
        let mut slices = consecutive;
        if single_timestamp_ending {
            slices.push(n);
        }
        let mut last = 0;
        for &current in &slices {
            let sliced = &tokens[last..current];
            if let (Some(first), Some(final_)) = (sliced.first(), sliced.last()) {
                segments.push(RawSegment {
                    seek,
                    start: time_offset + position(*first) * TIME_PRECISION,
                    end: time_offset + position(*final_) * TIME_PRECISION,
                    tokens: sliced.to_vec(),
                    words: Vec::new(),
                });
            }
            last = current;
        }
        if single_timestamp_ending {
            // A single timestamp at the end: nothing is spoken after it.
            next_seek += segment_size;
        } else {
            // Drop the unfinished segment and resume at the last timestamp.
            let last_position = tokens
                .get(last.wrapping_sub(1))
                .map_or(0, |t| t.saturating_sub(timestamp_begin))
                as usize;
            next_seek += last_position * INPUT_STRIDE;
        }
    } else {
        let mut duration = segment_duration;
        if let Some(&last_ts) = tokens.iter().rev().find(|t| is_ts(**t)) {
            if last_ts != timestamp_begin {
                duration = position(last_ts) * TIME_PRECISION;
            }
        }
        segments.push(RawSegment {
            seek,
            start: time_offset,
            end: time_offset + duration,
            tokens: tokens.to_vec(),
            words: Vec::new(),
        });
        next_seek += segment_size;
    }
    (segments, next_seek, single_timestamp_ending)
}

/// UTF-8 length of `text` over its zlib-compressed length; high for
/// repetitive text. zlib at its default level, as Python's `zlib.compress`.
pub fn compression_ratio(text: &str) -> f32 {
    let bytes = text.as_bytes();
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder
        .write_all(bytes)
        .and_then(|_| encoder.finish())
        .map(|c| c.len())
        .unwrap_or(0);
    if compressed == 0 {
        return 0.0;
    }
    bytes.len() as f32 / compressed as f32
}

/// The average log probability per token from CTranslate2's length-normalized
/// score, counting the end token as faster-whisper does.
pub fn avg_logprob(score: f32, num_tokens: usize, length_penalty: f32) -> f32 {
    let cumulative = score * (num_tokens as f32).powf(length_penalty);
    cumulative / (num_tokens as f32 + 1.0)
}

/// The prompt of one window, as faster-whisper's `get_prompt` builds it:
/// `<|startofprev|>` with the hotwords (at most 223 tokens) and the last 223
/// previous tokens when there are any, the start sequence, and
/// `<|notimestamps|>` when timestamps are off.
pub fn build_prompt(
    tokenizer: &Tokenizer,
    sot_sequence: &[TokenId],
    previous_tokens: &[TokenId],
    hotwords: &[TokenId],
    without_timestamps: bool,
) -> Vec<TokenId> {
    let mut prompt = Vec::new();
    let keep = MAX_LENGTH / 2 - 1;
    if !previous_tokens.is_empty() || !hotwords.is_empty() {
        prompt.push(tokenizer.special().sot_prev);
        prompt.extend_from_slice(&hotwords[..hotwords.len().min(keep)]);
    }
    if !previous_tokens.is_empty() {
        let from = previous_tokens.len().saturating_sub(keep);
        prompt.extend_from_slice(&previous_tokens[from..]);
    }
    prompt.extend_from_slice(sot_sequence);
    if without_timestamps {
        prompt.push(tokenizer.special().no_timestamps);
    }
    prompt
}

/// The ids to suppress for `requested` (where -1 stands for the non-speech
/// symbols), plus the task and control tokens, as faster-whisper computes them.
pub fn suppressed_tokens(tokenizer: &Tokenizer, requested: &[i32]) -> Vec<i32> {
    if requested.is_empty() {
        return Vec::new();
    }
    let mut ids: Vec<i32> = requested.iter().copied().filter(|t| *t >= 0).collect();
    if requested.contains(&-1) {
        ids.extend(
            tokenizer
                .non_speech_tokens()
                .into_iter()
                .filter_map(|t| i32::try_from(t).ok()),
        );
    }
    let s = tokenizer.special();
    ids.extend(
        [
            s.transcribe,
            s.translate,
            s.sot,
            s.sot_prev,
            s.sot_lm,
            s.no_speech,
        ]
        .into_iter()
        .filter_map(|t| i32::try_from(t).ok()),
    );
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Word timings from CTranslate2's alignment of `text_tokens` (the window's
/// text tokens without the end token); faster-whisper's `find_alignment`.
/// Returns nothing when the alignment does not cover the tokens.
pub fn word_timings(
    tokenizer: &Tokenizer,
    language: &str,
    text_tokens: &[TokenId],
    alignments: &[(i64, i64)],
    text_token_probs: &[f32],
) -> Vec<WordTiming> {
    let mut with_eot = text_tokens.to_vec();
    with_eot.push(tokenizer.special().eot);
    let (words, word_tokens) = tokenizer.split_to_word_tokens(&with_eot, language);
    if word_tokens.len() <= 1 {
        return Vec::new();
    }
    let mut boundaries = vec![0usize];
    for toks in &word_tokens[..word_tokens.len() - 1] {
        let last = boundaries.last().copied().unwrap_or(0);
        boundaries.push(last + toks.len());
    }
    let mut jump_times = Vec::with_capacity(alignments.len());
    for (i, (text_index, time_index)) in alignments.iter().enumerate() {
        let jump = i == 0 || alignments[i - 1].0 != *text_index;
        if jump {
            jump_times.push(*time_index as f64 / TOKENS_PER_SECOND);
        }
    }
    let mut out = Vec::with_capacity(words.len());
    for (k, (word, tokens)) in words.into_iter().zip(word_tokens).enumerate() {
        let (Some(&from), Some(&to)) = (boundaries.get(k), boundaries.get(k + 1)) else {
            break;
        };
        let (Some(&start), Some(&end)) = (jump_times.get(from), jump_times.get(to)) else {
            return Vec::new();
        };
        let probs = text_token_probs.get(from..to.min(text_token_probs.len()));
        let probability = match probs {
            Some(p) if !p.is_empty() => p.iter().sum::<f32>() / p.len() as f32,
            _ => 0.0,
        };
        out.push(WordTiming {
            word,
            tokens,
            start,
            end,
            probability,
        });
    }
    out
}

/// Attaches leading punctuation to the following word and trailing
/// punctuation to the preceding one, leaving emptied entries in place.
pub fn merge_punctuations(alignment: &mut [WordTiming], prepended: &str, appended: &str) {
    if alignment.len() >= 2 {
        let mut i = alignment.len() - 2;
        let mut j = alignment.len() - 1;
        loop {
            let previous = &alignment[i];
            // Python's `x.strip() in s` is a substring test; kept as is.
            if previous.word.starts_with(' ') && prepended.contains(previous.word.trim()) {
                let word = std::mem::take(&mut alignment[i].word);
                let tokens = std::mem::take(&mut alignment[i].tokens);
                let following = &mut alignment[j];
                following.word = word + &following.word;
                let mut merged = tokens;
                merged.append(&mut following.tokens);
                following.tokens = merged;
            } else {
                j = i;
            }
            if i == 0 {
                break;
            }
            i -= 1;
        }
    }
    let mut i = 0;
    let mut j = 1;
    while j < alignment.len() {
        if !alignment[i].word.ends_with(' ') && appended.contains(alignment[j].word.as_str()) {
            let word = std::mem::take(&mut alignment[j].word);
            let mut tokens = std::mem::take(&mut alignment[j].tokens);
            alignment[i].word.push_str(&word);
            alignment[i].tokens.append(&mut tokens);
        } else {
            i = j;
        }
        j += 1;
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Distributes a window's word timings over its segments and applies
/// faster-whisper's duration heuristics (`add_word_timestamps`); returns the
/// end of the last speech.
pub fn assign_words(
    segments: &mut [RawSegment],
    mut alignment: Vec<WordTiming>,
    eot: TokenId,
    mut last_speech_timestamp: f64,
) -> f64 {
    let Some(first) = segments.first() else {
        return last_speech_timestamp;
    };
    let time_offset = first.seek as f64 / FRAMES_PER_SECOND;
    let mut durations: Vec<f64> = alignment
        .iter()
        .map(|w| w.end - w.start)
        .filter(|d| *d != 0.0)
        .collect();
    let has_durations = !durations.is_empty();
    let median_duration = median(&mut durations).min(0.7);
    let max_duration = median_duration * 2.0;
    if has_durations {
        // Words at sentence boundaries are at most twice the median long.
        let sentence_end = ".。!！?？";
        for i in 1..alignment.len() {
            if alignment[i].end - alignment[i].start > max_duration {
                if sentence_end.contains(alignment[i].word.as_str()) {
                    alignment[i].end = alignment[i].start + max_duration;
                } else if sentence_end.contains(alignment[i - 1].word.as_str()) {
                    alignment[i].start = alignment[i].end - max_duration;
                }
            }
        }
    }
    merge_punctuations(&mut alignment, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);

    let mut word_index = 0;
    for segment in segments.iter_mut() {
        let text_token_count = segment.tokens.iter().filter(|t| **t < eot).count();
        let mut saved_tokens = 0;
        let mut words: Vec<WordTiming> = Vec::new();
        while word_index < alignment.len() && saved_tokens < text_token_count {
            let timing = &alignment[word_index];
            if !timing.word.is_empty() {
                words.push(WordTiming {
                    word: timing.word.clone(),
                    tokens: timing.tokens.clone(),
                    start: round2(time_offset + timing.start),
                    end: round2(time_offset + timing.end),
                    probability: timing.probability,
                });
            }
            saved_tokens += timing.tokens.len();
            word_index += 1;
        }
        if !words.is_empty() {
            let n = words.len();
            // The first words after a pause are at most twice the median long.
            if words[0].end - last_speech_timestamp > median_duration * 4.0
                && (words[0].end - words[0].start > max_duration
                    || (n > 1 && words[1].end - words[0].start > max_duration * 2.0))
            {
                if n > 1 && words[1].end - words[1].start > max_duration {
                    let boundary = (words[1].end / 2.0).max(words[1].end - max_duration);
                    words[0].end = boundary;
                    words[1].start = boundary;
                }
                words[0].start = (words[0].end - max_duration).max(0.0);
            }
            // Prefer the segment's timestamps over an overlong first/last word.
            if segment.start < words[0].end && segment.start - 0.5 > words[0].start {
                words[0].start = (words[0].end - median_duration).min(segment.start).max(0.0);
            } else {
                segment.start = words[0].start;
            }
            if segment.end > words[n - 1].start && segment.end + 0.5 < words[n - 1].end {
                words[n - 1].end = (words[n - 1].start + median_duration).max(segment.end);
            } else {
                segment.end = words[n - 1].end;
            }
            last_speech_timestamp = segment.end;
        }
        segment.words = words;
    }
    last_speech_timestamp
}

/// The end of the last word, else of the last segment.
pub fn last_end(segments: &[RawSegment]) -> Option<f64> {
    segments
        .iter()
        .rev()
        .flat_map(|s| s.words.iter().rev())
        .map(|w| w.end)
        .next()
        .or_else(|| segments.last().map(|s| s.end))
}

fn normalized_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .flat_map(char::to_lowercase)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// N-gram size for the repetition check: long enough that ordinary phrases
/// ("one of the") rarely match by chance.
const REPEAT_NGRAM: usize = 4;
/// Fewer words than this are not judged: short windows overlap by chance.
const REPEAT_MIN_WORDS: usize = 8;
/// Share of a window's n-grams found in its prompt that marks a copied prompt.
const REPEAT_PROMPT_SHARE: f64 = 0.5;
/// Share of a window's n-grams that are repeats of its own, marking a loop.
const REPEAT_SELF_SHARE: f64 = 0.5;

/// Whether a window's text looks like the model looping: most of its word
/// n-grams already appear in the prompt it was conditioned on (it wrote an
/// earlier passage again), or most of them repeat within the window.
pub fn looks_repeated(window_text: &str, prompt_text: &str) -> bool {
    let words = normalized_words(window_text);
    if words.len() < REPEAT_MIN_WORDS {
        return false;
    }
    let grams: Vec<&[String]> = words.windows(REPEAT_NGRAM).collect();
    let prompt_words = normalized_words(prompt_text);
    let prompt_grams: HashSet<&[String]> = prompt_words.windows(REPEAT_NGRAM).collect();
    let copied = grams.iter().filter(|g| prompt_grams.contains(*g)).count();
    if copied as f64 >= REPEAT_PROMPT_SHARE * grams.len() as f64 {
        return true;
    }
    let distinct: HashSet<&[String]> = grams.iter().copied().collect();
    let repeats = grams.len() - distinct.len();
    words.len() >= 2 * REPEAT_MIN_WORDS && repeats as f64 >= REPEAT_SELF_SHARE * grams.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: TokenId = 1000;

    #[test]
    fn split_on_consecutive_timestamps_seeks_to_last_pair() {
        // <0.00> a b <1.00><1.00> c <2.00><2.00> d   (unfinished last segment)
        let tokens = [TS, 1, 2, TS + 50, TS + 50, 3, TS + 100, TS + 100, 4];
        let (segs, seek, single) =
            split_segments_by_timestamps(&tokens, TS, 10.0, 3000, 30.0, 1000);
        assert!(!single);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].start, segs[0].end), (10.0, 11.0));
        assert_eq!((segs[1].start, segs[1].end), (11.0, 12.0));
        assert_eq!(seek, 1000 + 100 * INPUT_STRIDE);
    }

    #[test]
    fn single_timestamp_ending_consumes_the_window() {
        let tokens = [TS, 1, TS + 50, TS + 50, 2, TS + 80];
        let (segs, seek, single) = split_segments_by_timestamps(&tokens, TS, 0.0, 2500, 25.0, 0);
        assert!(single);
        assert_eq!(segs.len(), 2);
        assert!((segs[1].end - 1.6).abs() < 1e-9);
        assert_eq!(seek, 2500);
    }

    #[test]
    fn no_pair_gives_one_segment_to_the_last_timestamp() {
        let tokens = [TS, 1, 2, TS + 150];
        let (segs, seek, _) = split_segments_by_timestamps(&tokens, TS, 5.0, 3000, 30.0, 500);
        assert_eq!(segs.len(), 1);
        assert!((segs[0].end - 8.0).abs() < 1e-9);
        assert_eq!(seek, 3500);
        let (segs, _, _) = split_segments_by_timestamps(&[1, 2], TS, 5.0, 3000, 30.0, 500);
        assert_eq!(segs[0].end, 35.0);
    }

    #[test]
    fn compression_ratio_flags_repetition() {
        let plain = "The quick brown fox jumps over the lazy dog.";
        assert!(compression_ratio(plain) < 1.5);
        let looped = "I am here. ".repeat(20);
        assert!(compression_ratio(&looped) > 2.4);
    }

    #[test]
    fn avg_logprob_counts_the_end_token() {
        assert!((avg_logprob(-0.5, 9, 1.0) - (-0.45)).abs() < 1e-6);
    }

    #[test]
    fn punctuation_merges_both_ways() {
        let w = |s: &str, t: TokenId| WordTiming {
            word: s.into(),
            tokens: vec![t],
            start: 0.0,
            end: 0.0,
            probability: 1.0,
        };
        let mut a = vec![
            w(" \"", 1),
            w("Hello", 2),
            w(",", 3),
            w(" world", 4),
            w(".", 5),
        ];
        merge_punctuations(&mut a, PREPEND_PUNCTUATIONS, APPEND_PUNCTUATIONS);
        let words: Vec<&str> = a.iter().map(|w| w.word.as_str()).collect();
        assert_eq!(words, vec!["", " \"Hello,", "", " world.", ""]);
        assert_eq!(a[1].tokens, vec![1, 2, 3]);
    }

    #[test]
    fn repetition_of_the_prompt_is_detected() {
        let prompt =
            "The old lighthouse keeper climbed the stairs every evening to light the lamp.";
        assert!(looks_repeated(
            " the old lighthouse keeper climbed the stairs every evening to light",
            prompt
        ));
        assert!(!looks_repeated(
            " A small boat drifted slowly toward the rocky shore that night.",
            prompt
        ));
        assert!(looks_repeated(
            &" we will go there and".repeat(5),
            "something else entirely"
        ));
        assert!(!looks_repeated(" short", prompt));
    }
}
