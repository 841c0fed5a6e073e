package tests

import (
	"context"
	"github.com/flashsale/flashsale/tests/testenv"
	"strconv"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// TestProjectorSurvivesKill9 kills `flashsale project` with SIGKILL several times while it
// works through a backlog, restarting it under the same consumer name: batches committed but
// not acknowledged are redelivered, and every order still lands in MySQL exactly once.
func TestProjectorSurvivesKill9(t *testing.T) { forTopologies(t, testProjectorSurvivesKill9) }

func testProjectorSurvivesKill9(t *testing.T, tp testenv.Topology) {
	s := newStackOn(t, tp)
	const total, stock, kills = 5000, 100000, 4
	items := itemsPerPartition(s.l, 1)
	initial := map[string]int64{}
	for _, item := range items {
		s.setStock(t, item, stock)
		initial[item] = stock
	}
	acked := s.placeOrders(t, items, total, 32)

	args := []string{"-consumer", "p1", "-batch", "200"}
	prev := 0
	var leftInHand int64
	for k := range kills {
		p := startProject(t, s, args...)
		deadline := time.Now().Add(20 * time.Second)
		for s.countOrders(t) <= prev {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: no progress beyond %d orders within 20s", k+1, prev)
			}
			if p.exited() {
				t.Fatalf("run %d: project exited on its own (code %d)", k+1, p.cmd.ProcessState.ExitCode())
			}
			time.Sleep(time.Millisecond)
		}
		// Later runs die a little further into their batch, to hit other steps of it.
		time.Sleep(time.Duration(k) * 2 * time.Millisecond)
		p.kill()
		n := s.countOrders(t)
		inHand := s.pendingOf(t, "p1")
		leftInHand += inHand
		t.Logf("run %d killed with %d of %d orders in MySQL and %d entries in hand", k+1, n, total, inHand)
		if n >= total {
			// The last runs have little left to do and may finish it within their few
			// milliseconds; the first two must be killed mid-backlog.
			if k < 2 {
				t.Fatalf("run %d drained the whole backlog before it was killed", k+1)
			}
			break
		}
		prev = n
	}

	if leftInHand == 0 {
		t.Errorf("no kill left a batch in hand: nothing was redelivered")
	}

	startProject(t, s, args...)
	s.waitDrained(t, total, 30*time.Second)
	s.checkExactlyOnce(t, acked, initial)
}

// TestClaimTakesOverDeadConsumer leaves entries pending on a consumer that never comes back,
// then starts `flashsale project` under another name: its claim loop must take them over once
// they have been idle for -min-idle, and not before, and project every order exactly once.
func TestClaimTakesOverDeadConsumer(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	const stock, early, late = 10000, 300, 100
	const minIdle = 3 * time.Second
	items := itemsPerPartition(s.l, 1)
	initial := map[string]int64{}
	for _, item := range items {
		s.setStock(t, item, stock)
		initial[item] = stock
	}
	acked := s.placeOrders(t, items, early, 8)

	// "dead" reads every entry so far and dies without acknowledging any.
	deadRead := 0
	for p := range s.l.Keys().Partitions() {
		if err := s.l.EnsureGroup(ctx, p, projector.DefaultGroup); err != nil {
			t.Fatalf("ensure group: %v", err)
		}
		evs, err := s.l.ReadGroup(ctx, p, projector.DefaultGroup, "dead", ">", 10000, 10*time.Millisecond)
		if err != nil {
			t.Fatalf("read group as dead: %v", err)
		}
		deadRead += len(evs)
	}
	readAt := time.Now()
	if want := early + len(items); deadRead != want {
		t.Fatalf("dead read %d entries, want %d (orders and stock events)", deadRead, want)
	}
	if got := s.pendingOf(t, "dead"); got != int64(deadRead) {
		t.Fatalf("dead has %d pending, want %d", got, deadRead)
	}

	// Orders placed after the crash are new entries: the live consumer takes them at once.
	for i := range late {
		rc, err := s.l.Purchase(ctx, ledger.PurchaseRequest{
			RequestID: "late-" + strconv.Itoa(i), UserID: "late-user-" + strconv.Itoa(i), ItemID: items[i%len(items)], Quantity: 1,
		})
		if err != nil {
			t.Fatalf("late purchase %d: %v", i, err)
		}
		acked = append(acked, rc.OrderID)
	}

	p := startProject(t, s, "-consumer", "alive", "-min-idle", minIdle.String(), "-write-timeout", "1s")
	deadline := time.Now().Add(10 * time.Second)
	for s.countOrders(t) < late {
		if time.Now().After(deadline) {
			t.Fatalf("the late orders did not reach MySQL within 10s: %d rows", s.countOrders(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Until dead's entries have been idle for min-idle, nobody may take them.
	for time.Since(readAt) < minIdle-500*time.Millisecond {
		if n := s.countOrders(t); n != late {
			t.Fatalf("%s after dead read its entries: got %d orders in MySQL, want only the %d late ones (min-idle %s)",
				time.Since(readAt).Round(time.Millisecond), n, late, minIdle)
		}
		time.Sleep(50 * time.Millisecond)
	}

	s.waitDrained(t, early+late, 20*time.Second)
	if got := s.pendingOf(t, "dead"); got != 0 {
		t.Errorf("dead still has %d pending, want 0", got)
	}
	p.waitLog(t, claimedLog, time.Second)
	s.checkExactlyOnce(t, acked, initial)
}
