//! File transfers that clients run as commands — `scp -t`/`scp -f` (scp's original protocol),
//! `rsync --server`, `git-upload-pack`/`git-receive-pack` — recognised by the command line they
//! send, and read into the file operations they do on the host: which paths they read or write.
//! Their data is then passed as it is (it is not text to mask). A transfer program run any other
//! way (in a longer line, with options sluice does not know) cannot be read for certain, and is
//! refused.

use sluice_core::exec::{Command, ExecAction, FileAccess, FileOp, Transfer, normalize_path};

/// Programs that move files over their standard streams.
const PROGRAMS: [&str; 6] =
    ["scp", "rsync", "sftp-server", "git-upload-pack", "git-receive-pack", "git-upload-archive"];

/// What an `exec` line is: `None` when no transfer program is in it; `Err` with why when one is
/// but cannot be read for certain. Paths are as the client wrote them: see `Transfer::resolve`.
pub fn recognise(action: &ExecAction) -> Option<Result<Transfer, String>> {
    let command = action.commands.iter().find(|c| is_transfer(c))?;
    if action.opaque.is_some() {
        return None;
    }
    if action.commands.len() != 1 || !command.via.is_empty() || !command.redirects.is_empty() {
        return Some(Err(format!(
            "the file transfer program {} is run within a longer command line",
            command.program_name().unwrap_or_default()
        )));
    }
    Some(read(command))
}

/// Whether the command is one a file transfer client runs (and not, say, `scp` run on the host to
/// copy elsewhere).
fn is_transfer(command: &Command) -> bool {
    let args = command.args();
    match command.program_name() {
        Some("scp") => args.iter().any(|a| is_flags(a) && (a.contains('t') || a.contains('f'))),
        Some("rsync") => args.iter().any(|a| a == "--server"),
        Some("git") => {
            args.first().is_some_and(|a| matches!(a.as_str(), "upload-pack" | "receive-pack" | "upload-archive"))
        }
        Some(name) => PROGRAMS.contains(&name),
        None => false,
    }
}

fn is_flags(arg: &str) -> bool {
    arg.len() > 1 && arg.starts_with('-') && !arg.starts_with("--")
}

fn read(command: &Command) -> Result<Transfer, String> {
    let words: Vec<(&str, bool)> =
        command.argv.iter().map(String::as_str).zip(command.literal.iter().copied()).skip(1).collect();
    match command.program_name().unwrap_or_default() {
        "scp" => scp(&words),
        "rsync" => rsync(&words),
        "git" => git(&format!("git-{}", words.first().map_or("", |w| w.0)), words.get(1..).unwrap_or_default()),
        "sftp-server" => Err("sftp-server is run as a command; use the sftp subsystem (sftp, scp) instead".into()),
        program => git(program, &words),
    }
}

fn transfer(program: &str, files: Vec<FileAccess>) -> Transfer {
    Transfer { program: program.into(), files }
}

fn access(op: FileOp, (path, literal): (&str, bool), tree: bool) -> FileAccess {
    FileAccess { op, path: path.to_string(), tree, literal }
}

/// `scp [-r] [-p] [-d] [-v] [-q] -t PATH` (the host receives) or `… -f PATH…` (the host sends).
fn scp(words: &[(&str, bool)]) -> Result<Transfer, String> {
    let (mut flags, mut paths) = (String::new(), Vec::new());
    let mut options = true;
    for &(word, literal) in words {
        match word {
            "--" if options => options = false,
            _ if options && literal && is_flags(word) && paths.is_empty() => flags.push_str(&word[1..]),
            // Whether a getopt reads it as an option or a path depends on how scp was built
            // (glibc's takes options after the paths, OpenBSD's does not): either way it is not
            // certain, so it is not read.
            _ if options && word.starts_with('-') => {
                return Err(format!(
                    "scp is run with {word} after its paths, which scp may read as an option or a path"
                ));
            }
            _ => paths.push((word, literal)),
        }
    }
    if let Some(unknown) = flags.chars().find(|c| !"rpdvqtf".contains(*c)) {
        return Err(format!("scp is run with the option -{unknown}, which sluice does not read"));
    }
    let tree = flags.contains('r');
    let files = match (flags.contains('t'), flags.contains('f'), paths.as_slice()) {
        // What arrives is written into the target (or is it): everything below it may be written.
        (true, false, [target]) => vec![access(FileOp::Write, *target, true)],
        (false, true, [_, ..]) => paths.iter().map(|p| access(FileOp::Read, *p, tree)).collect(),
        _ => return Err("scp is run with other than one of -t (with one target) or -f (with paths)".into()),
    };
    Ok(transfer("scp", files))
}

/// Options of `rsync --server` that change nothing on the host beyond the transfer's own paths,
/// with a value after `=` where they take one.
const RSYNC_OPTIONS: [&str; 27] = [
    "server",
    "sender",
    "numeric-ids",
    "ignore-errors",
    "info",
    "debug",
    "log-format",
    "out-format",
    "checksum-choice",
    "compress-choice",
    "compress-level",
    "checksum-seed",
    "no-implied-dirs",
    "safe-links",
    "copy-unsafe-links",
    "copy-dirlinks",
    "keep-dirlinks",
    "munge-links",
    "size-only",
    "ignore-times",
    "timeout",
    "bwlimit",
    "max-size",
    "min-size",
    "modify-window",
    "existing",
    "ignore-existing",
];

/// Options of a receiving `rsync --server` that remove files below its target.
const RSYNC_REMOVING: [&str; 8] = [
    "delete",
    "delete-before",
    "delete-during",
    "delete-delay",
    "delete-after",
    "delete-excluded",
    "force",
    "prune-empty-dirs",
];

/// Options of a receiving `rsync --server` about how it writes within its target.
const RSYNC_WRITING: [&str; 8] =
    ["inplace", "append", "append-verify", "partial", "delay-updates", "fsync", "sparse", "preallocate"];

/// `rsync --server [--sender] OPTIONS . PATH…`: with `--sender` the host sends (reads), else it
/// receives into the one path (writes).
fn rsync(words: &[(&str, bool)]) -> Result<Transfer, String> {
    let sender = words.iter().any(|w| w.0 == "--sender");
    let Some(dot) = words.iter().position(|w| w.0 == ".") else {
        return Err("rsync --server is run without its `.` argument".into());
    };
    let mut removes = false;
    // After the `.`, a word like an option may be read as one or as a path: not certain.
    if let Some(late) = words[dot + 1..].iter().find(|w| w.0.starts_with('-')) {
        return Err(format!("rsync --server is run with {} after its paths, read as an option or a path", late.0));
    }
    for &(word, literal) in &words[..dot] {
        if !literal {
            return Err(format!("rsync --server is run with the option {word}, which an expansion decides"));
        }
        if let Some(long) = word.strip_prefix("--") {
            let name = long.split_once('=').map_or(long, |(name, _)| name);
            let removing = !sender && (RSYNC_REMOVING.contains(&name) || name.starts_with("remove-source"));
            let known = RSYNC_OPTIONS.contains(&name) || removing || (!sender && RSYNC_WRITING.contains(&name));
            if long == "files-from=-" || long == "from0" {
                continue;
            }
            if !known {
                return Err(format!("rsync --server is run with the option --{name}, which sluice does not read"));
            }
            removes |= removing;
        } else if is_flags(word) {
            // A cluster of one-letter options; after `e` comes the protocol's own information. `-s`
            // would send the paths inside the stream, where sluice does not see them.
            let letters = word[1..].split('e').next().unwrap_or_default();
            if letters.contains('s') {
                return Err(
                    "rsync --server is run with -s (paths sent inside the transfer), which sluice does not read".into(),
                );
            }
        } else {
            return Err(format!("rsync --server is run with {word} before its `.` argument"));
        }
    }
    let paths = &words[dot + 1..];
    let files = match (sender, paths) {
        (true, [_, ..]) => paths.iter().map(|p| access(FileOp::Read, *p, true)).collect(),
        (false, [target]) => {
            let mut files = vec![access(FileOp::Write, *target, true)];
            if removes {
                files.push(access(FileOp::Remove, *target, true));
            }
            files
        }
        _ => return Err("rsync --server is run with other than one target to receive into, or paths to send".into()),
    };
    Ok(transfer("rsync", files))
}

/// `git-upload-pack [OPTIONS] REPO` and `git-upload-archive REPO` read a repository;
/// `git-receive-pack REPO` writes one.
fn git(program: &str, words: &[(&str, bool)]) -> Result<Transfer, String> {
    let op = match program {
        "git-upload-pack" | "git-upload-archive" => FileOp::Read,
        "git-receive-pack" => FileOp::Write,
        other => return Err(format!("{other} is not a git transfer sluice reads")),
    };
    let mut repo = None;
    for &(word, literal) in words {
        match word.strip_prefix("--") {
            Some("strict" | "stateless-rpc" | "advertise-refs" | "http-backend-info-refs") => {}
            Some(option) if option.starts_with("timeout=") => {}
            Some(option) => {
                return Err(format!("{program} is run with the option --{option}, which sluice does not read"));
            }
            None if repo.is_none() => repo = Some((word, literal)),
            None => return Err(format!("{program} is run with more than one repository")),
        }
    }
    let (path, literal) = repo.ok_or_else(|| format!("{program} is run without a repository"))?;
    // git takes `REPO.git` when `REPO` is not a repository (and `REPO/.git`, which is below it).
    let dotted = format!("{}.git", path.trim_end_matches('/'));
    let files = vec![access(op, (path, literal), true), access(op, (&dotted, literal), true)];
    Ok(transfer("git", files))
}

/// `~` or `~/…` written without quotes: the rest after the `~`, when nothing else in the word may
/// be expanded.
fn home_relative(word: &str) -> Option<&str> {
    let rest = word.strip_prefix('~')?;
    let plain = rest.is_empty() || rest.starts_with('/');
    (plain && !rest.contains(['$', '`', '*', '?', '[', '{', '\\', '\'', '"'])).then_some(rest)
}

/// Makes every path the transfer names absolute (against the login's `home`) and normalised; a
/// path the host would expand otherwise (a glob, `~user`) stays as written and not literal. The
/// shell expands a `~/` written without quotes; git expands a quoted one itself. Returns, for each
/// file, the absolute path as the host will take it (`..` not resolved: after a symbolic link it
/// leads elsewhere than the text says), to be asked of the host; `None` where not literal.
pub fn resolve(transfer: &mut Transfer, home: &str) -> Vec<Option<String>> {
    let git = transfer.program == "git";
    let mut raws = Vec::with_capacity(transfer.files.len());
    for file in &mut transfer.files {
        let tilde = home_relative(&file.path).filter(|_| git || !file.literal);
        let relative = match (file.literal, tilde) {
            (_, Some(rest)) => Some(format!("{home}{rest}")),
            (true, None) if file.path.starts_with('/') => Some(file.path.clone()),
            (true, None) => Some(format!("{home}/{}", file.path)),
            (false, None) => None,
        };
        if let Some(raw) = &relative {
            file.path = normalize_path("/", raw);
            file.literal = true;
        }
        raws.push(relative);
    }
    raws
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(line: &str) -> Result<Vec<String>, String> {
        let action = sluice_shell::analyze(line);
        let mut transfer = recognise(&action).ok_or("not a transfer")??;
        let _ = resolve(&mut transfer, "/home/agent");
        Ok(transfer.files.iter().map(|f| format!("{}{}", if f.literal { "" } else { "?" }, f.summary())).collect())
    }

    #[test]
    fn scp_reads_what_it_sends_and_writes_below_its_target() {
        assert_eq!(of("scp -t dest/"), Ok(vec!["write /home/agent/dest/**".into()]));
        assert_eq!(of("scp -p -f src/a.txt"), Ok(vec!["read /home/agent/src/a.txt".into()]));
        assert_eq!(of("scp -r -f /srv/app"), Ok(vec!["read /srv/app/**".into()]));
        assert_eq!(of("scp -d -f ~/x"), Ok(vec!["read /home/agent/x".into()]));
        assert_eq!(of("scp -f src/*.txt"), Ok(vec!["?read src/*.txt".into()]));
        assert_eq!(of("scp -f ~root/.ssh/id_rsa"), Ok(vec!["?read ~root/.ssh/id_rsa".into()]));
        assert_eq!(of("scp -f ../../etc/shadow"), Ok(vec!["read /etc/shadow".into()]));
        assert_eq!(of("scp -f '~/x'"), Ok(vec!["read /home/agent/~/x".into()]), "scp does not expand a quoted ~");
        assert!(of("scp -t a b").is_err());
        // An option after the paths is an option to one getopt and a path to another.
        assert!(of("scp -f /srv/a -r").is_err());
        assert!(of("scp -f /srv/a -t /etc").is_err());
        assert_eq!(of("scp -f -- -r"), Ok(vec!["read /home/agent/-r".into()]));
        assert!(of("scp -S /tmp/x -f a").is_err(), "-S names a program");
        assert!(of("scp -f a; rm -rf /").is_err());
        assert!(of("sudo scp -f /etc/shadow").is_err());
        assert_eq!(of("scp a b"), Err("not a transfer".into()), "scp run on the host is a command");
    }

    #[test]
    fn rsync_sends_reading_and_receives_writing() {
        assert_eq!(
            of("rsync --server --sender -vlogDtpre.iLsfxCIvu . src/"),
            Ok(vec!["read /home/agent/src/**".into()])
        );
        assert_eq!(of("rsync --server -vlogDtpre.iLsfxCIvu . /srv/up/"), Ok(vec!["write /srv/up/**".into()]));
        assert_eq!(
            of("rsync --server -vlogDtpre.iLsfxCIvu --delete . /srv/up/"),
            Ok(vec!["write /srv/up/**".into(), "remove /srv/up/**".into()])
        );
        assert_eq!(of("rsync --server --sender -logDtpre.iLsfxCIvu . a b").map(|f| f.len()), Ok(2));
        let removing = of("rsync --server --sender -vlogDtpre.iLsfxCIvu --remove-source-files . src/");
        assert!(removing.is_err(), "a sender that removes what it sent is not a read: {removing:?}");
        assert!(of("rsync --server --sender -vlogDtpre.iLsfxCIvu --log-file=/etc/cron.d/x . src/").is_err());
        assert!(of("rsync --server -vslogDtpre.iLsfxCIvu . /srv/").is_err(), "-s hides the paths");
        let late = of("rsync --server --sender -vlogDtpre.iLsfxCIvu . src/ --remove-source-files");
        assert!(late.is_err(), "an option after the paths may be read as one: {late:?}");
        assert!(of("rsync --server --sender -vlogDtpre.iLsfxCIvu . src/ -s").is_err());
        assert!(of("rsync --server --sender -vlogDtpre.iLsfxCIvu --files-from=/etc/list . /").is_err());
        assert_eq!(of("rsync -a /a /b"), Err("not a transfer".into()));
    }

    #[test]
    fn git_reads_to_fetch_and_writes_to_push() {
        let repo = |op: &str, path: &str| Ok(vec![format!("{op} {path}/**"), format!("{op} {path}.git/**")]);
        assert_eq!(of("git-upload-pack 'repo'"), repo("read", "/home/agent/repo"));
        assert_eq!(of("git-upload-pack '~/repo.git'"), repo("read", "/home/agent/repo.git"));
        assert_eq!(of("git-receive-pack '/srv/r.git/'"), repo("write", "/srv/r.git"));
        assert_eq!(of("git upload-pack /srv/r.git"), repo("read", "/srv/r.git"));
        assert!(of("git-upload-pack --upload-pack=x /r").is_err());
        assert!(of("git-upload-pack a b").is_err());
        assert!(of("/usr/lib/openssh/sftp-server").is_err());
    }
}
