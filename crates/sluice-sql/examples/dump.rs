//! Prints the parse tree sluice's classifier walks, as JSON: `cargo run -p sluice-sql --example dump -- "SQL"`.
fn main() {
    let sql = std::env::args().nth(1).unwrap_or_default();
    match pg_query::parse(&sql, 0) {
        Ok(r) => println!("{}", serde_json::to_string_pretty(&r.protobuf).unwrap_or_default()),
        Err(e) => println!("error: {e}"),
    }
}
