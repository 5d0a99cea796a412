//! The result of speech recognition, as stored and rendered.

use serde::{Deserialize, Serialize};

use crate::speakers::SpeakerSummary;

/// One recognized word with its position in the original timeline.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    /// Start in seconds from the beginning of the audio.
    pub start: f64,
    /// End in seconds from the beginning of the audio.
    pub end: f64,
    /// The word as written, with its leading space when the engine gives one.
    pub word: String,
    /// The model's probability for the word's tokens.
    pub probability: f32,
    /// The speaker's label (`SPEAKER_00`) where the audio was diarized and a
    /// speaker turn overlaps the word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// A stretch of speech with its text, as the engine decoded it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Position of the segment in the transcript, from 0.
    pub id: u32,
    /// Start in seconds from the beginning of the audio.
    pub start: f64,
    /// End in seconds from the beginning of the audio.
    pub end: f64,
    /// The text, without special tokens.
    pub text: String,
    /// Average log probability of the segment's tokens.
    pub avg_logprob: f32,
    /// Probability that the window held no speech.
    pub no_speech_prob: f32,
    /// Compression ratio of the text (high values mean repetition).
    pub compression_ratio: f32,
    /// Sampling temperature that produced this segment (0 is beam search).
    pub temperature: f32,
    /// Words with times, when word timestamps were requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub words: Vec<Word>,
    /// The speaker's label (`SPEAKER_00`) where the audio was diarized: the
    /// speaker whose turns overlap the segment most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// The whole recognized text of one audio file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// Language code (`en`, `de`, ...).
    pub language: String,
    /// Probability of the language when it was detected, 1.0 when it was given.
    pub language_probability: f32,
    /// Duration of the audio in seconds.
    pub duration: f64,
    /// Name of the model that produced the transcript.
    pub model: String,
    /// The segments in time order.
    pub segments: Vec<Segment>,
    /// The speakers in label order with their speaking time, where the audio
    /// was diarized.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub speakers: Vec<SpeakerSummary>,
}

impl Transcript {
    /// The plain text: segment texts joined, trimmed.
    pub fn text(&self) -> String {
        let joined: String = self.segments.iter().map(|s| s.text.as_str()).collect();
        joined.trim().to_string()
    }

    /// Whether any segment carries a speaker label.
    pub fn has_speakers(&self) -> bool {
        self.segments.iter().any(|s| s.speaker.is_some())
    }
}
