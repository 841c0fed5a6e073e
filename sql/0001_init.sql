-- Items as the ledger last described them (projected from stock events).
CREATE TABLE IF NOT EXISTS items (
  item_id        VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  stock          BIGINT NOT NULL,
  per_user_limit BIGINT NOT NULL DEFAULT 0,
  starts_at      DATETIME(3) NULL,
  ends_at        DATETIME(3) NULL,
  updated_at     DATETIME(3) NOT NULL,
  PRIMARY KEY (item_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Orders, one row per order event; IDs compare byte for byte (utf8mb4_bin), as in Redis.
CREATE TABLE IF NOT EXISTS orders (
  order_id     VARCHAR(48) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  request_id   VARCHAR(128) NOT NULL,
  user_id      VARCHAR(128) NOT NULL,
  item_id      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  quantity     INT NOT NULL,
  status       VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  cancel_reason VARCHAR(255) NULL,
  created_at   DATETIME(3) NOT NULL,
  updated_at   DATETIME(3) NOT NULL,
  PRIMARY KEY (order_id),
  UNIQUE KEY orders_item_request (item_id, request_id),
  KEY orders_user (user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
