//! The SSH matcher: how one rule's keys (programs, arguments, files written, `sudo`) match one
//! command of a command line. As for HTTP, what cannot be known (an argument an expansion decides,
//! a file named by one) makes a refusing rule match and an allowing rule not: an ambiguity never
//! turns a deny into an allow. An allowing rule is also read narrowly where it says nothing:
//! without `writes` it allows no command that writes a file, without `sudo = true` none run as
//! another user.

use sluice_core::exec::Command;
use sluice_core::glob::glob_match;
use sluice_core::policy::RuleSpec;

#[derive(Debug)]
pub(crate) struct ExecMatcher {
    programs: Vec<String>,
    args: Vec<String>,
    writes: Vec<String>,
    sudo: Option<bool>,
    /// Matches no command (a rule about file transfers).
    never: bool,
}

impl ExecMatcher {
    pub(crate) fn compile(spec: &RuleSpec) -> Option<ExecMatcher> {
        let keys = spec.ssh_keys();
        (!keys.is_empty()).then(|| ExecMatcher {
            programs: spec.programs.clone(),
            args: spec.args.clone(),
            writes: spec.writes.clone(),
            sudo: spec.sudo,
            never: spec.command_keys().is_empty(),
        })
    }

    pub(crate) fn never() -> ExecMatcher {
        ExecMatcher { programs: Vec::new(), args: Vec::new(), writes: Vec::new(), sudo: None, never: true }
    }

    /// Whether `command` matches; `allows`: the rule allows.
    pub(crate) fn matches(&self, command: &Command, allows: bool) -> bool {
        if self.never {
            return false;
        }
        let program_ok = self.programs.is_empty()
            || command.program().is_some_and(|p| self.program_matches(p))
            || (!allows && command.via.iter().any(|v| self.program_matches(v.split(' ').next().unwrap_or(v))));
        let args = command.args().iter().zip(command.literal.iter().skip(1));
        let args_ok = self.args.is_empty()
            || match allows {
                true => args.clone().all(|(a, literal)| *literal && self.args.iter().any(|g| glob_match(g, a))),
                false => args.clone().any(|(a, literal)| !literal || self.args.iter().any(|g| glob_match(g, a))),
            };
        let writes = command.redirects.iter().filter(|r| r.writes);
        let writes_ok = match (allows, self.writes.is_empty()) {
            (true, _) => writes.clone().all(|w| w.literal && self.writes.iter().any(|g| glob_match(g, &w.target))),
            (false, true) => true,
            (false, false) => {
                writes.clone().any(|w| !w.literal || self.writes.iter().any(|g| glob_match(g, &w.target)))
            }
        };
        let sudo_ok = match (self.sudo, allows) {
            (Some(sudo), _) => command.elevated == sudo,
            (None, true) => !command.elevated,
            (None, false) => true,
        };
        program_ok && args_ok && writes_ok && sudo_ok
    }

    fn program_matches(&self, program: &str) -> bool {
        let name = program.rsplit('/').next().unwrap_or(program);
        self.programs.iter().any(|g| glob_match(g, program) || glob_match(g, name))
    }
}

/// How an allowing rule of scope only (no SSH keys) reads a command: as narrowly as one with
/// keys that say nothing.
pub(crate) fn plain_allow_matches(command: &Command) -> bool {
    !command.elevated && command.redirects.iter().all(|r| !r.writes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::exec::Redirect;

    fn command(argv: &[&str], literal: &[bool]) -> Command {
        Command { argv: argv.iter().map(|a| a.to_string()).collect(), literal: literal.to_vec(), ..Command::default() }
    }

    fn matcher(programs: &[&str], args: &[&str], writes: &[&str], sudo: Option<bool>) -> ExecMatcher {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        ExecMatcher { programs: v(programs), args: v(args), writes: v(writes), sudo, never: false }
    }

    #[test]
    fn an_ambiguity_matches_a_refusal_and_not_an_allow() {
        let rm_dir = command(&["rm", "-rf", "$DIR"], &[true, true, false]);
        let deny_root = matcher(&["rm"], &["/"], &[], None);
        assert!(deny_root.matches(&rm_dir, false), "$DIR may be /");
        let allow_tmp = matcher(&["rm"], &["-rf", "/tmp/*"], &[], None);
        assert!(!allow_tmp.matches(&rm_dir, true));
        assert!(allow_tmp.matches(&command(&["/bin/rm", "-rf", "/tmp/x"], &[true; 3]), true));
        assert!(!allow_tmp.matches(&command(&["rm", "-rf", "/etc"], &[true; 3]), true));
    }

    #[test]
    fn an_allow_says_what_it_allows_about_writes_and_sudo() {
        let mut echo = command(&["echo", "x"], &[true, true]);
        let allow_echo = matcher(&["echo"], &[], &[], None);
        assert!(allow_echo.matches(&echo, true));
        echo.redirects.push(Redirect { writes: true, target: "/etc/passwd".into(), literal: true });
        assert!(!allow_echo.matches(&echo, true), "writing a file needs `writes`");
        assert!(matcher(&["echo"], &[], &["/etc/*"], None).matches(&echo, true));
        assert!(matcher(&[], &[], &["/etc/*"], None).matches(&echo, false));
        let mut sudo_ls = command(&["ls"], &[true]);
        sudo_ls.elevated = true;
        sudo_ls.via = vec!["sudo".into()];
        assert!(!matcher(&["ls"], &[], &[], None).matches(&sudo_ls, true));
        assert!(matcher(&["ls"], &[], &[], Some(true)).matches(&sudo_ls, true));
        assert!(matcher(&["sudo"], &[], &[], None).matches(&sudo_ls, false), "a refusal sees the wrapper");
        assert!(!plain_allow_matches(&sudo_ls));
    }
}
