//! Wall-clock timestamps as the result documents carry them (RFC 3339, UTC, milliseconds), formatted and
//! parsed with `jiff`.

/// Formats milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Instants outside jiff's
/// range (years -9999..=9999) are clamped to its ends.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        jiff::Timestamp::MIN
    } else {
        jiff::Timestamp::MAX
    });
    format!("{t:.3}")
}

/// An instant kept as milliseconds since the Unix epoch and shown (and serialized) as [`rfc3339_ms`]
/// formats it: taking one is cheap, the text is made only when someone reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(pub i64);

impl Stamp {
    pub fn now() -> Stamp {
        Stamp(crate::now_ms())
    }
}

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&rfc3339_ms(self.0))
    }
}

impl serde::Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339_ms(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Stamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Stamp, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Parses an RFC 3339 instant (`2026-12-01T10:00:00Z`, `2026-12-01T11:00:00.5+01:00`). The error says
/// what was expected; callers add which field it was.
pub fn parse_rfc3339(s: &str) -> Result<Stamp, String> {
    let t: jiff::Timestamp = s.trim().parse().map_err(|e| {
        format!("{s:?} is not an RFC 3339 date-time like 2026-12-01T10:00:00Z ({e})")
    })?;
    Ok(Stamp(t.as_millisecond()))
}

/// `YYYY-MM-DDTHH:MM:SSZ`: seconds precision, UTC, as schedule tick ids carry it.
pub fn rfc3339_secs(ms: i64) -> String {
    let full = rfc3339_ms(ms.div_euclid(1000) * 1000);
    // `...:SS.000Z` -> `...:SSZ`
    match full.strip_suffix(".000Z") {
        Some(head) => format!("{head}Z"),
        None => full,
    }
}

/// The current time as [`rfc3339_ms`] formats it.
pub fn now_rfc3339() -> String {
    rfc3339_ms(crate::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(rfc3339_ms(951_868_800_000), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        // Beyond jiff's range (which ends late on 9999-12-30): clamped, never a panic.
        assert!(rfc3339_ms(i64::MAX).starts_with("9999-12-30T"));
        assert!(rfc3339_ms(i64::MIN).starts_with("-009999-01-0"));
    }

    #[test]
    fn stamps_show_and_serialize_as_rfc3339() {
        let s = Stamp(1_700_000_000_123);
        assert_eq!(s.to_string(), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            serde_json::to_string(&s).expect("serializes"),
            "\"2023-11-14T22:13:20.123Z\""
        );
    }

    #[test]
    fn parses_rfc3339_with_offsets_and_names_bad_text() {
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123Z"),
            Ok(Stamp(1_700_000_000_123))
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123+01:00"),
            Ok(Stamp(1_700_000_000_123))
        );
        let e = parse_rfc3339("tomorrow").expect_err("not a date");
        assert!(e.contains("RFC 3339"), "{e}");
        assert!(parse_rfc3339("2023-11-14").is_err());
        assert_eq!(rfc3339_secs(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn agrees_with_a_naive_calendar_day_by_day() {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut y, mut m, mut d) = (1970, 1, 1);
        for days in 0..(200 * 366) {
            assert_eq!(
                rfc3339_ms(days * 86_400_000),
                format!("{y:04}-{m:02}-{d:02}T00:00:00.000Z"),
                "day {days}"
            );
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                (d, m) = (1, m + 1);
            }
            if m > 12 {
                (m, y) = (1, y + 1);
            }
        }
    }
}
