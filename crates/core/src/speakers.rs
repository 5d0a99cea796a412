//! Who spoke when: the result of a diarization job, as stored and merged
//! into transcripts.

use serde::{Deserialize, Serialize};

use crate::transcript::{Segment, Transcript, Word};

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

/// Labels the transcript's words and segments with the diarization's
/// speakers, WhisperX's way, and fills [`Transcript::speakers`].
///
/// - A word gets the speaker whose turns overlap it most in time; on a tie
///   the speaker who appears first in the diarization wins. A word that no
///   turn overlaps gets no speaker (WhisperX's `fill_nearest` is off by
///   default, and so it is here).
/// - A segment gets the speaker whose turns overlap it most, by the same
///   rule; a segment without words is labelled as a whole. A segment that
///   no turn overlaps (Whisper's timestamps can drift off the speech) gets
///   the speaker of the nearest turn, so that every line of a transcript
///   names someone.
/// - A segment whose words belong to more than one speaker is split at the
///   word boundaries where the speaker changes: consecutive words of one
///   speaker make one segment, whose times come from its first and last word,
///   whose text is its words joined and whose speaker is theirs. A word
///   without a speaker stays with the words before it (the first words of a
///   segment, with the words after them). The other fields are copied and the
///   segment ids renumbered from 0.
/// - [`Transcript::speakers`] lists every speaker of the diarization in label
///   order with the length of the union of their turns.
///
/// Labels from an earlier assignment are replaced. An empty diarization (no
/// turn with a positive, finite length) leaves the transcript unchanged.
pub fn assign_speakers(transcript: &mut Transcript, diarization: &Diarization) {
    let speakers = SpeakerSpans::new(&diarization.turns);
    if speakers.is_empty() {
        return;
    }
    let segments = std::mem::take(&mut transcript.segments);
    let mut assigned = Vec::with_capacity(segments.len());
    for mut segment in segments {
        for word in &mut segment.words {
            word.speaker = speakers.best(word.start, word.end).map(str::to_string);
        }
        let runs = speaker_runs(&segment.words);
        if runs.len() < 2 {
            segment.speaker = speakers
                .best(segment.start, segment.end)
                .or_else(|| speakers.nearest(segment.start, segment.end))
                .map(str::to_string);
            assigned.push(segment);
        } else {
            assigned.extend(split_segment(segment, &runs));
        }
    }
    for (id, segment) in assigned.iter_mut().enumerate() {
        segment.id = u32::try_from(id).unwrap_or(u32::MAX);
    }
    transcript.segments = assigned;
    transcript.speakers = speakers.summaries();
}

/// Each speaker's turns merged into disjoint, sorted intervals, in order of
/// the speaker's first turn.
struct SpeakerSpans {
    speakers: Vec<(String, Vec<(f64, f64)>)>,
}

impl SpeakerSpans {
    fn new(turns: &[SpeakerTurn]) -> Self {
        let mut valid: Vec<&SpeakerTurn> = turns
            .iter()
            .filter(|t| t.start.is_finite() && t.end.is_finite() && t.end > t.start)
            .collect();
        // Stable: turns starting together keep the diarization's order.
        valid.sort_by(|a, b| a.start.total_cmp(&b.start));
        let mut speakers: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for turn in valid {
            let spans = match speakers.iter_mut().find(|(s, _)| *s == turn.speaker) {
                Some((_, spans)) => spans,
                None => {
                    speakers.push((turn.speaker.clone(), Vec::new()));
                    &mut speakers.last_mut().expect("just pushed").1
                }
            };
            // Turns arrive sorted by start, so merging with the last span
            // keeps the spans disjoint and sorted.
            match spans.last_mut() {
                Some((_, end)) if turn.start <= *end => *end = end.max(turn.end),
                _ => spans.push((turn.start, turn.end)),
            }
        }
        SpeakerSpans { speakers }
    }

    fn is_empty(&self) -> bool {
        self.speakers.is_empty()
    }

    /// The speaker who overlaps `start..end` most, the first to appear on a
    /// tie; for an instant (`end <= start`), the first whose turn contains it.
    fn best(&self, start: f64, end: f64) -> Option<&str> {
        if !start.is_finite() || !end.is_finite() {
            return None;
        }
        if end <= start {
            return self
                .speakers
                .iter()
                .find(|(_, spans)| spans.iter().any(|&(s, e)| s <= start && start <= e))
                .map(|(speaker, _)| speaker.as_str());
        }
        let mut best: Option<(&str, f64)> = None;
        for (speaker, spans) in &self.speakers {
            let overlap: f64 = spans
                .iter()
                .map(|&(s, e)| (e.min(end) - s.max(start)).max(0.0))
                .sum();
            if overlap > 0.0 && best.is_none_or(|(_, most)| overlap > most) {
                best = Some((speaker, overlap));
            }
        }
        best.map(|(speaker, _)| speaker)
    }

    /// The speaker whose turn comes closest to `start..end`.
    fn nearest(&self, start: f64, end: f64) -> Option<&str> {
        if !start.is_finite() || !end.is_finite() {
            return None;
        }
        let mut best: Option<(&str, f64)> = None;
        for (speaker, spans) in &self.speakers {
            for &(s, e) in spans {
                let gap = (s - end).max(start - e).max(0.0);
                if best.is_none_or(|(_, closest)| gap < closest) {
                    best = Some((speaker, gap));
                }
            }
        }
        best.map(|(speaker, _)| speaker)
    }

    fn summaries(&self) -> Vec<SpeakerSummary> {
        let mut out: Vec<SpeakerSummary> = self
            .speakers
            .iter()
            .map(|(speaker, spans)| SpeakerSummary {
                speaker: speaker.clone(),
                speaking_seconds: spans.iter().map(|(s, e)| e - s).sum(),
            })
            .collect();
        out.sort_by(|a, b| label_key(&a.speaker).cmp(&label_key(&b.speaker)));
        out
    }
}

/// Sorts `SPEAKER_2` before `SPEAKER_10`: the label's text before its
/// trailing digits, then the digits as a number, then the label itself.
fn label_key(label: &str) -> (&str, u128, &str) {
    let stem = label.trim_end_matches(|c: char| c.is_ascii_digit());
    let number = label[stem.len()..].parse().unwrap_or(0);
    (stem, number, label)
}

/// Word index ranges of consecutive words of one speaker; words without a
/// speaker join the run before them (or, before any speaker, the first run).
/// Empty when no word has a speaker.
fn speaker_runs(words: &[Word]) -> Vec<(std::ops::Range<usize>, String)> {
    let mut runs: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        match (&word.speaker, runs.last_mut()) {
            (Some(speaker), Some((range, current))) if speaker != current => {
                let start = range.end;
                runs.push((start..i + 1, speaker.clone()));
            }
            (_, Some((range, _))) => range.end = i + 1,
            (Some(speaker), None) => runs.push((0..i + 1, speaker.clone())),
            (None, None) => {}
        }
    }
    if let Some((range, _)) = runs.last_mut() {
        range.end = words.len();
    }
    runs
}

/// One segment per run of words, as [`assign_speakers`] describes.
fn split_segment(segment: Segment, runs: &[(std::ops::Range<usize>, String)]) -> Vec<Segment> {
    // Engines write words either with their leading space (whisper) or
    // without any (some APIs); in the second case the words are joined with
    // spaces when the segment's text has any.
    let spaced = !segment
        .words
        .iter()
        .any(|w| w.word.starts_with(char::is_whitespace))
        && segment.text.trim().contains(char::is_whitespace);
    let leading = if segment.text.starts_with(char::is_whitespace) {
        " "
    } else {
        ""
    };
    runs.iter()
        .map(|(range, speaker)| {
            let words = segment.words[range.clone()].to_vec();
            let text = if spaced {
                let joined: Vec<&str> = words.iter().map(|w| w.word.trim()).collect();
                format!("{leading}{}", joined.join(" "))
            } else {
                words.iter().map(|w| w.word.as_str()).collect()
            };
            Segment {
                id: segment.id,
                start: words.first().map_or(segment.start, |w| w.start),
                end: words.last().map_or(segment.end, |w| w.end),
                text,
                avg_logprob: segment.avg_logprob,
                no_speech_prob: segment.no_speech_prob,
                compression_ratio: segment.compression_ratio,
                temperature: segment.temperature,
                words,
                speaker: Some(speaker.clone()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(start: f64, end: f64, speaker: &str) -> SpeakerTurn {
        SpeakerTurn {
            start,
            end,
            speaker: speaker.to_string(),
        }
    }

    fn diarization(turns: Vec<SpeakerTurn>) -> Diarization {
        Diarization {
            turns,
            model: "test".to_string(),
        }
    }

    fn word(start: f64, end: f64, text: &str) -> Word {
        Word {
            start,
            end,
            word: text.to_string(),
            probability: 0.9,
            speaker: None,
        }
    }

    fn segment(id: u32, start: f64, end: f64, text: &str, words: Vec<Word>) -> Segment {
        Segment {
            id,
            start,
            end,
            text: text.to_string(),
            avg_logprob: -0.3,
            no_speech_prob: 0.1,
            compression_ratio: 1.4,
            temperature: 0.2,
            words,
            speaker: None,
        }
    }

    fn transcript(segments: Vec<Segment>) -> Transcript {
        Transcript {
            language: "en".to_string(),
            language_probability: 1.0,
            duration: 20.0,
            model: "tiny.en".to_string(),
            segments,
            speakers: Vec::new(),
        }
    }

    fn speakers_of(t: &Transcript) -> Vec<Option<&str>> {
        t.segments.iter().map(|s| s.speaker.as_deref()).collect()
    }

    #[test]
    fn labels_are_zero_padded() {
        assert_eq!(speaker_label(0), "SPEAKER_00");
        assert_eq!(speaker_label(7), "SPEAKER_07");
        assert_eq!(speaker_label(123), "SPEAKER_123");
    }

    #[test]
    fn segments_without_words_get_the_speaker_who_overlaps_most_or_is_nearest() {
        let mut t = transcript(vec![
            segment(0, 0.0, 4.0, " one", Vec::new()),
            segment(1, 4.0, 10.0, " two", Vec::new()),
            segment(2, 12.0, 13.0, " three", Vec::new()),
        ]);
        // Segment 1 overlaps A for 1 s and B for 5 s, in two turns of B;
        // segment 2 overlaps no turn, and B's last one is nearest.
        let d = diarization(vec![
            turn(0.0, 5.0, "SPEAKER_00"),
            turn(5.0, 7.0, "SPEAKER_01"),
            turn(7.0, 8.0, "SPEAKER_00"),
            turn(8.0, 11.0, "SPEAKER_01"),
        ]);
        assign_speakers(&mut t, &d);
        assert_eq!(
            speakers_of(&t),
            [Some("SPEAKER_00"), Some("SPEAKER_01"), Some("SPEAKER_01")],
            "{t:#?}"
        );
        // Unsplit segments keep their ids, times and text.
        assert_eq!(t.segments.len(), 3);
        assert_eq!(t.segments[1].text, " two");
        assert_eq!((t.segments[1].start, t.segments[1].end), (4.0, 10.0));
    }

    #[test]
    fn ties_go_to_the_speaker_who_appears_first() {
        let mut t = transcript(vec![segment(0, 1.0, 3.0, " hi", Vec::new())]);
        let d = diarization(vec![
            turn(0.0, 2.0, "SPEAKER_00"),
            turn(2.0, 4.0, "SPEAKER_01"),
        ]);
        assign_speakers(&mut t, &d);
        assert_eq!(speakers_of(&t), [Some("SPEAKER_00")]);
        // First appearance is by time, not by label.
        let mut t = transcript(vec![segment(0, 1.0, 3.0, " hi", Vec::new())]);
        let d = diarization(vec![
            turn(2.0, 4.0, "SPEAKER_00"),
            turn(0.0, 2.0, "SPEAKER_01"),
        ]);
        assign_speakers(&mut t, &d);
        assert_eq!(speakers_of(&t), [Some("SPEAKER_01")]);
    }

    #[test]
    fn a_segment_across_a_turn_change_is_split_at_word_boundaries() {
        let words = vec![
            word(0.0, 0.5, " Hello"),
            word(0.5, 1.0, " there."),
            word(1.2, 1.6, " General"),
            word(1.6, 2.4, " Kenobi!"),
        ];
        let mut t = transcript(vec![
            segment(0, 0.0, 0.0, " Before.", Vec::new()),
            segment(1, 0.0, 2.5, " Hello there. General Kenobi!", words),
            segment(2, 2.5, 3.0, " After.", Vec::new()),
        ]);
        let d = diarization(vec![
            turn(0.0, 1.1, "SPEAKER_00"),
            turn(1.1, 3.0, "SPEAKER_01"),
        ]);
        assign_speakers(&mut t, &d);
        assert_eq!(t.segments.len(), 4, "{t:#?}");
        let ids: Vec<u32> = t.segments.iter().map(|s| s.id).collect();
        assert_eq!(ids, [0, 1, 2, 3]);
        let first = &t.segments[1];
        let second = &t.segments[2];
        assert_eq!(first.text, " Hello there.");
        assert_eq!(second.text, " General Kenobi!");
        assert_eq!((first.start, first.end), (0.0, 1.0));
        assert_eq!((second.start, second.end), (1.2, 2.4));
        assert_eq!(first.speaker.as_deref(), Some("SPEAKER_00"));
        assert_eq!(second.speaker.as_deref(), Some("SPEAKER_01"));
        assert_eq!(first.words.len(), 2);
        assert_eq!(second.words.len(), 2);
        assert!(second
            .words
            .iter()
            .all(|w| w.speaker.as_deref() == Some("SPEAKER_01")));
        // The decoder's statistics are copied to both halves.
        assert_eq!(second.avg_logprob, -0.3);
        assert_eq!(second.temperature, 0.2);
        // A zero-length segment takes the speaker of the turn it lies in.
        assert_eq!(t.segments[0].speaker.as_deref(), Some("SPEAKER_00"));
        assert_eq!(t.segments[3].speaker.as_deref(), Some("SPEAKER_01"));
        assert_eq!(t.text(), "Before. Hello there. General Kenobi! After.");
    }

    #[test]
    fn words_without_leading_spaces_are_joined_with_spaces() {
        let words = vec![
            word(0.0, 0.5, "Hello"),
            word(0.5, 1.0, "there."),
            word(1.2, 1.6, "Hi!"),
        ];
        let mut t = transcript(vec![segment(0, 0.0, 2.0, " Hello there. Hi!", words)]);
        let d = diarization(vec![turn(0.0, 1.1, "A"), turn(1.1, 2.0, "B")]);
        assign_speakers(&mut t, &d);
        let texts: Vec<&str> = t.segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, [" Hello there.", " Hi!"]);
    }

    #[test]
    fn words_without_a_turn_stay_with_their_neighbours() {
        let words = vec![
            word(0.0, 0.4, " um"),
            word(1.0, 1.5, " yes"),
            word(1.6, 1.7, " uh"),
            word(3.0, 3.5, " no"),
        ];
        let mut t = transcript(vec![segment(0, 0.0, 4.0, " um yes uh no", words)]);
        let d = diarization(vec![
            turn(1.0, 1.5, "SPEAKER_00"),
            turn(3.0, 3.5, "SPEAKER_01"),
        ]);
        assign_speakers(&mut t, &d);
        let texts: Vec<&str> = t.segments.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, [" um yes uh", " no"]);
        assert_eq!(speakers_of(&t), [Some("SPEAKER_00"), Some("SPEAKER_01")]);
        let words: Vec<Option<&str>> = t.segments[0]
            .words
            .iter()
            .map(|w| w.speaker.as_deref())
            .collect();
        assert_eq!(words, [None, Some("SPEAKER_00"), None]);
    }

    #[test]
    fn a_segment_of_one_speaker_keeps_its_words_together() {
        let words = vec![word(0.0, 0.5, " a"), word(0.5, 1.0, " b")];
        let mut t = transcript(vec![segment(0, 0.0, 1.0, " a b", words)]);
        let d = diarization(vec![turn(0.0, 5.0, "SPEAKER_00")]);
        assign_speakers(&mut t, &d);
        assert_eq!(t.segments.len(), 1);
        assert_eq!(t.segments[0].text, " a b");
        assert_eq!(speakers_of(&t), [Some("SPEAKER_00")]);
    }

    #[test]
    fn speakers_list_the_union_of_turns_in_label_order() {
        let mut t = transcript(vec![segment(0, 0.0, 1.0, " a", Vec::new())]);
        let d = diarization(vec![
            turn(0.0, 2.0, "SPEAKER_10"),
            turn(1.0, 3.0, "SPEAKER_10"),
            turn(2.0, 4.0, "SPEAKER_02"),
            turn(5.0, 6.5, "SPEAKER_02"),
            turn(7.0, 7.0, "SPEAKER_03"),
        ]);
        assign_speakers(&mut t, &d);
        assert_eq!(
            t.speakers,
            vec![
                SpeakerSummary {
                    speaker: "SPEAKER_02".to_string(),
                    speaking_seconds: 3.5,
                },
                SpeakerSummary {
                    speaker: "SPEAKER_10".to_string(),
                    speaking_seconds: 3.0,
                },
            ]
        );
    }

    #[test]
    fn an_empty_diarization_changes_nothing() {
        let mut labelled = transcript(vec![segment(0, 0.0, 1.0, " a", vec![word(0.0, 1.0, " a")])]);
        labelled.segments[0].speaker = Some("X".to_string());
        let before = labelled.clone();
        assign_speakers(&mut labelled, &diarization(Vec::new()));
        assert_eq!(labelled, before);
        assign_speakers(&mut labelled, &diarization(vec![turn(2.0, 1.0, "B")]));
        assert_eq!(labelled, before);
    }

    #[test]
    fn a_new_assignment_replaces_old_labels() {
        let mut t = transcript(vec![segment(0, 0.0, 1.0, " a", Vec::new())]);
        t.segments[0].speaker = Some("OLD".to_string());
        assign_speakers(&mut t, &diarization(vec![turn(5.0, 6.0, "SPEAKER_00")]));
        assert_eq!(speakers_of(&t), [Some("SPEAKER_00")]);
        assert_eq!(t.speakers.len(), 1);
    }

    #[test]
    fn transcripts_stored_before_diarization_still_load() {
        let old = r#"{"language":"en","language_probability":1.0,"duration":2.0,
            "model":"tiny.en","segments":[{"id":0,"start":0.0,"end":1.0,"text":" Hi",
            "avg_logprob":-0.25,"no_speech_prob":0.5,"compression_ratio":1.0,
            "temperature":0.0,"words":[{"start":0.0,"end":1.0,"word":" Hi",
            "probability":0.5}]}]}"#;
        let t: Transcript = serde_json::from_str(old).expect("old transcript");
        assert_eq!(t.segments[0].speaker, None);
        assert_eq!(t.segments[0].words[0].speaker, None);
        assert!(t.speakers.is_empty());
        assert!(!t.has_speakers());
        // And they serialize as before: no speaker fields at all.
        let again = serde_json::to_value(&t).expect("serializes");
        let expected: serde_json::Value = serde_json::from_str(old).expect("valid");
        assert_eq!(again, expected);
    }

    #[test]
    fn speaker_fields_round_trip() {
        let mut t = transcript(vec![segment(0, 0.0, 1.0, " a", vec![word(0.0, 1.0, " a")])]);
        assign_speakers(&mut t, &diarization(vec![turn(0.0, 1.0, "SPEAKER_00")]));
        let json = serde_json::to_value(&t).expect("serializes");
        assert_eq!(json["segments"][0]["speaker"], "SPEAKER_00");
        assert_eq!(json["segments"][0]["words"][0]["speaker"], "SPEAKER_00");
        assert_eq!(
            json["speakers"],
            serde_json::json!([{"speaker": "SPEAKER_00", "speaking_seconds": 1.0}])
        );
        let back: Transcript = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, t);
    }
}
