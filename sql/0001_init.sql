-- Items as their last stock event described them. The live stock counter is in Redis; stock
-- here is the stock right after that event. ledger_id (the event's stream ID, zero-padded so
-- that it sorts) keeps an older event from overwriting a newer one.
CREATE TABLE IF NOT EXISTS items (
  item_id        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  stock          BIGINT NOT NULL,
  per_user_limit BIGINT NOT NULL DEFAULT 0,
  starts_at      DATETIME(3) NULL,
  ends_at        DATETIME(3) NULL,
  ledger_id      VARCHAR(40) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  updated_at     DATETIME(3) NOT NULL,
  PRIMARY KEY (item_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Orders, one row per order event. IDs compare byte for byte (binary collations), as in Redis.
-- A request_id holds at most one live (not cancelled) order per item: active_request_id is
-- NULL for cancelled orders, and NULLs do not collide in the unique key.
CREATE TABLE IF NOT EXISTS orders (
  order_id          VARCHAR(48) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  request_id        VARCHAR(128) NOT NULL,
  user_id           VARCHAR(128) NOT NULL,
  item_id           VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  quantity          INT NOT NULL,
  status            VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  cancel_reason     VARCHAR(255) NULL,
  created_at        DATETIME(3) NOT NULL,
  updated_at        DATETIME(3) NOT NULL,
  active_request_id VARCHAR(128) AS (IF(status = 'cancelled', NULL, request_id)) STORED,
  PRIMARY KEY (order_id),
  UNIQUE KEY orders_item_request (item_id, active_request_id),
  KEY orders_user (user_id),
  KEY orders_item_status (item_id, status)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
