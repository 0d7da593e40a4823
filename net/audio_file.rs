//! Writing mono float audio at the render's rate: `.wav` (IEEE float, 32 bit) or `.f32` (raw little-endian).

use std::io::{self, Write};
use std::path::Path;

/// Writes `samples` to `path`; the extension picks the format.
pub fn write(path: &Path, samples: &[f32], sample_rate: u32) -> Result<(), String> {
    let bytes = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("wav") => wav(samples, sample_rate),
        Some(e) if e.eq_ignore_ascii_case("f32") => raw(samples),
        _ => {
            return Err(format!(
                "{}: output must end in .wav or .f32",
                path.display()
            ))
        }
    };
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.flush()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn raw(samples: &[f32]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// A WAVE file with a `fmt ` chunk of format 3 (IEEE float), one channel, 32 bits.
pub fn wav(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 4) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 4);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&3u16.to_le_bytes()); // WAVE_FORMAT_IEEE_FLOAT
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&sample_rate.to_le_bytes());
    out.extend_from_slice(&(sample_rate * 4).to_le_bytes()); // bytes per second
    out.extend_from_slice(&4u16.to_le_bytes()); // block align
    out.extend_from_slice(&32u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&raw(samples));
    out
}

/// Reads back what [`write`] wrote (for tests and tools): the samples of a `.f32` or of a
/// float `.wav` as written here.
pub fn read(path: &Path) -> io::Result<Vec<f32>> {
    let bytes = std::fs::read(path)?;
    let body = if bytes.starts_with(b"RIFF") {
        bytes.get(44..).unwrap_or(&[])
    } else {
        &bytes[..]
    };
    Ok(body
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_header_describes_mono_float_48k() {
        let w = wav(&[0.5, -0.25], 48_000);
        assert_eq!(w.len(), 44 + 8);
        assert_eq!(&w[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(w[4..8].try_into().unwrap()), 44);
        assert_eq!(u16::from_le_bytes(w[20..22].try_into().unwrap()), 3);
        assert_eq!(u16::from_le_bytes(w[22..24].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(w[24..28].try_into().unwrap()), 48000);
        assert_eq!(u32::from_le_bytes(w[40..44].try_into().unwrap()), 8);
        assert_eq!(f32::from_le_bytes(w[44..48].try_into().unwrap()), 0.5);
    }
}
