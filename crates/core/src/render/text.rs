//! Plain text and tab-separated outputs.

use super::{millis, one_line, spoken};
use crate::transcript::Transcript;

/// One trimmed segment per line; for a diarized transcript, one paragraph per
/// speaker turn instead (consecutive segments of one speaker on one line,
/// after `SPEAKER_00: `), paragraphs separated by a blank line.
pub(super) fn render_txt(t: &Transcript) -> String {
    let mut out = String::new();
    if !t.has_speakers() {
        for (_, text) in spoken(t) {
            out.push_str(&text);
            out.push('\n');
        }
        return out;
    }
    let mut current: Option<(Option<&str>, Vec<String>)> = None;
    let mut paragraphs: Vec<(Option<&str>, Vec<String>)> = Vec::new();
    for (s, text) in spoken(t) {
        let speaker = s.speaker.as_deref();
        match &mut current {
            Some((who, texts)) if *who == speaker => texts.push(text),
            _ => {
                paragraphs.extend(current.take());
                current = Some((speaker, vec![text]));
            }
        }
    }
    paragraphs.extend(current);
    for (i, (speaker, texts)) in paragraphs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        // A segment no turn overlaps has no speaker to name.
        match speaker.map(one_line).filter(|label| !label.is_empty()) {
            Some(label) => out.push_str(&format!("{label}: {}\n", texts.join(" "))),
            None => out.push_str(&format!("{}\n", texts.join(" "))),
        }
    }
    out
}

/// `start`, `end` (integer milliseconds) and `text`, with a `speaker` column
/// before `text` when the transcript has speakers (empty for a segment
/// without one).
pub(super) fn render_tsv(t: &Transcript) -> String {
    if !t.has_speakers() {
        let mut out = String::from("start\tend\ttext\n");
        for (s, text) in spoken(t) {
            out.push_str(&format!(
                "{}\t{}\t{}\n",
                millis(s.start),
                millis(s.end),
                text
            ));
        }
        return out;
    }
    let mut out = String::from("start\tend\tspeaker\ttext\n");
    for (s, text) in spoken(t) {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            millis(s.start),
            millis(s.end),
            s.speaker.as_deref().map(one_line).unwrap_or_default(),
            text
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{segment, transcript, two_speakers};
    use crate::render::{render, OutputFormat};

    #[test]
    fn txt_has_one_paragraph_per_speaker_turn() {
        assert_eq!(
            render(&two_speakers(), OutputFormat::Txt),
            "SPEAKER_00: Hello there. How are you?\n\n\
             SPEAKER_01: General Kenobi!\n\n\
             SPEAKER_00: You are a bold one.\n"
        );
    }

    #[test]
    fn txt_paragraphs_without_a_speaker_have_no_label() {
        let mut t = transcript(vec![
            segment(0, 0.0, 1.0, " Hi."),
            segment(1, 1.0, 2.0, " Noise."),
            segment(2, 2.0, 3.0, "   "),
            segment(3, 3.0, 4.0, " Bye."),
        ]);
        t.segments[0].speaker = Some("SPEAKER_00".to_string());
        t.segments[2].speaker = Some("SPEAKER_01".to_string());
        t.segments[3].speaker = Some("SPEAKER_01\nX".to_string());
        assert_eq!(
            render(&t, OutputFormat::Txt),
            "SPEAKER_00: Hi.\n\nNoise.\n\nSPEAKER_01 X: Bye.\n"
        );
    }

    #[test]
    fn tsv_has_a_speaker_column_only_with_speakers() {
        assert_eq!(
            render(&two_speakers(), OutputFormat::Tsv),
            "start\tend\tspeaker\ttext\n\
             1000\t3500\tSPEAKER_00\tHello there.\n\
             3500\t4000\tSPEAKER_00\tHow are you?\n\
             4000\t5000\tSPEAKER_01\tGeneral Kenobi!\n\
             5000\t6000\tSPEAKER_00\tYou are a bold one.\n"
        );
        let mut t = two_speakers();
        t.segments[1].speaker = None;
        t.segments[2].speaker = Some("A\tB".to_string());
        let tsv = render(&t, OutputFormat::Tsv);
        let lines: Vec<&str> = tsv.lines().collect();
        assert_eq!(lines[2], "3500\t4000\t\tHow are you?");
        assert_eq!(lines[3], "4000\t5000\tA B\tGeneral Kenobi!");
    }
}
