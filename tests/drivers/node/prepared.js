// node-postgres through sluice: each query as a named prepared statement run 12 times (parsed once,
// then bound again each run). Prints "run:value|value|..." for each row.
const { Client } = require('pg');

async function main() {
  const [dsn, ...queries] = process.argv.slice(2);
  const client = new Client({ connectionString: dsn });
  await client.connect();
  try {
    for (const [q, text] of queries.entries()) {
      for (let run = 0; run < 12; run++) {
        const result = await client.query({ name: `q${q}`, text, values: [run % 2 + 1], rowMode: 'array' });
        for (const row of result.rows) {
          console.log(`${run}:` + row.map((v) => (v === null ? 'null' : String(v))).join('|'));
        }
      }
    }
  } finally {
    await client.end();
  }
}

main().catch((e) => {
  console.error(e.message);
  process.exit(1);
});
