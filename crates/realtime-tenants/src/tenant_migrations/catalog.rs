//! The 81 upstream tenant migration versions and the SQL each one runs, embedded from
//! `migrations/tenant/`.

/// SQL file `migrations/tenant/<name>.sql`.
macro_rules! m {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../migrations/tenant/",
            $file,
            ".sql"
        ))
    };
}

/// SQL file `migrations/tenant/functions/<name>.sql` (one function in its final form).
macro_rules! f {
    ($file:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../migrations/tenant/functions/",
            $file,
            ".sql"
        ))
    };
}

/// One upstream version: recorded in `realtime.schema_migrations` once its SQL has run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TenantMigration {
    /// Upstream's Ecto version number.
    pub version: i64,
    /// Upstream's migration name, snake case.
    pub name: &'static str,
    /// Scripts run in order with the simple-query protocol. Two versions first install a
    /// function that their own objects depend on (a trigger, a generated column).
    pub sql: &'static [&'static str],
}

/// Every function of the `realtime` schema in its final form, in dependency order (a
/// SQL-language body is checked against the functions it calls when it is created).
pub(crate) const FUNCTIONS: &[&str] = &[
    f!("wal2json_escape_identifier"),
    f!("quote_wal2json"),
    f!("cast"),
    f!("check_equality_op"),
    f!("is_visible_through_filters"),
    f!("build_prepared_statement_sql"),
    f!("to_regrole"),
    f!("subscription_check_filters"),
    f!("apply_rls"),
    f!("list_changes"),
    f!("topic"),
    f!("send"),
    f!("send_binary"),
    f!("broadcast_changes"),
];

/// Owners and grants of the final state, run after [`FUNCTIONS`].
pub(crate) const FINAL_GRANTS: &str = m!("final_grants");

/// Upstream's versions in order (`lib/realtime/tenants/migrations.ex`).
#[rustfmt::skip]
pub(crate) const MIGRATIONS: [TenantMigration; 81] = [
    TenantMigration { version: 20211116024918, name: "create_realtime_subscription_table", sql: &[m!("20211116024918_create_realtime_subscription_table")] },
    TenantMigration { version: 20211116045059, name: "create_realtime_check_filters_trigger", sql: &[f!("subscription_check_filters"), m!("20211116045059_create_realtime_check_filters_trigger")] },
    TenantMigration { version: 20211116050929, name: "create_realtime_quote_wal2json_function", sql: &[m!("20211116050929_create_realtime_quote_wal2json_function")] },
    TenantMigration { version: 20211116051442, name: "create_realtime_check_equality_op_function", sql: &[m!("20211116051442_create_realtime_check_equality_op_function")] },
    TenantMigration { version: 20211116212300, name: "create_realtime_build_prepared_statement_sql_function", sql: &[m!("20211116212300_create_realtime_build_prepared_statement_sql_function")] },
    TenantMigration { version: 20211116213355, name: "create_realtime_cast_function", sql: &[m!("20211116213355_create_realtime_cast_function")] },
    TenantMigration { version: 20211116213934, name: "create_realtime_is_visible_through_filters_function", sql: &[m!("20211116213934_create_realtime_is_visible_through_filters_function")] },
    TenantMigration { version: 20211116214523, name: "create_realtime_apply_rls_function", sql: &[m!("20211116214523_create_realtime_apply_rls_function")] },
    TenantMigration { version: 20211122062447, name: "grant_realtime_usage_to_authenticated_role", sql: &[m!("20211122062447_grant_realtime_usage_to_authenticated_role")] },
    TenantMigration { version: 20211124070109, name: "enable_realtime_apply_rls_function_postgrest_9_compatibility", sql: &[m!("20211124070109_enable_realtime_apply_rls_function_postgrest_9_compatibility")] },
    TenantMigration { version: 20211202204204, name: "update_realtime_subscription_check_filters_function_security", sql: &[m!("20211202204204_update_realtime_subscription_check_filters_function_security")] },
    TenantMigration { version: 20211202204605, name: "update_realtime_build_prepared_statement_sql_function_for_compatibility_with_all_types", sql: &[m!("20211202204605_update_realtime_build_prepared_statement_sql_function_for_compatibility_with_all_types")] },
    TenantMigration { version: 20211210212804, name: "enable_generic_subscription_claims", sql: &[f!("to_regrole"), m!("20211210212804_enable_generic_subscription_claims")] },
    TenantMigration { version: 20211228014915, name: "add_wal_payload_on_errors_in_apply_rls_function", sql: &[m!("20211228014915_add_wal_payload_on_errors_in_apply_rls_function")] },
    TenantMigration { version: 20220107221237, name: "update_change_timestamp_to_iso_8601_zulu_format", sql: &[m!("20220107221237_update_change_timestamp_to_iso_8601_zulu_format")] },
    TenantMigration { version: 20220228202821, name: "update_subscription_check_filters_function_dynamic_table_name", sql: &[m!("20220228202821_update_subscription_check_filters_function_dynamic_table_name")] },
    TenantMigration { version: 20220312004840, name: "update_apply_rls_function_to_apply_iso_8601", sql: &[m!("20220312004840_update_apply_rls_function_to_apply_iso_8601")] },
    TenantMigration { version: 20220603231003, name: "add_quoted_regtypes_support", sql: &[m!("20220603231003_add_quoted_regtypes_support")] },
    TenantMigration { version: 20220603232444, name: "add_output_for_data_less_than_equal_64_bytes_when_payload_too_large", sql: &[m!("20220603232444_add_output_for_data_less_than_equal_64_bytes_when_payload_too_large")] },
    TenantMigration { version: 20220615214548, name: "add_quoted_regtypes_backward_compatibility_support", sql: &[m!("20220615214548_add_quoted_regtypes_backward_compatibility_support")] },
    TenantMigration { version: 20220712093339, name: "recreate_realtime_build_prepared_statement_sql_function", sql: &[m!("20220712093339_recreate_realtime_build_prepared_statement_sql_function")] },
    TenantMigration { version: 20220908172859, name: "null_passes_filters_recreate_is_visible_through_filters", sql: &[m!("20220908172859_null_passes_filters_recreate_is_visible_through_filters")] },
    TenantMigration { version: 20220916233421, name: "update_apply_rls_function_to_pass_through_delete_events_on_filter", sql: &[m!("20220916233421_update_apply_rls_function_to_pass_through_delete_events_on_filter")] },
    TenantMigration { version: 20230119133233, name: "millisecond_precision_for_walrus", sql: &[m!("20230119133233_millisecond_precision_for_walrus")] },
    TenantMigration { version: 20230128025114, name: "add_in_op_to_filters", sql: &[m!("20230128025114_add_in_op_to_filters")] },
    TenantMigration { version: 20230128025212, name: "enable_filtering_on_delete_record", sql: &[m!("20230128025212_enable_filtering_on_delete_record")] },
    TenantMigration { version: 20230227211149, name: "update_subscription_check_filters_for_in_filter_non_text_types", sql: &[m!("20230227211149_update_subscription_check_filters_for_in_filter_non_text_types")] },
    TenantMigration { version: 20230228184745, name: "convert_commit_timestamp_to_utc", sql: &[m!("20230228184745_convert_commit_timestamp_to_utc")] },
    TenantMigration { version: 20230308225145, name: "output_full_record_when_unchanged_toast", sql: &[m!("20230308225145_output_full_record_when_unchanged_toast")] },
    TenantMigration { version: 20230328144023, name: "create_list_changes_function", sql: &[m!("20230328144023_create_list_changes_function")] },
    TenantMigration { version: 20231018144023, name: "create_channels", sql: &[m!("20231018144023_create_channels")] },
    TenantMigration { version: 20231204144023, name: "set_required_grants", sql: &[m!("20231204144023_set_required_grants")] },
    TenantMigration { version: 20231204144024, name: "create_rls_helper_functions", sql: &[m!("20231204144024_create_rls_helper_functions")] },
    TenantMigration { version: 20231204144025, name: "enable_channels_rls", sql: &[m!("20231204144025_enable_channels_rls")] },
    TenantMigration { version: 20240108234812, name: "add_channels_column_for_write_check", sql: &[m!("20240108234812_add_channels_column_for_write_check")] },
    TenantMigration { version: 20240109165339, name: "add_update_grant_to_channels", sql: &[m!("20240109165339_add_update_grant_to_channels")] },
    TenantMigration { version: 20240227174441, name: "add_broadcast_permissions_table", sql: &[m!("20240227174441_add_broadcast_permissions_table")] },
    TenantMigration { version: 20240311171622, name: "add_insert_and_delete_grant_to_channels", sql: &[m!("20240311171622_add_insert_and_delete_grant_to_channels")] },
    TenantMigration { version: 20240321100241, name: "add_presences_permissions_table", sql: &[m!("20240321100241_add_presences_permissions_table")] },
    TenantMigration { version: 20240401105812, name: "create_realtime_admin_and_move_ownership", sql: &[m!("20240401105812_create_realtime_admin_and_move_ownership")] },
    TenantMigration { version: 20240418121054, name: "remove_check_columns", sql: &[m!("20240418121054_remove_check_columns")] },
    TenantMigration { version: 20240523004032, name: "redefine_authorization_tables", sql: &[m!("20240523004032_redefine_authorization_tables")] },
    TenantMigration { version: 20240618124746, name: "fix_walrus_role_handling", sql: &[m!("20240618124746_fix_walrus_role_handling")] },
    TenantMigration { version: 20240801235015, name: "unlogged_messages_table", sql: &[m!("20240801235015_unlogged_messages_table")] },
    TenantMigration { version: 20240805133720, name: "logged_messages_table", sql: &[m!("20240805133720_logged_messages_table")] },
    TenantMigration { version: 20240827160934, name: "filter_delete_postgres_changes", sql: &[m!("20240827160934_filter_delete_postgres_changes")] },
    TenantMigration { version: 20240919163303, name: "add_payload_to_messages", sql: &[m!("20240919163303_add_payload_to_messages")] },
    TenantMigration { version: 20240919163305, name: "change_messages_id_type", sql: &[m!("20240919163305_change_messages_id_type")] },
    TenantMigration { version: 20241019105805, name: "uuid_auto_generation", sql: &[m!("20241019105805_uuid_auto_generation")] },
    TenantMigration { version: 20241030150047, name: "messages_partitioning", sql: &[m!("20241030150047_messages_partitioning")] },
    TenantMigration { version: 20241108114728, name: "messages_using_uuid", sql: &[m!("20241108114728_messages_using_uuid")] },
    TenantMigration { version: 20241121104152, name: "fix_send_function_", sql: &[m!("20241121104152_fix_send_function_")] },
    TenantMigration { version: 20241130184212, name: "recreate_entity_index_using_btree", sql: &[m!("20241130184212_recreate_entity_index_using_btree")] },
    TenantMigration { version: 20241220035512, name: "fix_send_function_partition_creation", sql: &[m!("20241220035512_fix_send_function_partition_creation")] },
    TenantMigration { version: 20241220123912, name: "realtime_send_handle_exceptions_remove_partition_creation", sql: &[m!("20241220123912_realtime_send_handle_exceptions_remove_partition_creation")] },
    TenantMigration { version: 20241224161212, name: "realtime_send_sets_config", sql: &[m!("20241224161212_realtime_send_sets_config")] },
    TenantMigration { version: 20250107150512, name: "realtime_subscription_unlogged", sql: &[m!("20250107150512_realtime_subscription_unlogged")] },
    TenantMigration { version: 20250110162412, name: "realtime_subscription_logged", sql: &[m!("20250110162412_realtime_subscription_logged")] },
    TenantMigration { version: 20250123174212, name: "remove_unused_publications", sql: &[m!("20250123174212_remove_unused_publications")] },
    TenantMigration { version: 20250128220012, name: "realtime_send_sets_topic_config", sql: &[m!("20250128220012_realtime_send_sets_topic_config")] },
    TenantMigration { version: 20250506224012, name: "subscription_index_bridging_disabled", sql: &[m!("20250506224012_subscription_index_bridging_disabled")] },
    TenantMigration { version: 20250523164012, name: "run_subscription_index_bridging_disabled", sql: &[m!("20250523164012_run_subscription_index_bridging_disabled")] },
    TenantMigration { version: 20250714121412, name: "broadcast_send_error_logging", sql: &[m!("20250714121412_broadcast_send_error_logging")] },
    TenantMigration { version: 20250905041441, name: "create_messages_replay_index", sql: &[m!("20250905041441_create_messages_replay_index")] },
    TenantMigration { version: 20251103001201, name: "broadcast_send_include_payload_id", sql: &[m!("20251103001201_broadcast_send_include_payload_id")] },
    TenantMigration { version: 20251120212548, name: "add_action_to_subscriptions", sql: &[m!("20251120212548_add_action_to_subscriptions")] },
    TenantMigration { version: 20251120215549, name: "filter_action_postgres_changes", sql: &[m!("20251120215549_filter_action_postgres_changes")] },
    TenantMigration { version: 20260218120000, name: "fix_bytea_double_encoding_in_cast", sql: &[m!("20260218120000_fix_bytea_double_encoding_in_cast")] },
    TenantMigration { version: 20260326120000, name: "list_changes_with_slot_count", sql: &[m!("20260326120000_list_changes_with_slot_count")] },
    TenantMigration { version: 20260514120000, name: "add_binary_payload_to_messages", sql: &[m!("20260514120000_add_binary_payload_to_messages")] },
    TenantMigration { version: 20260527120000, name: "add_select_columns_to_subscriptions", sql: &[m!("20260527120000_add_select_columns_to_subscriptions")] },
    TenantMigration { version: 20260528120000, name: "wal2json_escape_special_chars", sql: &[m!("20260528120000_wal2json_escape_special_chars")] },
    TenantMigration { version: 20260603120000, name: "add_send_binary_function", sql: &[m!("20260603120000_add_send_binary_function")] },
    TenantMigration { version: 20260605120000, name: "rename_broadcast_send_warning", sql: &[m!("20260605120000_rename_broadcast_send_warning")] },
    TenantMigration { version: 20260606110000, name: "subscription_check_filters_use_pg_attribute", sql: &[m!("20260606110000_subscription_check_filters_use_pg_attribute")] },
    TenantMigration { version: 20260616120000, name: "add_postgrest_filter_ops", sql: &[m!("20260616120000_add_postgrest_filter_ops")] },
    TenantMigration { version: 20260624120000, name: "revert_postgrest_filter_ops", sql: &[m!("20260624120000_revert_postgrest_filter_ops")] },
    TenantMigration { version: 20260626120000, name: "readd_postgrest_filter_ops", sql: &[m!("20260626120000_readd_postgrest_filter_ops")] },
    TenantMigration { version: 20260706120000, name: "grant_check_equality_op_5_arg", sql: &[m!("20260706120000_grant_check_equality_op_5_arg")] },
    TenantMigration { version: 20260707120000, name: "restrict_realtime_schema", sql: &[m!("20260707120000_restrict_realtime_schema")] },
    TenantMigration { version: 20260709120000, name: "fix_apply_rls_filter_role_leak", sql: &[m!("20260709120000_fix_apply_rls_filter_role_leak")] },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strictly_increasing_and_span_upstream_range() {
        assert!(MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(MIGRATIONS[0].version, 20211116024918);
        assert_eq!(MIGRATIONS[80].version, 20260709120000);
    }

    #[test]
    fn every_script_names_its_version() {
        for migration in MIGRATIONS {
            let own = migration.sql.last().copied().unwrap_or_default();
            assert!(
                own.starts_with(&format!("-- {} ", migration.version)),
                "{} {}",
                migration.version,
                migration.name
            );
        }
    }
}
