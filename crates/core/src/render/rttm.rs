//! NIST RTTM: one `SPEAKER` line per speaker turn.

use crate::speakers::SpeakerTurn;
use crate::transcript::Transcript;

/// The recording's name in rttm rendered by [`super::render`], which does not
/// know the file's name.
pub const DEFAULT_RTTM_URI: &str = "audio";

/// The transcript's speaker turns as RTTM, the recording named `uri`: each
/// run of consecutive segments of one speaker is one turn, from the run's
/// earliest start to its latest end (a segment without a speaker ends the
/// run). Empty when no segment has a speaker.
pub fn render_rttm(t: &Transcript, uri: &str) -> String {
    let mut turns: Vec<SpeakerTurn> = Vec::new();
    let mut open = false;
    for s in &t.segments {
        let Some(speaker) = &s.speaker else {
            open = false;
            continue;
        };
        if !(s.start.is_finite() && s.end.is_finite()) {
            continue;
        }
        match turns.last_mut() {
            Some(turn) if open && turn.speaker == *speaker => {
                turn.start = turn.start.min(s.start);
                turn.end = turn.end.max(s.end);
            }
            _ => turns.push(SpeakerTurn {
                start: s.start,
                end: s.end,
                speaker: speaker.clone(),
            }),
        }
        open = true;
    }
    render_turns_rttm(&turns, uri)
}

/// Speaker turns (a diarization's, as they are) as RTTM, the recording named
/// `uri`: `SPEAKER <uri> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>`
/// with times in seconds to the millisecond. Whitespace in `uri` or a label
/// becomes `_` (fields are space-separated); an empty `uri` becomes
/// [`DEFAULT_RTTM_URI`]. Turns without a positive, finite length are left
/// out, and negative times start at 0.
pub fn render_turns_rttm(turns: &[SpeakerTurn], uri: &str) -> String {
    let uri = field(uri, DEFAULT_RTTM_URI);
    let mut out = String::new();
    for turn in turns {
        if !(turn.start.is_finite() && turn.end.is_finite()) {
            continue;
        }
        let start = turn.start.max(0.0);
        let duration = turn.end - start;
        if duration <= 0.0 {
            continue;
        }
        out.push_str(&format!(
            "SPEAKER {uri} 1 {start:.3} {duration:.3} <NA> <NA> {} <NA> <NA>\n",
            field(&turn.speaker, "<NA>")
        ));
    }
    out
}

/// One whitespace-free RTTM field.
fn field(value: &str, empty: &str) -> String {
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.is_empty() {
        empty.to_string()
    } else {
        parts.join("_")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{segment, transcript, two_speakers};
    use super::*;
    use crate::render::{render, OutputFormat};

    #[test]
    fn rttm_merges_consecutive_segments_of_one_speaker() {
        assert_eq!(
            render(&two_speakers(), OutputFormat::Rttm),
            "SPEAKER audio 1 1.000 3.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n\
             SPEAKER audio 1 4.000 1.000 <NA> <NA> SPEAKER_01 <NA> <NA>\n\
             SPEAKER audio 1 5.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        );
        assert!(render_rttm(&two_speakers(), "my talk.wav")
            .starts_with("SPEAKER my_talk.wav 1 1.000 3.000 "));
    }

    #[test]
    fn rttm_of_a_transcript_without_speakers_is_empty() {
        let t = transcript(vec![segment(0, 0.0, 1.0, " Hi")]);
        assert_eq!(render(&t, OutputFormat::Rttm), "");
        assert_eq!(render(&transcript(Vec::new()), OutputFormat::Rttm), "");
    }

    #[test]
    fn rttm_turns_are_cut_by_unlabelled_segments() {
        let mut t = transcript(vec![
            segment(0, 0.0, 1.0, " a"),
            segment(1, 1.0, 2.0, " b"),
            segment(2, 2.0, 3.5, " c"),
        ]);
        t.segments[0].speaker = Some("SPEAKER_00".to_string());
        t.segments[2].speaker = Some("SPEAKER_00".to_string());
        assert_eq!(
            render_rttm(&t, ""),
            "SPEAKER audio 1 0.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n\
             SPEAKER audio 1 2.000 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        );
    }

    #[test]
    fn rttm_of_turns_keeps_overlaps_and_skips_empty_turns() {
        let turn = |start: f64, end: f64, speaker: &str| SpeakerTurn {
            start,
            end,
            speaker: speaker.to_string(),
        };
        let turns = [
            turn(-0.5, 2.0, "SPEAKER_00"),
            turn(1.5, 2.25, "SPEAKER 01"),
            turn(3.0, 3.0, "SPEAKER_00"),
            turn(f64::NAN, 4.0, "SPEAKER_00"),
            turn(4.0, 4.25, ""),
        ];
        assert_eq!(
            render_turns_rttm(&turns, "meeting"),
            "SPEAKER meeting 1 0.000 2.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n\
             SPEAKER meeting 1 1.500 0.750 <NA> <NA> SPEAKER_01 <NA> <NA>\n\
             SPEAKER meeting 1 4.000 0.250 <NA> <NA> <NA> <NA> <NA>\n"
        );
    }
}
