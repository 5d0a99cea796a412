//! The json output: the whole transcript with statistics.

use serde::Serialize;

use super::{stats, TranscriptStats};
use crate::speakers::SpeakerSummary;
use crate::transcript::{Segment, Transcript};

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
    /// The segments in time order (with `speaker` where diarized).
    segments: &'a [Segment],
    /// The speakers in label order with their speaking time; absent unless
    /// the audio was diarized.
    #[serde(skip_serializing_if = "<[SpeakerSummary]>::is_empty")]
    speakers: &'a [SpeakerSummary],
}

pub(super) fn render_json(t: &Transcript) -> String {
    let doc = JsonTranscript {
        text: t.text(),
        language: &t.language,
        language_probability: t.language_probability,
        duration: t.duration,
        model: &t.model,
        stats: stats(t),
        segments: &t.segments,
        speakers: &t.speakers,
    };
    // Serializing plain structs of strings and numbers cannot fail (non-finite
    // floats become null), so the fallback is only there to avoid a panic path.
    let mut out = serde_json::to_string(&doc).unwrap_or_else(|_| String::from("{}"));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::two_speakers;
    use crate::render::{render, OutputFormat};
    use crate::transcript::Word;

    #[test]
    fn json_has_speakers_on_segments_and_words_and_a_speaker_list() {
        let mut t = two_speakers();
        t.segments[0].words.push(Word {
            start: 1.0,
            end: 1.5,
            word: " Hello".to_string(),
            probability: 0.5,
            speaker: Some("SPEAKER_00".to_string()),
        });
        let json: serde_json::Value =
            serde_json::from_str(&render(&t, OutputFormat::Json)).expect("valid json");
        assert_eq!(json["segments"][0]["speaker"], "SPEAKER_00");
        assert_eq!(json["segments"][2]["speaker"], "SPEAKER_01");
        assert_eq!(json["segments"][0]["words"][0]["speaker"], "SPEAKER_00");
        assert_eq!(
            json["speakers"],
            serde_json::json!([
                {"speaker": "SPEAKER_00", "speaking_seconds": 4.0},
                {"speaker": "SPEAKER_01", "speaking_seconds": 1.0}
            ])
        );
        // The list comes last, after the fields json readers already know.
        let rendered = render(&t, OutputFormat::Json);
        assert!(rendered.find("\"segments\"") < rendered.find("\"speakers\""));
    }

    #[test]
    fn json_without_speakers_has_no_speaker_fields() {
        let mut t = two_speakers();
        for s in &mut t.segments {
            s.speaker = None;
        }
        t.speakers.clear();
        let rendered = render(&t, OutputFormat::Json);
        assert!(!rendered.contains("speaker"), "{rendered}");
    }
}
