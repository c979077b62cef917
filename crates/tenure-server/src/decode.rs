//! Compressed request bodies: `Content-Encoding: gzip` or `deflate` (how Segment's
//! libraries send their batches) is decoded before any handler sees the body, with the
//! request-body limit applied to the *decoded* size too, so a small bomb gets 413 and never
//! more than the limit in memory. Unknown codings get 415, damaged streams 400.

use crate::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use std::io::Read;

/// A content coding of a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate`: zlib-wrapped (RFC 9110), or raw deflate as some clients send it.
    Deflate,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// More stacked codings than this is refused: no client needs it, and each layer costs a
/// full pass over up to the body limit.
const MAX_CODINGS: usize = 2;

/// Bodies up to this size are decoded (and parsed) on the async worker; larger ones on a
/// blocking thread, so working through megabytes never stalls other requests.
const INLINE_BYTES: usize = 64 << 10;

/// Runs `f`, CPU work over a body of `len` bytes: inline when the body is small, on a
/// blocking thread when it is large. `None` when the blocking task panicked.
pub(crate) async fn off_worker<T: Send + 'static>(
    len: usize,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    if len <= INLINE_BYTES {
        return Some(f());
    }
    tokio::task::spawn_blocking(f).await.ok()
}

/// The codings of the `Content-Encoding` headers, in the order they were applied
/// (`identity` left out). An unknown or unreadable coding is the error's text.
pub fn codings(h: &HeaderMap) -> Result<Vec<Coding>, String> {
    let mut out = Vec::new();
    for v in h.get_all(header::CONTENT_ENCODING) {
        let v = v.to_str().map_err(|_| "a Content-Encoding that is not ASCII".to_string())?;
        for c in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match c.to_ascii_lowercase().as_str() {
                "identity" => {}
                "gzip" | "x-gzip" => out.push(Coding::Gzip),
                "deflate" => out.push(Coding::Deflate),
                _ => return Err(format!("the content coding {c:?}")),
            }
        }
    }
    if out.len() > MAX_CODINGS {
        return Err(format!("{} stacked content codings (at most {MAX_CODINGS})", out.len()));
    }
    Ok(out)
}

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The decoded body would be over the limit.
    TooLarge,
    /// The stream is damaged or truncated.
    Damaged(&'static str, String),
}

/// Whether `b` starts with a zlib header (RFC 1950: deflate method, check bits).
fn zlib_header(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] & 0x0f == 8 && (u16::from(b[0]) << 8 | u16::from(b[1])) % 31 == 0
}

/// Undoes `codings` (applied in that order) on `body`; no stage may produce more than
/// `limit` bytes, and no more than `limit + 1` is ever read out of a decoder.
pub fn decode(body: &[u8], codings: &[Coding], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut data = body.to_vec();
    for c in codings.iter().rev() {
        let input = data.as_slice();
        let reader: Box<dyn Read + '_> = match c {
            Coding::Gzip => Box::new(MultiGzDecoder::new(input)),
            Coding::Deflate if zlib_header(input) => Box::new(ZlibDecoder::new(input)),
            Coding::Deflate => Box::new(DeflateDecoder::new(input)),
        };
        let mut out = Vec::with_capacity((input.len() * 4).min(limit + 1));
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Damaged(c.name(), e.to_string()))?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge);
        }
        data = out;
    }
    Ok(data)
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new("payload_too_large", format!("the body is over {limit} bytes"))
}

/// The middleware: decodes the body of a request with a `Content-Encoding`, then hands the
/// request on without that header (and with the decoded length).
pub async fn request_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let codings = match codings(req.headers()) {
        Ok(c) => c,
        Err(what) => {
            let mut r = ApiError::new(
                "unsupported_media_type",
                format!("{what} is not supported (gzip, deflate or identity)"),
            )
            .into_response();
            r.headers_mut()
                .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, deflate"));
            return r;
        }
    };
    if codings.is_empty() {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return too_large(limit).into_response();
        }
        Err(e) => {
            return ApiError::new("invalid_request", format!("reading the body: {e}"))
                .into_response();
        }
    };
    // An empty body is empty whatever its coding.
    let decoded = if bytes.is_empty() {
        Ok(Vec::new())
    } else {
        off_worker(bytes.len(), move || decode(&bytes, &codings, limit))
            .await
            .unwrap_or_else(|| Err(DecodeError::Damaged("body", "decoding failed".into())))
    };
    let decoded = match decoded {
        Ok(d) => d,
        Err(DecodeError::TooLarge) => return too_large(limit).into_response(),
        Err(DecodeError::Damaged(c, why)) => {
            return ApiError::new("invalid_encoding", format!("the {c} body is damaged: {why}"))
                .into_response();
        }
    };
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(decoded.len()));
    next.run(Request::from_parts(parts, Body::from(decoded))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use std::io::Write;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn headers(v: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in v {
            h.append(header::CONTENT_ENCODING, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn codings_are_read_case_insensitively_in_order_and_unknown_ones_named() {
        assert_eq!(codings(&headers(&[])), Ok(vec![]));
        assert_eq!(codings(&headers(&["GZip"])), Ok(vec![Coding::Gzip]));
        assert_eq!(
            codings(&headers(&["deflate, identity", "x-gzip"])),
            Ok(vec![Coding::Deflate, Coding::Gzip])
        );
        assert!(codings(&headers(&["br"])).unwrap_err().contains("\"br\""));
        assert!(codings(&headers(&["gzip, gzip, gzip"])).is_err());
    }

    #[test]
    fn gzip_zlib_and_raw_deflate_decode_and_concatenated_gzip_members_too() {
        let text = b"{\"batch\": []}".repeat(100);
        assert_eq!(decode(&gz(&text), &[Coding::Gzip], 1 << 20).unwrap(), text);
        let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
        z.write_all(&text).unwrap();
        assert_eq!(decode(&z.finish().unwrap(), &[Coding::Deflate], 1 << 20).unwrap(), text);
        let mut d = DeflateEncoder::new(Vec::new(), Compression::default());
        d.write_all(&text).unwrap();
        assert_eq!(decode(&d.finish().unwrap(), &[Coding::Deflate], 1 << 20).unwrap(), text);
        let two = [gz(b"ab"), gz(b"cd")].concat();
        assert_eq!(decode(&two, &[Coding::Gzip], 100).unwrap(), b"abcd");
        // Applied in order gzip then deflate: undone deflate first.
        let mut d = DeflateEncoder::new(Vec::new(), Compression::default());
        d.write_all(&gz(b"xy")).unwrap();
        assert_eq!(
            decode(&d.finish().unwrap(), &[Coding::Gzip, Coding::Deflate], 100).unwrap(),
            b"xy"
        );
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_damage_is_an_error_not_a_partial_body() {
        let zeros = vec![0u8; 10 << 20];
        let bomb = gz(&zeros);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(decode(&bomb, &[Coding::Gzip], 1 << 20), Err(DecodeError::TooLarge));
        // Exactly at the limit is fine.
        assert_eq!(decode(&gz(&[7; 100]), &[Coding::Gzip], 100).unwrap().len(), 100);
        let whole = gz(b"{\"a\": 1}");
        let cut = &whole[..whole.len() - 4];
        assert!(matches!(decode(cut, &[Coding::Gzip], 100), Err(DecodeError::Damaged("gzip", _))));
        assert!(matches!(
            decode(b"not gzip at all", &[Coding::Gzip], 100),
            Err(DecodeError::Damaged(..))
        ));
    }
}
