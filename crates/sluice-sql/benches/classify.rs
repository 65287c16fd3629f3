//! Micro-benchmark of the SQL path's CPU per statement (`cargo bench -p sluice-sql`, divan): a cold
//! parse and walk, a cache hit, a hit whose literal differs, and the policy decision on a cached
//! analysis.

use divan::{Bencher, black_box};
use sluice_core::Identity;
use sluice_core::sql::Kind;
use sluice_policy::{ConnectionPolicy, Effect, Policy, PolicySpec, Preset, RuleSpec};
use sluice_sql::{Classifier, analyze};

fn main() {
    divan::main();
}

const CASES: &[&str] = &["pgbench select", "parameterised", "join + CTE", "DO block"];

fn sql(case: &str) -> &'static str {
    match case {
        "pgbench select" => "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
        "parameterised" => "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "join + CTE" => {
            "WITH recent AS (SELECT * FROM orders WHERE placed_at > now() - interval '1 day') \
             SELECT c.name, count(*) FROM recent r JOIN customers c ON c.id = r.customer_id GROUP BY c.name"
        }
        _ => "DO $$BEGIN UPDATE orders SET status = 'x' WHERE id = 1; PERFORM pg_sleep(0); END$$",
    }
}

/// Parse with libpg_query and walk the tree: what a statement costs the first time.
#[divan::bench(args = CASES)]
fn cold_parse_and_walk(case: &str) {
    black_box(analyze(black_box(sql(case))));
}

/// The same text again: a hash lookup.
#[divan::bench(args = CASES)]
fn cached(bencher: Bencher, case: &str) {
    let cache = Classifier::new(1000);
    cache.classify(sql(case));
    bencher.bench_local(|| black_box(cache.classify(black_box(sql(case)))));
}

/// pgbench's simple protocol: a new literal every time, one cache entry for all of them.
#[divan::bench]
fn cached_with_a_different_literal_each_time(bencher: Bencher) {
    let cache = Classifier::new(1000);
    let texts: Vec<String> =
        (0..1000).map(|i| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {};", 1000 + i * 7919)).collect();
    let mut i = 0;
    bencher.bench_local(|| {
        i = (i + 1) % texts.len();
        black_box(cache.classify(&texts[i]))
    });
    assert_eq!(cache.len(), 1, "numeric literals fold into one cache entry");
}

/// The decision on a cached analysis: three rules, one read of one table.
#[divan::bench]
fn policy_decision(bencher: Bencher) {
    let spec = PolicySpec {
        default: Effect::Deny,
        rules: vec![
            RuleSpec {
                name: "reads".into(),
                effect: Some(Effect::Allow),
                kinds: vec![Kind::Read],
                ..RuleSpec::default()
            },
            RuleSpec {
                name: "no-secrets".into(),
                effect: Some(Effect::Deny),
                objects: vec!["secret.*".into()],
                ..RuleSpec::default()
            },
            RuleSpec {
                name: "ro".into(),
                preset: Some(Preset::ReadOnly),
                groups: vec!["interns".into()],
                ..RuleSpec::default()
            },
        ],
        ..PolicySpec::default()
    };
    let connection = ConnectionPolicy {
        protocol: sluice_policy::RuleProtocol::Sql,
        name: "shop".into(),
        preset: None,
        default: None,
        search_path: vec!["app".into(), "public".into()],
    };
    let policy = Policy::compile(&spec, &[connection]).expect("benchmark policy compiles");
    let identity = Identity { name: "agent".into(), groups: vec!["agents".into()], credential_id: "t".into() };
    let analysis = Classifier::new(10).classify(sql("pgbench select"));
    bencher.bench_local(|| black_box(policy.decide(&identity, "shop", black_box(&analysis))));
}
