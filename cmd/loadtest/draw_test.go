package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// A crowd of 200 registers for a draw of 20 units over HTTP; once it is drawn, half the users
// try to pay: the winners among them pay, the others are told they did not win.
func TestDrawCrowdRegistersAndPays(t *testing.T) {
	ctx, l, _, hs := startIngest(t)
	seed := []byte("a-seed-of-the-crowd-draw-0123456789")
	now, _ := l.RedisTime(ctx)
	at := now.Add(2 * time.Second)
	within := time.Hour
	if _, err := l.SetStock(ctx, "crowd", ledger.StockChange{Op: ledger.StockSet, Quantity: 20, PayWithin: &within,
		DrawAt: &at, DrawCommit: ledger.SeedCommitment(seed)}); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(time.Until(at) + 50*time.Millisecond)
		if _, err := l.RunDraw(ctx, "crowd", seed, ledger.DrawOptions{}); err != nil {
			t.Error(err)
		}
	}()
	var out bytes.Buffer
	err := run(ctx, []string{"draw", "-addr", strings.TrimPrefix(hs.URL, "http://"), "-item", "crowd", "-users", "200", "-clients", "8", "-pay", "0.5", "-wait", "20s"},
		func(string) string { return "" }, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "registered 200 users") || !strings.Contains(out.String(), "202: 200") {
		t.Fatalf("registration: %s", out.String())
	}
	m := regexp.MustCompile(`100 of 200 users tried to pay: (\d+) winners paid, (\d+) had not won, 0 other`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("payments: %s", out.String())
	}
	paid, _ := strconv.Atoi(m[1])
	var reserved, paidStates int
	for _, e := range testenv.Events(t, l) {
		switch e.Type {
		case ledger.EventWon:
			reserved++
		case ledger.EventPaid:
			paidStates++
		}
	}
	if reserved != 20 || paidStates != paid || paid == 0 {
		t.Fatalf("%d won, %d paid events, loadtest says %d paid\n%s", reserved, paidStates, paid, out.String())
	}
}
