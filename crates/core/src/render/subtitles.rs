//! SubRip and WebVTT subtitles.

use super::{one_line, spoken, timestamp};
use crate::transcript::{Segment, Transcript};

/// The segment's speaker on one line, if it has a non-blank one.
fn speaker_label(s: &Segment) -> Option<String> {
    s.speaker
        .as_deref()
        .map(one_line)
        .filter(|label| !label.is_empty())
}

pub(super) fn render_srt(t: &Transcript) -> String {
    let mut out = String::new();
    for (n, (s, text)) in spoken(t).enumerate() {
        // SubRip has no voice markup; the speaker goes before the text in
        // brackets, as WhisperX writes it.
        let text = match speaker_label(s) {
            Some(label) => format!("[{label}] {text}"),
            None => text,
        };
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
/// `>` as well removes every `-->`. The same escaping makes a voice span's
/// annotation safe (it ends at the first `>`).
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

pub(super) fn render_vtt(t: &Transcript) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for (s, text) in spoken(t) {
        // The speaker as a voice span, which covers the whole cue and so
        // needs no end tag.
        let voice = speaker_label(s)
            .map(|label| format!("<v {}>", vtt_escape(&label)))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} --> {}\n{voice}{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            vtt_escape(&text)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::two_speakers;
    use crate::render::{render, OutputFormat};

    #[test]
    fn srt_cues_start_with_the_speaker() {
        let srt = render(&two_speakers(), OutputFormat::Srt);
        assert!(
            srt.starts_with(
                "1\n00:00:01,000 --> 00:00:03,500\n[SPEAKER_00] Hello there.\n\n\
                 2\n00:00:03,500 --> 00:00:04,000\n[SPEAKER_00] How are you?\n\n\
                 3\n00:00:04,000 --> 00:00:05,000\n[SPEAKER_01] General Kenobi!\n\n"
            ),
            "{srt}"
        );
    }

    #[test]
    fn vtt_cues_are_voice_spans() {
        let vtt = render(&two_speakers(), OutputFormat::Vtt);
        assert!(
            vtt.starts_with(
                "WEBVTT\n\n\
                 00:00:01.000 --> 00:00:03.500\n<v SPEAKER_00>Hello there.\n\n\
                 00:00:03.500 --> 00:00:04.000\n<v SPEAKER_00>How are you?\n\n\
                 00:00:04.000 --> 00:00:05.000\n<v SPEAKER_01>General Kenobi!\n\n"
            ),
            "{vtt}"
        );
    }

    #[test]
    fn speaker_labels_cannot_break_subtitles() {
        let mut t = two_speakers();
        t.segments.truncate(2);
        t.segments[0].speaker = Some("A --> <b>&\n\nB".to_string());
        t.segments[1].speaker = Some("  ".to_string());
        assert_eq!(
            render(&t, OutputFormat::Srt),
            "1\n00:00:01,000 --> 00:00:03,500\n[A -> <b>& B] Hello there.\n\n\
             2\n00:00:03,500 --> 00:00:04,000\nHow are you?\n\n"
        );
        assert_eq!(
            render(&t, OutputFormat::Vtt),
            "WEBVTT\n\n\
             00:00:01.000 --> 00:00:03.500\n<v A --&gt; &lt;b&gt;&amp; B>Hello there.\n\n\
             00:00:03.500 --> 00:00:04.000\nHow are you?\n\n"
        );
    }
}
