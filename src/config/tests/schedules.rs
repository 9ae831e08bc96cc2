//! `schedules:`: parsed entries, and every bad cron, zone or field reported with its line.

use super::*;

const WORKER: &str = "workers:\n  - name: w\n    command: [\"/bin/true\"]\n    task_types: [T]\n";

#[test]
fn schedules_load_with_defaults() {
    let text = format!(
        "{WORKER}schedules:\n  - name: nightly-report\n    cron: \"0 3 * * *\"\n    timezone: Europe/Prague\n    type: Report.Build\n    params: {{ kind: nightly }}\n  - name: often\n    cron: \"*/2 * * * * *\"\n    type: T\n"
    );
    let c = ok_with(&text, &[]);
    assert_eq!(c.schedules.len(), 2);
    let s = &c.schedules[0];
    assert_eq!(s.name, "nightly-report");
    assert_eq!(s.timezone_name, "Europe/Prague");
    assert_eq!(s.task_type, "Report.Build");
    assert_eq!(s.params["kind"], "nightly");
    assert_eq!(c.schedules[1].timezone_name, "UTC");
    assert!(c.schedules[1].params.is_empty());
}

#[test]
fn bad_cron_zone_and_fields_name_line_and_field() {
    let text = format!(
        "{WORKER}schedules:\n  - name: a\n    cron: \"61 * * * *\"\n    type: T\n  - name: b\n    cron: \"@hourly\"\n    timezone: Mars/Olympus\n    type: T\n  - name: a\n    cron: \"* * * * *\"\n    type: T\n    every: 5\n  - cron: \"* * * * *\"\n"
    );
    let e = errors(&text, &[]);
    let got = spots(&e);
    for want in [
        (Some(7), "schedules[0].cron"),
        (Some(11), "schedules[1].timezone"),
        (Some(13), "schedules[2].name"),
        (Some(16), "schedules[2].every"),
        (Some(17), "schedules[3]"),
    ] {
        assert!(got.contains(&want), "{want:?} missing from {got:?}\n{e}");
    }
    let shown = e.to_string();
    assert!(
        shown.contains("workerhost_config.yaml:7: schedules[0].cron"),
        "{shown}"
    );
    assert!(shown.contains("IANA"), "{shown}");
    assert!(shown.contains("used twice"), "{shown}");
}
