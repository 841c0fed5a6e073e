package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

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
		{[]string{"stock", "get", "demo"}, "7\n", 0},
		{[]string{"stock", "get", "-json", "demo"}, `{"item_id":"demo","per_user_limit":2,"stock":7}` + "\n", 0},
	}
	for _, s := range steps {
		out, _, err := runCmd(t, env, s.args...)
		if exitCode(err) != s.code || out != s.out {
			t.Fatalf("%v: got %q, exit %d (%v); want %q, exit %d", s.args, out, exitCode(err), err, s.out, s.code)
		}
	}
}
