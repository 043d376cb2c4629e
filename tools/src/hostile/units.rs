//! How the suite writes quantities: decimal megabytes (the targets are in MB) and
//! counts with thousands separators.

/// Bytes per megabyte: decimal, so a bound in MB is the stricter reading.
pub const MB: f64 = 1e6;

/// `bytes` as megabytes with one decimal ("3.2 MB").
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / MB)
}

/// A size in KiB (as `/proc` gives it) as megabytes.
pub fn kib_to_mb(kib: i64) -> f64 {
    kib as f64 * 1024.0 / MB
}

/// `n` with thousands separators ("1,000,000").
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(mb(3_210_000), "3.2 MB");
        assert!((kib_to_mb(1000) - 1.024).abs() < 1e-9);
    }
}
