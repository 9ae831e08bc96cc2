//! One entry of `schedules:` (section 7), parsed: a cron expression evaluated in an IANA time zone, and
//! the task each tick enqueues.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};
use workerhost_adapters::{Envelope, rfc3339_secs};

#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    pub name: String,
    /// The expression as written.
    pub cron_text: String,
    pub cron: Cron,
    /// The IANA name as written (`UTC` by default).
    pub timezone_name: String,
    pub timezone: TimeZone,
    pub task_type: String,
    pub params: Map<String, Value>,
}

/// Parses a cron expression: 5 fields, or 6 with seconds first, or an alias (`@hourly`, `@daily`, ...).
pub fn parse_cron(text: &str) -> Result<Cron, String> {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("`{text}` is not a cron expression (5 fields, or 6 with seconds first, or @hourly, @daily, ...): {e}"))
}

/// An IANA time zone by name (`Europe/Prague`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<TimeZone, String> {
    TimeZone::get(name).map_err(|e| {
        format!("`{name}` is not an IANA time zone name like Europe/Prague or UTC: {e}")
    })
}

impl ScheduleConfig {
    /// The first tick strictly after `after_ms` (milliseconds since the epoch), as milliseconds. Ticks fall
    /// on whole seconds; daylight-saving gaps and repeats are handled as croner defines them (a local
    /// time that does not exist runs at the first instant after the gap; a repeated one runs once).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let ts = Timestamp::from_millisecond(after_ms).ok()?;
        let zoned = ts.to_zoned(self.timezone.clone());
        let next = self.cron.find_next_occurrence(&zoned, false).ok()?;
        Some(next.timestamp().as_millisecond())
    }

    /// The next `n` ticks after `after_ms`.
    pub fn next_ticks(&self, after_ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut t = after_ms;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) if next > t => {
                    out.push(next);
                    t = next;
                }
                _ => break,
            }
        }
        out
    }

    /// The id of the tick at `tick_ms`: `<name>@<RFC 3339 UTC, seconds, Z>`. Every host computes the same
    /// id for the same tick, so a task manager that refuses duplicate ids runs each tick once.
    pub fn tick_id(&self, tick_ms: i64) -> String {
        format!("{}@{}", self.name, rfc3339_secs(tick_ms))
    }

    /// The task of the tick at `tick_ms`.
    pub fn envelope(&self, tick_ms: i64) -> Envelope {
        Envelope::new(
            self.tick_id(tick_ms),
            self.task_type.clone(),
            self.params.clone(),
        )
    }

    /// A tick shown in the schedule's own zone: `2026-12-01T03:00:00+01:00[Europe/Prague]`.
    pub fn local(&self, tick_ms: i64) -> String {
        match Timestamp::from_millisecond(tick_ms) {
            Ok(ts) => ts.to_zoned(self.timezone.clone()).to_string(),
            Err(_) => rfc3339_secs(tick_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: &str) -> ScheduleConfig {
        ScheduleConfig {
            name: "s".into(),
            cron_text: cron.into(),
            cron: parse_cron(cron).expect("cron"),
            timezone_name: tz.into(),
            timezone: parse_timezone(tz).expect("zone"),
            task_type: "T".into(),
            params: Map::new(),
        }
    }

    fn ms(text: &str) -> i64 {
        workerhost_adapters::parse_rfc3339(text).expect("date").0
    }

    #[test]
    fn five_and_six_fields_and_aliases() {
        let s = schedule("0 3 * * *", "UTC");
        let t = s.next_ticks(ms("2026-12-01T03:00:00Z"), 2);
        assert_eq!(
            t,
            vec![ms("2026-12-02T03:00:00Z"), ms("2026-12-03T03:00:00Z")]
        );
        let every2 = schedule("*/2 * * * * *", "UTC");
        assert_eq!(
            every2.next_after(ms("2026-12-01T00:00:00.500Z")),
            Some(ms("2026-12-01T00:00:02Z"))
        );
        let hourly = schedule("@hourly", "UTC");
        assert_eq!(
            hourly.next_after(ms("2026-12-01T10:59:59Z")),
            Some(ms("2026-12-01T11:00:00Z"))
        );
        assert_eq!(
            s.tick_id(ms("2026-12-02T03:00:00.000Z")),
            "s@2026-12-02T03:00:00Z"
        );
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("* * *").is_err());
        assert!(parse_cron("0 0 1 1 * 2030").is_err(), "no year field");
        assert!(parse_timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn zones_and_daylight_saving() {
        // 03:00 in Prague is 02:00Z in winter and 01:00Z in summer.
        let s = schedule("0 3 * * *", "Europe/Prague");
        assert_eq!(
            s.next_after(ms("2026-12-01T00:00:00Z")),
            Some(ms("2026-12-01T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(ms("2026-07-01T00:00:00Z")),
            Some(ms("2026-07-01T01:00:00Z"))
        );
        // 02:30 does not exist in Prague on 2026-03-29 (02:00 -> 03:00): it runs once, right after the gap.
        let gap = schedule("30 2 * * *", "Europe/Prague");
        let ticks = gap.next_ticks(ms("2026-03-28T12:00:00Z"), 2);
        assert_eq!(ticks.len(), 2);
        assert_eq!(
            ticks[0],
            ms("2026-03-29T01:00:00Z"),
            "{}",
            gap.local(ticks[0])
        );
        assert_eq!(ticks[1], ms("2026-03-30T00:30:00Z"));
    }
}
