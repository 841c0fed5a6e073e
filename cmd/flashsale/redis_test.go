package main

import (
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/tests/testenv"
)

func TestParseRedisAddr(t *testing.T) {
	tests := []struct {
		in   string
		want redisTarget
	}{
		{"127.0.0.1:6379", redisTarget{addrs: []string{"127.0.0.1:6379"}}},
		{"a:1, b:2,c:3", redisTarget{addrs: []string{"a:1", "b:2", "c:3"}}},
		{"redis://h:7000", redisTarget{addrs: []string{"h:7000"}}},
		{"redis://h", redisTarget{addrs: []string{"h:6379"}}},
		{"redis://u:p%40ss@h:1,g:2/3", redisTarget{addrs: []string{"h:1", "g:2"}, username: "u", password: "p@ss", db: 3}},
		{"redis://:secret@h:1", redisTarget{addrs: []string{"h:1"}, password: "secret"}},
		{"redis://secret@h:1", redisTarget{addrs: []string{"h:1"}, password: "secret"}},
		{"rediss://u:p@h:1?addr=g:2&addr=k:3", redisTarget{addrs: []string{"h:1", "g:2", "k:3"}, username: "u", password: "p", tls: true}},
		{"REDISS://[::1]:6380", redisTarget{addrs: []string{"[::1]:6380"}, tls: true}},
	}
	for _, tt := range tests {
		got, err := parseRedisAddr(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseRedisAddr(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", " , ", "http://h:1", "h:0", "h:x", "redis://u:hunter2@h:99999", "redis://u:hunter2@h:1/x", "redis://u:hunter2@h:1/%zz"} {
		_, err := parseRedisAddr(in)
		if err == nil {
			t.Errorf("parseRedisAddr(%q): no error", in)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("parseRedisAddr(%q): error %q shows the password", in, err)
		}
	}
}

// A Redis that refuses the password (or is not there) is reported by address and by the
// server's words, never with the password, whether it came in the URL or the environment.
func TestRedisPasswordNeverInErrors(t *testing.T) {
	r, _ := testenv.StartRedisWith(t, "--requirepass", "right-pass")
	closed := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	const secret = "hunter2-secret"
	cases := []map[string]string{
		{"FLASHSALE_REDIS_ADDR": "redis://app:" + secret + "@" + r.Addr},
		{"FLASHSALE_REDIS_ADDR": r.Addr, "FLASHSALE_REDIS_PASSWORD": secret},
		{"FLASHSALE_REDIS_ADDR": "redis://:" + secret + "@" + closed},
		{"FLASHSALE_REDIS_ADDR": closed, "FLASHSALE_REDIS_PASSWORD": secret, "FLASHSALE_REDIS_USERNAME": "app"},
		{"FLASHSALE_REDIS_ADDR": "redis://:" + secret + "@" + closed, "FLASHSALE_REDIS_CLUSTER": "1"},
		{"FLASHSALE_REDIS_ADDR": closed, "FLASHSALE_REDIS_PASSWORD": secret, "FLASHSALE_REDIS_SENTINEL_MASTER": "m"},
	}
	for _, env := range cases {
		out, stderr, err := runCmd(t, env, "stock", "set", "demo", "5")
		if err == nil {
			t.Fatalf("%v: stock set worked with a wrong password", env)
		}
		for _, s := range []string{out, stderr, err.Error()} {
			if strings.Contains(s, secret) {
				t.Fatalf("%v: the password is shown: %q", env, s)
			}
		}
		if !strings.Contains(err.Error(), closed) && !strings.Contains(err.Error(), r.Addr) {
			t.Fatalf("%v: error %q names no address", env, err)
		}
	}
	// The right password works, from the URL and from the environment.
	for _, env := range []map[string]string{
		{"FLASHSALE_REDIS_ADDR": "redis://:right-pass@" + r.Addr},
		{"FLASHSALE_REDIS_ADDR": r.Addr, "FLASHSALE_REDIS_PASSWORD": "right-pass"},
	} {
		if out, stderr, err := runCmd(t, env, "stock", "set", "demo", "5"); err != nil || out != "demo stock 5\n" {
			t.Fatalf("%v: got %q, %v, stderr %q", env, out, err, stderr)
		}
	}
}
