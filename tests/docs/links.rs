//! Checking a page's relative links: the file or folder must exist inside the repository, and an anchor
//! must be a heading of the page it points into. Links with a scheme (`https:`, `mailto:`) are not
//! followed: the suite never leaves loopback.

use crate::markdown;
use std::path::{Component, Path, PathBuf};

/// The broken links of the page at `rel` (relative to `root`), each as `page:line: link: why`.
pub fn broken(root: &Path, rel: &str) -> Vec<String> {
    let page = root.join(rel);
    let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("read {rel}: {e}"));
    let mut out = Vec::new();
    for link in markdown::links(&text) {
        if let Err(why) = check(root, &page, &text, &link.dest) {
            out.push(format!("{rel}:{}: {}: {why}", link.line, link.dest));
        }
    }
    out
}

fn check(root: &Path, page: &Path, text: &str, dest: &str) -> Result<(), String> {
    if dest.contains("://") || dest.starts_with("mailto:") {
        return Ok(());
    }
    let (path, anchor) = match dest.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (dest, None),
    };
    let (target, target_text) = if path.is_empty() {
        (page.to_path_buf(), text.to_string())
    } else {
        if path.starts_with('/') {
            return Err("an absolute path: link relative to the page".into());
        }
        let base = page.parent().unwrap_or(root);
        let target = normalize(&base.join(path));
        if !target.starts_with(root) {
            return Err("points outside the repository: the reference must live in it".into());
        }
        if !target.exists() {
            return Err(format!("{} does not exist", shown(root, &target)));
        }
        let body = if target.is_file() && path.ends_with(".md") {
            std::fs::read_to_string(&target).map_err(|e| format!("cannot read it: {e}"))?
        } else {
            String::new()
        };
        (target, body)
    };
    match anchor {
        None | Some("") => Ok(()),
        Some(a) if !target.to_string_lossy().ends_with(".md") => {
            Err(format!("anchor #{a} into a file that is not Markdown"))
        }
        Some(a) => {
            if markdown::anchors(&target_text).contains(a) {
                Ok(())
            } else {
                Err(format!(
                    "{} has no heading with anchor #{a}",
                    shown(root, &target)
                ))
            }
        }
    }
}

/// `a/b/../c` as `a/c`, without touching the file system (the target may not exist).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn shown(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

#[test]
fn broken_links_and_anchors_are_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("docs")).expect("mkdir");
    std::fs::write(root.join("docs/b.md"), "# B page\n\n## Some thing (x)\n").expect("write");
    std::fs::write(
        root.join("README.md"),
        "# Top\n\n[ok](docs/b.md) [ok](docs/b.md#some-thing-x) [ok](#top) [ok](docs/)\n\
         [web](https://example.com/x#y)\n\
         [gone](docs/c.md)\n[bad anchor](docs/b.md#nope)\n[self](#nope)\n\
         [outside](../shared/SPEC.md)\n`[code](nope.md)`\n",
    )
    .expect("write");
    let found = broken(root, "README.md");
    assert_eq!(found.len(), 4, "{found:#?}");
    assert!(found[0].starts_with("README.md:5: docs/c.md: docs/c.md does not exist"));
    assert!(found[1].contains("docs/b.md#nope: docs/b.md has no heading with anchor #nope"));
    assert!(found[2].contains("#nope: README.md has no heading"));
    assert!(found[3].contains("points outside the repository"));
}
