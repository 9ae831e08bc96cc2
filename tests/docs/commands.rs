//! Splitting an `sh` block into the commands a reader types, each with the exit code it must have, and
//! turning the block into the script the harness runs: every command followed by a check of its exit
//! code, so a failing line in the middle of a block cannot hide behind a good last line.

use std::process::Command as Process;

/// One command of a block: its text (one line, or lines joined by `\`, a here-document, or a compound
/// command such as `for ...; do ...; done` over several lines), the line it starts on, the exit code
/// it must have, and whether it ends with `; echo "exit $?"` (removed from `text`).
#[derive(Debug, PartialEq)]
pub struct Command {
    pub line: usize,
    pub text: String,
    pub want: i32,
    pub echoes_exit: bool,
}

const ECHO_EXIT: &str = "; echo \"exit $?\"";

/// The commands of a block whose first line is `first_line` of the page.
pub fn split(body: &str, first_line: usize) -> Result<Vec<Command>, String> {
    let lines: Vec<&str> = body.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let trimmed = lines[i].trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        // The lines a reader sees as the command itself (not here-document bodies): they carry the
        // `# exit N` comment.
        let mut head: Vec<&str> = Vec::new();
        let mut text = String::new();
        loop {
            if i >= lines.len() {
                return Err(format!(
                    "line {}: the command does not end before the block does",
                    first_line + start
                ));
            }
            let line = lines[i];
            i += 1;
            head.push(line);
            text.push_str(line);
            text.push('\n');
            if let Some((word, strip_tabs)) = heredoc(line) {
                loop {
                    let Some(l) = lines.get(i) else {
                        return Err(format!(
                            "line {}: here-document `{word}` has no end line",
                            first_line + start
                        ));
                    };
                    i += 1;
                    text.push_str(l);
                    text.push('\n');
                    let end = if strip_tabs {
                        l.trim_start_matches('\t')
                    } else {
                        l
                    };
                    if end == word {
                        break;
                    }
                }
            }
            if line.ends_with('\\') {
                continue;
            }
            if complete(&text) {
                break;
            }
        }
        let want = head
            .iter()
            .find_map(|l| exit_comment(l).map(|(n, _)| n))
            .unwrap_or(0);
        let last = head.len() - 1;
        let visible = exit_comment(head[last])
            .map_or(head[last], |(_, before)| before)
            .trim_end();
        let echoes_exit = visible.ends_with(ECHO_EXIT);
        if echoes_exit {
            // Rebuild the text without the final `; echo "exit $?"`: the harness prints it itself after
            // taking the code of the command before it.
            let cut = text.rfind(ECHO_EXIT).unwrap_or(text.len());
            text.truncate(cut);
            text.push('\n');
        }
        out.push(Command {
            line: first_line + start,
            text,
            want,
            echoes_exit,
        });
    }
    Ok(out)
}

/// `cat > f <<'EOF'` (or `<<EOF`, `<<"EOF"`, `<<-EOF`): the end word, and whether leading tabs are
/// stripped. `<<<` is a here-string, not a document.
fn heredoc(line: &str) -> Option<(String, bool)> {
    let at = line.find("<<")?;
    let rest = &line[at + 2..];
    if rest.starts_with('<') {
        return None;
    }
    let (strip, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some((word, strip))
}

/// A trailing `# exit N`: N and the text before the comment.
fn exit_comment(line: &str) -> Option<(i32, &str)> {
    let hash = line.rfind('#')?;
    let comment = line[hash + 1..].trim();
    let n = comment.strip_prefix("exit")?.trim().parse().ok()?;
    Some((n, &line[..hash]))
}

/// Whether bash reads `text` as complete commands (an open `for`, `if`, `{`, quote or a trailing `|`
/// is not).
fn complete(text: &str) -> bool {
    Process::new("bash")
        .args(["-n", "-c", text])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(true)
}

/// The script that runs a block's commands in order, checking each one's exit code. A failure prints
/// `__DOCS_FAIL line L: exit X, want W` and stops the block.
pub fn script(commands: &[Command], dir: &str) -> String {
    let mut s = String::from(
        "__check() { if [ \"$2\" != \"$1\" ]; then printf '\\n__DOCS_FAIL line %s: exit %s, want %s\\n' \"$3\" \"$2\" \"$1\"; exit 97; fi; }\n",
    );
    s.push_str(&format!("cd '{}' || exit 98\n", dir.replace('\'', "'\\''")));
    for c in commands {
        s.push_str(&c.text);
        s.push_str("__rc=$?\n");
        if c.echoes_exit {
            s.push_str("echo \"exit $__rc\"\n");
        }
        s.push_str(&format!("__check {} $__rc {}\n", c.want, c.line));
    }
    s
}

#[test]
fn a_block_splits_into_the_commands_a_reader_types() {
    let body = "# a comment\n\
        echo a \\\n  | cat\n\
        cat > f <<'EOF'\nx # exit 4\nEOF\n\
        for i in 1 2; do\n  echo $i\ndone\n\
        false; echo \"exit $?\"  # exit 1\n\
        sh -c 'exit 3'   # exit 3\n";
    let c = split(body, 10).expect("splits");
    let lines: Vec<usize> = c.iter().map(|c| c.line).collect();
    assert_eq!(lines, [11, 13, 16, 19, 20]);
    assert_eq!(c[0].text, "echo a \\\n  | cat\n");
    assert_eq!(
        c[1].want, 0,
        "a comment inside a here-document is text, not an annotation"
    );
    assert_eq!(c[1].text, "cat > f <<'EOF'\nx # exit 4\nEOF\n");
    assert_eq!(c[2].text, "for i in 1 2; do\n  echo $i\ndone\n");
    assert_eq!((c[3].want, c[3].echoes_exit), (1, true));
    assert_eq!(c[3].text, "false\n");
    assert_eq!((c[4].want, c[4].echoes_exit), (3, false));
    assert!(split("for i in 1; do\n", 1).is_err());
    assert!(split("cat <<EOF\nno end\n", 1).is_err());
}
