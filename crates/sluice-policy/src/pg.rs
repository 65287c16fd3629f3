//! What the SQL matcher knows of PostgreSQL: functions with side effects, settings and system
//! relations no session may touch, and the settings sluice's own analysis relies on.

use sluice_core::glob::glob_match;
use sluice_core::sql::{Kind, ObjectName, Operation, SqlAnalysis};
use sluice_core::{Refusal, RefusalCause};

/// Functions that change state or reach outside the database although a SELECT can call them.
pub const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_*dir",
    "pg_stat_file",
    "pg_file_*",
    "lo_import",
    "lo_export",
    "lo_unlink",
    "lo_create",
    "lo_creat",
    "lo_put",
    "lo_from_bytea",
    "lo_truncate*",
    "lowrite",
    "lo_open",
    "dblink*",
    "set_config",
    "pg_advisory_*",
    "pg_try_advisory_*",
    "nextval",
    "setval",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_create_*_replication_slot",
    "pg_drop_replication_slot",
    "pg_copy_*_replication_slot",
    "pg_replication_slot_advance",
    "pg_replication_origin_*",
    "pg_logical_emit_message",
    "pg_logical_slot_*_changes",
    "pg_logical_slot_*_binary_changes",
    "pg_promote",
    "pg_wal_replay_*",
    "pg_backup_start",
    "pg_backup_stop",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_notify",
    "pg_stat_reset*",
    "pg_log_backend_memory_contexts",
    "pg_import_system_collations",
    "txid_current",
    "pg_current_xact_id",
];

/// Settings no session may change (patterns, as in rules), by SET, set_config() or a startup
/// parameter: those the gateway relies on, the server's own logging and auditing of the session,
/// and those that load server libraries (`LOAD` is refused; these would do the same).
pub const PROTECTED_SETTINGS: &[&str] = &[
    "standard_conforming_strings",
    "search_path",
    "role",
    "session_authorization",
    "default_transaction_read_only",
    "transaction_read_only",
    "backslash_quote",
    "client_encoding",
    "(computed)",
    // Logging and auditing: what the database records of this session is the operator's (these
    // and the library settings below are the built-in rule `protected-setting`, which an operator
    // may turn off).
    "log_*",
    "debug_print_*",
    "track_*",
    "compute_query_id",
    "pgaudit.*",
    "session_replication_role",
    // Library loading.
    "*_preload_libraries",
    "dynamic_library_path",
    "jit_provider",
];

/// System relations no session may read, whatever the rules say: `(schema, name pattern, what it
/// holds)`. Credentials (the held upstream credential's SCRAM verifier among them), sample values
/// of every column (`most_common_vals`, histograms: for a small table, every value, of denied
/// tables and masked columns alike), and TOAST relations (the out-of-line values of any table,
/// denied ones included).
pub(crate) const PROTECTED_CATALOGS: &[(&str, &str, &str)] = &[
    ("pg_catalog", "pg_authid", "password verifiers"),
    ("pg_catalog", "pg_shadow", "password verifiers"),
    ("pg_catalog", "pg_user_mapping", "credentials for foreign servers"),
    ("pg_catalog", "pg_user_mappings", "credentials for foreign servers"),
    ("information_schema", "user_mapping_options", "credentials for foreign servers"),
    ("information_schema", "_pg_user_mappings", "credentials for foreign servers"),
    ("pg_catalog", "pg_statistic", "sample values of every column"),
    ("pg_catalog", "pg_statistic_ext_data", "sample values of every column"),
    ("pg_catalog", "pg_stats", "sample values of every column"),
    ("pg_catalog", "pg_stats_ext", "sample values of every column"),
    ("pg_catalog", "pg_stats_ext_exprs", "sample values of every column"),
    ("pg_toast", "*", "the out-of-line values of a table"),
    ("*", "pg_toast_*", "the out-of-line values of a table"),
];

/// What a protected system relation holds, if `object` may be one. An unqualified name counts:
/// `pg_catalog` comes first in every search path unless placed later, and the search path is
/// pinned.
pub(crate) fn protected_catalog(object: &ObjectName) -> Option<&'static str> {
    let name = object.name.to_ascii_lowercase();
    let schema = object.schema.as_deref().map(str::to_ascii_lowercase);
    PROTECTED_CATALOGS.iter().find_map(|&(s, n, holds)| {
        // A whole schema is protected only where the name says so.
        let schema_fits = match schema.as_deref() {
            Some(schema) => glob_match(s, schema),
            None => n != "*",
        };
        (schema_fits && glob_match(n, &name)).then_some(holds)
    })
}

/// What a read-only session should do instead of an operation that is not a write, where "ask for
/// write access" would mislead.
pub(crate) fn read_only_hint(op: &Operation) -> Option<String> {
    let name = op.object.as_ref().map_or_else(String::new, ToString::to_string);
    Some(match op.kind {
        Kind::Function => format!(
            "{name}() has effects beyond reading (PostgreSQL marks it volatile, or it is a known side-effect \
             function); a read-only session calls only functions free of them. Leave it out, or ask an operator \
             for a connection where it is allowed"
        ),
        Kind::CopyFile | Kind::CopyProgram => "sluice never lets COPY reach the database server's files or programs; \
             use COPY … TO STDOUT (psql's \\copy) to read a table"
            .into(),
        Kind::Lock => "read without locking (drop FOR UPDATE/FOR SHARE, or LOCK TABLE): a read-only session takes \
             no locks that block writers"
            .into(),
        Kind::Do | Kind::Call => {
            "run the statements themselves: a read-only session runs no DO blocks or procedures".into()
        }
        Kind::AssumeRole => {
            "a read-only session keeps the connection's upstream user, which its protection relies on: \
             leave the role as it is"
                .into()
        }
        _ => return None,
    })
}

/// Settings that make a session read-only or not: protected only where a `read-only` preset applies.
pub(crate) const READ_ONLY_SETTINGS: &[&str] = &["default_transaction_read_only", "transaction_read_only"];

/// Settings sluice's analysis of later statements depends on: the role (through `set_config`; `SET
/// ROLE` is kind `assume-role`) and how text lexes. Pinned only where the policy in scope enforces
/// something (`Policy::enforces_anything`): where it enforces nothing, a misread statement changes
/// no decision. (`search_path` is pinned only where a rule names objects by schema: see
/// `Policy::pins_search_path`.)
pub(crate) const ANALYSIS_SETTINGS: &[&str] =
    &["standard_conforming_strings", "backslash_quote", "role", "session_authorization"];

/// Whether deciding `analysis` depends on whether column masking is in force (dynamic SQL, a role
/// to assume, a setting sluice's analysis relies on): only then is it worth an adapter's while to
/// find out (see `Policy::decide_where`).
pub fn depends_on_column_masking(analysis: &SqlAnalysis) -> bool {
    let SqlAnalysis::Parsed { statements } = analysis else { return false };
    statements.iter().flat_map(|s| &s.operations).any(|op| match op.kind {
        Kind::DynamicSql | Kind::AssumeRole => true,
        Kind::Set => op.object.as_ref().is_some_and(|o| ANALYSIS_SETTINGS.contains(&o.name.as_str())),
        _ => false,
    })
}

/// Settings sluice pins whatever the policy: the encoding it parses in, and a setting whose name
/// is only known at run time.
pub(crate) const ALWAYS_PINNED: &[&str] = &["client_encoding", "(computed)"];

/// Whether a setting (by its lower-case name) is one no session may change.
pub fn is_protected_setting(name: &str) -> bool {
    PROTECTED_SETTINGS.iter().any(|p| glob_match(p, name))
}

/// PostgreSQL looks in pg_temp and pg_catalog before the search_path.
pub(crate) fn implicit_schemas(search_path: &[String]) -> impl Iterator<Item = &str> {
    ["pg_temp", "pg_catalog"].into_iter().chain(search_path.iter().map(String::as_str))
}

/// The functions a statement calls that are not PostgreSQL's own (`pg_catalog`): in a read-only
/// session, only the server's catalog can tell whether one of them writes.
pub fn user_functions(analysis: &SqlAnalysis) -> Vec<&ObjectName> {
    let SqlAnalysis::Parsed { statements } = analysis else { return Vec::new() };
    statements.iter().flat_map(|s| &s.functions).filter(|f| f.schema.as_deref() != Some("pg_catalog")).collect()
}

fn read_only_refusal(reason: String, detail: Option<String>, hint: String) -> Refusal {
    Refusal { rule: "read-only".into(), reason, detail, hint: Some(hint), cause: RefusalCause::Policy }
}

/// A read-only session's call of a user-defined function PostgreSQL marks VOLATILE: it may have
/// effects the read-only transaction does not stop (an advisory lock, a dblink call).
pub fn volatile_call_refusal(function: &ObjectName) -> Refusal {
    read_only_refusal(
        format!(
            "this session is read-only, and {function}() is a user-defined function PostgreSQL marks VOLATILE: \
             it may have effects beyond reading"
        ),
        Some(format!("call of {function}()")),
        "if it only reads, its owner can say so with ALTER FUNCTION … STABLE; otherwise leave it out, or ask an \
         operator for a connection where it is allowed"
            .into(),
    )
}

/// A read-only session's call of user-defined functions whose volatility could not be read.
pub fn volatility_unknown(why: &str) -> Refusal {
    read_only_refusal(
        format!("sluice cannot read the server's functions to tell whether a call has side effects: {why}"),
        None,
        "retry in a moment; if it persists, the upstream server refuses catalog reads".into(),
    )
}
