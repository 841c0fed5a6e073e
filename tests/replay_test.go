package tests

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// TestReplayFreshWaitsForProjectors runs two `flashsale project` processes that sit idle for
// many heartbeat TTLs (-heartbeat 100ms: a heartbeat lives 500 ms) and checks that
// `replay -fresh` refuses while either runs, names only the live ones after a clean stop,
// and proceeds once the heartbeat of the one killed with SIGKILL has expired.
func TestReplayFreshWaitsForProjectors(t *testing.T) {
	forTopologies(t, testReplayFreshWaitsForProjectors)
}

func testReplayFreshWaitsForProjectors(t *testing.T, tp testenv.Topology) {
	s := newStackOn(t, tp)
	env := s.env(s.dsn)
	items := itemsPerPartition(s.l, 1)
	for _, it := range items {
		s.setStock(t, it, 100)
	}
	ids := s.placeOrders(t, items, 40, 4)
	a := startProject(t, s, "-consumer", "pa", "-heartbeat", "100ms")
	b := startProject(t, s, "-consumer", "pb", "-heartbeat", "100ms")
	s.waitDrained(t, len(ids), 30*time.Second)
	want := testenv.OrdersHash(t, s.db)
	time.Sleep(2 * time.Second) // idle: four heartbeat TTLs

	refused := func(live string) {
		t.Helper()
		if _, stderr, code := runCode(t, env, "replay", "-fresh"); code != 1 || !strings.Contains(stderr, "projectors are live ("+live+")") {
			t.Fatalf("replay -fresh: exit %d, %s; want exit 1 naming %s", code, stderr, live)
		}
		if n := s.countOrders(t); n != len(ids) {
			t.Fatalf("replay -fresh refused, yet the orders table holds %d rows, want %d", n, len(ids))
		}
	}
	refused("pa, pb")
	a.signal(t, syscall.SIGTERM)
	if code, ok := a.wait(15 * time.Second); !ok || code != 0 {
		t.Fatalf("project pa after SIGTERM: exit %d (exited %v), want 0", code, ok)
	}
	refused("pb")

	b.kill()
	killed := time.Now()
	for {
		live, err := projector.LiveConsumers(context.Background(), s.l)
		if err != nil {
			t.Fatal(err)
		}
		if len(live) == 0 {
			break
		}
		if time.Since(killed) > 10*time.Second {
			t.Fatalf("heartbeat of the killed projector still live after 10s: %v", live)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("heartbeat of the killed projector expired %s after the kill", time.Since(killed).Round(time.Millisecond))
	out := runCmd(t, env, "replay", "-fresh")
	if !strings.Contains(out, "replayed") {
		t.Fatalf("replay -fresh: %s", out)
	}
	if got := testenv.OrdersHash(t, s.db); got != want {
		t.Fatalf("after replay -fresh: got %s, want %s", got, want)
	}
}
