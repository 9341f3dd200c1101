//! Spans of time as the config and the shell give them: a number of seconds (`2`, `0.5`) or a
//! number with a unit (`"500ms"`, `"2s"`, `"15m"`, `"2h"`, `"14d"`).

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
        "d" => 86_400.0,
        _ => return None,
    };
    from_seconds(number * scale)
}

/// A span as messages show it: in the largest unit that gives a whole number (`"14d"`,
/// `"12h"`, `"90m"`, `"45s"`), else in seconds with fractions (`"0.5s"`).
pub(crate) fn shown(d: Duration) -> String {
    let seconds = d.as_secs();
    if d.subsec_nanos() != 0 || seconds == 0 {
        return format!("{}s", d.as_secs_f64());
    }
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
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
        assert_eq!(from_text("14d"), Some(Duration::from_secs(14 * 86_400)));
        assert_eq!(from_text("0.5d"), Some(Duration::from_secs(43_200)));
        assert_eq!(from_text("366d"), Some(MAX));
        for bad in ["", "s", "-1", "367d", "2w", "1e3", "two", "1.2.3s"] {
            assert_eq!(from_text(bad), None, "{bad}");
        }
        assert_eq!(from_seconds(-1.0), None);
        assert_eq!(from_seconds(f64::NAN), None);
        assert_eq!(from_seconds(1e12), None);
    }

    #[test]
    fn shown_in_the_largest_whole_unit() {
        for (seconds, text) in [(14 * 86_400, "14d"), (43_200, "12h"), (5400, "90m"), (45, "45s"), (0, "0s")] {
            assert_eq!(shown(Duration::from_secs(seconds)), text);
        }
        assert_eq!(shown(Duration::from_millis(1500)), "1.5s");
    }
}
