package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

func runCmd(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestUsageAndExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		help string
	}{
		{"no command", nil, 2, "Commands:"},
		{"help", []string{"-h"}, 0, "Commands:"},
		{"unknown command", []string{"sell"}, 2, "Commands:"},
		{"subcommand help", []string{"serve", "-h"}, 0, "-http"},
		{"bad flag", []string{"serve", "-nope"}, 2, "flag provided but not defined"},
		{"negative limit", []string{"serve", "-max-inflight", "-1"}, 2, ""},
		{"stock without args", []string{"stock", "set", "demo"}, 2, "ITEM QUANTITY"},
		{"stock bad quantity", []string{"stock", "set", "demo", "many"}, 2, ""},
		{"audit cannot reach redis", []string{"audit", "-redis", "127.0.0.1:1"}, 2, ""},
		{"auth issuer without a key", []string{"serve", "-auth-jwt-issuer", "https://idp.example"}, 2, ""},
		{"two auth key sources", []string{"ingest", "-auth-jwt-hs256-secret-file", "s", "-auth-jwt-jwks-url", "http://127.0.0.1:1/jwks"}, 2, ""},
		{"auth secret file missing", []string{"ingest", "-auth-jwt-hs256-secret-file", "/nonexistent/secret"}, 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, err := runCmd(t, nil, tt.args...)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("exit code: got %d (%v), want %d", got, err, tt.code)
			}
			if !strings.Contains(stderr, tt.help) {
				t.Fatalf("stderr %q does not mention %q", stderr, tt.help)
			}
			if tt.code == 0 && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("got %v, want flag.ErrHelp", err)
			}
		})
	}
}

func TestStockCommands(t *testing.T) {
	srv, _ := testenv.StartRedis(t)
	env := map[string]string{"FLASHSALE_REDIS_ADDR": srv.Addr}
	steps := []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"stock", "get", "demo"}, "", 1},
		{[]string{"stock", "add", "demo", "5"}, "", 1},
		{[]string{"stock", "set", "-if-new", "-limit", "2", "demo", "10"}, "demo stock 10\n", 0},
		{[]string{"stock", "set", "-if-new", "demo", "99"}, "demo stock 10 (exists, left as it is)\n", 0},
		{[]string{"stock", "add", "demo", "-3"}, "demo stock 7\n", 0},
		{[]string{"stock", "add", "demo", "-8"}, "", 1},
		{[]string{"stock", "set", "-end", "yesterday", "demo", "1"}, "", 2},
		{[]string{"stock", "set", "-end", "1969-12-31T23:59:59Z", "demo", "1"}, "", 2},
		{[]string{"stock", "add", "demo", "999999993"}, "demo stock 1000000000\n", 0},
		{[]string{"stock", "add", "demo", "1"}, "", 1},
		{[]string{"stock", "add", "demo", "-999999993"}, "demo stock 7\n", 0},
		{[]string{"stock", "set", "-start", "2030-01-01T00:00:00Z", "demo", "7"}, "demo stock 7\n", 0},
		{[]string{"stock", "set", "-end", "2029-01-01T00:00:00Z", "demo", "7"}, "", 1},
		{[]string{"stock", "set", "-start", "none", "demo", "7"}, "demo stock 7\n", 0},
		{[]string{"stock", "get", "demo"}, "7\n", 0},
		{[]string{"stock", "get", "-json", "demo"}, `{"item_id":"demo","per_user_limit":2,"stock":7}` + "\n", 0},
		{[]string{"stock", "set", "-pay-within", "soon", "demo", "7"}, "", 2},
		{[]string{"stock", "set", "-pay-within", "-1m", "demo", "7"}, "", 1},
		{[]string{"stock", "set", "-pay-within", "15m", "demo", "7"}, "demo stock 7\n", 0},
		{[]string{"stock", "get", "-json", "demo"}, `{"item_id":"demo","pay_within":"15m0s","per_user_limit":2,"stock":7}` + "\n", 0},
	}
	for _, s := range steps {
		out, _, err := runCmd(t, env, s.args...)
		if exitCode(err) != s.code || out != s.out {
			t.Fatalf("%v: got %q, exit %d (%v); want %q, exit %d", s.args, out, exitCode(err), err, s.out, s.code)
		}
	}
	// Two adds that would pass the maximum together: the second is refused, and says why.
	_, _, err := runCmd(t, env, "stock", "add", "demo", "1000000000")
	if exitCode(err) != 1 || !strings.Contains(fmt.Sprint(err), "maximum of 1000000000") {
		t.Fatalf("add past the maximum: got exit %d (%v), want 1 and the maximum", exitCode(err), err)
	}
	// Units given to an item with none: the command returns once they are on sale, and says so.
	if out, _, err := runCmd(t, env, "stock", "set", "demo", "0"); err != nil || out != "demo stock 0\n" {
		t.Fatalf("set 0: got %q (%v)", out, err)
	}
	start := time.Now()
	out, _, err := runCmd(t, env, "stock", "add", "-sold-out-lease", "300ms", "demo", "2")
	if err != nil || !strings.HasPrefix(out, "demo stock 2 (back on sale since ") {
		t.Fatalf("add after 0: got %q (%v), want it to say when the item was back on sale", out, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("add after 0 returned after %v, before the lease of 300ms", took)
	}
}

// TestPendingAndAuditShowDeadEntries: an entry the projector recorded as dead is listed by
// `pending` (table and JSON) and is a violation for `audit` (exit 1).
func TestPendingAndAuditShowDeadEntries(t *testing.T) {
	ctx := context.Background()
	srv, rdb := testenv.StartRedis(t)
	dsn, db := testenv.MySQL(t)
	if _, err := projector.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"FLASHSALE_REDIS_ADDR": srv.Addr, "FLASHSALE_MYSQL_DSN": dsn}
	if out, _, err := runCmd(t, env, "stock", "set", "demo", "5"); err != nil {
		t.Fatalf("stock set: %v %s", err, out)
	}
	l, err := ledger.Open(ctx, rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := l.Keys().Partition("demo")
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: l.Keys().Events(p), Values: []string{"junk", "1"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.MarkDead(ctx, ledger.Event{Partition: p, StreamID: id}, projector.DefaultGroup, "malformed entry"); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, env, "pending")
	if err != nil || !strings.Contains(out, "1 dead entries") || !strings.Contains(out, fmt.Sprintf("%d/%s", p, id)) {
		t.Fatalf("pending: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, env, "pending", "-json")
	var rep ledger.PendingReport
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Dead) != 1 || rep.Dead[0].Reason != "malformed entry" {
		t.Fatalf("pending -json: %v\n%s", err, out)
	}
	out, _, err = runCmd(t, env, "audit")
	if exitCode(err) != 1 || !strings.Contains(out, "dead ledger entry "+fmt.Sprintf("%d/%s", p, id)) {
		t.Fatalf("audit: exit %d (%v)\n%s", exitCode(err), err, out)
	}
}
