//! An engine that sends audio to an OpenAI-compatible
//! `/v1/audio/transcriptions` endpoint (a GPU server running
//! faster-whisper-server, vLLM, or OpenAI itself).
//!
//! The stream is written to a temporary 16 kHz mono WAV file and uploaded
//! from there, so memory stays flat however long the audio is.

use serde::Deserialize;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::time::Duration;

use crate::{
    AsrError, AudioSource, DecodeOptions, Segment, Task, TranscribeObserver, Transcriber,
    Transcript, Word, SAMPLE_RATE,
};

/// Where and how to reach the endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiOptions {
    /// Base URL up to and excluding `/v1` (e.g. `http://gpu-box:8000`).
    pub base_url: String,
    /// The `model` form field (e.g. `whisper-1`, `Systran/faster-whisper-large-v3`).
    pub model: String,
    /// Sent as `Authorization: Bearer`; `None` sends no header.
    pub api_key: Option<String>,
    /// Limit for the whole request, upload and transcription included.
    pub timeout: Duration,
}

/// The HTTP engine.
pub struct OpenAiEngine {
    options: OpenAiOptions,
    agent: ureq::Agent,
}

impl OpenAiEngine {
    /// An engine for `options`; nothing is contacted until the first file.
    pub fn new(options: OpenAiOptions) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self { options, agent }
    }

    fn url(&self, task: Task) -> String {
        let base = self.options.base_url.trim_end_matches('/');
        let base = base.strip_suffix("/v1").unwrap_or(base);
        match task {
            Task::Transcribe => format!("{base}/v1/audio/transcriptions"),
            Task::Translate => format!("{base}/v1/audio/translations"),
        }
    }
}

/// The parts of a `verbose_json` response we use; servers differ in which
/// fields they fill, so all but `text` are optional.
#[derive(Debug, Deserialize)]
struct VerboseResponse {
    text: String,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    segments: Vec<ResponseSegment>,
    #[serde(default)]
    words: Vec<ResponseWord>,
}

#[derive(Debug, Deserialize)]
struct ResponseSegment {
    start: f64,
    end: f64,
    text: String,
    #[serde(default)]
    avg_logprob: f32,
    #[serde(default)]
    no_speech_prob: f32,
    #[serde(default)]
    compression_ratio: f32,
    #[serde(default)]
    temperature: f32,
}

#[derive(Debug, Deserialize)]
struct ResponseWord {
    word: String,
    start: f64,
    end: f64,
    #[serde(default)]
    probability: Option<f32>,
}

impl Transcriber for OpenAiEngine {
    fn model_name(&self) -> &str {
        &self.options.model
    }

    fn transcribe(
        &self,
        audio: &mut dyn AudioSource,
        options: &DecodeOptions,
        observer: &mut dyn TranscribeObserver,
    ) -> Result<Transcript, AsrError> {
        let url = self.url(options.task);
        let (wav, seconds) = write_wav(audio, observer)?;
        let boundary = format!("pipeline-{:016x}", rand_u64());
        let mut fields = vec![
            ("model", self.options.model.clone()),
            ("response_format", "verbose_json".to_string()),
            ("temperature", "0".to_string()),
        ];
        if let Some(language) = &options.language {
            fields.push(("language", language.clone()));
        }
        if let Some(prompt) = &options.initial_prompt {
            fields.push(("prompt", prompt.clone()));
        }
        let mut head = String::new();
        for (name, value) in &fields {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        if options.word_timestamps {
            for granularity in ["segment", "word"] {
                head.push_str(&format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"timestamp_granularities[]\"\r\n\r\n{granularity}\r\n"
                ));
            }
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"audio.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        let file_len = wav
            .as_file()
            .metadata()
            .map_err(|e| local_io(&url, e))?
            .len();
        let length = head.len() as u64 + file_len + tail.len() as u64;
        let mut file = wav.reopen().map_err(|e| local_io(&url, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| local_io(&url, e))?;
        let mut body = io::Cursor::new(head.into_bytes())
            .chain(file)
            .chain(io::Cursor::new(tail.into_bytes()));
        let mut request = self
            .agent
            .post(&url)
            .header(
                "Content-Type",
                &format!("multipart/form-data; boundary={boundary}"),
            )
            .header("Content-Length", &length.to_string());
        if let Some(key) = &self.options.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = request
            .send(ureq::SendBody::from_reader(&mut body))
            .map_err(|e| AsrError::Unavailable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| AsrError::Unavailable {
                url: url.clone(),
                message: format!("reading the answer: {e}"),
            })?;
        if status == 429 || status >= 500 {
            return Err(AsrError::Unavailable {
                url,
                message: format!("HTTP {status}: {}", excerpt(&text)),
            });
        }
        if !(200..300).contains(&status) {
            return Err(AsrError::Rejected {
                url,
                status,
                message: excerpt(&text),
            });
        }
        let parsed: VerboseResponse =
            serde_json::from_str(&text).map_err(|e| AsrError::Rejected {
                url: url.clone(),
                status,
                message: format!("not a transcription response ({e}): {}", excerpt(&text)),
            })?;
        let transcript = to_transcript(parsed, seconds, &self.options.model, options);
        for segment in &transcript.segments {
            observer.on_segment(segment);
        }
        observer.on_progress(seconds, seconds);
        Ok(transcript)
    }
}

fn to_transcript(
    response: VerboseResponse,
    seconds: f64,
    model: &str,
    options: &DecodeOptions,
) -> Transcript {
    let duration = response.duration.unwrap_or(seconds);
    let mut segments: Vec<Segment> = response
        .segments
        .into_iter()
        .enumerate()
        .map(|(i, s)| Segment {
            id: u32::try_from(i).unwrap_or(u32::MAX),
            start: s.start,
            end: s.end,
            text: s.text,
            avg_logprob: s.avg_logprob,
            no_speech_prob: s.no_speech_prob,
            compression_ratio: s.compression_ratio,
            temperature: s.temperature,
            words: Vec::new(),
            speaker: None,
        })
        .collect();
    if segments.is_empty() && !response.text.trim().is_empty() {
        // A server that answered with text only: one segment for the whole file.
        segments.push(Segment {
            id: 0,
            start: 0.0,
            end: duration,
            text: format!(" {}", response.text.trim()),
            avg_logprob: 0.0,
            no_speech_prob: 0.0,
            compression_ratio: 0.0,
            temperature: 0.0,
            words: Vec::new(),
            speaker: None,
        });
    }
    for word in response.words {
        let target = segments
            .iter_mut()
            .find(|s| word.start >= s.start - 0.01 && word.start < s.end + 0.01);
        if let Some(segment) = target {
            segment.words.push(Word {
                start: word.start,
                end: word.end,
                word: word.word,
                probability: word.probability.unwrap_or(1.0),
                speaker: None,
            });
        }
    }
    let given = options.language.clone();
    Transcript {
        language: response
            .language
            .map(|l| language_code(&l))
            .or(given.clone())
            .unwrap_or_else(|| "en".into()),
        language_probability: if given.is_some() { 1.0 } else { 0.0 },
        duration,
        model: model.to_string(),
        segments,
        speakers: Vec::new(),
    }
}

/// OpenAI answers with language names (`english`); we store codes.
fn language_code(language: &str) -> String {
    match language.to_ascii_lowercase().as_str() {
        "english" => "en".into(),
        "german" => "de".into(),
        "french" => "fr".into(),
        "spanish" => "es".into(),
        "italian" => "it".into(),
        "portuguese" => "pt".into(),
        "dutch" => "nl".into(),
        "japanese" => "ja".into(),
        "chinese" => "zh".into(),
        other => other.to_string(),
    }
}

/// Writes the stream as a 16-bit PCM WAV to a temporary file; returns it
/// and the duration in seconds.
fn write_wav(
    audio: &mut dyn AudioSource,
    observer: &mut dyn TranscribeObserver,
) -> Result<(tempfile::NamedTempFile, f64), AsrError> {
    let io_error = |e: io::Error| AsrError::Audio {
        message: format!("cannot write the temporary upload file: {e}"),
        retryable: true,
    };
    let file = tempfile::NamedTempFile::new().map_err(io_error)?;
    let total = audio.duration_hint().unwrap_or(0.0);
    let mut out = BufWriter::new(file.reopen().map_err(io_error)?);
    out.write_all(&wav_header(0)).map_err(io_error)?;
    let mut buf = vec![0f32; SAMPLE_RATE as usize];
    let mut samples: u64 = 0;
    loop {
        if observer.is_cancelled() {
            return Err(AsrError::Cancelled);
        }
        let n = audio.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for sample in &buf[..n] {
            let value = (sample.clamp(-1.0, 1.0) * i16::MAX as f32) as i16;
            out.write_all(&value.to_le_bytes()).map_err(io_error)?;
        }
        samples += n as u64;
        // Reading is the first half of the work; the server does the rest.
        if total > 0.0 {
            let done = samples as f64 / f64::from(SAMPLE_RATE);
            observer.on_progress((done / 2.0).min(total / 2.0), total);
        }
    }
    let data_bytes = u32::try_from(samples * 2).map_err(|_| AsrError::Audio {
        message: "audio longer than a WAV file can hold (about 37 hours at 16 kHz)".into(),
        retryable: false,
    })?;
    let mut file_handle = out.into_inner().map_err(|e| io_error(e.into_error()))?;
    file_handle.seek(SeekFrom::Start(0)).map_err(io_error)?;
    file_handle
        .write_all(&wav_header(data_bytes))
        .map_err(io_error)?;
    file_handle.flush().map_err(io_error)?;
    Ok((file, samples as f64 / f64::from(SAMPLE_RATE)))
}

fn wav_header(data_bytes: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_bytes).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

fn local_io(url: &str, e: io::Error) -> AsrError {
    AsrError::Unavailable {
        url: url.to_string(),
        message: format!("cannot read the temporary upload file: {e}"),
    }
}

fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &trimmed[..at]),
        None => trimmed.to_string(),
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
