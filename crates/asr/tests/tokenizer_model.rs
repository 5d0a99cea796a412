//! The tokenizer and prompts built from the real tiny.en files.

mod common;

use pipeline_asr::decode::{build_prompt, suppressed_tokens};
use pipeline_asr::tokenizer::Tokenizer;
use pipeline_asr::Task;

#[test]
fn real_tokenizer_decodes_and_encodes() {
    let Some(dir) = common::model_dir() else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).expect("tokenizer");
    // GPT-2 ids, which Whisper's English vocabulary shares.
    assert_eq!(tok.decode(&[15496, 995]), "Hello world");
    let ids = tok.encode(" Hello world, it's 42!");
    assert_eq!(tok.decode(&ids), " Hello world, it's 42!");
    assert_eq!(tok.encode("Hello world"), vec![15496, 995]);
    let s = tok.special();
    assert_eq!(s.eot, 50256);
    assert_eq!(s.sot, 50257);
    assert_eq!(s.translate, 50357);
    assert_eq!(s.transcribe, 50358);
    assert_eq!(s.sot_lm, 50359);
    assert_eq!(s.sot_prev, 50360);
    assert_eq!(s.no_speech, 50361); // <|nocaptions|> in this vocabulary
    assert_eq!(s.no_timestamps, 50362);
    assert_eq!(s.timestamp_begin, 50363);
    assert_eq!(tok.token(s.timestamp_begin + 50), Some("<|1.00|>"));
    // Special and timestamp tokens never reach text.
    let text = tok.decode(&[
        s.sot,
        s.timestamp_begin,
        15496,
        s.timestamp_begin + 10,
        s.eot,
    ]);
    assert_eq!(text, "Hello");
    // Non-ASCII text survives the byte-level round trip.
    let ids = tok.encode(" café naïve — ♪");
    assert_eq!(tok.decode(&ids), " café naïve — ♪");
}

#[test]
fn suppressed_tokens_match_the_model_config() {
    let Some(dir) = common::model_dir() else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).expect("tokenizer");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("config json");
    let expected: Vec<i32> = config["suppress_ids"]
        .as_array()
        .expect("suppress_ids")
        .iter()
        .map(|v| v.as_i64().expect("id") as i32)
        .collect();
    // OpenAI's list in config.json is the non-speech symbols plus the
    // control tokens: exactly what faster-whisper computes for [-1].
    assert_eq!(suppressed_tokens(&tok, &[-1]), expected);
    assert!(suppressed_tokens(&tok, &[]).is_empty());
}

#[test]
fn prompts_for_english_only_model() {
    let Some(dir) = common::model_dir() else {
        return;
    };
    let tok = Tokenizer::from_dir(&dir).expect("tokenizer");
    let s = tok.special().clone();
    // .en models: no language or task token, even when asked to translate.
    let sot = tok.sot_sequence(false, "en", Task::Translate).expect("sot");
    assert_eq!(sot, vec![s.sot]);
    assert_eq!(build_prompt(&tok, &sot, &[], &[], false), vec![s.sot]);
    assert_eq!(
        build_prompt(&tok, &sot, &[], &[], true),
        vec![s.sot, s.no_timestamps]
    );
    let previous: Vec<u32> = (0..300).collect();
    let prompt = build_prompt(&tok, &sot, &previous, &[], false);
    assert_eq!(prompt[0], s.sot_prev);
    assert_eq!(prompt.len(), 1 + 223 + 1);
    assert_eq!(prompt[1], 300 - 223);
    assert_eq!(*prompt.last().expect("sot"), s.sot);
    // Hotwords come first after <|startofprev|>, at most 223 of them, then
    // the previous text.
    let hotwords: Vec<u32> = (1000..1300).collect();
    let prompt = build_prompt(&tok, &sot, &previous[..5], &hotwords, false);
    assert_eq!(prompt.len(), 1 + 223 + 5 + 1);
    assert_eq!(prompt[..3], [s.sot_prev, 1000, 1001]);
    assert_eq!(prompt[224..229], previous[..5]);
    let alone = build_prompt(&tok, &sot, &[], &hotwords[..2], false);
    assert_eq!(alone, vec![s.sot_prev, 1000, 1001, s.sot]);
    // The same vocabulary read as multilingual would put <|en|><|transcribe|>.
    let multi = tok.sot_sequence(true, "en", Task::Transcribe).expect("sot");
    assert_eq!(multi, vec![s.sot, 50258, s.transcribe]);
}
