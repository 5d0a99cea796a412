//! Transcript outputs (txt, srt, vtt, json, tsv, rttm) and statistics.
//!
//! The text formats follow what openai-whisper and faster-whisper users get from
//! `whisper --output_format ...`, so that existing tooling reads them unchanged.
//! Where whisper's writers produce invalid files (cue text containing `-->` or
//! blank lines, `<` in WebVTT), the output here stays valid instead.
//!
//! A diarized transcript (segments with a speaker) shows its speakers in every
//! format: `[SPEAKER_00] ` before srt cue text, a WebVTT voice span
//! (`<v SPEAKER_00>`), a `speaker` column in tsv, one `SPEAKER_00: ...`
//! paragraph per speaker turn in txt, `speaker` fields and a `speakers` list
//! in json, and the turns themselves in rttm. A transcript without speakers
//! renders exactly as before diarization existed (and an empty rttm).

mod json;
mod rttm;
mod subtitles;
mod text;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::transcript::{Segment, Transcript};

pub use json::JsonTranscript;
pub use rttm::{render_rttm, render_turns_rttm, DEFAULT_RTTM_URI};

/// A file format a transcript can be written in.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Plain text, one segment per line.
    Txt,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// The whole transcript with segments, words and statistics.
    Json,
    /// Tab-separated `start`, `end` (integer milliseconds) and `text`, with
    /// a `speaker` column before `text` when the transcript has speakers.
    Tsv,
    /// NIST RTTM speaker turns (`SPEAKER <uri> 1 <start> <duration> ...`);
    /// empty for a transcript without speakers.
    Rttm,
}

impl OutputFormat {
    /// Every format, in the order outputs are listed and written: what a
    /// format name may be, not what is written by default (see
    /// [`OutputFormat::DEFAULT`]).
    pub const ALL: [OutputFormat; 6] = [
        OutputFormat::Txt,
        OutputFormat::Srt,
        OutputFormat::Vtt,
        OutputFormat::Json,
        OutputFormat::Tsv,
        OutputFormat::Rttm,
    ];

    /// The formats written when none are asked for: all but rttm, which only
    /// diarized files have anything for.
    pub const DEFAULT: [OutputFormat; 5] = [
        OutputFormat::Txt,
        OutputFormat::Srt,
        OutputFormat::Vtt,
        OutputFormat::Json,
        OutputFormat::Tsv,
    ];

    /// The file extension, without the dot; also the format's name.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Txt => "txt",
            OutputFormat::Srt => "srt",
            OutputFormat::Vtt => "vtt",
            OutputFormat::Json => "json",
            OutputFormat::Tsv => "tsv",
            OutputFormat::Rttm => "rttm",
        }
    }

    /// The media type to serve the rendered text with.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Txt => "text/plain; charset=utf-8",
            OutputFormat::Srt => "application/x-subrip; charset=utf-8",
            OutputFormat::Vtt => "text/vtt; charset=utf-8",
            OutputFormat::Json => "application/json",
            OutputFormat::Tsv => "text/tab-separated-values; charset=utf-8",
            // RTTM has no registered media type; it is plain text.
            OutputFormat::Rttm => "text/plain; charset=utf-8",
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A format name that is not one of [`OutputFormat::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown output format \"{value}\" (expected one of: txt, srt, vtt, json, tsv, rttm)")]
pub struct ParseFormatError {
    /// The value as given.
    pub value: String,
}

impl FromStr for OutputFormat {
    type Err = ParseFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A leading dot is accepted because people type extensions (`.srt`).
        let name = s.trim();
        let name = name.strip_prefix('.').unwrap_or(name);
        OutputFormat::ALL
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(name))
            .ok_or_else(|| ParseFormatError {
                value: s.to_string(),
            })
    }
}

/// Renders the transcript in the given format; every format ends with a newline
/// unless it is empty. Rttm names the recording [`DEFAULT_RTTM_URI`]; callers
/// that know the file's name use [`render_rttm`].
pub fn render(t: &Transcript, format: OutputFormat) -> String {
    match format {
        OutputFormat::Txt => text::render_txt(t),
        OutputFormat::Srt => subtitles::render_srt(t),
        OutputFormat::Vtt => subtitles::render_vtt(t),
        OutputFormat::Json => json::render_json(t),
        OutputFormat::Tsv => text::render_tsv(t),
        OutputFormat::Rttm => render_rttm(t, DEFAULT_RTTM_URI),
    }
}

/// Words, speech time and speaking rate of a transcript.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TranscriptStats {
    /// Whitespace-separated words over all segments.
    pub words: u64,
    /// Seconds covered by at least one segment.
    pub speech_seconds: f64,
    /// Words per minute of speech; 0 when there is no speech.
    pub words_per_minute: f64,
}

/// Computes the statistics of a transcript.
pub fn stats(t: &Transcript) -> TranscriptStats {
    let words = t
        .segments
        .iter()
        .map(|s| s.text.split_whitespace().count() as u64)
        .sum();
    let speech_seconds = covered_seconds(&t.segments);
    let words_per_minute = if speech_seconds > 0.0 {
        words as f64 / (speech_seconds / 60.0)
    } else {
        0.0
    };
    TranscriptStats {
        words,
        speech_seconds,
        words_per_minute,
    }
}

/// Length of the union of the segments' intervals, so that overlapping
/// segments (which engines do emit) are not counted twice.
fn covered_seconds(segments: &[Segment]) -> f64 {
    let mut spans: Vec<(f64, f64)> = segments
        .iter()
        .filter(|s| s.start.is_finite() && s.end.is_finite() && s.end > s.start)
        .map(|s| (s.start.max(0.0), s.end.max(0.0)))
        .filter(|(start, end)| end > start)
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (start, end) in spans {
        current = match current {
            Some((cs, ce)) if start <= ce => Some((cs, ce.max(end))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((cs, ce)) = current {
        total += ce - cs;
    }
    total
}

/// Whole milliseconds, rounded half away from zero as whisper's writers do;
/// negative and non-finite times become 0 because no format can show them.
fn millis(seconds: f64) -> u64 {
    if !seconds.is_finite() || seconds <= 0.0 {
        return 0;
    }
    (seconds * 1000.0).round() as u64
}

/// `HH:MM:SS<sep>mmm`; hours keep growing past 99 rather than wrapping.
fn timestamp(seconds: f64, separator: char) -> String {
    let ms = millis(seconds);
    let hours = ms / 3_600_000;
    let minutes = ms % 3_600_000 / 60_000;
    let secs = ms % 60_000 / 1000;
    let frac = ms % 1000;
    format!("{hours:02}:{minutes:02}:{secs:02}{separator}{frac:03}")
}

/// The segment's text on one line: runs of whitespace (newlines and tabs
/// included) become one space, since a line break ends a txt/tsv record and a
/// blank line ends a subtitle cue.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Segments that have text; an empty cue or line carries nothing and an empty
/// subtitle cue confuses some players.
fn spoken(t: &Transcript) -> impl Iterator<Item = (&Segment, String)> {
    t.segments
        .iter()
        .map(|s| (s, one_line(&s.text)))
        .filter(|(_, text)| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speakers::SpeakerSummary;
    use crate::transcript::Word;

    pub(super) fn segment(id: u32, start: f64, end: f64, text: &str) -> Segment {
        Segment {
            id,
            start,
            end,
            text: text.to_string(),
            avg_logprob: -0.25,
            no_speech_prob: 0.5,
            compression_ratio: 1.5,
            temperature: 0.0,
            words: Vec::new(),
            speaker: None,
        }
    }

    pub(super) fn transcript(segments: Vec<Segment>) -> Transcript {
        Transcript {
            language: "en".to_string(),
            language_probability: 1.0,
            duration: 5.0,
            model: "tiny.en".to_string(),
            segments,
            speakers: Vec::new(),
        }
    }

    /// Four segments of two speakers, the first two of one turn, as
    /// `assign_speakers` leaves them.
    pub(super) fn two_speakers() -> Transcript {
        let mut t = transcript(vec![
            segment(0, 1.0, 3.5, " Hello there."),
            segment(1, 3.5, 4.0, " How are you?"),
            segment(2, 4.0, 5.0, " General Kenobi!"),
            segment(3, 5.0, 6.0, " You are a bold one."),
        ]);
        for (s, speaker) in t.segments.iter_mut().zip([0, 0, 1, 0]) {
            s.speaker = Some(crate::speakers::speaker_label(speaker));
        }
        t.speakers = vec![
            SpeakerSummary {
                speaker: "SPEAKER_00".to_string(),
                speaking_seconds: 4.0,
            },
            SpeakerSummary {
                speaker: "SPEAKER_01".to_string(),
                speaking_seconds: 1.0,
            },
        ];
        t
    }

    fn two_segments() -> Transcript {
        transcript(vec![
            segment(0, 1.0, 3.5, " Hello there."),
            segment(1, 3.5, 4.25, " General Kenobi!"),
        ])
    }

    #[test]
    fn txt_is_one_trimmed_segment_per_line() {
        assert_eq!(
            render(&two_segments(), OutputFormat::Txt),
            "Hello there.\nGeneral Kenobi!\n"
        );
    }

    #[test]
    fn srt_numbers_cues_with_comma_milliseconds() {
        assert_eq!(
            render(&two_segments(), OutputFormat::Srt),
            "1\n00:00:01,000 --> 00:00:03,500\nHello there.\n\n\
             2\n00:00:03,500 --> 00:00:04,250\nGeneral Kenobi!\n\n"
        );
    }

    #[test]
    fn vtt_has_header_and_dot_milliseconds() {
        assert_eq!(
            render(&two_segments(), OutputFormat::Vtt),
            "WEBVTT\n\n\
             00:00:01.000 --> 00:00:03.500\nHello there.\n\n\
             00:00:03.500 --> 00:00:04.250\nGeneral Kenobi!\n\n"
        );
    }

    #[test]
    fn tsv_uses_integer_milliseconds() {
        assert_eq!(
            render(&two_segments(), OutputFormat::Tsv),
            "start\tend\ttext\n1000\t3500\tHello there.\n3500\t4250\tGeneral Kenobi!\n"
        );
    }

    #[test]
    fn json_has_whole_transcript_and_stats() {
        let expected = concat!(
            r#"{"text":"Hello there. General Kenobi!","language":"en","#,
            r#""language_probability":1.0,"duration":5.0,"model":"tiny.en","#,
            r#""stats":{"words":4,"speech_seconds":3.25,"words_per_minute":73.84615384615384},"#,
            r#""segments":["#,
            r#"{"id":0,"start":1.0,"end":3.5,"text":" Hello there.","avg_logprob":-0.25,"#,
            r#""no_speech_prob":0.5,"compression_ratio":1.5,"temperature":0.0},"#,
            r#"{"id":1,"start":3.5,"end":4.25,"text":" General Kenobi!","avg_logprob":-0.25,"#,
            r#""no_speech_prob":0.5,"compression_ratio":1.5,"temperature":0.0}]}"#,
            "\n"
        );
        assert_eq!(render(&two_segments(), OutputFormat::Json), expected);
    }

    #[test]
    fn json_includes_words_when_present() {
        let mut t = transcript(vec![segment(0, 0.0, 1.0, " Hi")]);
        t.segments[0].words.push(Word {
            start: 0.0,
            end: 0.5,
            word: " Hi".to_string(),
            probability: 0.5,
            speaker: None,
        });
        let json: serde_json::Value =
            serde_json::from_str(&render(&t, OutputFormat::Json)).expect("valid json");
        assert_eq!(
            json["segments"][0]["words"],
            serde_json::json!([{"start": 0.0, "end": 0.5, "word": " Hi", "probability": 0.5}])
        );
        let plain = two_segments();
        let json: serde_json::Value =
            serde_json::from_str(&render(&plain, OutputFormat::Json)).expect("valid json");
        assert!(json["segments"][0].get("words").is_none());
    }

    #[test]
    fn timestamps_round_to_milliseconds_across_hour_boundaries() {
        assert_eq!(timestamp(0.0, ','), "00:00:00,000");
        assert_eq!(timestamp(3599.9994, ','), "00:59:59,999");
        assert_eq!(timestamp(3599.9996, ','), "01:00:00,000");
        assert_eq!(timestamp(3600.0, '.'), "01:00:00.000");
        assert_eq!(timestamp(59.9999, '.'), "00:01:00.000");
        assert_eq!(timestamp(3661.0015, ','), "01:01:01,002");
        assert_eq!(timestamp(360_000.0, ','), "100:00:00,000");
        assert_eq!(timestamp(-0.5, ','), "00:00:00,000");
        assert_eq!(timestamp(f64::NAN, ','), "00:00:00,000");
        assert_eq!(millis(3599.9996), 3_600_000);
    }

    #[test]
    fn cue_text_cannot_break_subtitles() {
        let t = transcript(vec![
            segment(0, 0.0, 1.0, " a --> b\n\nc"),
            segment(1, 1.0, 2.0, "   "),
            segment(2, 2.0, 3.0, "x < y & z\tw"),
        ]);
        assert_eq!(
            render(&t, OutputFormat::Srt),
            "1\n00:00:00,000 --> 00:00:01,000\na -> b c\n\n\
             2\n00:00:02,000 --> 00:00:03,000\nx < y & z w\n\n"
        );
        assert_eq!(
            render(&t, OutputFormat::Vtt),
            "WEBVTT\n\n\
             00:00:00.000 --> 00:00:01.000\na --&gt; b c\n\n\
             00:00:02.000 --> 00:00:03.000\nx &lt; y &amp; z w\n\n"
        );
        assert_eq!(
            render(&t, OutputFormat::Tsv),
            "start\tend\ttext\n0\t1000\ta --> b c\n2000\t3000\tx < y & z w\n"
        );
        assert_eq!(render(&t, OutputFormat::Txt), "a --> b c\nx < y & z w\n");
    }

    #[test]
    fn empty_transcript_renders_headers_only() {
        let t = transcript(Vec::new());
        assert_eq!(render(&t, OutputFormat::Txt), "");
        assert_eq!(render(&t, OutputFormat::Srt), "");
        assert_eq!(render(&t, OutputFormat::Vtt), "WEBVTT\n\n");
        assert_eq!(render(&t, OutputFormat::Tsv), "start\tend\ttext\n");
        let json: serde_json::Value =
            serde_json::from_str(&render(&t, OutputFormat::Json)).expect("valid json");
        assert_eq!(json["text"], "");
        assert_eq!(json["segments"], serde_json::json!([]));
    }

    #[test]
    fn stats_merge_overlapping_segments() {
        let t = transcript(vec![
            segment(0, 0.0, 10.0, " one two three"),
            segment(1, 5.0, 15.0, " four five"),
            segment(2, 20.0, 30.0, " six"),
            segment(3, 21.0, 22.0, ""),
        ]);
        let s = stats(&t);
        assert_eq!(s.words, 6);
        assert!((s.speech_seconds - 25.0).abs() < 1e-9, "{s:?}");
        assert!(
            (s.words_per_minute - 6.0 / (25.0 / 60.0)).abs() < 1e-9,
            "{s:?}"
        );
    }

    #[test]
    fn stats_handle_unsorted_and_contained_segments() {
        let t = transcript(vec![
            segment(0, 10.0, 12.0, " b"),
            segment(1, 0.0, 4.0, " a"),
            segment(2, 1.0, 2.0, " inner"),
            segment(3, 3.0, 2.0, " backwards"),
        ]);
        assert!((stats(&t).speech_seconds - 6.0).abs() < 1e-9);
    }

    #[test]
    fn stats_of_empty_transcript_are_zero() {
        let s = stats(&transcript(Vec::new()));
        assert_eq!(
            s,
            TranscriptStats {
                words: 0,
                speech_seconds: 0.0,
                words_per_minute: 0.0
            }
        );
        // Words without any duration must not divide by zero.
        let s = stats(&transcript(vec![segment(0, 1.0, 1.0, " hi")]));
        assert_eq!(s.words, 1);
        assert_eq!(s.words_per_minute, 0.0);
    }

    #[test]
    fn formats_parse_and_name_the_bad_value() {
        assert_eq!("srt".parse::<OutputFormat>(), Ok(OutputFormat::Srt));
        assert_eq!("JSON".parse::<OutputFormat>(), Ok(OutputFormat::Json));
        assert_eq!(".vtt".parse::<OutputFormat>(), Ok(OutputFormat::Vtt));
        let err = "docx".parse::<OutputFormat>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown output format \"docx\" (expected one of: txt, srt, vtt, json, tsv, rttm)"
        );
        assert_eq!("rttm".parse::<OutputFormat>(), Ok(OutputFormat::Rttm));
        let names: Vec<&str> = OutputFormat::ALL.iter().map(|f| f.extension()).collect();
        assert!(err.to_string().contains(&names.join(", ")), "{err}");
        for f in OutputFormat::ALL {
            assert_eq!(f.extension().parse::<OutputFormat>(), Ok(f));
            assert_eq!(f.to_string(), f.extension());
            let json = serde_json::to_string(&f).expect("serializes");
            assert_eq!(json, format!("\"{}\"", f.extension()));
        }
    }

    #[test]
    fn rttm_is_a_format_but_not_a_default_one() {
        assert!(OutputFormat::ALL.contains(&OutputFormat::Rttm));
        assert!(!OutputFormat::DEFAULT.contains(&OutputFormat::Rttm));
        assert_eq!(OutputFormat::ALL[..5], OutputFormat::DEFAULT);
        assert_eq!(
            OutputFormat::Rttm.content_type(),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn speakers_change_nothing_but_labels() {
        // Stats and text are the same with or without speakers.
        let labelled = two_speakers();
        let mut plain = labelled.clone();
        for s in &mut plain.segments {
            s.speaker = None;
        }
        plain.speakers.clear();
        assert_eq!(stats(&labelled), stats(&plain));
        assert_eq!(labelled.text(), plain.text());
        assert_eq!(
            render(&plain, OutputFormat::Txt),
            "Hello there.\nHow are you?\nGeneral Kenobi!\nYou are a bold one.\n"
        );
        assert_eq!(
            render(&plain, OutputFormat::Tsv).lines().next(),
            Some("start\tend\ttext")
        );
        assert!(!render(&plain, OutputFormat::Srt).contains('['));
        assert!(!render(&plain, OutputFormat::Vtt).contains("<v"));
    }
}
