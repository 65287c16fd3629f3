//! Programs that run other programs: the command they run is what policy decides, so it is read
//! out of their arguments (`sudo -u app rm x` runs `rm x` as another user; `sh -c 'a; b'` runs the
//! line `a; b`; `find . -exec rm {} ;` runs `rm`). Each wrapper's options that take a value are
//! listed, so that a value is never taken for the program. A shell that would read its commands
//! from standard input, and a line given by an expansion, cannot be read: the line is opaque.

use crate::{Reader, Word};
use sluice_core::exec::{Command, Redirect};

/// Variables that change which program a name runs, or run code of their own.
pub(crate) fn changes_what_runs(name: &str) -> Option<&'static str> {
    match name {
        "PATH" => Some("which changes what program a name runs"),
        "LD_PRELOAD" | "LD_LIBRARY_PATH" | "LD_AUDIT" => Some("which loads code into what runs"),
        "BASH_ENV" | "ENV" | "PROMPT_COMMAND" | "PS4" | "SHELLOPTS" | "BASHOPTS" | "IFS" | "CDPATH" | "GLOBIGNORE" => {
            Some("which changes how a shell reads or runs commands")
        }
        _ if name.starts_with("BASH_FUNC_") => Some("which defines a shell function"),
        _ => None,
    }
}

/// What a wrapper runs.
enum Inner {
    /// The words from this index on are the command.
    Command(usize),
    /// The word at this index is a command line.
    Line(usize),
    /// These words, joined by spaces, are a command line (`eval a b`, `watch a b`).
    Joined(usize),
    /// Nothing: the wrapper is the command (`sudo -l`, `env` alone, `command -v x`).
    Itself,
    /// It runs what cannot be read.
    Opaque(&'static str),
}

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "posh", "yash", "fish", "rbash"];
const ELEVATING: &[&str] = &["sudo", "doas", "su", "runuser", "pkexec"];

/// The index of the first word after the options, given the options that take a value. A value
/// may be attached (`-uroot`, `--user=root`), and short options may be grouped as getopt groups
/// them (`-nu root`: `-n`, then `-u` whose value is the next word); `--` ends the options.
fn after_options(words: &[Word], with_value: &[&str]) -> usize {
    let mut i = 1;
    while let Some(w) = words.get(i) {
        let t = w.text.as_str();
        if t == "--" {
            return i + 1;
        }
        if !t.starts_with('-') || t == "-" {
            return i;
        }
        let takes_next = match t.strip_prefix("--") {
            Some(_) => with_value.contains(&t),
            // In a group, the first option that takes a value takes the rest of the group, or
            // the next word when it ends the group.
            None => t
                .char_indices()
                .skip(1)
                .find(|(_, c)| with_value.iter().any(|v| v.len() == 2 && v.ends_with(*c) && v.starts_with('-')))
                .is_some_and(|(at, c)| at + c.len_utf8() == t.len()),
        };
        i += if takes_next { 2 } else { 1 };
    }
    i
}

/// The command line a wrapper takes with `-c`/`--command` (`su -c`, `flock -c`, `script -qc`):
/// the word after that option, alone or ending a group of short options; `None` without one.
/// Given twice, the wrapper would run one of them and sluice cannot tell which: opaque.
fn command_line(words: &[Word]) -> Result<Option<Inner>, Inner> {
    let is_command = |w: &Word| {
        w.text == "--command" || (w.text.starts_with('-') && !w.text.starts_with("--") && w.text.ends_with('c'))
    };
    let mut found = words.iter().enumerate().filter(|(_, w)| is_command(w)).map(|(i, _)| i);
    match (found.next(), found.next()) {
        (Some(_), Some(_)) => Err(Inner::Opaque("a command line is given more than once (-c twice)")),
        (at, _) => Ok(at.map(|i| Inner::Line(i + 1))),
    }
}

/// Whether a script named so is the process's standard input.
fn reads_stdin(word: &Word) -> bool {
    matches!(word.text.as_str(), "-" | "/dev/stdin" | "/dev/fd/0" | "/proc/self/fd/0")
}

/// Whether `word` is a group of short options holding `c` (`-iS`).
fn short_group_has(word: &str, c: char) -> bool {
    word.starts_with('-') && !word.starts_with("--") && word[1..].contains(c)
}

fn has_flag(words: &[Word], end: usize, short: char, long: &str) -> bool {
    words[1..end.min(words.len())].iter().any(|w| w.text == long || short_group_has(&w.text, short))
}

fn inner(name: &str, words: &[Word]) -> Inner {
    let at = |i: usize| if i < words.len() { Inner::Command(i) } else { Inner::Itself };
    match name {
        "sudo" => {
            let i = after_options(
                words,
                &[
                    "-u",
                    "-g",
                    "-C",
                    "-D",
                    "-h",
                    "-p",
                    "-r",
                    "-t",
                    "-U",
                    "-T",
                    "-R",
                    "--user",
                    "--group",
                    "--chdir",
                    "--host",
                    "--prompt",
                    "--role",
                    "--type",
                    "--other-user",
                    "--command-timeout",
                    "--close-from",
                    "--chroot",
                ],
            );
            if has_flag(words, i, 'e', "--edit") {
                return Inner::Itself;
            }
            if i >= words.len() && (has_flag(words, i, 's', "--shell") || has_flag(words, i, 'i', "--login")) {
                return Inner::Opaque(
                    "sudo -s / -i without a command runs a shell that reads its commands from standard input",
                );
            }
            at(i)
        }
        "doas" => at(after_options(words, &["-u", "-C"])),
        "pkexec" => at(after_options(words, &["--user"])),
        "su" | "runuser" => {
            let value =
                ["-c", "--command", "-g", "--group", "-G", "--supp-group", "-s", "--shell", "-w", "-u", "--user"];
            if name == "runuser" && has_flag(words, words.len(), 'u', "--user") {
                return at(after_options(words, &value));
            }
            match command_line(words) {
                Ok(Some(line)) => line,
                Ok(None) => Inner::Opaque("su without -c runs a shell that reads its commands from standard input"),
                Err(opaque) => opaque,
            }
        }
        "env" => {
            let mut i = after_options(words, &["-u", "--unset", "-C", "--chdir"]);
            let options = &words[1..i.min(words.len())];
            if options.iter().any(|w| w.text.starts_with("--split-string") || short_group_has(&w.text, 'S')) {
                return Inner::Opaque("env -S splits a string into a command line, which is not read");
            }
            while let Some((variable, _)) = words.get(i).and_then(|w| w.text.split_once('=')) {
                if changes_what_runs(variable).is_some() {
                    return Inner::Opaque("it sets a variable (PATH, LD_PRELOAD, BASH_ENV, …) that changes what runs");
                }
                i += 1;
            }
            at(i)
        }
        "nice" => at(after_options(words, &["-n", "--adjustment"])),
        "nohup" | "setsid" | "builtin" => at(after_options(words, &[])),
        "time" => at(after_options(words, &["-f", "--format", "-o", "--output"])),
        "stdbuf" => at(after_options(words, &["-i", "-o", "-e", "--input", "--output", "--error"])),
        "ionice" => at(after_options(words, &["-c", "-n", "-p", "-P", "-u", "--class", "--classdata"])),
        "timeout" => at(after_options(words, &["-s", "--signal", "-k", "--kill-after"]) + 1),
        "chrt" | "taskset" => {
            if has_flag(words, words.len(), 'p', "--pid") {
                return Inner::Itself;
            }
            at(after_options(words, &[]) + 1)
        }
        "flock" => match command_line(words) {
            Ok(Some(line)) => line,
            Ok(None) => at(after_options(words, &["-w", "--timeout", "-E", "--conflict-exit-code"]) + 1),
            Err(opaque) => opaque,
        },
        "command" => {
            let i = after_options(words, &[]);
            if has_flag(words, i, 'v', "-v") || has_flag(words, i, 'V', "-V") { Inner::Itself } else { at(i) }
        }
        "exec" => at(after_options(words, &["-a"])),
        "xargs" => at(after_options(
            words,
            &[
                "-a",
                "--arg-file",
                "-d",
                "--delimiter",
                "-E",
                "-I",
                "-L",
                "-n",
                "--max-args",
                "-P",
                "--max-procs",
                "-s",
                "--max-chars",
                "--process-slot-var",
            ],
        )),
        "watch" => Inner::Joined(after_options(words, &["-n", "--interval", "-d", "-q", "--equexit"])),
        "eval" => Inner::Joined(1),
        "trap" => match words.get(1) {
            Some(w) if !w.text.starts_with('-') => Inner::Line(1),
            _ => Inner::Itself,
        },
        "." | "source" if words.get(1).is_some_and(reads_stdin) => {
            Inner::Opaque("sourcing standard input runs commands that are not on the line")
        }
        // Multi-call binaries: the applet named next is the program.
        "busybox" | "toybox" if !words.get(1).is_some_and(|w| SHELLS.contains(&w.text.as_str())) => at(1),
        "chroot" => at(after_options(words, &["--userspec", "--groups"]) + 1),
        // Run a command line given with -c (script: inside a typescript; sg: as another group).
        "script" | "sg" => match command_line(words) {
            Ok(Some(line)) => line,
            Ok(None) if name == "sg" => {
                Inner::Opaque("sg without -c runs a shell that reads its commands from standard input")
            }
            Ok(None) => Inner::Itself,
            Err(opaque) => opaque,
        },
        "alias" if words.iter().skip(1).any(|w| w.text.contains('=')) => {
            Inner::Opaque("an alias changes what later words of the line run")
        }
        shell
            if SHELLS.contains(&shell)
                || shell == "busybox" && words.get(1).is_some_and(|w| SHELLS.contains(&w.text.as_str())) =>
        {
            let skip = usize::from(shell == "busybox");
            let words = &words[skip..];
            let i = after_options(words, &["-o", "+o", "-O", "+O", "--rcfile", "--init-file"]);
            if has_flag(words, i, 'c', "-c") {
                return Inner::Line(skip + i);
            }
            if i >= words.len() || has_flag(words, i, 's', "-s") || reads_stdin(&words[i]) {
                return Inner::Opaque("a shell without a script or -c reads its commands from standard input");
            }
            // A script file: the shell is the command, as policy sees it.
            Inner::Itself
        }
        _ => Inner::Itself,
    }
}

/// Records the command `words` make (the program first), reading through wrappers.
pub(crate) fn unwrap(r: &mut Reader, mut words: Vec<Word>, redirects: Vec<Redirect>, depth: usize, via: &[String]) {
    let mut via = via.to_vec();
    let mut redirects = Some(redirects);
    loop {
        let Some(program) = words.first() else {
            // A wrapper without a command (`nice` alone) runs nothing more.
            return;
        };
        if !program.literal {
            return r.opaque(format!("the program is chosen by an expansion ({})", program.text));
        }
        let name = program.text.rsplit('/').next().unwrap_or(&program.text).to_string();
        if name == "find" {
            find_exec(r, &words, depth, &via);
        }
        match inner(&name, &words) {
            Inner::Itself => break,
            Inner::Command(i) => {
                via.push(name);
                words.drain(..i);
                if name_is_xargs(&via) {
                    // xargs adds arguments read from its input.
                    words.push(Word { text: "(arguments from standard input)".into(), literal: false });
                }
            }
            Inner::Line(i) => {
                let parts = words.get(i..=i).unwrap_or_default();
                return wrapped_line(r, parts, &name, redirects.take(), depth, &via);
            }
            Inner::Joined(i) => {
                let parts = words.get(i..).unwrap_or_default();
                return wrapped_line(r, parts, &name, redirects.take(), depth, &via);
            }
            Inner::Opaque(why) => return r.opaque(why),
        }
    }
    // Run as another user: under an elevating wrapper, or by one run for itself (`sudo -e FILE`
    // edits the file as root).
    let name = |w: &str| w.rsplit('/').next().unwrap_or(w).to_string();
    let elevated = via
        .iter()
        .chain(words.first().map(|w| &w.text))
        .any(|v| ELEVATING.contains(&name(v.split(' ').next().unwrap_or(v)).as_str()));
    let literal = words.iter().map(|w| w.literal).collect();
    let argv = words.into_iter().map(|w| w.text).collect();
    r.commands.push(Command { argv, literal, redirects: redirects.unwrap_or_default(), via, elevated });
}

fn name_is_xargs(via: &[String]) -> bool {
    via.last().is_some_and(|v| v == "xargs")
}

/// A command line a wrapper runs: `parts` joined by spaces (one word, for `sh -c`).
fn wrapped_line(
    r: &mut Reader,
    parts: &[Word],
    name: &str,
    redirects: Option<Vec<Redirect>>,
    depth: usize,
    via: &[String],
) {
    if parts.is_empty() {
        return r.opaque(format!("{name} is given no command line"));
    }
    if let Some(w) = parts.iter().find(|w| !w.literal) {
        return r.opaque(format!("{name} runs a command line given by an expansion ({})", w.text));
    }
    let line = parts.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
    if let Some(redirects) = redirects.filter(|r| !r.is_empty()) {
        r.commands.push(Command { redirects, via: via.to_vec(), ..Command::default() });
    }
    let mut inner_via = via.to_vec();
    inner_via.push(match SHELLS.contains(&name) || name == "busybox" {
        true => format!("{name} -c"),
        false => name.to_string(),
    });
    r.line(&line, depth + 1, &inner_via);
}

/// The commands `find` runs for what it finds (`-exec`, `-execdir`, `-ok`, `-okdir`, up to `;`
/// or `+`); each gets the found path as a word no one can know beforehand.
fn find_exec(r: &mut Reader, words: &[Word], depth: usize, via: &[String]) {
    let mut i = 1;
    while i < words.len() {
        if matches!(words[i].text.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
            let end =
                words[i + 1..].iter().position(|w| w.text == ";" || w.text == "+").map_or(words.len(), |p| i + 1 + p);
            let command: Vec<Word> = words[i + 1..end]
                .iter()
                .map(|w| match w.text.contains("{}") {
                    true => Word { text: w.text.clone(), literal: false },
                    false => w.clone(),
                })
                .collect();
            let mut inner_via = via.to_vec();
            inner_via.push(format!("find {}", words[i].text));
            unwrap(r, command, Vec::new(), depth + 1, &inner_via);
            i = end;
        }
        i += 1;
    }
}
