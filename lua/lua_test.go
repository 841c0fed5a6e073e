package lua

import (
	"strings"
	"testing"
)

// TestBatchReadsInPlace: the batch wrapper reads each purchase's keys and arguments at its
// offsets and the clock once per call, and refuses a script that reads KEYS or ARGV any other
// way.
func TestBatchReadsInPlace(t *testing.T) {
	got := batch("-- KEYS[1] in a comment\nlocal t = redis.call('TIME')\nreturn {KEYS[2], ARGV[10], t}\n")
	for _, want := range []string{"return {KEYS[ko + 2], ARGV[ao + 10], t}", "local t = batch_time()", "pcall(decide, i * nk, 2 + i * na)"} {
		if !strings.Contains(got, want) {
			t.Errorf("batch script lacks %q:\n%s", want, got)
		}
	}
	for _, script := range []string{"return #KEYS", "local i = 1\nreturn ARGV[i]", "return unpack(KEYS)"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("batch(%q) did not panic", script)
				}
			}()
			batch(script)
		}()
	}
	if !strings.Contains(PurchaseBatch, "KEYS[ko + 6]") || strings.Contains(PurchaseBatch, "local t = redis.call('TIME')") {
		t.Error("PurchaseBatch does not read purchase.lua's keys in place")
	}
}
