//! `GET /api/v1/audio/{id}/file`: the stored audio as it was uploaded, for
//! players. Browsers seek with `Range` requests, so one byte range is
//! answered `206 Partial Content`; several ranges get the whole file, which
//! RFC 9110 allows. The content never changes under a key (it is addressed
//! by its digest), so the digest is a strong ETag.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use pipeline_core::AudioFile;
use pipeline_ingest::StorageError;
use std::io::SeekFrom;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

use crate::extract::IdPath;
use crate::{ApiError, AppState};

/// Bytes read from disk per body chunk.
const CHUNK: usize = 64 * 1024;

/// What a `Range` header asks of a file of known length.
#[derive(Debug, PartialEq, Eq)]
enum ByteRange {
    /// No usable range: send everything.
    Whole,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range wholly past the end (416).
    Unsatisfiable,
}

/// Reads `bytes=a-b`, `bytes=a-` and `bytes=-n`; anything else (other
/// units, lists, garbage) is treated as no range, as RFC 9110 permits.
fn parse_range(value: &str, len: u64) -> ByteRange {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return ByteRange::Whole;
    };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // A suffix: the last n bytes.
        (true, false) => match parse(last) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if len == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => ByteRange::Whole,
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return ByteRange::Whole;
            };
            let end = if last.is_empty() {
                Some(u64::MAX)
            } else {
                parse(last)
            };
            match end {
                None => ByteRange::Whole,
                Some(end) if end < start => ByteRange::Whole,
                Some(_) if start >= len => ByteRange::Unsatisfiable,
                Some(end) => ByteRange::Part {
                    start,
                    end: end.min(len - 1),
                },
            }
        }
        (true, true) => ByteRange::Whole,
    }
}

/// The media type of stored audio, from the container the probe found
/// (falling back to the key's extension).
fn content_type(audio: &AudioFile) -> &'static str {
    let extension = audio
        .storage_key
        .rsplit_once('.')
        .map(|(_, ext)| ext)
        .unwrap_or("");
    let container = if audio.container.is_empty() {
        extension
    } else {
        audio.container.as_str()
    };
    match container.to_ascii_lowercase().as_str() {
        "wav" | "wave" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "m4a" | "mp4" | "isomp4" => "audio/mp4",
        "aac" => "audio/aac",
        "webm" => "audio/webm",
        _ => "application/octet-stream",
    }
}

/// `inline; filename="..."` with only characters that survive every
/// client's header parsing; the recorded name is the client's and may hold
/// quotes or non-ASCII text.
fn disposition(name: &str) -> HeaderValue {
    let safe: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&format!("inline; filename=\"{safe}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("inline"))
}

fn storage_error(audio: &AudioFile, e: StorageError) -> ApiError {
    match e {
        StorageError::Missing { .. } => ApiError::not_found(format!(
            "the audio of file {} is no longer in storage",
            audio.id
        )),
        e => {
            tracing::error!(error = %e, "reading stored audio");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage unavailable; try again later",
            )
        }
    }
}

fn read_error(e: &std::io::Error) -> ApiError {
    tracing::error!(error = %e, "reading stored audio");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "could not read the stored audio",
    )
}

/// The reader's bytes as a body stream, a chunk at a time, so a long
/// recording is never whole in memory.
fn chunks(
    reader: impl AsyncRead + Unpin + Send + 'static,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send {
    stream::try_unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; CHUNK];
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), reader)))
    })
}

/// `GET /api/v1/audio/{id}/file`: the original audio with its media type;
/// `Range: bytes=...` answered 206, a matching `If-None-Match` 304.
pub async fn audio_file(
    State(state): State<AppState>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let audio = state.store.audio(id).await?;
    // Refused content is recorded but never kept, and never served.
    if audio.storage_key.is_empty() {
        return Err(ApiError::not_found(format!(
            "audio {id} was refused at ingest: nothing was stored"
        )));
    }
    let etag = format!("\"{}\"", audio.sha256);
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let common = |status: StatusCode| {
        let mut response = status.into_response();
        let h = response.headers_mut();
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(value) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, value);
        }
        // The content under a file's key never changes, but keys may be
        // revoked: let the browser keep it, never a shared cache.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=86400"),
        );
        response
    };
    if header_text(header::IF_NONE_MATCH)
        .is_some_and(|v| v == "*" || v.split(',').any(|t| t.trim() == etag))
    {
        return Ok(common(StatusCode::NOT_MODIFIED));
    }

    let path = state
        .storage
        .local_copy(&audio.storage_key)
        .await
        .map_err(|e| storage_error(&audio, e))?;
    let mut file = tokio::fs::File::open(&path).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            storage_error(
                &audio,
                StorageError::Missing {
                    location: path.display().to_string(),
                },
            )
        } else {
            read_error(&e)
        }
    })?;
    let len = file.metadata().await.map_err(|e| read_error(&e))?.len();

    // A stale If-Range (another version than the client holds) means the
    // whole file, not a piece of a different one.
    let range_applies = header_text(header::IF_RANGE).is_none_or(|v| v == etag);
    let range = match header_text(header::RANGE) {
        Some(value) if range_applies => parse_range(value, len),
        _ => ByteRange::Whole,
    };
    let (status, start, count) = match range {
        ByteRange::Whole => (StatusCode::OK, 0, len),
        ByteRange::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        ByteRange::Unsatisfiable => {
            let mut response = common(StatusCode::RANGE_NOT_SATISFIABLE);
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| read_error(&e))?;
    }
    let mut response = common(status);
    *response.body_mut() = Body::from_stream(chunks(file.take(count)));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&audio)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(&audio.original_name),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{len}", start + count - 1);
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_follow_rfc_9110() {
        use ByteRange::*;
        assert_eq!(parse_range("bytes=0-99", 1000), Part { start: 0, end: 99 });
        assert_eq!(
            parse_range("bytes=500-", 1000),
            Part {
                start: 500,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-100", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(
            parse_range("bytes=-5000", 1000),
            Part { start: 0, end: 999 }
        );
        assert_eq!(
            parse_range("bytes=900-5000", 1000),
            Part {
                start: 900,
                end: 999
            }
        );
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-9",
            "items=0-1",
            "bytes=x-1",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(parse_range(ignored, 1000), Whole, "{ignored}");
        }
    }

    #[test]
    fn file_names_cannot_break_the_header() {
        assert_eq!(
            disposition("a \"b\"\\c.wav"),
            "inline; filename=\"a _b__c.wav\""
        );
        assert_eq!(disposition("näme.mp3"), "inline; filename=\"n_me.mp3\"");
    }
}
