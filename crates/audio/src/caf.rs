//! The ALAC magic cookie of a CAF file, as symphonia's ALAC decoder wants it.
//!
//! CAF writers (ffmpeg, Apple's `afconvert`) may wrap the 24-byte
//! `ALACSpecificConfig` in a `frma` atom and an `alac` atom, as Apple's ALAC
//! description allows; symphonia's CAF reader passes the `kuki` chunk on as
//! it is, and its decoder then reads the wrapper as the configuration and
//! refuses the file ("unsupported codec alac"), where ALAC in an m4a works.

use symphonia::core::codecs::{CodecParameters, CODEC_TYPE_ALAC};

/// The bytes of an `ALACSpecificConfig`, and with its channel layout atom.
const CONFIG_LEN: usize = 24;
const CONFIG_WITH_LAYOUT_LEN: usize = 48;

/// Strips the `frma` and `alac` atoms from an ALAC track's cookie, leaving
/// the configuration (and a channel layout atom after it, if there is one).
/// Anything else is left alone for the decoder to judge.
pub(crate) fn unwrap_alac_cookie(params: &mut CodecParameters) {
    if params.codec != CODEC_TYPE_ALAC {
        return;
    }
    let Some(cookie) = params.extra_data.as_deref() else {
        return;
    };
    let mut rest = cookie;
    if let Some(after) = skip_atom(rest, b"frma") {
        rest = after;
    }
    if let Some(after) = skip_atom_header(rest, b"alac") {
        rest = after;
    }
    if rest.len() == cookie.len() {
        return;
    }
    // A terminator atom (8 zero bytes) or padding may follow.
    let keep = if rest.len() >= CONFIG_WITH_LAYOUT_LEN && &rest[28..32] == b"chan" {
        CONFIG_WITH_LAYOUT_LEN
    } else if rest.len() >= CONFIG_LEN {
        CONFIG_LEN
    } else {
        return;
    };
    params.extra_data = Some(rest[..keep].to_vec().into_boxed_slice());
}

/// The bytes after a whole atom of type `kind` at the start of `data`.
fn skip_atom<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let size = atom_size(data, kind)?;
    data.get(size..)
}

/// The bytes after the header (size, type, version and flags) of an atom of
/// type `kind` at the start of `data`: the atom's contents.
fn skip_atom_header<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let size = atom_size(data, kind)?;
    (size >= 12).then(|| data.get(12..size)).flatten()
}

fn atom_size(data: &[u8], kind: &[u8; 4]) -> Option<usize> {
    let size = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    (data.get(4..8)? == kind && size >= 8 && size <= data.len()).then_some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(cookie: &[u8]) -> CodecParameters {
        let mut p = CodecParameters::new();
        p.for_codec(CODEC_TYPE_ALAC).with_extra_data(cookie.into());
        p
    }

    fn config() -> Vec<u8> {
        (0..CONFIG_LEN as u8).collect()
    }

    #[test]
    fn ffmpegs_wrapped_cookie_is_unwrapped() {
        let mut cookie = vec![0, 0, 0, 12];
        cookie.extend_from_slice(b"frmaalac");
        cookie.extend_from_slice(&[0, 0, 0, 36]);
        cookie.extend_from_slice(b"alac");
        cookie.extend_from_slice(&[0; 4]);
        cookie.extend_from_slice(&config());
        let mut p = params(&cookie);
        unwrap_alac_cookie(&mut p);
        assert_eq!(p.extra_data.as_deref(), Some(config().as_slice()));
    }

    #[test]
    fn a_bare_or_unknown_cookie_is_left_alone() {
        for cookie in [config(), vec![1, 2, 3], Vec::new()] {
            let mut p = params(&cookie);
            unwrap_alac_cookie(&mut p);
            assert_eq!(p.extra_data.as_deref(), Some(cookie.as_slice()));
        }
        // An atom claiming more than there is.
        let mut lying = vec![0, 0, 0, 200];
        lying.extend_from_slice(b"frmaalac");
        let mut p = params(&lying);
        unwrap_alac_cookie(&mut p);
        assert_eq!(p.extra_data.as_deref(), Some(lying.as_slice()));
    }
}
