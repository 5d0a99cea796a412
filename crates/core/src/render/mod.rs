//! Transcript outputs (txt, srt, vtt, json, tsv) and statistics.
//!
//! The text formats follow what openai-whisper and faster-whisper users get from
//! `whisper --output_format ...`, so that existing tooling reads them unchanged.
//! Where whisper's writers produce invalid files (cue text containing `-->` or
//! blank lines, `<` in WebVTT), the output here stays valid instead.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::transcript::{Segment, Transcript};

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
    /// Tab-separated `start`, `end` (integer milliseconds) and `text`.
    Tsv,
}

impl OutputFormat {
    /// Every format, in the order outputs are listed and written.
    pub const ALL: [OutputFormat; 5] = [
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
#[error("unknown output format \"{value}\" (expected one of: txt, srt, vtt, json, tsv)")]
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
/// unless it is empty.
pub fn render(t: &Transcript, format: OutputFormat) -> String {
    match format {
        OutputFormat::Txt => render_txt(t),
        OutputFormat::Srt => render_srt(t),
        OutputFormat::Vtt => render_vtt(t),
        OutputFormat::Json => render_json(t),
        OutputFormat::Tsv => render_tsv(t),
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

fn render_txt(t: &Transcript) -> String {
    let mut out = String::new();
    for (_, text) in spoken(t) {
        out.push_str(&text);
        out.push('\n');
    }
    out
}

fn render_srt(t: &Transcript) -> String {
    let mut out = String::new();
    for (n, (s, text)) in spoken(t).enumerate() {
        // SubRip has no escaping; whisper's writer makes the same substitution.
        let text = text.replace("-->", "->");
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            n + 1,
            timestamp(s.start, ','),
            timestamp(s.end, ','),
            text
        ));
    }
    out
}

/// WebVTT cue text treats `&` and `<` as markup and forbids `-->`; escaping
/// `>` as well removes every `-->`.
fn vtt_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

fn render_vtt(t: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (s, text) in spoken(t) {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            vtt_escape(&text)
        ));
    }
    out
}

fn render_tsv(t: &Transcript) -> String {
    let mut out = String::from("start\tend\ttext\n");
    for (s, text) in spoken(t) {
        out.push_str(&format!(
            "{}\t{}\t{}\n",
            millis(s.start),
            millis(s.end),
            text
        ));
    }
    out
}

/// The json output's shape; field order is part of the format. Public only
/// so that the HTTP API can document it.
#[derive(Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JsonTranscript<'a> {
    /// The plain text: segment texts joined, trimmed.
    text: String,
    /// Language code (`en`, `de`, ...).
    language: &'a str,
    /// Probability of the language when it was detected, 1.0 when it was given.
    language_probability: f32,
    /// Duration of the audio in seconds.
    duration: f64,
    /// Name of the model that produced the transcript.
    model: &'a str,
    stats: TranscriptStats,
    /// The segments in time order.
    segments: &'a [Segment],
}

fn render_json(t: &Transcript) -> String {
    let doc = JsonTranscript {
        text: t.text(),
        language: &t.language,
        language_probability: t.language_probability,
        duration: t.duration,
        model: &t.model,
        stats: stats(t),
        segments: &t.segments,
    };
    // Serializing plain structs of strings and numbers cannot fail (non-finite
    // floats become null), so the fallback is only there to avoid a panic path.
    let mut out = serde_json::to_string(&doc).unwrap_or_else(|_| String::from("{}"));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Word;

    fn segment(id: u32, start: f64, end: f64, text: &str) -> Segment {
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

    fn transcript(segments: Vec<Segment>) -> Transcript {
        Transcript {
            language: "en".to_string(),
            language_probability: 1.0,
            duration: 5.0,
            model: "tiny.en".to_string(),
            segments,
            speakers: Vec::new(),
        }
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
            "unknown output format \"docx\" (expected one of: txt, srt, vtt, json, tsv)"
        );
        for f in OutputFormat::ALL {
            assert_eq!(f.extension().parse::<OutputFormat>(), Ok(f));
            assert_eq!(f.to_string(), f.extension());
        }
    }
}
