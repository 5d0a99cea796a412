//! Word error rate, for tests and benchmarks.
//!
//! Both texts are normalized the way a person reading them would not care
//! about: case, punctuation, hyphens and apostrophes ("don't" = "dont"), and
//! numbers written as digits or as words ("42" = "forty two", "1st" = "first").

/// Word-level edit distance between `reference` and `hypothesis`, divided by
/// the number of reference words (0 when both are empty, 1 per inserted word
/// when only the reference is empty).
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    let r = normalize(reference);
    let h = normalize(hypothesis);
    let distance = edit_distance(&r, &h);
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { h.len() as f64 };
    }
    distance as f64 / r.len() as f64
}

/// The words of `text` after normalization, as [`word_error_rate`] compares them.
pub fn normalize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let lowered = text.to_lowercase();
    // Hyphens and dashes separate words; apostrophes do not.
    let spaced: String = lowered
        .chars()
        .map(|c| match c {
            '-' | '–' | '—' | '/' => ' ',
            _ => c,
        })
        .collect();
    for raw in spaced.split_whitespace() {
        let cleaned: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '.' || *c == ',')
            .collect();
        // Keep the decimal point and thousands separator inside numbers only.
        let trimmed = cleaned.trim_matches(|c| c == '.' || c == ',');
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            number_words(trimmed, &mut words);
        } else {
            for part in trimmed.split(['.', ',']) {
                if !part.is_empty() {
                    words.push(part.to_string());
                }
            }
        }
    }
    words
}

const ONES: [&str; 20] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [&str; 10] = [
    "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
];

/// Spells out a token that starts with a digit: "1,200" → one thousand two
/// hundred, "3.5" → three point five, "21st" → twenty first, "1990s" →
/// nineteen nineties is not attempted (digits stay grouped as spoken numbers).
fn number_words(token: &str, out: &mut Vec<String>) {
    let digits_end = token
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.'))
        .unwrap_or(token.len());
    let (number, suffix) = token.split_at(digits_end);
    let (integer, fraction) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    let integer: String = integer.chars().filter(|c| c.is_ascii_digit()).collect();
    let start = out.len();
    match integer.parse::<u64>() {
        Ok(n) if integer.len() <= 15 => spell(n, out),
        _ => out.extend(
            integer
                .chars()
                .map(|d| ONES[(d as u8 - b'0') as usize].to_string()),
        ),
    }
    if let Some(fraction) = fraction.filter(|f| !f.is_empty()) {
        out.push("point".to_string());
        out.extend(
            fraction
                .chars()
                .filter(|c| c.is_ascii_digit())
                .map(|d| ONES[(d as u8 - b'0') as usize].to_string()),
        );
    }
    match suffix {
        "st" | "nd" | "rd" | "th" if out.len() > start => {
            if let Some(last) = out.last_mut() {
                *last = ordinal(last);
            }
        }
        "" => {}
        other => out.push(other.to_string()),
    }
}

fn spell(n: u64, out: &mut Vec<String>) {
    if n < 20 {
        out.push(ONES[n as usize].to_string());
        return;
    }
    if n < 100 {
        out.push(TENS[(n / 10) as usize].to_string());
        if !n.is_multiple_of(10) {
            out.push(ONES[(n % 10) as usize].to_string());
        }
        return;
    }
    if n < 1000 {
        out.push(ONES[(n / 100) as usize].to_string());
        out.push("hundred".to_string());
        if !n.is_multiple_of(100) {
            spell(n % 100, out);
        }
        return;
    }
    for (scale, name) in [
        (1_000_000_000_000u64, "trillion"),
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
    ] {
        if n >= scale {
            spell(n / scale, out);
            out.push(name.to_string());
            if !n.is_multiple_of(scale) {
                spell(n % scale, out);
            }
            return;
        }
    }
}

fn ordinal(word: &str) -> String {
    match word {
        "one" => "first".into(),
        "two" => "second".into(),
        "three" => "third".into(),
        "five" => "fifth".into(),
        "eight" => "eighth".into(),
        "nine" => "ninth".into(),
        "twelve" => "twelfth".into(),
        w if w.ends_with('y') => format!("{}ieth", &w[..w.len() - 1]),
        w => format!("{w}th"),
    }
}

fn edit_distance(a: &[String], b: &[String]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, wa) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, wb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(wa != wb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_texts_have_no_errors() {
        assert_eq!(word_error_rate("Hello, World!", "hello world"), 0.0);
        assert_eq!(word_error_rate("", ""), 0.0);
    }

    #[test]
    fn counts_substitutions_insertions_and_deletions() {
        assert_eq!(word_error_rate("a b c d", "a x c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a b c d e"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a c d"), 0.25);
        assert_eq!(word_error_rate("a b", ""), 1.0);
        assert_eq!(word_error_rate("", "a b"), 2.0);
    }

    #[test]
    fn numbers_match_their_spelling() {
        assert_eq!(
            word_error_rate("It cost forty two dollars.", "It cost 42 dollars."),
            0.0
        );
        assert_eq!(
            word_error_rate("one thousand two hundred and five people", "1,205 people"),
            1.0 / 7.0
        );
        assert_eq!(word_error_rate("the twenty first day", "the 21st day"), 0.0);
        assert_eq!(word_error_rate("three point five", "3.5"), 0.0);
        assert_eq!(word_error_rate("nineteen", "19"), 0.0);
    }

    #[test]
    fn punctuation_hyphens_and_apostrophes() {
        assert_eq!(
            word_error_rate("Don't stop — well-known end.", "dont stop well known end"),
            0.0
        );
        assert_eq!(normalize("Mr. Smith's car."), vec!["mr", "smiths", "car"]);
    }
}
