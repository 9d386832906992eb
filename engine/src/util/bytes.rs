//! Sizes as people read them.

/// `12.4 MiB`: binary units, one decimal from KiB up.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A size as operators write it: `10GB`, `10 GB`, `500MiB`, `10G`, `1.5TB`, `2048` (bytes).
/// SI units (`kB`, `MB`, `GB`, `TB`) are powers of 1000; binary ones (`KiB`, `MiB`, `GiB`,
/// `TiB`) and the single letters `K`, `M`, `G`, `T` (as `df -h` prints them) are powers of
/// 1024. Case does not matter.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    let n: f64 = num.parse().map_err(|_| format!("`{text}` is not a size: write e.g. `10GB`, `500MiB` or `10G`"))?;
    let k: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}`: use B, kB, MB, GB, TB, KiB, MiB, GiB, TiB (or K, M, G, T)"
            ))
        }
    };
    let bytes = (n * k).ceil();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("`{text}` is too large a size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_use_binary_units_with_one_decimal() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536 * 1024), "1.5 MiB");
        assert_eq!(human_bytes(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn sizes_parse_as_operators_write_them() {
        use super::parse_bytes;
        assert_eq!(parse_bytes("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_bytes("10 GiB"), Ok(10 * (1 << 30)));
        assert_eq!(parse_bytes("10G"), Ok(10 * (1 << 30)));
        assert_eq!(parse_bytes("1.5tb"), Ok(1_500_000_000_000));
        assert_eq!(parse_bytes("2048"), Ok(2048));
        assert!(parse_bytes("10 furlongs").is_err());
        assert!(parse_bytes("GB").is_err());
    }
}
