//! Micro-benchmark of the SQL path's CPU per statement: a cold parse and walk, a cache hit, a hit
//! whose literal differs, and the policy decision on a cached analysis. `cargo bench -p sluice-sql`
//! prints the median of several rounds, in nanoseconds per statement.

use sluice_core::policy::{ConnectionPolicy, Effect, Policy, PolicySpec, Preset, RuleSpec};
use sluice_core::sql::Kind;
use sluice_core::Identity;
use sluice_sql::{analyze, Classifier};
use std::hint::black_box;
use std::time::Instant;

const ROUNDS: usize = 7;

fn median_ns(iterations: u32, mut f: impl FnMut(u32)) -> f64 {
    let mut samples: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / iterations as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[ROUNDS / 2]
}

fn main() {
    let cases = [
        ("pgbench select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"),
        ("parameterised", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"),
        (
            "join + CTE",
            "WITH recent AS (SELECT * FROM orders WHERE placed_at > now() - interval '1 day') \
             SELECT c.name, count(*) FROM recent r JOIN customers c ON c.id = r.customer_id GROUP BY c.name",
        ),
        ("DO block", "DO $$BEGIN UPDATE orders SET status = 'x' WHERE id = 1; PERFORM pg_sleep(0); END$$"),
    ];
    println!("{:<16} {:>12} {:>12}", "statement", "parse ns", "cached ns");
    for (name, sql) in cases {
        let cold = median_ns(2_000, |_| {
            black_box(analyze(black_box(sql)));
        });
        let cache = Classifier::new(1000);
        cache.classify(sql);
        let hit = median_ns(200_000, |_| {
            black_box(cache.classify(black_box(sql)));
        });
        println!("{name:<16} {cold:>12.0} {hit:>12.0}");
    }

    // pgbench's simple protocol: a new literal every time, one cache entry for all of them.
    let cache = Classifier::new(1000);
    let texts: Vec<String> =
        (0..1000).map(|i| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {};", 1000 + i * 7919)).collect();
    let varying = median_ns(200_000, |i| {
        black_box(cache.classify(&texts[i as usize % texts.len()]));
    });
    println!("{:<16} {:>12} {varying:>12.0}  (a different literal each time; {} cache entry)", "pgbench -M simple", "-", cache.len());

    let spec = PolicySpec {
        default: Effect::Deny,
        rules: vec![
            RuleSpec { name: "reads".into(), effect: Some(Effect::Allow), kinds: vec![Kind::Read], ..RuleSpec::default() },
            RuleSpec {
                name: "no-secrets".into(),
                effect: Some(Effect::Deny),
                objects: vec!["secret.*".into()],
                ..RuleSpec::default()
            },
            RuleSpec { name: "ro".into(), preset: Some(Preset::ReadOnly), groups: vec!["interns".into()], ..RuleSpec::default() },
        ],
        ..PolicySpec::default()
    };
    let connection = ConnectionPolicy {
        name: "shop".into(),
        preset: None,
        default: None,
        search_path: vec!["app".into(), "public".into()],
    };
    let policy = Policy::compile(&spec, &[connection]).expect("benchmark policy compiles");
    let identity = Identity { name: "agent".into(), groups: vec!["agents".into()], credential_id: "t".into() };
    let analysis = cache.classify(&texts[0]);
    let decide = median_ns(500_000, |_| {
        black_box(policy.decide(&identity, "shop", black_box(&analysis)));
    });
    println!("{:<16} {:>12} {decide:>12.0}  (3 rules, one read of one table)", "policy decision", "-");
}
