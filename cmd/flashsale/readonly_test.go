package main

import (
	"context"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// A command that only reads refuses a Redis (or a prefix) without a ledger and writes nothing
// there; the commands that create a ledger still do.
func TestReadOnlyCommandsCreateNoLedger(t *testing.T) {
	ctx := context.Background()
	srv, rdb := testenv.StartRedis(t)
	dsn, db := testenv.MySQL(t)
	if _, err := projector.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLASHSALE_REDIS_ADDR": srv.Addr, "FLASHSALE_MYSQL_DSN": dsn}
	readOnly := [][]string{
		{"stock", "get", "demo"},
		{"stock", "get", "-json", "demo"},
		{"stock", "add", "demo", "5"},
		{"pending"},
		{"pending", "-json"},
		{"audit"},
		{"audit", "-json"},
		{"replay"},
	}
	check := func(prefix string, keysBefore int64) {
		t.Helper()
		for _, args := range readOnly {
			n := 1 // flags come after the command (and stock's subcommand)
			if args[0] == "stock" {
				n = 2
			}
			args = append(append(append([]string{}, args[:n]...), "-prefix", prefix), args[n:]...)
			_, _, err := runCmd(t, env, args...)
			want := "no flashsale ledger at " + srv.Addr + " (prefix " + prefix + ")"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v: got %v, want %q", args, err, want)
			}
			if n := rdb.DBSize(ctx).Val(); n != keysBefore {
				keys := rdb.Keys(ctx, "*").Val()
				t.Fatalf("%v wrote to Redis: %d keys, want %d: %v", args, n, keysBefore, keys)
			}
		}
	}
	check("fs", 0)
	if out, _, err := runCmd(t, env, "stock", "set", "demo", "5"); err != nil || out != "demo stock 5\n" {
		t.Fatalf("stock set: %q, %v", out, err)
	}
	if out, _, err := runCmd(t, env, "stock", "get", "demo"); err != nil || out != "5\n" {
		t.Fatalf("stock get after set: %q, %v", out, err)
	}
	// A mistyped prefix on a Redis that has a ledger is refused the same way.
	check("typo", rdb.DBSize(ctx).Val())
}
