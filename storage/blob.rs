//! The `data` column's encoding: gzip (level 9, as kromosynth-cli writes it) of UTF-8 JSON, or,
//! leniently, the plain JSON itself.

use std::io::{Read, Write};

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::{StoreError, MAX_GENOME_BYTES};

/// First two bytes of every gzip member (RFC 1952).
pub(crate) const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// kromosynth-cli compresses with `zlib.gzip(json, { level: 9 })`.
const CLI_GZIP_LEVEL: u32 = 9;

/// A gzip member ends with ISIZE, the uncompressed length mod 2^32, in 4 little-endian bytes.
const GZIP_ISIZE_LEN: usize = 4;

/// Turns a stored `data` value into genome JSON bytes.
pub(crate) fn decode(id: &str, blob: &[u8]) -> Result<Vec<u8>, StoreError> {
    let json = if blob.starts_with(&GZIP_MAGIC) {
        gunzip_bounded(blob, MAX_GENOME_BYTES).map_err(|reason| StoreError::corrupt(id, reason))?
    } else {
        if blob.len() > MAX_GENOME_BYTES {
            return Err(StoreError::corrupt(
                id,
                format!(
                    "plain data of {} bytes exceeds the {MAX_GENOME_BYTES}-byte limit",
                    blob.len()
                ),
            ));
        }
        blob.to_vec()
    };
    check_json_object(&json).map_err(|reason| StoreError::corrupt(id, reason))?;
    Ok(json)
}

/// Gunzips `data` (all members, as node's `zlib.gunzip` does), failing instead of allocating
/// past `limit` bytes, so that a gzip bomb costs at most `limit` bytes of memory.
pub(crate) fn gunzip_bounded(data: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    // ISIZE lets us allocate once; it is untrusted, hence the clamp.
    let hint = data
        .len()
        .checked_sub(GZIP_ISIZE_LEN)
        .and_then(|at| data[at..].try_into().ok())
        .map_or(0, |isize: [u8; GZIP_ISIZE_LEN]| {
            u32::from_le_bytes(isize) as usize
        })
        .min(limit);
    let mut out = Vec::with_capacity(hint);
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(data)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad gzip: {e}"))?;
    if out.len() > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

/// Storage does not parse genomes (the engine does), but a cheap check here turns a wrong blob
/// into an error that names the stored id instead of a JSON parse error deep in the engine.
pub(crate) fn check_json_object(json: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(json).map_err(|e| {
        format!(
            "not UTF-8 JSON (invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    match text.trim_start().chars().next() {
        Some('{') => Ok(()),
        Some(c) => Err(format!("not a JSON object (starts with {c:?})")),
        None => Err("empty data".to_owned()),
    }
}

/// Compresses exactly as kromosynth-cli does, so databases written here are read by the CLI.
pub(crate) fn gzip_like_cli(json: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::new(CLI_GZIP_LEVEL));
    encoder.write_all(json)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_round_trip() {
        let json = br#"{"_id":"genome_a_b","genome":{}}"#;
        let gz = gzip_like_cli(json).unwrap();
        assert!(gz.starts_with(&GZIP_MAGIC));
        assert_eq!(decode("b", &gz).unwrap(), json);
    }

    #[test]
    fn bomb_is_an_error() {
        let zeros = vec![b' '; 1 << 20];
        let gz = gzip_like_cli(&zeros).unwrap();
        let err = gunzip_bounded(&gz, 1000).unwrap_err();
        assert!(err.contains("more than 1000 bytes"), "{err}");
    }

    #[test]
    fn lying_isize_does_not_over_allocate() {
        let mut gz = gzip_like_cli(b"{}").unwrap();
        let n = gz.len();
        gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        // The trailer check fails, but only after a bounded allocation.
        assert!(gunzip_bounded(&gz, 16).is_err());
    }

    #[test]
    fn json_looking() {
        assert!(check_json_object(b"  {\"a\":1}").is_ok());
        assert!(check_json_object(b"[1]").is_err());
        assert!(check_json_object(b"").is_err());
        assert!(check_json_object(&[0xff, b'{']).is_err());
    }
}
