//! The server's memory budget: its size from flags or the machine, and the error a refused
//! render gets. The reservations themselves are the engine's (`krs_engine::render::budget`):
//! a render job reserves its estimate once its graph is built, a held render (batch form,
//! normalized, worker port) reserves its 4 bytes per sample when it is requested.

/// Share of the machine's physical memory the server budgets for renders by default: the
/// other half is for the process's baseline, the allocator's retained pages and the rest of
/// the machine.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.5;

/// Share of the budget one connection may hold by default, so one client cannot take it all.
pub const DEFAULT_CONNECTION_SHARE: u64 = 4;

/// Used where /proc/meminfo cannot be read.
const FALLBACK_PHYSICAL_MEMORY: u64 = 4 << 30;

/// Bytes of physical memory (`MemTotal` in /proc/meminfo).
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(FALLBACK_PHYSICAL_MEMORY)
}

/// The default `--max-memory`.
pub fn default_max_memory() -> u64 {
    (physical_memory() as f64 * DEFAULT_MEMORY_SHARE) as u64
}

/// Bytes from `600M`, `2G`, `1.5G`, `512K`, `1T` or a plain number (binary units: K = 1024).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("unknown unit in {text:?} (use K, M, G or T)")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {text:?}"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("a size must be positive: {text:?}"));
    }
    Ok((value * scale as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("600M"), Ok(600 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12X").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("M").is_err());
        assert!(physical_memory() > 0);
    }
}
