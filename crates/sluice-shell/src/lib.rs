//! Command lines read as bash reads them (brush-parser's grammar): every simple command the line
//! would run — in pipelines, lists, subshells, groups, loops, conditionals, functions, command and
//! process substitutions, here-documents — with its program, arguments and redirections, and the
//! commands that wrappers run (`sudo`, `env`, `xargs`, `sh -c '…'`, `find -exec`: see
//! `wrappers`). A word is kept literal only when no expansion can change it. Whatever cannot be
//! read for certain makes the line opaque, which policy never allows. A gateway reads lines with
//! `IsolatedReader` (in worker processes), never with `analyze` in its own process.

mod isolated;
mod wrappers;

pub use isolated::{IsolatedReader, worker_main};

use brush_parser::ast::{self, CommandPrefixOrSuffixItem as Item};
use brush_parser::word::{self, WordPiece};
use brush_parser::{Parser, ParserOptions};
use sluice_core::exec::{Command, ExecAction, ExecRequest, Redirect};

/// Lines nested deeper than this (`sh -c` in `sh -c` …, substitutions in substitutions) are
/// opaque.
const MAX_DEPTH: usize = 12;

/// Longer lines are opaque.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// Reads an `exec` request's command line.
pub fn analyze(line: &str) -> ExecAction {
    let mut reader = Reader { commands: Vec::new(), opaque: None };
    if line.len() > MAX_LINE {
        reader.opaque(format!("command lines longer than {MAX_LINE} bytes are not read"));
    } else if line.contains('\0') {
        reader.opaque("a command line holds a NUL byte, which shells read differently");
    } else {
        reader.line(line, 0, &[]);
    }
    ExecAction {
        line: line.to_string(),
        request: ExecRequest::Command,
        commands: reader.commands,
        opaque: reader.opaque,
        transfer: None,
    }
}

/// One word after quote removal, and whether that is certainly its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) text: String,
    pub(crate) literal: bool,
}

struct Reader {
    commands: Vec<Command>,
    opaque: Option<String>,
}

fn options() -> ParserOptions {
    // bash as `bash -c` runs a line: extended globs off, as they are in a non-interactive shell.
    ParserOptions { enable_extended_globbing: false, ..ParserOptions::default() }
}

impl Reader {
    /// The first reason the line is opaque is the one given.
    fn opaque(&mut self, why: impl Into<String>) {
        if self.opaque.is_none() {
            self.opaque = Some(why.into());
        }
    }

    /// A command line (the whole request, or one a wrapper or a substitution runs); `via`: the
    /// wrappers that run it.
    fn line(&mut self, text: &str, depth: usize, via: &[String]) {
        if depth > MAX_DEPTH {
            return self.opaque("commands are nested too deeply to be read");
        }
        let program = match Parser::new(std::io::Cursor::new(text), &options()).parse_program() {
            Ok(program) => program,
            Err(e) => return self.opaque(format!("it does not parse as a shell command line ({e})")),
        };
        for list in &program.complete_commands {
            self.list(list, depth, via);
        }
    }

    fn list(&mut self, list: &ast::CompoundList, depth: usize, via: &[String]) {
        for ast::CompoundListItem(and_or, _) in &list.0 {
            for (_, pipeline) in and_or.iter() {
                for command in &pipeline.seq {
                    self.command(command, depth, via);
                }
            }
        }
    }

    fn command(&mut self, command: &ast::Command, depth: usize, via: &[String]) {
        match command {
            ast::Command::Simple(simple) => self.simple(simple, depth, via),
            ast::Command::Compound(compound, redirects) => {
                if let Some(redirects) = redirects {
                    self.redirects_alone(&redirects.0, depth, via);
                }
                self.compound(compound, depth, via);
            }
            ast::Command::Function(function) => {
                // What a function runs is read where it is defined; a call of it reads as a
                // command of its name, which policy decides like any other.
                self.compound(&function.body.0, depth, via);
                if let Some(redirects) = &function.body.1 {
                    self.redirects_alone(&redirects.0, depth, via);
                }
            }
            ast::Command::ExtendedTest(..) => {
                self.opaque("a [[ … ]] test is not read (write it with test or [ … ])");
            }
        }
    }

    fn compound(&mut self, compound: &ast::CompoundCommand, depth: usize, via: &[String]) {
        use ast::CompoundCommand as C;
        match compound {
            C::Subshell(s) => self.list(&s.list, depth, via),
            C::BraceGroup(b) => self.list(&b.list, depth, via),
            C::IfClause(i) => {
                self.list(&i.condition, depth, via);
                self.list(&i.then, depth, via);
                for branch in i.elses.iter().flatten() {
                    if let Some(condition) = &branch.condition {
                        self.list(condition, depth, via);
                    }
                    self.list(&branch.body, depth, via);
                }
            }
            C::ForClause(f) => {
                for value in f.values.iter().flatten() {
                    self.word(&value.value, depth, via);
                }
                self.list(&f.body.list, depth, via);
            }
            C::WhileClause(w) | C::UntilClause(w) => {
                self.list(&w.0, depth, via);
                self.list(&w.1.list, depth, via);
            }
            C::CaseClause(c) => {
                self.word(&c.value.value, depth, via);
                for item in &c.cases {
                    for pattern in &item.patterns {
                        self.word(&pattern.value, depth, via);
                    }
                    if let Some(list) = &item.cmd {
                        self.list(list, depth, via);
                    }
                }
            }
            C::Arithmetic(_) | C::ArithmeticForClause(_) => {
                self.opaque("arithmetic commands (( … )) are not read");
            }
            C::Coprocess(_) => self.opaque("coprocesses are not read"),
        }
    }

    fn simple(&mut self, simple: &ast::SimpleCommand, depth: usize, via: &[String]) {
        let mut words = Vec::new();
        let mut redirects = Vec::new();
        let mut assignments = Vec::new();
        for item in simple.prefix.iter().flat_map(|p| p.0.iter()) {
            match item {
                Item::AssignmentWord(assignment, _) => {
                    let name = match &assignment.name {
                        ast::AssignmentName::VariableName(n) => n.clone(),
                        ast::AssignmentName::ArrayElementName(n, _) => n.clone(),
                    };
                    match &assignment.value {
                        ast::AssignmentValue::Scalar(v) => {
                            let value = self.word(&v.value, depth, via);
                            assignments.push((name, value));
                        }
                        ast::AssignmentValue::Array(_) => self.opaque("array assignments are not read"),
                    }
                }
                other => self.item(other, &mut words, &mut redirects, depth, via),
            }
        }
        if let Some(program) = &simple.word_or_name {
            words.push(self.word(&program.value, depth, via));
        }
        for item in simple.suffix.iter().flat_map(|s| s.0.iter()) {
            self.item(item, &mut words, &mut redirects, depth, via);
        }
        for (name, _) in &assignments {
            if let Some(why) = wrappers::changes_what_runs(name) {
                self.opaque(format!("it sets {name}, {why}"));
            }
        }
        if words.is_empty() {
            // Assignments or redirections alone: no program runs, but files may be opened.
            if !redirects.is_empty() {
                self.commands.push(Command { redirects, via: via.to_vec(), ..Command::default() });
            }
            return;
        }
        wrappers::unwrap(self, words, redirects, depth, via);
    }

    fn item(
        &mut self,
        item: &Item,
        words: &mut Vec<Word>,
        redirects: &mut Vec<Redirect>,
        depth: usize,
        via: &[String],
    ) {
        match item {
            Item::IoRedirect(io) => {
                if let Some(r) = self.redirect(io, depth, via) {
                    redirects.push(r);
                }
            }
            // After the program, `a=b` is an argument like any other.
            Item::Word(w) | Item::AssignmentWord(_, w) => words.push(self.word(&w.value, depth, via)),
            Item::ProcessSubstitution(_, s) => {
                self.list(&s.list, depth + 1, via);
                words.push(Word { text: "<(…)".into(), literal: false });
            }
        }
    }

    /// Redirections of a compound command or alone: recorded as a command without a program.
    fn redirects_alone(&mut self, list: &[ast::IoRedirect], depth: usize, via: &[String]) {
        let redirects: Vec<Redirect> = list.iter().filter_map(|io| self.redirect(io, depth, via)).collect();
        if !redirects.is_empty() {
            self.commands.push(Command { redirects, via: via.to_vec(), ..Command::default() });
        }
    }

    /// A redirection that opens a file (`None` for descriptors and here-documents, whose
    /// expansions are still read).
    fn redirect(&mut self, io: &ast::IoRedirect, depth: usize, via: &[String]) -> Option<Redirect> {
        use ast::IoFileRedirectKind as K;
        use ast::IoFileRedirectTarget as T;
        match io {
            ast::IoRedirect::File(_, kind, target) => {
                let writes = matches!(kind, K::Write | K::Append | K::ReadAndWrite | K::Clobber);
                match target {
                    T::Filename(w) => {
                        let word = self.word(&w.value, depth, via);
                        Some(Redirect { writes, target: word.text, literal: word.literal })
                    }
                    // `>&2`, `2>&1`: a descriptor; `>&file` (bash) names a file.
                    T::Duplicate(w) => {
                        let word = self.word(&w.value, depth, via);
                        let descriptor = word.literal && (word.text == "-" || word.text.parse::<u32>().is_ok());
                        (!descriptor).then_some(Redirect { writes: true, target: word.text, literal: word.literal })
                    }
                    T::Fd(_) => None,
                    T::ProcessSubstitution(_, s) => {
                        self.list(&s.list, depth + 1, via);
                        None
                    }
                }
            }
            ast::IoRedirect::HereDocument(_, doc) => {
                if doc.requires_expansion {
                    match word::parse_heredoc(&doc.doc.value, &options()) {
                        Ok(pieces) => {
                            let mut scratch = Word { text: String::new(), literal: true };
                            self.pieces(&doc.doc.value, &pieces, &mut scratch, true, depth, via);
                        }
                        Err(e) => self.opaque(format!("a here-document cannot be read ({e})")),
                    }
                }
                None
            }
            ast::IoRedirect::HereString(_, w) => {
                self.word(&w.value, depth, via);
                None
            }
            ast::IoRedirect::OutputAndError(w, _) => {
                let word = self.word(&w.value, depth, via);
                Some(Redirect { writes: true, target: word.text, literal: word.literal })
            }
        }
    }

    /// A word as the shell reads it: quotes removed, commands substituted into it read as
    /// commands of the line.
    fn word(&mut self, raw: &str, depth: usize, via: &[String]) -> Word {
        let mut word = Word { text: String::new(), literal: true };
        match word::parse(raw, &options()) {
            Ok(pieces) => self.pieces(raw, &pieces, &mut word, false, depth, via),
            Err(e) => {
                self.opaque(format!("the word {raw:?} cannot be read ({e})"));
                word.literal = false;
            }
        }
        // Brace expansion (`{a,b}`, `{1..3}`) turns one word into several.
        if let Ok(Some(parts)) = word::parse_brace_expansions(raw, &options())
            && parts.iter().any(|p| matches!(p, word::BraceExpressionOrText::Expr(_)))
        {
            word.literal = false;
        }
        if !word.literal {
            word.text = raw.to_string();
        }
        word
    }

    /// `raw`: the text the pieces were read from.
    fn pieces(
        &mut self,
        raw: &str,
        pieces: &[word::WordPieceWithSource],
        word: &mut Word,
        quoted: bool,
        depth: usize,
        via: &[String],
    ) {
        for piece in pieces {
            let source = raw.get(piece.start_index..piece.end_index).unwrap_or(raw);
            match &piece.piece {
                WordPiece::Text(text) => {
                    word.text.push_str(text);
                    // Unquoted, these are globs (and `~` after `=` or `:` expands in assignments).
                    if !quoted && text.contains(['*', '?', '[', '~']) {
                        word.literal = false;
                    }
                }
                WordPiece::SingleQuotedText(text) => word.text.push_str(text),
                WordPiece::EscapeSequence(e) => {
                    if e != "\\\n" {
                        word.text.push_str(e.get(1..).unwrap_or_default());
                    }
                }
                WordPiece::DoubleQuotedSequence(inner) | WordPiece::GettextDoubleQuotedSequence(inner) => {
                    self.pieces(raw, inner, word, true, depth, via);
                }
                WordPiece::CommandSubstitution(line) | WordPiece::BackquotedCommandSubstitution(line) => {
                    word.literal = false;
                    self.line(line, depth + 1, via);
                }
                WordPiece::AnsiCQuotedText(_)
                | WordPiece::TildeExpansion(_)
                | WordPiece::ParameterExpansion(_)
                | WordPiece::ArithmeticExpression(_) => {
                    // Arithmetic may hold substitutions: `$(( $(cmd) ))`.
                    if let WordPiece::ArithmeticExpression(e) = &piece.piece
                        && (e.value.contains("$(") || e.value.contains('`'))
                    {
                        self.opaque("a command substitution inside arithmetic is not read");
                    }
                    if let WordPiece::ParameterExpansion(_) = &piece.piece
                        && (source.contains("$(") || source.contains('`'))
                    {
                        // `${x:-$(cmd)}`: the substitution runs; read it if it can be cut out.
                        self.opaque("a command substitution inside a parameter expansion is not read");
                    }
                    word.literal = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
