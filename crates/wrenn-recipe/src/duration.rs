//! Durations: whole numbers with a unit (`ms`, `s`, `m`, `h`), parts added (`1m30s`).

use std::time::Duration;

/// Parses a duration such as `500ms`, `30s`, `5m`, `2h` or `1h30m`, or says what is wrong.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err("empty duration (use a number and a unit: 500ms, 30s, 5m, 2h)".to_string());
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: u64 = 0;
    while i < bytes.len() {
        let number_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if number_start == i {
            return Err(format!(
                "expected a whole number at `{}`",
                &text[number_start..]
            ));
        }
        let number = &text[number_start..i];
        let unit_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        let millis_per_unit: u64 = match &text[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("missing unit after `{number}` (use ms, s, m or h)")),
            unit => {
                return Err(format!(
                    "unknown unit `{unit}` (use whole numbers with ms, s, m or h)"
                ))
            }
        };
        total = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(millis_per_unit))
            .and_then(|millis| total.checked_add(millis))
            .ok_or_else(|| "duration too large".to_string())?;
    }
    Ok(Duration::from_millis(total))
}

/// `duration` written so that [`parse`] reads it back, to the millisecond: `1h30m`, `500ms`,
/// `0s`.
pub(crate) fn format(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    let mut rest = millis;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        let count = rest / size;
        rest %= size;
        if count > 0 {
            text.push_str(&format!("{count}{unit}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let ms = Duration::from_millis;
        assert_eq!(parse("500ms"), Ok(ms(500)));
        assert_eq!(parse("30s"), Ok(ms(30_000)));
        assert_eq!(parse("5m"), Ok(ms(300_000)));
        assert_eq!(parse("2h"), Ok(ms(7_200_000)));
        assert_eq!(parse("1m30s"), Ok(ms(90_000)));
        assert_eq!(parse("1h2m3s4ms"), Ok(ms(3_723_004)));
        assert_eq!(parse("0s"), Ok(ms(0)));
        assert_eq!(parse("007s"), Ok(ms(7_000)));
    }

    #[test]
    fn rejects() {
        for (text, wanted) in [
            ("", "empty"),
            ("5", "missing unit after `5`"),
            ("1m30", "missing unit after `30`"),
            ("5d", "unknown unit `d`"),
            ("5S", "unknown unit `S`"),
            ("1.5s", "unknown unit `.`"),
            ("s", "expected a whole number at `s`"),
            ("-5s", "expected a whole number at `-5s`"),
            ("99999999999999999999s", "too large"),
            ("18446744073709551615h", "too large"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(wanted), "{text:?}: {error}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_millis(500)), "500ms");
        assert_eq!(format(Duration::from_millis(5_400_000)), "1h30m");
        assert_eq!(format(Duration::from_millis(3_723_004)), "1h2m3s4ms");
        for millis in [1, 999, 1000, 59_999, 60_000, 7_200_000, 123_456_789] {
            let d = Duration::from_millis(millis);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
