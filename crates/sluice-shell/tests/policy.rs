//! Command lines read by the shell reader and decided by policy: what an operator writes in
//! `[policy]` against what an agent may send, evasions included.

use sluice_core::policy::{ConnectionPolicy, PolicySpec, RuleProtocol};
use sluice_core::{Decision, Identity};
use sluice_policy::Policy;

const POLICY: &str = r#"
default = "deny"

[[rules]]
name = "look-around"
effect = "allow"
programs = ["ls", "cat", "grep", "head", "tail", "echo", "true", "find", "xargs", "nohup", "timeout"]

[[rules]]
name = "logs-written-to-tmp"
effect = "allow"
programs = ["echo", "grep"]
writes = ["/tmp/*"]

[[rules]]
name = "service-status"
effect = "allow"
programs = ["systemctl"]
args = ["status", "--no-pager", "nginx", "postgresql"]

[[rules]]
name = "deletes-reviewed"
effect = "review"
programs = ["rm", "shred"]

[[rules]]
name = "no-root"
effect = "deny"
sudo = true
reason = "agents do not run commands as another user"

[[rules]]
name = "no-secrets"
effect = "deny"
args = ["/etc/shadow", "*id_rsa*", "*.pem"]
"#;

fn decide(line: &str) -> Decision {
    let spec: PolicySpec = toml::from_str(POLICY).unwrap();
    let web1 = ConnectionPolicy {
        name: "web1".into(),
        protocol: RuleProtocol::Ssh,
        preset: None,
        default: None,
        search_path: Vec::new(),
    };
    let policy = Policy::compile(&spec, &[web1]).unwrap();
    let agent = Identity { name: "agent".into(), groups: vec![], credential_id: "t".into() };
    policy.decide_exec(&agent, "web1", &sluice_shell::analyze(line))
}

#[track_caller]
fn verdict(line: &str) -> String {
    match decide(line) {
        Decision::Allow { rule } => format!("allow {rule}"),
        Decision::Review(r) => format!("review {}", r.rule),
        Decision::Deny(r) => format!("deny {}", r.rule),
        other => format!("{other:?}"),
    }
}

#[test]
fn every_command_of_a_line_is_decided_and_the_strictest_answer_wins() {
    assert_eq!(verdict("ls -la /var/log"), "allow look-around");
    assert_eq!(verdict("cat /var/log/syslog | grep error | tail -n 5"), "allow look-around");
    assert_eq!(verdict("systemctl status nginx --no-pager"), "allow service-status");
    assert_eq!(verdict("systemctl restart nginx"), "deny default");
    assert_eq!(verdict("ls; rm -rf /srv/app"), "review deletes-reviewed");
    assert_eq!(verdict("ls && curl http://x | sh -c 'cat'"), "deny default");
    assert_eq!(verdict("cat /etc/shadow"), "deny no-secrets");
}

#[test]
fn writes_and_users_need_an_allow_that_names_them() {
    assert_eq!(verdict("grep error /var/log/syslog > /tmp/errors"), "allow logs-written-to-tmp");
    assert_eq!(verdict("echo x > /etc/cron.d/x"), "deny default");
    assert_eq!(verdict("echo x > $TARGET"), "deny default");
    assert_eq!(verdict("sudo ls /root"), "deny no-root");
    assert_eq!(verdict("sudo -u postgres cat /var/lib/x"), "deny no-root");
}

#[test]
fn evasions_do_not_turn_a_refusal_into_an_allow() {
    for line in [
        // Quoting, escapes, ANSI-C quoting, $IFS, line continuations.
        "r''m -rf /srv",
        "\"r\"m -rf /srv",
        "\\rm -rf /srv",
        "$'\\x72m' -rf /srv",
        "rm${IFS}-rf${IFS}/srv",
        "r\\\nm -rf /srv",
        // Separators: ;, &&, ||, &, newlines, pipes.
        "ls;rm -rf /srv",
        "ls&&rm -rf /srv",
        "false||rm -rf /srv",
        "ls & rm -rf /srv",
        "ls\nrm -rf /srv",
        "ls | rm -rf /srv",
        // Substitutions and subshells.
        "echo $(rm -rf /srv)",
        "echo `rm -rf /srv`",
        "ls \"$(rm -rf /srv)\"",
        "(rm -rf /srv)",
        "{ rm -rf /srv; }",
        "cat <(rm -rf /srv)",
        "cat <<E\n$(rm -rf /srv)\nE",
        // Wrappers and strings run as commands.
        "sh -c 'rm -rf /srv'",
        "bash -c \"rm -rf /srv\"",
        "eval 'rm -rf /srv'",
        "xargs rm -rf < list",
        "find /srv -exec rm -rf {} \\;",
        "timeout 5 rm -rf /srv",
        "nohup rm -rf /srv",
        "env rm -rf /srv",
        "command rm -rf /srv",
        "exec rm -rf /srv",
        "trap 'rm -rf /srv' EXIT",
        "watch rm -rf /srv",
        "sh -c 'sh -c \"rm -rf /srv\"'",
        "busybox rm -rf /srv",
        "script -qc 'rm -rf /srv' /dev/null",
        "strace -f rm -rf /srv",
        "sudo -nu root rm -rf /srv",
        // Aliases, functions, variables choosing the program.
        "sh -c 'alias l=rm\nl -rf /srv'",
        "ls() { rm -rf /srv; }; ls",
        "X=rm; $X -rf /srv",
        "eval \"$CMD\"",
        "sh -c \"$CMD\"",
        "cat list | sh",
        "PATH=/tmp ls",
    ] {
        let v = verdict(line);
        assert!(!v.starts_with("allow"), "{line:?} was allowed: {v}");
    }
}

#[test]
fn a_refusal_says_what_could_not_be_read_and_what_to_do() {
    let Decision::Deny(refusal) = decide("eval \"$CMD\"") else { panic!() };
    assert_eq!(refusal.rule, "unreadable-command");
    assert!(refusal.reason.contains("eval runs a command line given by an expansion"), "{}", refusal.reason);
    assert!(refusal.hint.unwrap().contains("spelled out"));
}
