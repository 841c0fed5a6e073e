-- Reservations: an order placed under a pay-within rule is reserved until pay_by, then paid,
-- cancelled by its buyer or expired (status reserved, paid, cancelled, expired; orders without
-- the rule stay confirmed). An expired order, like a cancelled one, holds no live request_id.
--
-- One statement that drops and re-creates the generated column and its unique key; on MariaDB
-- the new columns are added only if missing (/*M! ... */ runs on MariaDB only), so that running
-- it again (after a crash before it was recorded) changes nothing; MySQL 8's DDL is atomic.
ALTER TABLE orders
  DROP INDEX orders_item_request,
  DROP COLUMN active_request_id,
  ADD COLUMN /*M! IF NOT EXISTS */ pay_by      DATETIME(3)    NULL,
  ADD COLUMN /*M! IF NOT EXISTS */ paid_at     DATETIME(3)    NULL,
  ADD COLUMN /*M! IF NOT EXISTS */ payment_ref VARBINARY(512) NULL,
  ADD COLUMN /*M! IF NOT EXISTS */ expired_at  DATETIME(3)    NULL,
  ADD COLUMN active_request_id VARBINARY(512) AS (IF(status IN ('cancelled', 'expired'), NULL, request_id)) STORED,
  ADD UNIQUE KEY orders_item_request (item_id, active_request_id);
