//! `completions`, `man` and `schema`. The first two are generated from the same clap definition as the
//! parser itself, so they can never list a flag the binary does not take; the schema comes from the
//! config loader's own tables. None reads a config file.

use super::Cli;
use clap::CommandFactory;
use std::io::Write;

/// The shells `workerhost completions` writes for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completions(shell: Shell) -> anyhow::Result<u8> {
    let mut cmd = Cli::command();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    // Into a buffer first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "workerhost", &mut script);
    print_all(&script)
}

/// `workerhost schema`: the config file's JSON Schema, derived from the loader's own tables.
pub fn schema() -> anyhow::Result<u8> {
    let mut text = serde_json::to_string_pretty(&workerhost::config::schema::schema())?;
    text.push('\n');
    print_all(text.as_bytes())
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// The man page: `workerhost man` prints workerhost(1); `workerhost man SUB` prints workerhost-SUB(1) with
/// that subcommand's options (git's layout: one page per verb).
pub fn man(sub: Option<&str>) -> anyhow::Result<u8> {
    let cmd = Cli::command();
    let page = match sub {
        None => clap_mangen::Man::new(cmd),
        Some(name) => {
            let Some(s) = cmd.find_subcommand(name) else {
                let verbs: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
                return Err(super::Usage(format!(
                    "no subcommand {name:?}; one of: {}",
                    verbs.join(", ")
                ))
                .into());
            };
            clap_mangen::Man::new(s.clone()).title(format!("workerhost-{name}"))
        }
    };
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    print_all(&roff)
}
