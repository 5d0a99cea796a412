//! The OpenAI-compatible engine against a small HTTP server started by the
//! test: what it uploads, how it reads the answer, and how failures are
//! classified (server errors may pass, refusals will not).

use pipeline_asr::openai::{OpenAiEngine, OpenAiOptions};
use pipeline_asr::{AsrError, AudioSource, DecodeOptions, NoObserver, Transcriber};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Two seconds of a 440 Hz tone.
struct Tone {
    left: usize,
}

impl AudioSource for Tone {
    fn read(&mut self, buf: &mut [f32]) -> Result<usize, AsrError> {
        let n = buf.len().min(self.left);
        for (i, s) in buf[..n].iter_mut().enumerate() {
            *s = 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin();
        }
        self.left -= n;
        Ok(n)
    }

    fn duration_hint(&self) -> Option<f64> {
        Some(2.0)
    }
}

/// What the server saw of one request.
struct Seen {
    request_line: String,
    headers: Vec<String>,
    body: Vec<u8>,
}

/// Serves one request with `status` and `body`, reporting what it received.
fn serve_once(status: u16, body: &'static str) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            headers.push(line);
        }
        let mut body_bytes = vec![0u8; length];
        reader.read_exact(&mut body_bytes).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        tx.send(Seen {
            request_line,
            headers,
            body: body_bytes,
        })
        .unwrap();
    });
    (url, rx)
}

fn engine(url: &str) -> OpenAiEngine {
    OpenAiEngine::new(OpenAiOptions {
        base_url: url.to_string(),
        model: "whisper-1".into(),
        api_key: Some("sk-test".into()),
        timeout: Duration::from_secs(10),
    })
}

#[test]
fn uploads_a_wav_and_reads_verbose_json() {
    let (url, seen) = serve_once(
        200,
        r#"{"text":" Hello there. General Kenobi.","language":"english","duration":2.0,
            "segments":[{"id":0,"start":0.0,"end":1.0,"text":" Hello there.","avg_logprob":-0.2},
                        {"id":1,"start":1.0,"end":2.0,"text":" General Kenobi.","avg_logprob":-0.3}],
            "words":[{"word":"Hello","start":0.1,"end":0.4},{"word":"General","start":1.1,"end":1.5}]}"#,
    );
    let options = DecodeOptions {
        word_timestamps: true,
        ..DecodeOptions::default()
    };
    let transcript = engine(&url)
        .transcribe(&mut Tone { left: 32_000 }, &options, &mut NoObserver)
        .unwrap();
    assert_eq!(transcript.language, "en");
    assert_eq!(transcript.segments.len(), 2);
    assert_eq!(transcript.text(), "Hello there. General Kenobi.");
    assert_eq!(transcript.segments[1].words[0].word, "General");

    let seen = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        seen.request_line
            .starts_with("POST /v1/audio/transcriptions "),
        "{}",
        seen.request_line
    );
    assert!(seen
        .headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("authorization: bearer sk-test")));
    let body = String::from_utf8_lossy(&seen.body);
    assert!(body.contains("name=\"model\"\r\n\r\nwhisper-1"));
    assert!(body.contains("name=\"response_format\"\r\n\r\nverbose_json"));
    assert!(body.contains("name=\"timestamp_granularities[]\"\r\n\r\nword"));
    let wav_at = seen
        .body
        .windows(4)
        .position(|w| w == b"RIFF")
        .expect("a WAV part");
    let data_len = u32::from_le_bytes(seen.body[wav_at + 40..wav_at + 44].try_into().unwrap());
    assert_eq!(data_len, 64_000, "two seconds of 16-bit 16 kHz mono");
}

#[test]
fn server_errors_may_pass_and_refusals_will_not() {
    let (url, _seen) = serve_once(503, r#"{"error":{"message":"overloaded"}}"#);
    let err = engine(&url)
        .transcribe(
            &mut Tone { left: 16_000 },
            &DecodeOptions::default(),
            &mut NoObserver,
        )
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("overloaded"), "{err}");

    let (url, _seen) = serve_once(400, r#"{"error":{"message":"unsupported file"}}"#);
    let err = engine(&url)
        .transcribe(
            &mut Tone { left: 16_000 },
            &DecodeOptions::default(),
            &mut NoObserver,
        )
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        matches!(err, AsrError::Rejected { status: 400, .. }),
        "{err}"
    );
}

#[test]
fn an_unreachable_endpoint_is_retryable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = engine(&format!("http://127.0.0.1:{port}"))
        .transcribe(
            &mut Tone { left: 16_000 },
            &DecodeOptions::default(),
            &mut NoObserver,
        )
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
