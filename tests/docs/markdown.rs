//! What the docs tests read from a Markdown page: fenced code blocks (with their info string parsed into
//! [`Attrs`]), links, and heading anchors spelled the way GitHub spells them. Parsed with pulldown-cmark,
//! so a `#` inside a code block is never a heading and a `[x](y)` inside code is never a link.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use std::collections::HashSet;

/// A fenced code block: the language, the attributes after it, its text, and the line of its fence.
#[derive(Debug)]
pub struct Block {
    pub line: usize,
    pub lang: String,
    pub attrs: Attrs,
    pub body: String,
}

/// The attributes of an `sh` block's info string (see docs/writing-docs.md).
#[derive(Debug, Default, PartialEq)]
pub struct Attrs {
    /// Servers the block needs: `needs=redis,rabbitmq`.
    pub needs: Vec<String>,
    /// The folder the block starts in, relative to the copy's root: `dir=examples/shell-worker`.
    pub dir: Option<String>,
    /// Why the block cannot run here: `skip="needs docker"`; it is only syntax-checked.
    pub skip: Option<String>,
}

/// A link or image destination and the line it is on.
#[derive(Debug)]
pub struct Link {
    pub line: usize,
    pub dest: String,
}

/// The servers a block may ask for with `needs=`.
pub const SERVICES: &[&str] = &["redis", "rabbitmq", "postgres"];

fn parser(text: &str) -> Parser<'_> {
    Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Every fenced code block of a page, in order. An info string that cannot be read is an error naming
/// its line.
pub fn blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for (event, range) in parser(text).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let line = line_of(text, range.start);
                let (lang, attrs) = parse_info(&info).map_err(|e| format!("line {line}: {e}"))?;
                current = Some(Block {
                    line,
                    lang,
                    attrs,
                    body: String::new(),
                });
            }
            Event::Text(t) => {
                if let Some(b) = current.as_mut() {
                    b.body.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => out.extend(current.take()),
            _ => {}
        }
    }
    Ok(out)
}

/// `sh needs=redis dir=x skip="a reason"` into the language and its attributes.
pub fn parse_info(info: &str) -> Result<(String, Attrs), String> {
    let info = info.trim();
    let (lang, mut rest) = info.split_once(char::is_whitespace).unwrap_or((info, ""));
    let mut attrs = Attrs::default();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let Some((key, after)) = rest.split_once('=') else {
            return Err(format!("`{rest}` in the info string is not key=value"));
        };
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((v, a)) => (v, a),
                None => return Err(format!("the value of `{key}` has no closing quote")),
            },
            None => after.split_once(char::is_whitespace).unwrap_or((after, "")),
        };
        rest = after;
        match key {
            "needs" => {
                for s in value.split(',') {
                    if !SERVICES.contains(&s) {
                        return Err(format!("needs={s}: not one of {}", SERVICES.join(", ")));
                    }
                    attrs.needs.push(s.to_string());
                }
            }
            "dir" => attrs.dir = Some(value.to_string()),
            "skip" if value.trim().is_empty() => return Err("skip needs a reason".into()),
            "skip" => attrs.skip = Some(value.to_string()),
            other => return Err(format!("unknown attribute `{other}` (needs, dir, skip)")),
        }
    }
    if lang != "sh" && attrs != Attrs::default() {
        return Err(format!("attributes are for `sh` blocks, not `{lang}`"));
    }
    Ok((lang.to_string(), attrs))
}

/// Every link and image destination of a page.
pub fn links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (event, range) in parser(text).into_offset_iter() {
        if let Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) = event {
            out.push(Link {
                line: line_of(text, range.start),
                dest: dest_url.to_string(),
            });
        }
    }
    out
}

/// The anchors of a page's headings, as GitHub makes them (a repeated heading gets `-1`, `-2`, ...).
pub fn anchors(text: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    let mut heading: Option<String> = None;
    for event in parser(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    let base = slug(&h);
                    let mut name = base.clone();
                    let mut n = 0;
                    while out.contains(&name) {
                        n += 1;
                        name = format!("{base}-{n}");
                    }
                    out.insert(name);
                }
            }
            _ => {}
        }
    }
    out
}

/// GitHub's anchor of a heading: lower case, letters, digits, `-` and `_` kept, spaces as `-`, the rest
/// dropped.
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn slugs_are_spelled_as_github_spells_them() {
    assert_eq!(
        slug("Reloading workers (SIGHUP)"),
        "reloading-workers-sighup"
    );
    assert_eq!(
        slug("http (the PrismQ TaskManager API)"),
        "http-the-prismq-taskmanager-api"
    );
    assert_eq!(slug("`task_manager` and x/y"), "task_manager-and-xy");
    let a = anchors("# A\n\n## A\n\n```sh\n# not a heading\n```\n## `b` c\n");
    let want: HashSet<String> = ["a", "a-1", "b-c"].iter().map(|s| s.to_string()).collect();
    assert_eq!(a, want);
}

#[test]
fn info_strings_are_read_and_mistakes_refused() {
    let (lang, a) = parse_info(r#"sh needs=redis,rabbitmq dir=examples skip="no docker here""#)
        .expect("a good info string");
    assert_eq!(lang, "sh");
    assert_eq!(a.needs, ["redis", "rabbitmq"]);
    assert_eq!(a.dir.as_deref(), Some("examples"));
    assert_eq!(a.skip.as_deref(), Some("no docker here"));
    assert!(parse_info("sh needs=mysql").is_err());
    assert!(parse_info("sh skip=\"\"").is_err());
    assert!(parse_info("sh skip=\"open").is_err());
    assert!(parse_info("sh timeout=3").is_err());
    assert!(parse_info("text dir=x").is_err());
    assert_eq!(parse_info("yaml").expect("plain").0, "yaml");
}
