//! Where each field of a config file is: a map from field path (`host.concurrency`, `workers[1].timeout`,
//! `workers[0].task_types[2]`) to its 1-based line number, built from yaml-rust2's event stream.
//!
//! A mapping key's line is the line of the key scalar; a sequence item's line is the line where the item
//! starts. Block and flow style both work. Only the first document is read. A file that does not parse
//! gives whatever was found before the error (serde_yaml reports the syntax error itself).

use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser};

/// Field path → 1-based line.
pub(crate) type Lines = HashMap<String, usize>;

/// Joins a mapping key onto a path: `("", "host")` → `host`, `("host", "id")` → `host.id`.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins a sequence index onto a path: `("workers", 1)` → `workers[1]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The line of `path`, or of its nearest ancestor that has one (`workers[1].task_types` when the worker
/// has no such key yet → the line of `workers[1]`).
pub(crate) fn line_of(lines: &Lines, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(l) = lines.get(p) {
            return Some(*l);
        }
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

enum Frame {
    /// A mapping. `path` is `None` inside ignored subtrees (complex keys, values of complex keys).
    Map {
        path: Option<String>,
        /// `Some(k)`: a key was read and its value comes next; `None`: a key comes next.
        key: Option<Option<String>>,
    },
    Seq {
        path: Option<String>,
        index: usize,
    },
    /// A complex (mapping or sequence) key: everything inside is ignored.
    Ignore,
}

/// Builds the path → line map of `text`.
pub(crate) fn locate(text: &str) -> Lines {
    let mut lines = Lines::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    let mut started = false;
    while let Ok((event, marker)) = parser.next_token() {
        let line = marker.line();
        let (is_start, is_map) = match &event {
            Event::StreamEnd | Event::DocumentEnd => break,
            Event::MappingStart(..) => (true, true),
            Event::SequenceStart(..) => (true, false),
            Event::Scalar(..) | Event::Alias(..) => (false, false),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                if stack.is_empty() {
                    break;
                }
                node_done(&mut stack);
                continue;
            }
            _ => continue,
        };
        // Where this node sits: its path (if tracked), or whether it is a mapping key.
        let child: Option<String> = match stack.last_mut() {
            None => {
                if started {
                    break;
                }
                started = true;
                Some(String::new())
            }
            Some(Frame::Ignore) => None,
            Some(Frame::Map { path, key }) => match key {
                None => {
                    // This node is a key.
                    if let Event::Scalar(k, ..) = &event {
                        if let Some(p) = path {
                            lines.insert(key_path(p, k), line);
                        }
                        *key = Some(Some(k.clone()));
                    } else if is_start {
                        stack.push(Frame::Ignore);
                    } else {
                        *key = Some(None);
                    }
                    continue;
                }
                Some(k) => match (path.as_deref(), k.as_deref()) {
                    (Some(p), Some(k)) => Some(key_path(p, k)),
                    _ => None,
                },
            },
            Some(Frame::Seq { path, index }) => path.as_deref().map(|p| {
                let cp = index_path(p, *index);
                lines.insert(cp.clone(), line);
                cp
            }),
        };
        if is_start {
            if is_map {
                stack.push(Frame::Map {
                    path: child,
                    key: None,
                });
            } else {
                stack.push(Frame::Seq {
                    path: child,
                    index: 0,
                });
            }
        } else if stack.is_empty() {
            break; // a document that is a single scalar
        } else {
            node_done(&mut stack);
        }
    }
    lines
}

/// A complete node (scalar, alias, or a collection that just ended) was read inside the top frame.
fn node_done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { key, .. }) => {
            // After a value a key comes next; after a complex key its (untracked) value comes next.
            *key = match key {
                Some(_) => None,
                None => Some(None),
            };
        }
        Some(Frame::Seq { index, .. }) => *index += 1,
        Some(Frame::Ignore) | None => {}
    }
}
