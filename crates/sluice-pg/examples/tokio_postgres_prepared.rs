//! tokio-postgres through sluice, for the driver tests (tests/test_driver_masking.py): each query
//! prepared once and run 12 times, every result in binary. Prints `run:value|value|...` per row.

use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, Row};

fn cell(row: &Row, i: usize) -> Result<String, tokio_postgres::Error> {
    let text = match *row.columns()[i].type_() {
        Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(|v| v.to_string()),
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(|v| v.to_string()),
        _ => row.try_get::<_, Option<String>>(i)?,
    };
    Ok(text.unwrap_or_else(|| "null".into()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dsn = args.next().ok_or("usage: tokio_postgres_prepared DSN QUERY...")?;
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await?;
    tokio::spawn(connection);
    for query in args {
        let statement = client.prepare(&query).await?;
        for run in 0..12 {
            let id: i32 = run % 2 + 1;
            for row in client.query(&statement, &[&id]).await? {
                let cells = (0..row.len()).map(|i| cell(&row, i)).collect::<Result<Vec<_>, _>>()?;
                println!("{run}:{}", cells.join("|"));
            }
        }
    }
    Ok(())
}
