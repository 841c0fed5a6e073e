package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// Two ledgers (two prefixes) cannot share one MySQL database: the first to project into it
// records its prefix, and the other's project, replay and audit refuse the database instead
// of mixing their rows.
func TestSecondLedgerRefusedByDatabase(t *testing.T) {
	ctx := context.Background()
	srv, _ := testenv.StartRedis(t)
	dsn, db := testenv.MySQL(t)
	if _, err := projector.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLASHSALE_REDIS_ADDR": srv.Addr, "FLASHSALE_MYSQL_DSN": dsn}
	for _, prefix := range []string{"shop-a", "shop-b"} {
		if _, _, err := runCmd(t, env, "stock", "set", "-prefix", prefix, "demo", "5"); err != nil {
			t.Fatalf("stock set %s: %v", prefix, err)
		}
	}
	if out, stderr, err := runCmd(t, env, "replay", "-prefix", "shop-a"); err != nil {
		t.Fatalf("replay shop-a: %v %s %s", err, out, stderr)
	}
	if _, _, err := runCmd(t, env, "audit", "-prefix", "shop-a"); err != nil {
		t.Fatalf("audit shop-a: %v", err)
	}
	for _, args := range [][]string{{"replay", "-prefix", "shop-b"}, {"audit", "-prefix", "shop-b"}, {"project", "-prefix", "shop-b"}} {
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		var out, errOut strings.Builder
		err := run(cctx, args, func(k string) string { return env[k] }, &out, &errOut)
		cancel()
		if !errors.Is(err, projector.ErrOtherLedger) || !strings.Contains(err.Error(), `"shop-a"`) {
			t.Fatalf("%v: got %v, want a refusal naming shop-a", args, err)
		}
	}
	var items int
	if err := db.QueryRow("SELECT COUNT(*) FROM items").Scan(&items); err != nil || items != 1 {
		t.Fatalf("items: %d, %v; want shop-a's one", items, err)
	}
}
