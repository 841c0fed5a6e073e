-- The ledger (Redis key prefix) whose projection this database holds. One row: a second
-- ledger projected into the same database would mix its orders and items with the first's,
-- and each one's audit would fail on the other's rows (projector.BindLedger refuses it).
CREATE TABLE IF NOT EXISTS ledger_binding (
  id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  prefix VARCHAR(64) NOT NULL,
  bound_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);
