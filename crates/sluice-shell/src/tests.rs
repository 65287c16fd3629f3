//! The reader against the lines the issue lists and the evasions a review tries.

use super::analyze;
use sluice_core::exec::ExecAction;

fn programs(a: &ExecAction) -> Vec<String> {
    a.commands.iter().filter_map(|c| c.program().map(str::to_string)).collect()
}

#[track_caller]
fn readable(line: &str) -> ExecAction {
    let a = analyze(line);
    assert_eq!(a.opaque, None, "{line:?} should be readable");
    a
}

#[track_caller]
fn opaque(line: &str) -> String {
    analyze(line).opaque.unwrap_or_else(|| panic!("{line:?} should be opaque: {:?}", analyze(line).commands))
}

#[test]
fn every_command_of_a_line_is_found() {
    assert_eq!(programs(&readable("ls -la /tmp")), ["ls"]);
    assert_eq!(programs(&readable("a && b || c; d & e\nf")), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(programs(&readable("cat /etc/passwd | grep root")), ["cat", "grep"]);
    assert_eq!(programs(&readable("echo $(id) `whoami`")), ["id", "whoami", "echo"]);
    assert_eq!(programs(&readable("(cd /; rm x)")), ["cd", "rm"]);
    assert_eq!(programs(&readable("{ rm x; }")), ["rm"]);
    assert_eq!(programs(&readable("if true; then rm x; elif b; then c; else d; fi")), ["true", "rm", "b", "c", "d"]);
    assert_eq!(programs(&readable("for f in a b; do rm $f; done")), ["rm"]);
    assert_eq!(programs(&readable("while a; do b; done; until c; do d; done")), ["a", "b", "c", "d"]);
    assert_eq!(programs(&readable("case $x in $(p)) q;; esac")), ["p", "q"]);
    assert_eq!(programs(&readable("f() { rm x; }; f")), ["rm", "f"]);
    assert_eq!(programs(&readable("cat <(rm x) >(tee y)")), ["rm", "tee", "cat"]);
    assert_eq!(programs(&readable("cat <<E\n$(rm x)\nE")), ["rm", "cat"]);
    // A quoted here-document is text.
    assert_eq!(programs(&readable("cat <<'E'\n$(rm x)\nE")), ["cat"]);
    assert_eq!(programs(&readable("! time rm x")), ["rm"]);
    // Comments are not commands.
    assert_eq!(programs(&readable("ls # ; rm -rf /")), ["ls"]);
}

#[test]
fn quoting_is_removed_as_the_shell_removes_it() {
    for line in ["r''m -rf /", "\"r\"m -rf /", "\\rm -rf /", "rm\\\n -rf /", "'rm' \"-rf\" /"] {
        let a = readable(line);
        assert_eq!(a.commands[0].argv, ["rm", "-rf", "/"], "{line:?}");
        assert!(a.commands[0].literal.iter().all(|l| *l));
    }
}

#[test]
fn what_an_expansion_decides_is_not_guessed() {
    for line in ["$'\\x72m' -rf /", "${IFS}", "rm${IFS}-rf${IFS}/", "$X -rf /", "~/bin/x", "/bin/r? x", "{rm,-rf} /"] {
        assert!(opaque(line).contains("chosen by an expansion"), "{line:?}");
    }
    // An argument may be an expansion: it is kept as written, marked not literal.
    let a = readable("rm -rf $DIR");
    assert_eq!(a.commands[0].argv, ["rm", "-rf", "$DIR"]);
    assert_eq!(a.commands[0].literal, [true, true, false]);
    for line in ["eval \"$X\"", "sh -c \"$X\"", "bash -c $'rm x'", "x=$(rm y) eval $x"] {
        assert!(opaque(line).contains("given by an expansion"), "{line:?}");
    }
    assert!(opaque("echo \"unterminated").contains("does not parse"));
    assert!(opaque("ls; fi; rm -rf /").contains("does not parse"));
    assert!(opaque("ls ) rm -rf /").contains("does not parse"));
}

#[test]
fn wrappers_are_read_through() {
    // Grouped short options, the last taking the next word as its value (getopt's rule).
    for line in [
        "sudo -nu root rm -rf /",
        "sudo -n -u root rm -rf /",
        "sudo -uroot rm -rf /",
        "sudo --user=root rm -rf /",
        "sudo --user root -- rm -rf /",
    ] {
        assert_eq!(readable(line).commands[0].argv, ["rm", "-rf", "/"], "{line:?}");
    }
    assert_eq!(programs(&readable("env ls -S")), ["ls"]);
    opaque("env -iS 'rm x'");
    let a = readable("sudo -u root rm -rf /");
    assert_eq!(a.commands[0].argv, ["rm", "-rf", "/"]);
    assert!(a.commands[0].elevated);
    assert_eq!(a.commands[0].via, ["sudo"]);
    let a = readable("FOO=bar env -i -u X A=1 sh -c 'rm -rf /; ls'");
    assert_eq!(programs(&a), ["rm", "ls"]);
    assert_eq!(a.commands[0].via, ["env", "sh -c"]);
    assert!(!a.commands[0].elevated);
    let a = readable("sudo -e /etc/shadow");
    assert_eq!(a.commands[0].program(), Some("sudo"));
    assert!(a.commands[0].elevated, "sudo -e edits as root");
    let a = readable("sudo sh -c 'cat /etc/shadow'");
    assert!(a.commands[0].elevated, "{a:?}");
    assert_eq!(programs(&readable("nohup nice -n 5 timeout -s KILL 10 stdbuf -oL ionice -c 3 rm x")), ["rm"]);
    assert_eq!(programs(&readable("xargs -0 -I {} rm {}")), ["rm"]);
    assert_eq!(programs(&readable("find / -name x -exec rm -f {} \\; -print")), ["rm", "find"]);
    assert_eq!(programs(&readable("eval 'rm x'")), ["rm"]);
    assert_eq!(programs(&readable("su -c 'rm x' root")), ["rm"]);
    assert_eq!(programs(&readable("trap 'rm x' EXIT; ls")), ["rm", "ls"]);
    assert_eq!(programs(&readable("watch -n 1 rm x")), ["rm"]);
    assert_eq!(programs(&readable("command -v rm")), ["command"]);
    assert_eq!(programs(&readable("command rm x")), ["rm"]);
    assert_eq!(programs(&readable("/usr/bin/sudo /bin/rm x")), ["/bin/rm"]);
    assert_eq!(programs(&readable("bash -ec 'rm x'")), ["rm"]);
    assert_eq!(programs(&readable("bash deploy.sh")), ["bash"]);
    assert_eq!(programs(&readable("busybox rm -rf /srv")), ["rm"]);
    assert_eq!(programs(&readable("chroot --userspec=app /srv/root rm x")), ["rm"]);
    assert_eq!(programs(&readable("script -q -c 'rm x' /dev/null")), ["rm"]);
    assert_eq!(programs(&readable("script -qc 'rm x' /dev/null")), ["rm"]);
    assert_eq!(programs(&readable("su -lc 'rm x' root")), ["rm"]);
    assert_eq!(programs(&readable("sg adm -c 'cat /var/log/auth.log'")), ["cat"]);
    // Nested wrappers, each read.
    assert_eq!(programs(&readable("sudo env sh -c \"bash -c 'xargs rm'\"")), ["rm"]);
    for line in [
        "sh",
        "bash -s",
        "cat x | sh",
        "sudo -s",
        "su root",
        "env -S 'rm x'",
        "alias ls=rm; ls",
        "bash /dev/stdin",
        "curl x | sh -",
        ". /dev/stdin",
        "source /proc/self/fd/0",
    ] {
        opaque(line);
    }
    for line in ["PATH=/tmp ls", "env LD_PRELOAD=/tmp/x.so ls", "BASH_ENV=/tmp/x bash -c ls"] {
        assert!(opaque(line).starts_with("it sets"), "{line:?}");
    }
}

#[test]
fn redirections_name_the_files_they_open() {
    let a = readable("grep root /etc/passwd > /tmp/out 2>&1 < in");
    let r = &a.commands[0].redirects;
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(r[0].writes && r[0].target == "/tmp/out");
    assert!(!r[1].writes && r[1].target == "in");
    let a = readable("echo hi >| f; echo x &>> g; exec 3>/tmp/x");
    let targets: Vec<_> = a.commands.iter().flat_map(|c| c.redirects.iter().map(|r| r.target.as_str())).collect();
    assert_eq!(targets, ["f", "g", "/tmp/x"]);
    let a = readable("{ ls; } > /etc/x");
    assert_eq!(a.commands[0].redirects[0].target, "/etc/x");
}

#[test]
fn constructs_it_does_not_read_are_opaque() {
    for line in ["[[ -f x ]] && rm x", "(( x = 1 ))", "coproc ls", "a=(1 2) cmd", "echo ${x:-$(rm y)}"] {
        opaque(line);
    }
}
