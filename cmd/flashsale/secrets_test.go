package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// Flag defaults come from the environment, and usage text prints defaults: no usage text and
// no error of any command may show a password or token that the environment holds.
func TestNoSecretInUsageOrErrors(t *testing.T) {
	secrets := map[string]string{
		"FLASHSALE_REDIS_ADDR":              "redis://app:redis-url-secret@127.0.0.1:1",
		"FLASHSALE_REDIS_PASSWORD":          "redis-env-secret",
		"FLASHSALE_REDIS_SENTINEL_PASSWORD": "sentinel-env-secret",
		"FLASHSALE_ADMIN_TOKEN":             "admin-token-secret",
		"FLASHSALE_MYSQL_DSN":               "app:mysql-dsn-secret@tcp(127.0.0.1:1)/flashsale?parseTime=true",
		"FLASHSALE_AUTH_JWT_JWKS_URL":       "https://jwks-user:jwks-url-secret@127.0.0.1:1/jwks?key=jwks-query-secret",
	}
	runs := [][]string{nil, {"-h"}, {"nope"}, {"stock"}, {"stock", "-h"}, {"stock", "nope"}}
	for _, c := range commands() {
		var subs [][]string
		if c.name == "stock" {
			subs = [][]string{{"stock", "set"}, {"stock", "add"}, {"stock", "get"}}
		} else {
			subs = [][]string{{c.name}}
		}
		for _, s := range subs {
			for _, extra := range [][]string{
				{"-h"}, {"-help"}, {"-no-such-flag"}, {"-redis"}, {"-prefix", "bad prefix!"},
				{"extra", "args", "here", "and", "more"}, {}, {"x"},
			} {
				runs = append(runs, append(append([]string{}, s...), extra...))
			}
		}
	}
	// A secret given on the command line instead is not shown by usage either.
	runs = append(runs,
		[]string{"serve", "-admin-token", "admin-token-secret", "-no-such-flag"},
		[]string{"audit", "-redis", "redis://:redis-url-secret@127.0.0.1:1/x"},
		[]string{"audit", "-redis", "redis://:redis-url-secret@127.0.0.1:1?nope=1"},
		[]string{"audit", "-mysql", "app:mysql-dsn-secret@tcp(127.0.0.1:1", "-redis", "127.0.0.1:1"},
	)
	for _, args := range runs {
		var out, errOut bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := run(ctx, args, func(k string) string { return secrets[k] }, &out, &errOut)
		cancel()
		text := out.String() + errOut.String()
		if err != nil {
			text += err.Error()
		}
		for _, s := range []string{"redis-url-secret", "redis-env-secret", "sentinel-env-secret", "admin-token-secret",
			"mysql-dsn-secret", "jwks-url-secret", "jwks-query-secret"} {
			if strings.Contains(text, s) {
				t.Errorf("flashsale %s: output shows %s:\n%s", strings.Join(args, " "), s, text)
			}
		}
	}
	// Usage still says that a value is set, and where it came from.
	var errOut bytes.Buffer
	run(context.Background(), []string{"serve", "-h"}, func(k string) string { return secrets[k] }, &bytes.Buffer{}, &errOut)
	for _, want := range []string{`redis://app:xxxxx@127.0.0.1:1`, `app:xxxxx@tcp(127.0.0.1:1)/flashsale`, `(default "(set)")`, "https://127.0.0.1:1/jwks (with credentials, not shown)"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("serve -h does not show %q:\n%s", want, errOut.String())
		}
	}
}
