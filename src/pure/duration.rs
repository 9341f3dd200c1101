//! Spans of time as the config and the shell give them: a number of seconds (`2`, `0.5`) or a
//! number with a unit (`"500ms"`, `"2s"`, `"15m"`, `"2h"`).

use std::time::Duration;

/// The longest span accepted anywhere (a year): longer is surely a typo.
pub(crate) const MAX: Duration = Duration::from_secs(366 * 24 * 3600);

/// Reads `seconds` or `text` (see the module doc); `None` for anything else, negative spans and
/// spans over [`MAX`].
pub(crate) fn from_seconds(seconds: f64) -> Option<Duration> {
    if !seconds.is_finite() || seconds < 0.0 || seconds > MAX.as_secs_f64() {
        return None;
    }
    Some(Duration::from_secs_f64(seconds))
}

/// Reads `"<number><unit>"` or a plain number of seconds.
pub(crate) fn from_text(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    from_seconds(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_units() {
        assert_eq!(from_text("2"), Some(Duration::from_secs(2)));
        assert_eq!(from_text("2s"), Some(Duration::from_secs(2)));
        assert_eq!(from_text("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(from_text("15m"), Some(Duration::from_secs(900)));
        assert_eq!(from_text("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(from_seconds(0.25), Some(Duration::from_millis(250)));
        for bad in ["", "s", "-1", "2d", "1e3", "two", "1.2.3s"] {
            assert_eq!(from_text(bad), None, "{bad}");
        }
        assert_eq!(from_seconds(-1.0), None);
        assert_eq!(from_seconds(f64::NAN), None);
        assert_eq!(from_seconds(1e12), None);
    }
}
