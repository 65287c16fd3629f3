//! What a client reads on its standard error when sluice does not run its command: which rule,
//! what matched, and the next step, in lines that start with `sluice:`.

use crate::SshListenerConfig;
use sluice_core::{Decision, Hold, RefusalCause};

/// The refusal of a command; `decision` is one that does not allow.
pub fn refused(decision: &Decision, config: &SshListenerConfig) -> String {
    let (verb, refusal) = match decision {
        Decision::Deny(r) => ("denied", r),
        Decision::Review(r) => ("held for review", r),
        other => return format!("sluice: not run ({})\n", other.effect()),
    };
    let mut text = match refusal.cause {
        RefusalCause::Pending { review_id } => {
            let mut head = format!(
                "sluice: approval #{review_id} pending (rule \"{}\"): {}\n\
                 sluice: next: re-run the same command once approved (`sluice review approve {review_id}`",
                refusal.rule, refusal.reason
            );
            if let Some(url) = &config.api_url {
                head.push_str(&format!(", {url}/api/v1/reviews/{review_id}"));
            }
            head.push_str("); it was not run\n");
            head
        }
        _ => format!("sluice: {verb} by rule \"{}\": {}\n", refusal.rule, refusal.reason),
    };
    if let Some(detail) = &refusal.detail {
        text.push_str(&format!("sluice: what matched: {detail}\n"));
    }
    if let Some(hint) = &refusal.hint
        && !matches!(refusal.cause, RefusalCause::Pending { .. })
    {
        text.push_str(&format!("sluice: next: {hint}\n"));
    }
    text
}

/// Told while a command waits for its review.
pub fn held(hold: &Hold) -> String {
    format!("sluice: {} (approval #{}); waiting — {}\n", hold.notice, hold.review_id, hold.hint)
}

/// A subsystem this adapter does not serve.
pub fn subsystem_not_served(name: &str) -> String {
    format!(
        "sluice: the {name} subsystem is not served through sluice (sftp is); run commands one by one (`ssh HOST 'command'`)\n"
    )
}
