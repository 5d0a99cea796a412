//! Who spoke when: the result of a diarization job, as stored and merged
//! into transcripts.

use serde::{Deserialize, Serialize};

/// One stretch of time in which one speaker talks.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerTurn {
    /// Start in seconds from the beginning of the audio.
    pub start: f64,
    /// End in seconds from the beginning of the audio.
    pub end: f64,
    /// The speaker's label, `SPEAKER_00`, `SPEAKER_01`, ... in order of
    /// first appearance.
    pub speaker: String,
}

/// Speaker turns of one audio file; turns of different speakers overlap
/// where they talk at once.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diarization {
    /// The turns ordered by start.
    pub turns: Vec<SpeakerTurn>,
    /// Name of the models that produced the turns.
    #[serde(default)]
    pub model: String,
}

/// One speaker of a transcript and how long they talk.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeakerSummary {
    /// The speaker's label, as on segments and words.
    pub speaker: String,
    /// Seconds covered by the speaker's turns.
    pub speaking_seconds: f64,
}

/// The label of the `index`-th speaker (from 0), as pyannote writes it.
pub fn speaker_label(index: usize) -> String {
    format!("SPEAKER_{index:02}")
}
