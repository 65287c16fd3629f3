//! The configuration (plain data) compiled into what decides: the policy, the access policies and
//! the masking. Done when the engine is built or reloaded, and by `load` so that a configuration
//! that would not compile is refused when it is read, naming the section at fault.

use crate::{TargetError, TargetPreparer};
use sluice_approvals::AccessPolicy;
use sluice_config::{AccessPolicySpec, Config, ConfigError};
use sluice_core::review::MAX_SPAN;
use sluice_core::scope::RuleScope;
use sluice_mask::{MaskError, Masking, TokenKey};
use sluice_policy::{ConnectionPolicy, Policy, PolicyError, PolicySpec};
use std::path::Path;

/// Reads the configuration file and checks that everything in it compiles.
pub fn load(path: &Path, targets: &dyn TargetPreparer) -> Result<Config, ConfigError> {
    let config = sluice_config::load(path)?;
    check(&config, path, targets)?;
    Ok(config)
}

/// Checks that every connection's protocol options are what its adapter accepts, and that the
/// policy, the access policies and the masking compile.
pub fn check(config: &Config, origin: &Path, targets: &dyn TargetPreparer) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid { path: origin.into(), key: key.into(), message };
    let connections = connection_policies(config, targets)
        .map_err(|TargetError { name, reason }| invalid(&format!("connections.{name}"), reason))?;
    policy(config, &connections).map_err(|e| invalid("policy.rules", e.to_string()))?;
    access(config, &connections).map_err(|e| invalid("access.policies", e.to_string()))?;
    masking(config, [0; 32]).map_err(|e| invalid("masking", e.to_string()))?;
    Ok(())
}

/// The SQL policy: the `[policy]` section with each connection's preset, default and search_path
/// (`connections`, from `connection_policies`).
pub fn policy(config: &Config, connections: &[ConnectionPolicy]) -> Result<Policy, PolicyError> {
    Ok(Policy::compile(&config.policy, connections)?.with_column_masking(masked_scopes(config)))
}

/// What the policy needs to know of each connection: sluice's keys (preset, default) and, from
/// its adapter (which checks the connection's protocol options on the way), the schemas
/// unqualified names resolve to.
pub fn connection_policies(
    config: &Config,
    targets: &dyn TargetPreparer,
) -> Result<Vec<ConnectionPolicy>, TargetError> {
    config
        .connections
        .iter()
        .map(|(name, conn)| {
            let facts = targets.describe(name, conn).map_err(|reason| TargetError { name: name.clone(), reason })?;
            Ok(ConnectionPolicy {
                name: name.clone(),
                protocol: sluice_policy::RuleProtocol::serving(facts.protocol),
                preset: conn.policy,
                default: conn.default,
                search_path: facts.sql_search_path,
            })
        })
        .collect()
}

/// The access policies, in the order the configuration lists them.
pub fn access(config: &Config, connections: &[ConnectionPolicy]) -> Result<Vec<AccessPolicy>, PolicyError> {
    config
        .access
        .policies
        .iter()
        .map(|spec| {
            let mut access = access_policy(spec, connections, &config.policy.side_effect_functions)?;
            access.policy = access.policy.with_column_masking(masked_scopes(config));
            Ok(access)
        })
        .collect()
}

/// The masking, with the key deterministic tokens are made with.
pub fn masking(config: &Config, token_key: [u8; 32]) -> Result<Masking, MaskError> {
    sluice_mask::compile(&config.masking, TokenKey::new(token_key))
}

/// Where column masking applies: every column rule's scope (none when masking is off).
fn masked_scopes(config: &Config) -> Vec<RuleScope> {
    if !config.masking.enabled {
        return Vec::new();
    }
    config.masking.columns.iter().map(|c| c.scope()).collect()
}

/// One access policy, compiled against the configured connections. Connection presets and
/// defaults do not apply under a grant: the access policy replaces the normal one.
fn access_policy(
    spec: &AccessPolicySpec,
    connections: &[ConnectionPolicy],
    side_effect_functions: &[String],
) -> Result<AccessPolicy, PolicyError> {
    let problem = |p: String| PolicyError::Rule { rule: format!("access policy {}", spec.name), problem: p };
    spec.review.check().map_err(|p| problem(format!("review: {p}")))?;
    if spec.max_duration.0.is_zero() || spec.max_duration > MAX_SPAN {
        return Err(problem(format!("max_duration must be longer than 0s and at most {MAX_SPAN}")));
    }
    let policy = PolicySpec {
        default: spec.default,
        side_effect_functions: side_effect_functions.to_vec(),
        rules: spec.rules.clone(),
        // Built-in rules stay on under a grant, whatever the main policy turns off.
        builtin: Default::default(),
    };
    let plain: Vec<ConnectionPolicy> =
        connections.iter().map(|c| ConnectionPolicy { preset: None, default: None, ..c.clone() }).collect();
    Ok(AccessPolicy {
        name: spec.name.clone(),
        description: spec.description.clone(),
        scope: spec.scope(),
        max_duration: spec.max_duration,
        review: spec.review.clone(),
        policy: Policy::compile(&policy, &plain)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TargetFacts;
    use sluice_config::ConnectionConfig;
    use sluice_core::Protocol;
    use sluice_gate::Target;

    /// Every connection is a SQL target with `public` as its search_path.
    struct Plain;

    impl TargetPreparer for Plain {
        fn describe(&self, name: &str, _: &ConnectionConfig) -> Result<TargetFacts, String> {
            Ok(TargetFacts {
                protocol: Protocol::Postgres,
                sql_search_path: vec!["public".into()],
                summary: name.into(),
            })
        }
        fn prepare(&self, name: &str, _: &ConnectionConfig) -> Result<Target, String> {
            Ok(Target::new(name, Protocol::Postgres, std::sync::Arc::new(())))
        }
    }

    fn checked(text: &str) -> Result<Config, ConfigError> {
        let origin = Path::new("test.toml");
        let config = sluice_config::parse(text, origin)?;
        check(&config, origin, &Plain)?;
        Ok(config)
    }

    #[test]
    fn review_settings_and_access_policies_are_checked_naming_the_section() {
        let base = "[connections.shop]\nhost = \"h\"\nuser = \"u\"\n";
        let err = |extra: &str| checked(&format!("{base}{extra}")).unwrap_err().to_string();
        let e = err("[[policy.rules]]\nname = \"r\"\neffect = \"deny\"\nreview = { approvers = [\"dba\"] }\n");
        assert!(e.contains("policy.rules") && e.contains("only a rule with effect"), "{e}");
        let e = err("[[policy.rules]]\nname = \"r\"\neffect = \"review\"\nreview = { approvers = [] }\n");
        assert!(e.contains("approver"), "{e}");
        let e = err("[[policy.rules]]\nname = \"r\"\neffect = \"review\"\nreview = { timeout = \"soon\" }\n");
        assert!(e.contains("not a length of time"), "{e}");
        let e = err("[[access.policies]]\nname = \"a\"\n[[access.policies]]\nname = \"a\"\n");
        assert!(e.contains("access.policies"), "{e}");
        let e = err("[[access.policies]]\nname = \"a\"\nmax_duration = \"0s\"\n");
        assert!(e.contains("access.policies") && e.contains("max_duration"), "{e}");
        let e = err("[masking]\ndetectors = [\"cc\"]\n");
        assert!(e.contains("masking") && e.contains("unknown detector"), "{e}");
        let ok = checked(&format!(
            "{base}[[policy.rules]]\nname = \"r\"\neffect = \"review\"\nreview = {{ mode = \"wait\", timeout = \"90s\", approvals = 2 }}\n\
             [[access.policies]]\nname = \"writer\"\nmax_duration = \"2h\"\n"
        ))
        .unwrap();
        let connections = connection_policies(&ok, &Plain).unwrap();
        let rules = policy(&ok, &connections).unwrap().review_rules("r");
        assert_eq!((rules.mode.as_str(), rules.timeout.as_secs(), rules.approvals), ("wait", 90, 2));
        assert_eq!(rules.approvers, ["approvers"], "the default approver group");
        assert_eq!(access(&ok, &connections).unwrap()[0].max_duration.as_secs(), 7200);
    }
}
