//! PostgreSQL's built-in functions by volatility, for read-only sessions: a call of a volatile
//! built-in may change state (an index summarized, a file read, a lock taken), so under the
//! `read-only` preset only the volatile ones known to have no effect beyond the statement run.
//! Generated from `pg_proc.dat` of PostgreSQL 13–17 by `scripts/pg-function-lists.py` (see its
//! header for the sources); the allow list is reviewed by hand, one reason per group below.

/// Every function name that is VOLATILE in `pg_catalog` in any of PostgreSQL 13–17, sorted.
pub const VOLATILE_BUILTINS: &[&str] = &[
    "RI_FKey_cascade_del", "RI_FKey_cascade_upd", "RI_FKey_check_ins", "RI_FKey_check_upd", "RI_FKey_noaction_del",
    "RI_FKey_noaction_upd", "RI_FKey_restrict_del", "RI_FKey_restrict_upd", "RI_FKey_setdefault_del",
    "RI_FKey_setdefault_upd", "RI_FKey_setnull_del", "RI_FKey_setnull_upd", "amvalidate", "array_sample",
    "array_shuffle", "bernoulli", "binary_upgrade_add_sub_rel_state", "binary_upgrade_create_empty_extension",
    "binary_upgrade_logical_slot_has_caught_up", "binary_upgrade_replorigin_advance",
    "binary_upgrade_set_missing_value", "binary_upgrade_set_next_array_pg_type_oid",
    "binary_upgrade_set_next_heap_pg_class_oid", "binary_upgrade_set_next_heap_relfilenode",
    "binary_upgrade_set_next_index_pg_class_oid", "binary_upgrade_set_next_index_relfilenode",
    "binary_upgrade_set_next_multirange_array_pg_type_oid", "binary_upgrade_set_next_multirange_pg_type_oid",
    "binary_upgrade_set_next_pg_authid_oid", "binary_upgrade_set_next_pg_enum_oid",
    "binary_upgrade_set_next_pg_tablespace_oid", "binary_upgrade_set_next_pg_type_oid",
    "binary_upgrade_set_next_toast_pg_class_oid", "binary_upgrade_set_next_toast_pg_type_oid",
    "binary_upgrade_set_next_toast_relfilenode", "binary_upgrade_set_record_init_privs", "brin_desummarize_range",
    "brin_summarize_new_values", "brin_summarize_range", "brinhandler", "bthandler", "clock_timestamp",
    "current_query", "currtid", "currtid2", "currval", "cursor_to_xml", "cursor_to_xmlschema", "gen_random_uuid",
    "gin_clean_pending_list", "ginhandler", "gisthandler", "hashhandler", "heap_tableam_handler", "lastval",
    "lo_close", "lo_creat", "lo_create", "lo_export", "lo_from_bytea", "lo_get", "lo_import", "lo_lseek",
    "lo_lseek64", "lo_open", "lo_put", "lo_tell", "lo_tell64", "lo_truncate", "lo_truncate64", "lo_unlink", "loread",
    "lowrite", "nextval", "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_unlock",
    "pg_advisory_unlock_all", "pg_advisory_unlock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
    "pg_available_wal_summaries", "pg_backup_start", "pg_backup_stop", "pg_blocking_pids", "pg_cancel_backend",
    "pg_collation_actual_version", "pg_control_checkpoint", "pg_control_init", "pg_control_recovery",
    "pg_control_system", "pg_copy_logical_replication_slot", "pg_copy_physical_replication_slot",
    "pg_create_logical_replication_slot", "pg_create_physical_replication_slot", "pg_create_restore_point",
    "pg_current_logfile", "pg_current_wal_flush_lsn", "pg_current_wal_insert_lsn", "pg_current_wal_lsn",
    "pg_database_collation_actual_version", "pg_database_size", "pg_drop_replication_slot", "pg_export_snapshot",
    "pg_extension_config_dump", "pg_get_backend_memory_contexts", "pg_get_multixact_members",
    "pg_get_shmem_allocations", "pg_get_wait_events", "pg_get_wal_replay_pause_state", "pg_get_wal_resource_managers",
    "pg_get_wal_summarizer_state", "pg_hba_file_rules", "pg_ident_file_mappings", "pg_import_system_collations",
    "pg_indexes_size", "pg_is_in_backup", "pg_is_in_recovery", "pg_is_wal_replay_paused",
    "pg_isolation_test_session_is_blocked", "pg_jit_available", "pg_last_committed_xact", "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp", "pg_lock_status", "pg_log_backend_memory_contexts",
    "pg_log_standby_snapshot", "pg_logical_emit_message", "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_get_changes", "pg_logical_slot_peek_binary_changes", "pg_logical_slot_peek_changes",
    "pg_ls_archive_statusdir", "pg_ls_dir", "pg_ls_logdir", "pg_ls_logicalmapdir", "pg_ls_logicalsnapdir",
    "pg_ls_replslotdir", "pg_ls_tmpdir", "pg_ls_waldir", "pg_nextoid", "pg_notification_queue_usage", "pg_notify",
    "pg_partition_ancestors", "pg_partition_tree", "pg_prepared_xact", "pg_promote", "pg_read_binary_file",
    "pg_read_file", "pg_read_file_old", "pg_relation_size", "pg_reload_conf", "pg_replication_origin_advance",
    "pg_replication_origin_create", "pg_replication_origin_drop", "pg_replication_origin_progress",
    "pg_replication_origin_session_is_setup", "pg_replication_origin_session_progress",
    "pg_replication_origin_session_reset", "pg_replication_origin_session_setup", "pg_replication_origin_xact_reset",
    "pg_replication_origin_xact_setup", "pg_replication_slot_advance", "pg_rotate_logfile", "pg_rotate_logfile_old",
    "pg_safe_snapshot_blocking_pids", "pg_sequence_last_value", "pg_show_all_file_settings",
    "pg_show_replication_origin_status", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_start_backup",
    "pg_stat_clear_snapshot", "pg_stat_file", "pg_stat_force_next_flush", "pg_stat_get_io",
    "pg_stat_get_recovery_prefetch", "pg_stat_get_xact_blocks_fetched", "pg_stat_get_xact_blocks_hit",
    "pg_stat_get_xact_function_calls", "pg_stat_get_xact_function_self_time", "pg_stat_get_xact_function_total_time",
    "pg_stat_get_xact_numscans", "pg_stat_get_xact_tuples_deleted", "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_hot_updated", "pg_stat_get_xact_tuples_inserted",
    "pg_stat_get_xact_tuples_newpage_updated", "pg_stat_get_xact_tuples_returned", "pg_stat_get_xact_tuples_updated",
    "pg_stat_have_stats", "pg_stat_reset", "pg_stat_reset_replication_slot", "pg_stat_reset_shared",
    "pg_stat_reset_single_function_counters", "pg_stat_reset_single_table_counters", "pg_stat_reset_slru",
    "pg_stat_reset_subscription_stats", "pg_stop_backup", "pg_stop_making_pinned_objects", "pg_switch_wal",
    "pg_sync_replication_slots", "pg_table_size", "pg_tablespace_size", "pg_terminate_backend",
    "pg_total_relation_size", "pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared", "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_wal_summary_contents",
    "pg_xact_commit_timestamp", "pg_xact_commit_timestamp_origin", "pg_xact_status", "query_to_xml",
    "query_to_xml_and_xmlschema", "query_to_xmlschema", "random", "random_normal", "set_config", "setseed", "setval",
    "spghandler", "suppress_redundant_updates_trigger", "system", "timeofday", "timezone", "ts_rewrite", "ts_stat",
    "tsvector_update_trigger", "tsvector_update_trigger_column", "txid_status", "unique_key_recheck",
];

/// Volatile built-ins with no effect outside the statement that calls them: random values
/// (`random`, `gen_random_uuid`, `array_shuffle`…), the clock, sleeping, `timezone` (every
/// `AT TIME ZONE`), the session's own sequence values (`currval`, `lastval`), sizes, partition
/// trees, status of the server, WAL positions and transactions, and the TABLESAMPLE methods.
/// Not here on purpose: `setseed` (changes `random` for the rest of the session).
pub const READ_ONLY_SAFE_VOLATILES: &[&str] = &[
    "array_sample", "array_shuffle", "bernoulli", "clock_timestamp", "current_query", "currval", "gen_random_uuid",
    "lastval", "pg_blocking_pids", "pg_collation_actual_version", "pg_current_wal_flush_lsn",
    "pg_current_wal_insert_lsn", "pg_current_wal_lsn", "pg_database_collation_actual_version", "pg_database_size",
    "pg_get_wal_replay_pause_state", "pg_indexes_size", "pg_is_in_backup", "pg_is_in_recovery",
    "pg_is_wal_replay_paused", "pg_jit_available", "pg_last_committed_xact", "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn", "pg_last_xact_replay_timestamp", "pg_notification_queue_usage",
    "pg_partition_ancestors", "pg_partition_tree", "pg_relation_size", "pg_safe_snapshot_blocking_pids", "pg_sleep",
    "pg_sleep_for", "pg_sleep_until", "pg_stat_get_xact_blocks_fetched", "pg_stat_get_xact_blocks_hit",
    "pg_stat_get_xact_function_calls", "pg_stat_get_xact_function_self_time", "pg_stat_get_xact_function_total_time",
    "pg_stat_get_xact_numscans", "pg_stat_get_xact_tuples_deleted", "pg_stat_get_xact_tuples_fetched",
    "pg_stat_get_xact_tuples_hot_updated", "pg_stat_get_xact_tuples_inserted",
    "pg_stat_get_xact_tuples_newpage_updated", "pg_stat_get_xact_tuples_returned", "pg_stat_get_xact_tuples_updated",
    "pg_stat_have_stats", "pg_table_size", "pg_tablespace_size", "pg_total_relation_size", "pg_xact_commit_timestamp",
    "pg_xact_commit_timestamp_origin", "pg_xact_status", "random", "random_normal", "system", "timeofday", "timezone",
    "txid_status",
];

/// Whether `name` is a volatile built-in a read-only session may not call.
pub fn is_unsafe_volatile(name: &str) -> bool {
    VOLATILE_BUILTINS.binary_search(&name).is_ok() && READ_ONLY_SAFE_VOLATILES.binary_search(&name).is_err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_for_binary_search() {
        assert!(VOLATILE_BUILTINS.windows(2).all(|w| w[0] < w[1]));
        assert!(READ_ONLY_SAFE_VOLATILES.windows(2).all(|w| w[0] < w[1]));
        assert!(READ_ONLY_SAFE_VOLATILES.iter().all(|f| VOLATILE_BUILTINS.contains(f)));
        for f in ["brin_summarize_new_values", "brin_desummarize_range", "pg_read_file", "lo_import", "setseed", "pg_notify"] {
            assert!(is_unsafe_volatile(f), "{f}");
        }
        for f in ["random", "now", "lower", "timezone", "clock_timestamp", "pg_relation_size"] {
            assert!(!is_unsafe_volatile(f), "{f}");
        }
    }
}
