//! Whisper's byte-level BPE tokenizer, read from a faster-whisper model
//! directory (vocabulary.txt and tokenizer.json) without the `tokenizers`
//! crate: decoding is a table lookup, and encoding is only needed for short
//! prompts and the suppressed-symbol list.

use std::collections::HashMap;
use std::path::Path;

use crate::options::Task;
use crate::AsrError;

/// A token id as the model numbers them.
pub type TokenId = u32;

/// Language codes Whisper knows, in the order of their tokens.
pub const LANGUAGE_CODES: &[&str] = &[
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar", "sv", "it",
    "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu", "ta", "no", "th", "ur",
    "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa", "lv", "bn", "sr", "az", "sl", "kn",
    "et", "mk", "br", "eu", "is", "hy", "ne", "mn", "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si",
    "km", "sn", "yo", "so", "af", "oc", "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo",
    "ht", "ps", "tk", "nn", "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln",
    "ha", "ba", "jw", "su", "yue",
];

/// Python's `string.punctuation`.
const ASCII_PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// Ids of the special tokens the decoder needs, found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `<|endoftext|>`; every id at or above it is special.
    pub eot: TokenId,
    /// `<|startoftranscript|>`.
    pub sot: TokenId,
    /// `<|translate|>`.
    pub translate: TokenId,
    /// `<|transcribe|>`.
    pub transcribe: TokenId,
    /// `<|startoflm|>`.
    pub sot_lm: TokenId,
    /// `<|startofprev|>`.
    pub sot_prev: TokenId,
    /// `<|nospeech|>`, or `<|nocaptions|>` in older vocabularies.
    pub no_speech: TokenId,
    /// `<|notimestamps|>`.
    pub no_timestamps: TokenId,
    /// `<|0.00|>`; timestamp `k` is `timestamp_begin + k` (0.02 s steps).
    pub timestamp_begin: TokenId,
}

/// The tokenizer of one Whisper model.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// Token strings by id, in GPT-2's byte-to-unicode alphabet.
    vocab: Vec<String>,
    ids: HashMap<String, TokenId>,
    merge_ranks: HashMap<(String, String), usize>,
    byte_encoder: [char; 256],
    byte_decoder: HashMap<char, u8>,
    special: SpecialTokens,
}

impl Tokenizer {
    /// Reads the vocabulary (`vocabulary.txt` or `vocabulary.json`) and
    /// `tokenizer.json` from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Self, AsrError> {
        let read = |name: &str| -> Result<String, AsrError> {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    AsrError::ModelNotFound {
                        path: path.clone(),
                        reason: format!("{name} is missing"),
                    }
                } else {
                    AsrError::InvalidModel {
                        path: path.clone(),
                        reason: format!("cannot read {name}: {e}"),
                    }
                }
            })
        };
        // Converted models ship vocabulary.txt (one token a line); newer
        // ones (large-v3) ship vocabulary.json (a JSON array) instead.
        let vocabulary =
            if dir.join("vocabulary.txt").is_file() || !dir.join("vocabulary.json").is_file() {
                read("vocabulary.txt")?
            } else {
                let json = read("vocabulary.json")?;
                let tokens: Vec<String> =
                    serde_json::from_str(&json).map_err(|e| AsrError::InvalidModel {
                        path: dir.join("vocabulary.json"),
                        reason: format!("not a JSON array of tokens: {e}"),
                    })?;
                tokens.join("\n")
            };
        let tokenizer_json = read("tokenizer.json")?;
        Self::from_parts(&vocabulary, &tokenizer_json).map_err(|reason| AsrError::InvalidModel {
            path: dir.to_path_buf(),
            reason,
        })
    }

    /// Builds a tokenizer from the text of `vocabulary.txt` and `tokenizer.json`.
    pub fn from_parts(vocabulary: &str, tokenizer_json: &str) -> Result<Self, String> {
        let vocab: Vec<String> = vocabulary.lines().map(str::to_string).collect();
        if vocab.is_empty() {
            return Err("vocabulary.txt is empty".to_string());
        }
        let mut ids = HashMap::with_capacity(vocab.len());
        for (id, token) in vocab.iter().enumerate() {
            let id = TokenId::try_from(id).map_err(|_| "vocabulary too large".to_string())?;
            // First occurrence wins, as CTranslate2's vocabulary lookup does.
            ids.entry(token.clone()).or_insert(id);
        }
        let json: serde_json::Value = serde_json::from_str(tokenizer_json)
            .map_err(|e| format!("tokenizer.json is not valid JSON: {e}"))?;
        let merges = json
            .pointer("/model/merges")
            .and_then(|m| m.as_array())
            .ok_or_else(|| "tokenizer.json has no model.merges".to_string())?;
        let mut merge_ranks = HashMap::with_capacity(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // Older files write a merge as "a b", newer ones as ["a", "b"].
            let pair = match merge {
                serde_json::Value::String(s) => s
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string())),
                serde_json::Value::Array(parts) => match parts.as_slice() {
                    [a, b] => a
                        .as_str()
                        .zip(b.as_str())
                        .map(|(a, b)| (a.into(), b.into())),
                    _ => None,
                },
                _ => None,
            };
            let pair = pair.ok_or_else(|| format!("malformed merge #{rank} in tokenizer.json"))?;
            merge_ranks.entry(pair).or_insert(rank);
        }
        // Special tokens may be missing from vocabulary.txt in hand-made
        // directories; tokenizer.json's added_tokens is the authority on them.
        if let Some(added) = json.get("added_tokens").and_then(|a| a.as_array()) {
            for token in added {
                let content = token.get("content").and_then(|c| c.as_str());
                let id = token
                    .get("id")
                    .and_then(|i| i.as_u64())
                    .and_then(|i| TokenId::try_from(i).ok());
                if let (Some(content), Some(id)) = (content, id) {
                    ids.entry(content.to_string()).or_insert(id);
                }
            }
        }
        let find = |name: &str| -> Result<TokenId, String> {
            ids.get(name)
                .copied()
                .ok_or_else(|| format!("the vocabulary lacks the special token {name}"))
        };
        let no_timestamps = find("<|notimestamps|>")?;
        let special = SpecialTokens {
            eot: find("<|endoftext|>")?,
            sot: find("<|startoftranscript|>")?,
            translate: find("<|translate|>")?,
            transcribe: find("<|transcribe|>")?,
            sot_lm: find("<|startoflm|>")?,
            sot_prev: find("<|startofprev|>")?,
            no_speech: find("<|nospeech|>").or_else(|_| find("<|nocaptions|>"))?,
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
        };
        let byte_encoder = bytes_to_unicode();
        let byte_decoder = byte_encoder
            .iter()
            .enumerate()
            .map(|(b, c)| (*c, b as u8))
            .collect();
        Ok(Self {
            vocab,
            ids,
            merge_ranks,
            byte_encoder,
            byte_decoder,
            special,
        })
    }

    /// The special token ids.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The token string of `id` as the model's vocabulary spells it.
    pub fn token(&self, id: TokenId) -> Option<&str> {
        self.vocab.get(id as usize).map(String::as_str)
    }

    /// The id of a token string.
    pub fn token_id(&self, token: &str) -> Option<TokenId> {
        self.ids.get(token).copied()
    }

    /// The id of `<|code|>` for a language code Whisper knows.
    pub fn language_token(&self, code: &str) -> Option<TokenId> {
        if !LANGUAGE_CODES.contains(&code) {
            return None;
        }
        self.token_id(&format!("<|{code}|>"))
    }

    /// Whether `id` is a timestamp token.
    pub fn is_timestamp(&self, id: TokenId) -> bool {
        id >= self.special.timestamp_begin
    }

    /// The start of every prompt: `<|startoftranscript|>`, then the language
    /// and task tokens, which only multilingual models take.
    pub fn sot_sequence(
        &self,
        multilingual: bool,
        language: &str,
        task: Task,
    ) -> Result<Vec<TokenId>, AsrError> {
        let mut sequence = vec![self.special.sot];
        if multilingual {
            let language_id = self.language_token(language).ok_or_else(|| {
                AsrError::InvalidOption(format!("unknown language code {language:?}"))
            })?;
            sequence.push(language_id);
            sequence.push(match task {
                Task::Transcribe => self.special.transcribe,
                Task::Translate => self.special.translate,
            });
        }
        Ok(sequence)
    }

    /// The bytes a text token stands for; special tokens stand for none.
    fn token_bytes(&self, id: TokenId, out: &mut Vec<u8>) {
        if id >= self.special.eot {
            return;
        }
        if let Some(token) = self.vocab.get(id as usize) {
            out.extend(token.chars().filter_map(|c| self.byte_decoder.get(&c)));
        }
    }

    /// The text of `tokens`; special and timestamp tokens are dropped, so no
    /// `<|...|>` marker can reach a transcript.
    pub fn decode(&self, tokens: &[TokenId]) -> String {
        let mut bytes = Vec::new();
        for &id in tokens {
            self.token_bytes(id, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Byte-level BPE encoding of plain text; text that looks like a special
    /// token is encoded as ordinary characters.
    pub fn encode(&self, text: &str) -> Vec<TokenId> {
        let mut out = Vec::new();
        for piece in pre_tokenize(text) {
            let mapped: Vec<String> = piece
                .bytes()
                .map(|b| self.byte_encoder[b as usize].to_string())
                .collect();
            for symbol in self.bpe(mapped) {
                match self.ids.get(&symbol) {
                    Some(id) => out.push(*id),
                    // Every single byte is in the vocabulary, so split what is not.
                    None => out.extend(symbol.chars().filter_map(|c| self.ids.get(&c.to_string()))),
                }
            }
        }
        out
    }

    fn bpe(&self, mut symbols: Vec<String>) -> Vec<String> {
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.merge_ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|rank| (*rank, i))
                })
                .min();
            let Some((_, first)) = best else { break };
            let (a, b) = (symbols[first].clone(), symbols[first + 1].clone());
            let mut merged = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
                    merged.push(format!("{a}{b}"));
                    i += 2;
                } else {
                    merged.push(symbols[i].clone());
                    i += 1;
                }
            }
            symbols = merged;
        }
        symbols
    }

    /// Tokens of symbols that are never spoken (speaker tags, music notes,
    /// brackets), as faster-whisper's `non_speech_tokens` lists them.
    pub fn non_speech_tokens(&self) -> Vec<TokenId> {
        let mut symbols: Vec<String> = "\"#()*+/:;<=>@[\\]^_`{|}~「」『』"
            .chars()
            .map(String::from)
            .collect();
        symbols.extend(
            "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪"
                .split(' ')
                .map(String::from),
        );
        let miscellaneous = ["♩", "♪", "♫", "♬", "♭", "♮", "♯"];
        let mut result: Vec<TokenId> = Vec::new();
        // Hyphens and apostrophes may join words, but not start one.
        for s in [" -", " '"] {
            result.extend(self.encode(s).first());
        }
        for symbol in symbols
            .iter()
            .map(String::as_str)
            .chain(miscellaneous.iter().copied())
        {
            let is_misc = miscellaneous.contains(&symbol);
            for text in [symbol.to_string(), format!(" {symbol}")] {
                let tokens = self.encode(&text);
                if tokens.len() == 1 || (is_misc && !tokens.is_empty()) {
                    result.push(tokens[0]);
                }
            }
        }
        result.sort_unstable();
        result.dedup();
        result
    }

    /// Splits text tokens into words, each with its tokens, the way Whisper's
    /// word timestamps group them: a new word starts at a space, a special
    /// token or a punctuation mark; tokens that end inside a UTF-8 character
    /// stay with the next token.
    pub fn split_to_word_tokens(
        &self,
        tokens: &[TokenId],
        language: &str,
    ) -> (Vec<String>, Vec<Vec<TokenId>>) {
        let (subwords, subword_tokens) = self.split_tokens_on_unicode(tokens);
        if matches!(language, "zh" | "ja" | "th" | "lo" | "my" | "yue") {
            return (subwords, subword_tokens);
        }
        let mut words: Vec<String> = Vec::new();
        let mut word_tokens: Vec<Vec<TokenId>> = Vec::new();
        for (subword, toks) in subwords.into_iter().zip(subword_tokens) {
            let special = toks.first().is_some_and(|t| *t >= self.special.eot);
            let with_space = subword.starts_with(' ');
            // Python's `subword.strip() in string.punctuation`: a substring
            // test, so "" and runs like "?!" count as punctuation too.
            let punctuation = ASCII_PUNCTUATION.contains(subword.trim());
            match (words.last_mut(), word_tokens.last_mut()) {
                (Some(word), Some(last)) if !(special || with_space || punctuation) => {
                    word.push_str(&subword);
                    last.extend(toks);
                }
                _ => {
                    words.push(subword);
                    word_tokens.push(toks);
                }
            }
        }
        (words, word_tokens)
    }

    fn split_tokens_on_unicode(&self, tokens: &[TokenId]) -> (Vec<String>, Vec<Vec<TokenId>>) {
        let mut words = Vec::new();
        let mut word_tokens = Vec::new();
        let mut bytes = Vec::new();
        let mut current = Vec::new();
        for &token in tokens {
            current.push(token);
            self.token_bytes(token, &mut bytes);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                words.push(text.to_string());
                word_tokens.push(std::mem::take(&mut current));
                bytes.clear();
            }
        }
        if !current.is_empty() {
            words.push(String::from_utf8_lossy(&bytes).into_owned());
            word_tokens.push(current);
        }
        (words, word_tokens)
    }
}

/// GPT-2's reversible map from bytes to printable characters.
fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| {
        (u32::from(b'!')..=u32::from(b'~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let b = b as u32;
        let code = if printable(b) {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        *slot = char::from_u32(code).unwrap_or('\0');
    }
    table
}

#[derive(PartialEq, Clone, Copy)]
enum Class {
    Letter,
    Number,
    Space,
    Other,
}

fn class(c: char) -> Class {
    if c.is_whitespace() {
        Class::Space
    } else if c.is_alphabetic() {
        Class::Letter
    } else if c.is_numeric() {
        Class::Number
    } else {
        Class::Other
    }
}

/// GPT-2's pre-tokenizer, the regex
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// written out by hand (the lookahead is beyond the `regex` crate).
fn pre_tokenize(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    let run = |mut i: usize, cls: Class| {
        while i < chars.len() && class(chars[i].1) == cls {
            i += 1;
        }
        i
    };
    let mut pieces = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i].1;
        let rest = &text[chars[i].0..];
        let contraction = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"]
            .iter()
            .find(|p| rest.starts_with(*p));
        let next = if let Some(p) = contraction {
            i + p.chars().count()
        } else {
            let (lead, cls) = if c == ' ' {
                match chars.get(i + 1).map(|(_, n)| class(*n)) {
                    Some(cls) if cls != Class::Space => (1, cls),
                    _ => (0, Class::Space),
                }
            } else {
                (0, class(c))
            };
            if cls == Class::Space {
                let stop = run(i, Class::Space);
                // \s+(?!\S): leave the last space for the word that follows.
                if stop < chars.len() && stop - i > 1 {
                    stop - 1
                } else {
                    stop
                }
            } else {
                run(i + lead, cls)
            }
        };
        pieces.push(&text[chars[i].0..end_of(next)]);
        i = next;
    }
    pieces
}

/// A small tokenizer shaped like Whisper's for tests: the 256 byte tokens
/// (id = byte), a few merges, then the special tokens in the real order.
#[cfg(test)]
pub(crate) fn synthetic(multilingual: bool) -> Tokenizer {
    // A vocabulary shaped like Whisper's: bytes, a few merges, then the
    // special tokens in the order the real models have them.
    let mut vocab: Vec<String> = bytes_to_unicode().iter().map(|c| c.to_string()).collect();
    vocab.extend(["Ġh", "Ġhi", "he", "hel"].map(String::from));
    let eot = vocab.len();
    vocab.push("<|endoftext|>".into());
    vocab.push("<|startoftranscript|>".into());
    let langs: &[&str] = if multilingual { &["en", "de"] } else { &["en"] };
    for l in langs {
        vocab.push(format!("<|{l}|>"));
    }
    for t in [
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        if multilingual {
            "<|nospeech|>"
        } else {
            "<|nocaptions|>"
        },
        "<|notimestamps|>",
        "<|0.00|>",
    ] {
        vocab.push(t.into());
    }
    let added: Vec<serde_json::Value> = vocab[eot..]
        .iter()
        .enumerate()
        .map(|(i, c)| serde_json::json!({"id": eot + i, "content": c, "special": true}))
        .collect();
    let json = serde_json::json!({
        "model": {"merges": ["Ġ h", "Ġh i", ["h", "e"], "he l"]},
        "added_tokens": added,
    });
    Tokenizer::from_parts(&vocab.join("\n"), &json.to_string()).expect("synthetic tokenizer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pre_tokenizer_follows_gpt2() {
        assert_eq!(
            pre_tokenize("Hello world, it's 2024!  Ok\n"),
            vec!["Hello", " world", ",", " it", "'s", " 2024", "!", " ", " Ok", "\n"]
        );
        assert_eq!(pre_tokenize(" -"), vec![" -"]);
        assert_eq!(pre_tokenize("a   b"), vec!["a", "  ", " b"]);
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = bytes_to_unicode();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
    }

    #[test]
    fn synthetic_encode_decode_roundtrip() {
        let t = synthetic(false);
        let ids = t.encode(" hi hello");
        assert_eq!(t.decode(&ids), " hi hello");
        assert_eq!(t.token(ids[0]), Some("Ġhi"));
        // "Ġ h" outranks "h e", so " hello" never forms "he".
        assert_eq!(t.token(ids[1]), Some("Ġh"));
        let hello = t.encode("hello");
        assert_eq!(t.token(hello[0]), Some("hel"));
        assert_eq!(hello.len(), 3);
        // Special tokens never decode to text.
        let s = t.special().clone();
        assert_eq!(t.decode(&[s.sot, ids[0], s.timestamp_begin, s.eot]), " hi");
    }

    #[test]
    fn sot_sequence_depends_on_the_model() {
        let en = synthetic(false);
        let s = en.special().clone();
        assert_eq!(
            en.sot_sequence(false, "en", Task::Transcribe).unwrap(),
            vec![s.sot]
        );
        assert_eq!(s.no_speech, en.token_id("<|nocaptions|>").unwrap());

        let multi = synthetic(true);
        let m = multi.special().clone();
        let de = multi.token_id("<|de|>").unwrap();
        assert_eq!(
            multi.sot_sequence(true, "de", Task::Transcribe).unwrap(),
            vec![m.sot, de, m.transcribe]
        );
        assert_eq!(
            multi.sot_sequence(true, "de", Task::Translate).unwrap(),
            vec![m.sot, de, m.translate]
        );
        assert_eq!(m.no_speech, multi.token_id("<|nospeech|>").unwrap());
        assert_eq!(m.timestamp_begin, multi.token_id("<|0.00|>").unwrap());
        assert!(matches!(
            multi.sot_sequence(true, "xx", Task::Transcribe),
            Err(AsrError::InvalidOption(_))
        ));
    }

    #[test]
    fn words_split_on_spaces_and_punctuation() {
        let t = synthetic(false);
        let mut ids = t.encode(" hi hello.");
        ids.push(t.special().eot);
        let (words, toks) = t.split_to_word_tokens(&ids, "en");
        assert_eq!(words, vec![" hi", " hello", ".", ""]);
        assert_eq!(toks.iter().map(Vec::len).sum::<usize>(), ids.len());
    }
}
