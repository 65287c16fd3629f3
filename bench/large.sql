SELECT aid, bid, abalance, filler FROM pgbench_accounts ORDER BY aid LIMIT 10000;
