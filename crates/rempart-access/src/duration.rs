//! Durations as people write them: `90s`, `30m`, `2h`, `7d`, `365d`.

/// Milliseconds of `text` (a positive whole number and one unit of `s`, `m`,
/// `h`, `d`), or why not.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit (s, m, h or d), e.g. 2h"))?;
    let (number, unit) = text.split_at(split);
    let count: i64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a number then a unit, e.g. 2h"))?;
    let unit_ms: i64 = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("{text:?}: unknown unit {other:?} (s, m, h or d)")),
    };
    if count == 0 {
        return Err(format!("{text:?}: a duration is longer than zero"));
    }
    count
        .checked_mul(unit_ms)
        .filter(|ms| *ms <= 100 * 365 * 86_400_000)
        .ok_or_else(|| format!("{text:?}: longer than a hundred years"))
}

/// The shortest way to write `ms` with one unit (`2h`, `90m`, `45s`).
pub fn format_duration(ms: i64) -> String {
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("30m"), Ok(1_800_000));
        assert_eq!(parse_duration(" 2h "), Ok(7_200_000));
        assert_eq!(parse_duration("365d"), Ok(365 * 86_400_000));
        for bad in [
            "",
            "2",
            "h",
            "2w",
            "0h",
            "-1h",
            "1.5h",
            "99999999999999d",
            "2 h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_duration(7_200_000), "2h");
        assert_eq!(format_duration(5_400_000), "90m");
        assert_eq!(format_duration(86_400_000 * 365), "365d");
    }
}
