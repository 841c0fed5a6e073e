package projector_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	migrations "github.com/flashsale/flashsale/sql"
	"github.com/flashsale/flashsale/tests/testenv"
)

// Redis tells request_ids apart byte for byte; MySQL must too, or an order answered 200 is
// cancelled by the projector.
func TestTrailingSpaceRequestIDsAreDistinct(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.setStock(t, "a", 10)
	ids := []string{
		e.buy(t, "a", "u1", "pad-1", 1),
		e.buy(t, "a", "u1", "pad-1 ", 1),
		e.buy(t, "a", "u1", "pad-1  ", 1),
		e.buy(t, "a", "u2 ", "x", 1),
		e.buy(t, "a", "u2", "x ", 1),
	}
	e.start(t, projector.Config{})
	e.waitSettled(t)
	got := e.statuses(t)
	for _, id := range ids {
		if got[id] != ledger.StatusConfirmed {
			t.Errorf("order %s: got %q, want confirmed", id, got[id])
		}
	}
	if s := e.stock(t, "a"); s != 5 {
		t.Errorf("stock: got %d, want 5 (nothing restocked)", s)
	}
	o, err := projector.NewStore(e.db).Order(ctx, ids[1])
	if err != nil || o.RequestID != "pad-1 " || o.UserID != "u1" {
		t.Errorf("order %s read back: got request %q user %q (%v), want \"pad-1 \" and \"u1\"", ids[1], o.RequestID, o.UserID, err)
	}
	rep, err := projector.Audit(ctx, e.l, projector.NewStore(e.db), projector.DefaultGroup)
	if err != nil || !rep.Clean() {
		t.Fatalf("audit: %+v (%v)", rep.Violations, err)
	}
}

// A database migrated before 0002 holds rows whose IDs differ only by trailing spaces; the
// migration keeps every byte of them and makes them distinct in the unique key.
func TestMigrateConvertsIDsToBinary(t *testing.T) {
	ctx := context.Background()
	_, db := testenv.MySQL(t)
	body, err := fs.ReadFile(migrations.FS, "0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	var stmt strings.Builder
	for line := range strings.Lines(string(body)) {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			stmt.WriteString(line)
		}
	}
	for _, q := range strings.Split(stmt.String(), ";") {
		if strings.TrimSpace(q) == "" {
			continue
		}
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("0001: %v", err)
		}
	}
	for _, q := range []string{
		`CREATE TABLE schema_migrations (name VARCHAR(255) NOT NULL PRIMARY KEY, applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))`,
		`INSERT INTO schema_migrations (name) VALUES ('0001_init.sql')`,
		`INSERT INTO orders (order_id, request_id, user_id, item_id, quantity, status, cancel_reason, created_at, updated_at) VALUES
			('0-1-0', 'pad-1', 'u1', 'a', 1, 'confirmed', NULL, NOW(), NOW()),
			('0-2-0', 'pad-1 ', 'u1 ', 'a', 2, 'cancelled', 'request_id already holds another order in MySQL', NOW(), NOW()),
			('0-3-0', 'ré ', 'ü', 'a', 3, 'confirmed', NULL, NOW(), NOW())`,
		`INSERT INTO items (item_id, stock, ledger_id, updated_at) VALUES ('a', 7, '00000000000000000001-0000000000000000000', NOW())`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	dump := func() string {
		t.Helper()
		var b strings.Builder
		for _, q := range []string{
			"SELECT CONCAT_WS('|', HEX(order_id), HEX(request_id), HEX(user_id), HEX(item_id), quantity, status, COALESCE(cancel_reason, '')) FROM orders ORDER BY order_id",
			"SELECT CONCAT_WS('|', HEX(item_id), stock, HEX(ledger_id)) FROM items",
		} {
			rows, err := db.Query(q)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var s string
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				b.WriteString(s + "\n")
			}
			rows.Close()
		}
		return b.String()
	}
	before := dump()

	applied, err := projector.Migrate(ctx, db)
	if err != nil || len(applied) < 1 || applied[0] != "0002_binary_ids.sql" {
		t.Fatalf("migrate: applied %v (%v), want 0002_binary_ids.sql and the later ones", applied, err)
	}
	if got := dump(); got != before {
		t.Fatalf("rows changed by the migration:\n got %s\nwant %s", got, before)
	}
	// 0005 counted the rows already there into item_totals.
	var totals []string
	trows, err := db.Query("SELECT CONCAT_WS(' ', item_id, status, units, orders) FROM item_totals ORDER BY status")
	if err != nil {
		t.Fatal(err)
	}
	for trows.Next() {
		var s string
		if err := trows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		totals = append(totals, s)
	}
	trows.Close()
	if got := strings.Join(totals, ", "); got != "a cancelled 2 1, a confirmed 4 2" {
		t.Errorf("item_totals after the migration: got %q, want the rows' a cancelled 2 1, a confirmed 4 2", got)
	}
	rows, err := db.Query(`SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = DATABASE() AND COLUMN_NAME IN ('order_id', 'request_id', 'user_id', 'item_id', 'active_request_id', 'ledger_id')`)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var table, column, typ string
		if err := rows.Scan(&table, &column, &typ); err != nil {
			t.Fatal(err)
		}
		if typ != "varbinary" {
			t.Errorf("%s.%s: got %s, want varbinary", table, column, typ)
		}
		n++
	}
	rows.Close()
	if n != 8 { // 7, and item_totals.item_id (0005)
		t.Errorf("got %d ID columns, want 8", n)
	}
	// "pad-1 " can now hold a live order beside "pad-1"; before, the unique key took them as one.
	if _, err := db.Exec("UPDATE orders SET status = 'confirmed' WHERE order_id = '0-2-0'"); err != nil {
		t.Fatalf("second live order for \"pad-1 \": %v", err)
	}
	// Byte-identical request_ids still collide.
	_, err = db.Exec(`INSERT INTO orders (order_id, request_id, user_id, item_id, quantity, status, created_at, updated_at)
		VALUES ('0-4-0', 'pad-1 ', 'u9', 'a', 1, 'confirmed', NOW(), NOW())`)
	if err == nil || !strings.Contains(err.Error(), "Duplicate") {
		t.Fatalf("byte-identical live request: got %v, want a duplicate key error", err)
	}
	// Run again, as after a crash before it was recorded: nothing changes.
	if _, err := db.Exec("DELETE FROM schema_migrations WHERE name = '0002_binary_ids.sql'"); err != nil {
		t.Fatal(err)
	}
	after := dump()
	if applied, err := projector.Migrate(ctx, db); err != nil || len(applied) != 1 {
		t.Fatalf("migrate again: applied %v (%v)", applied, err)
	}
	if got := dump(); got != after {
		t.Fatalf("rows changed by a second run:\n got %s\nwant %s", got, after)
	}
}
