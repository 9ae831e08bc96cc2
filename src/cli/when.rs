//! `submit --delay | --at | --priority`: when a task should run, checked against what the configured task
//! manager can keep (section 7: a flag it cannot honour is refused, saying why, exit 2).

use super::SubmitArgs;
use workerhost_adapters::capabilities::{TimeFlag, refusal};
use workerhost_adapters::{Envelope, Stamp, now_ms, parse_rfc3339};

/// Sets `run_at` and `priority` on `env` from the flags; the error names the flag and what is wrong.
pub fn apply(s: &SubmitArgs, kind: &str, env: &mut Envelope) -> Result<(), String> {
    let asked = [
        (s.delay.is_some(), TimeFlag::Delay),
        (s.at.is_some(), TimeFlag::At),
        (s.priority.is_some(), TimeFlag::Priority),
    ];
    for (given, flag) in asked {
        if let Some(why) = refusal(kind, flag).filter(|_| given) {
            return Err(why);
        }
    }
    if let Some(d) = &s.delay {
        let ms = parse_delay(d)?;
        env.run_at = Some(Stamp(now_ms().saturating_add(ms)));
    }
    if let Some(at) = &s.at {
        env.run_at = Some(parse_rfc3339(at).map_err(|e| format!("--at: {e}"))?);
    }
    if let Some(p) = s.priority {
        env.priority = p;
    }
    Ok(())
}

/// `30s`, `5m`, `2h`, `1d`, `1500ms`, or plain seconds (`90`, `2.5`), as milliseconds.
pub fn parse_delay(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let bad = || format!("--delay {text:?}: expected a duration like 30s, 5m, 2h or 1d");
    if t.starts_with('-') {
        return Err(format!("--delay {text:?}: a delay must not be negative"));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "" | "s" | "sec" | "secs" => 1_000.0,
        "m" | "min" | "mins" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return Err(bad()),
    };
    let ms = n * scale;
    if !ms.is_finite() || ms > 1e15 {
        return Err(bad());
    }
    Ok(ms.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_in_every_unit_and_the_refusals() {
        assert_eq!(parse_delay("30s"), Ok(30_000));
        assert_eq!(parse_delay("5m"), Ok(300_000));
        assert_eq!(parse_delay("2h"), Ok(7_200_000));
        assert_eq!(parse_delay("1d"), Ok(86_400_000));
        assert_eq!(parse_delay("1500ms"), Ok(1_500));
        assert_eq!(parse_delay("2.5"), Ok(2_500));
        assert!(
            parse_delay("-5s")
                .expect_err("negative")
                .contains("negative")
        );
        assert!(parse_delay("soon").expect_err("bad").contains("--delay"));
        assert!(parse_delay("5 weeks").is_err());
        assert!(parse_delay("").is_err());
    }
}
