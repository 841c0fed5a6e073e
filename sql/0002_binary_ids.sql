-- IDs compare byte for byte, as in Redis. 0001 gave them binary collations, but utf8mb4_bin
-- and ascii_bin are PAD SPACE collations on MariaDB 10.11 and MySQL 8: 'r1' and 'r1 ' compare
-- equal, so the unique key (item_id, active_request_id) took two distinct request_ids (both
-- answered 200 by Redis) for one and the projector cancelled the second. VARBINARY compares
-- bytes and ignores nothing. request_id and user_id hold up to 128 UTF-8 characters (512
-- bytes). Converting keeps every byte of the existing rows (VARCHAR stores trailing spaces).
--
-- Each ALTER is one statement that drops and re-creates the generated column and the unique
-- key built on the columns it converts, so that running it again (after a crash before it was
-- recorded) changes nothing.
ALTER TABLE orders
  DROP INDEX orders_item_request,
  DROP COLUMN active_request_id,
  MODIFY order_id   VARBINARY(48)  NOT NULL,
  MODIFY request_id VARBINARY(512) NOT NULL,
  MODIFY user_id    VARBINARY(512) NOT NULL,
  MODIFY item_id    VARBINARY(64)  NOT NULL,
  ADD COLUMN active_request_id VARBINARY(512) AS (IF(status = 'cancelled', NULL, request_id)) STORED,
  ADD UNIQUE KEY orders_item_request (item_id, active_request_id);

ALTER TABLE items
  MODIFY item_id   VARBINARY(64) NOT NULL,
  MODIFY ledger_id VARBINARY(40) NOT NULL;
