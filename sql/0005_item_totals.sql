-- Per item and status, the units and the number of the order rows: what `flashsale audit`
-- compares with the ledger's fold, so that it reads one row per item and status instead of
-- every order. The projector keeps it in the same transaction as the rows it writes: each row's
-- tally is the status under which item_totals counts it (NULL: not counted), and a write that
-- changes a row's status moves its units from the tally's total to the status' total and sets
-- the tally (projector/totals.go). A row written by hand is not counted (audit -full reports it).
--
-- The column is added only if missing on MariaDB (/*M! ... */ runs on MariaDB only), so that
-- running the file again (after a crash before it was recorded) changes nothing there.
ALTER TABLE orders
  ADD COLUMN /*M! IF NOT EXISTS */ tally VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NULL;

CREATE TABLE IF NOT EXISTS item_totals (
  item_id VARBINARY(64) NOT NULL,
  status  VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  units   BIGINT NOT NULL,
  orders  BIGINT NOT NULL,
  PRIMARY KEY (item_id, status)
) ENGINE=InnoDB;

-- The totals of the rows already there, counted once, in one transaction: its UPDATE locks
-- every row, so a projector writing meanwhile waits and then counts its own rows on top.
START TRANSACTION;
DELETE FROM item_totals;
UPDATE orders SET tally = status;
INSERT INTO item_totals (item_id, status, units, orders)
  SELECT item_id, tally, SUM(quantity), COUNT(*) FROM orders GROUP BY item_id, tally;
COMMIT;
