//! A small, strict parser of the Prometheus text exposition format (0.0.4), so that `/metrics` is held
//! to what a Prometheus server accepts: valid names and label syntax, a `# TYPE` before a family's
//! samples, families not interleaved, no duplicate series, histograms whose buckets are cumulative and end
//! in `+Inf` equal to `_count`.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Default)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The value of the series `name{labels}` (labels given must match exactly).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => v.parse::<f64>().map_err(|_| format!("bad value {v:?}")),
    }
}

/// Parses `name{a="b",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !valid_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = r.strip_prefix('}') {
                r = after;
                break;
            }
            let eq = r.find('=').ok_or("a label without =")?;
            let lname = &r[..eq];
            if !valid_label_name(lname) {
                return Err(format!("bad label name {lname:?}"));
            }
            r = r[eq + 1..]
                .strip_prefix('"')
                .ok_or_else(|| format!("label {lname} value is not quoted"))?;
            let mut value = String::new();
            let mut it = r.char_indices();
            let end = loop {
                match it.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match it.next().map(|(_, c)| c) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            r = &r[end + 1..];
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("label {lname} twice"));
            }
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if !r.starts_with('}') {
                return Err("expected , or } after a label".into());
            }
        }
        rest = r;
    }
    let rest = rest.strip_prefix(' ').ok_or("no space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().ok_or("no value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text after the sample".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The family a sample belongs to (`x_bucket` → `x` for histograms).
fn family_of(sample: &str, f: &Family) -> bool {
    let base = f.name.as_str();
    if sample == base {
        return f.kind != "histogram" && f.kind != "summary";
    }
    match f.kind.as_str() {
        "histogram" => [
            format!("{base}_bucket"),
            format!("{base}_sum"),
            format!("{base}_count"),
        ]
        .iter()
        .any(|n| n == sample),
        "summary" => [format!("{base}_sum"), format!("{base}_count")]
            .iter()
            .any(|n| n == sample),
        _ => false,
    }
}

/// What the host serves at `/metrics`, held to the Prometheus project's own parser and linter
/// (`promtool check metrics`, Debian's `prometheus` package, which scripts/test installs), then parsed
/// here for the values and for what promtool does not check (duplicate series, cumulative buckets).
pub fn checked(text: &str) -> Result<Exposition, String> {
    promtool(text)?;
    parse(text)
}

fn promtool(text: &str) -> Result<(), String> {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            return Err(format!("promtool is required under CI=true: {e}"));
        }
        Err(e) => {
            eprintln!("skipping promtool (apt-get install prometheus): {e}");
            return Ok(());
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "promtool check metrics failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[test]
fn promtool_rejects_what_prometheus_would() {
    if std::process::Command::new("promtool")
        .arg("--version")
        .output()
        .is_err()
        && std::env::var("CI").as_deref() != Ok("true")
    {
        return;
    }
    assert!(checked("# HELP a Some.\n# TYPE a gauge\na{w=x} 1\n").is_err());
    assert!(checked("# HELP a_total A.\n# TYPE a_total counter\na_total 1\n").is_ok());
}

pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exp = Exposition::default();
    let mut seen_families = HashSet::new();
    let mut seen_series = HashSet::new();
    let mut helps: BTreeMap<String, String> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("line {}: {m}: {line:?}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let words: Vec<&str> = c.trim_start().splitn(3, ' ').collect();
            match words.as_slice() {
                ["HELP", name, help] => {
                    if !valid_metric_name(name) {
                        return Err(at("bad name in HELP".into()));
                    }
                    helps.insert(name.to_string(), help.to_string());
                }
                ["TYPE", name, kind] => {
                    if !valid_metric_name(name) {
                        return Err(at("bad name in TYPE".into()));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if !seen_families.insert(name.to_string()) {
                        return Err(at("a second TYPE for this family".into()));
                    }
                    exp.families.push(Family {
                        name: name.to_string(),
                        kind: kind.to_string(),
                        help: helps.get(*name).cloned(),
                        samples: Vec::new(),
                    });
                }
                _ => {}
            }
            continue;
        }
        let s = parse_sample(line).map_err(at)?;
        let Some(f) = exp.families.last_mut() else {
            return Err(at("a sample before any TYPE".into()));
        };
        if !family_of(&s.name, f) {
            return Err(at(format!(
                "sample outside its family (the current one is {})",
                f.name
            )));
        }
        if f.kind == "counter" && (s.value.is_nan() || s.value < 0.0) {
            return Err(at("a negative counter".into()));
        }
        if !seen_series.insert(format!("{}{:?}", s.name, s.labels)) {
            return Err(at("a duplicate series".into()));
        }
        f.samples.push(s);
    }
    for f in exp.families.iter().filter(|f| f.kind == "histogram") {
        check_histogram(f)?;
    }
    Ok(exp)
}

/// Buckets cumulative, ending in `+Inf` equal to `_count`, for each label set.
fn check_histogram(f: &Family) -> Result<(), String> {
    type Labels = Vec<(String, String)>;
    let mut by_series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
    for s in f.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
        let le = s
            .labels
            .get("le")
            .ok_or_else(|| format!("{}: a bucket without le", f.name))?;
        let le = parse_value(le)?;
        let key: Vec<_> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        by_series.entry(key).or_default().push((le, s.value));
    }
    for (key, buckets) in by_series {
        let labels: BTreeMap<String, String> = key.into_iter().collect();
        if !buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1)
        {
            return Err(format!("{} {labels:?}: buckets not cumulative", f.name));
        }
        let last = buckets.last().ok_or("no buckets")?;
        if last.0 != f64::INFINITY {
            return Err(format!("{} {labels:?}: no +Inf bucket", f.name));
        }
        let count = f
            .samples
            .iter()
            .find(|s| s.name == format!("{}_count", f.name) && s.labels == labels)
            .ok_or_else(|| format!("{} {labels:?}: no _count", f.name))?;
        if count.value != last.1 {
            return Err(format!("{} {labels:?}: +Inf bucket != _count", f.name));
        }
    }
    Ok(())
}

#[test]
fn the_parser_accepts_good_text_and_rejects_bad_text() {
    let good = "# HELP a_total A counter.\n# TYPE a_total counter\na_total{w=\"x.y\",s=\"q\\\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let e = parse(good).expect("good text parses");
    assert_eq!(e.value("a_total", &[("w", "x.y"), ("s", "q\"")]), Some(3.0));
    assert_eq!(
        e.family("a_total").and_then(|f| f.help.clone()).as_deref(),
        Some("A counter.")
    );
    for bad in [
        "a_total 1\n",                           // no TYPE
        "# TYPE a counter\na{w=x} 1\n",          // unquoted
        "# TYPE a counter\na{w=\"x\"} one\n",    // value
        "# TYPE a counter\na -1\n",              // negative counter
        "# TYPE a gauge\na 1\na 2\n",            // duplicate
        "# TYPE a gauge\n# TYPE b gauge\na 1\n", // interleaved
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n", // +Inf != count
        "# TYPE 1a gauge\n",                                        // name
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad:?}");
    }
}
