//! `sluice mask test`: what each detector finds in a text and what an agent would receive, with
//! no server running.

use crate::display::out;
use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use sluice_engine::MASK_TOKEN_PURPOSE;
use sluice_store::vault::MasterKey;
use std::io::Read;
use std::path::Path;

#[derive(Subcommand)]
pub enum MaskCommand {
    /// Run the configured detectors over a text (`-` reads standard input).
    Test {
        /// Print the findings and the masked text as JSON.
        #[arg(long)]
        json: bool,
        /// The text to scan, or `-` to read it from standard input.
        text: String,
    },
}

pub fn run(config_path: &Path, cmd: MaskCommand) -> Result<()> {
    let config = crate::targets::load_config(config_path)?;
    let MaskCommand::Test { json, text } = cmd;
    let text = if text == "-" {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf)?;
        buf
    } else {
        text
    };
    // Tokens match the gateway's only under its master key; without one they are illustrative.
    let (key, tokens_note) = match MasterKey::load(&config.server.master_key_path(), false) {
        Ok(key) => (key.derive(MASK_TOKEN_PURPOSE), None),
        Err(_) => ([0; 32], Some("no master key found: tokens shown here differ from the gateway's")),
    };
    let masking = sluice_engine::compile::masking(&config, key)?;
    let findings = masking.explain(&text);
    let masked = masking.mask_text(&text).unwrap_or_else(|| text.clone());
    if json {
        out!("{}", json!({ "findings": findings, "masked": masked, "note": tokens_note }));
        return Ok(());
    }
    if findings.is_empty() {
        out!("nothing found");
    }
    for f in &findings {
        out!("{:<16} {:>5}..{:<5} {:?} -> {}", f.detector, f.start, f.end, f.matched, f.replacement);
    }
    out!("the agent gets: {masked}");
    if let Some(note) = tokens_note.filter(|_| findings.iter().any(|f| f.replacement.starts_with("tok_"))) {
        out!("({note})");
    }
    Ok(())
}
