package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// drawSetup makes item a draw of units units at now + in through the CLI and returns the
// seed file and the draw time.
func drawSetup(t *testing.T, s *stack, item string, units int, in, payWithin time.Duration) (string, time.Time) {
	t.Helper()
	seedFile := filepath.Join(t.TempDir(), "seed")
	if err := os.WriteFile(seedFile, []byte(testenv.RandomID(32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(in).Truncate(time.Second).Add(time.Second)
	runCmd(t, s.env(s.dsn), "stock", "set", "-draw-at", at.UTC().Format(time.RFC3339), "-draw-seed-file", seedFile,
		"-pay-within", payWithin.String(), "-limit", "1", item, fmt.Sprint(units))
	return seedFile, at
}

func enterDraw(t *testing.T, s *stack, item string, n int) {
	t.Helper()
	const workers = 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				u := fmt.Sprintf("u%d", i)
				rc, err := s.l.Purchase(context.Background(), ledger.PurchaseRequest{RequestID: "r" + u, UserID: u, ItemID: item, Quantity: 1})
				if err != nil || !rc.Registered {
					t.Errorf("enter %s: %v", u, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

func postPurchase(t *testing.T, srv *server, user, req, item string) (int, map[string]any) {
	t.Helper()
	body := fmt.Sprintf(`{"request_id":%q,"user_id":%q,"item_id":%q,"quantity":1}`, req, user, item)
	resp, err := http.Post(srv.url("/api/purchase"), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func getMap(t *testing.T, srv *server, path string) map[string]any {
	t.Helper()
	var out map[string]any
	getJSON(t, http.DefaultClient, srv, path, &out)
	return out
}

// statuses reads order_id -> status from db.
func statuses(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query("SELECT order_id, status FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			t.Fatal(err)
		}
		out[id] = st
	}
	return out
}

// A draw from the command line and HTTP: entries answer 202, a second one 409 with the same
// order, a late one 410; `draw run` killed with SIGKILL mid-draw is finished by the next run
// with every entry written once; `draw verify` passes, then fails on a forged event; the
// projection shows the statuses, replay into an empty database gives the same ones, and audit
// is clean.
func TestDrawEndToEnd(t *testing.T) {
	s := newStack(t)
	const entries = 3000
	seedFile, at := drawSetup(t, s, "lot", 20, 10*time.Second, time.Hour)
	srv := startServe(t, s, s.dsn, "-sweep-interval", "50ms")

	code, out := postPurchase(t, srv, "web-1", "w1", "lot")
	if code != http.StatusAccepted || out["order_id"] == nil {
		t.Fatalf("entry over HTTP: %d %v", code, out)
	}
	first := out["order_id"]
	if code, out = postPurchase(t, srv, "web-1", "w1-again", "lot"); code != http.StatusConflict || out["order_id"] != first {
		t.Fatalf("second entry of a user: %d %v, want 409 with %v", code, out, first)
	}
	item := getMap(t, srv, "/api/items/lot")
	draw, _ := item["draw"].(map[string]any)
	if draw == nil || draw["state"] != "registering" || draw["commitment"] == "" || draw["seed"] != nil {
		t.Fatalf("item before the draw: %v", item)
	}
	order := getMap(t, srv, fmt.Sprintf("/api/orders/%v?user_id=web-1", first))
	if order["status"] != "registered" {
		t.Fatalf("entry's order: %v", order)
	}
	enterDraw(t, s, "lot", entries-1)
	time.Sleep(time.Until(at) + 50*time.Millisecond)
	if code, out = postPurchase(t, srv, "late", "late", "lot"); code != http.StatusGone {
		t.Fatalf("late entry: %d %v, want 410", code, out)
	}

	// Killed mid-draw: some batches written, not all.
	p := startProcess(t, "draw", s.env(s.dsn), "draw", "run", "-batch", "1", "-seed-file", seedFile, "lot")
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := s.l.DrawStatus(context.Background(), "lot")
		if err != nil {
			t.Fatal(err)
		}
		if st.Cursor > 100 {
			break
		}
		if time.Now().After(deadline) || p.exited() {
			t.Fatalf("draw made no progress (cursor %d)", st.Cursor)
		}
		time.Sleep(time.Millisecond)
	}
	p.kill()
	st, _ := s.l.DrawStatus(context.Background(), "lot")
	if st.Done {
		t.Fatalf("the draw finished before it was killed")
	}
	t.Logf("draw killed at %d of %d entries", st.Cursor, entries)
	if out := runCmd(t, s.env(s.dsn), "draw", "run", "-seed-file", seedFile, "lot"); !strings.Contains(out, "20 winners") {
		t.Fatalf("draw after the kill: %s", out)
	}
	outcomes := map[string]int{}
	for _, e := range testenv.Events(t, s.l) {
		switch e.Type {
		case ledger.EventWon:
			outcomes[e.OrderID]++
		case ledger.EventWaitlisted:
			for _, id := range e.Orders {
				outcomes[id]++
			}
		}
	}
	if len(outcomes) != entries {
		t.Fatalf("%d entries have an outcome, want %d", len(outcomes), entries)
	}
	for id, n := range outcomes {
		if n != 1 {
			t.Fatalf("order %s has %d outcomes", id, n)
		}
	}
	if out := runCmd(t, s.env(s.dsn), "draw", "verify", "-seed-file", seedFile, "lot"); !strings.Contains(out, "verified") {
		t.Fatalf("verify: %s", out)
	}
	item = getMap(t, srv, "/api/items/lot")
	if draw, _ = item["draw"].(map[string]any); draw["state"] != "drawn" || draw["seed"] == nil {
		t.Fatalf("item after the draw: %v", item)
	}

	s.waitDrained(t, entries, 30*time.Second)
	live := statuses(t, s.db)
	count := map[string]int{}
	for _, st := range live {
		count[st]++
	}
	if count["reserved"] != 20 || count["waitlisted"] != entries-20 {
		t.Fatalf("projected statuses %v", count)
	}
	if out := runCmd(t, s.env(s.dsn), "audit"); !strings.Contains(out, "clean") {
		t.Fatalf("audit: %s", out)
	}
	dsn2, db2 := testenv.MySQL(t)
	runCmd(t, s.env(dsn2), "migrate")
	runCmd(t, s.env(dsn2), "replay")
	replayed := statuses(t, db2)
	if len(replayed) != len(live) {
		t.Fatalf("replay has %d orders, live %d", len(replayed), len(live))
	}
	for id, st := range live {
		if replayed[id] != st {
			t.Fatalf("order %s is %s live but %s replayed", id, st, replayed[id])
		}
	}

	// A forged won event for a waitlisted entry: verify exits 1 naming it.
	var victim ledger.Event
	for _, e := range testenv.Events(t, s.l) {
		if e.Type == ledger.EventWaitlisted {
			victim = e
			victim.OrderID = e.Orders[0]
			break
		}
	}
	if ev, err := s.l.Order(context.Background(), victim.OrderID); err != nil {
		t.Fatal(err)
	} else {
		victim.UserID, victim.RequestID = ev.UserID, ev.RequestID
	}
	if _, err := s.rdb.XAdd(context.Background(), xaddForged(s.l, victim)).Result(); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := runCode(t, s.env(s.dsn), "draw", "verify", "-seed-file", seedFile, "lot")
	if code != 1 || !strings.Contains(stderr, victim.OrderID) {
		t.Fatalf("verify of a forged draw: exit %d, %s", code, stderr)
	}
}

// xaddForged appends a won event for the waitlisted entry e, as no script would.
func xaddForged(l *ledger.Ledger, e ledger.Event) *redis.XAddArgs {
	return &redis.XAddArgs{Stream: l.Keys().Events(e.Partition), Values: []string{
		"v", "1", "type", "won", "order_id", e.OrderID, "item_id", e.ItemID, "user_id", e.UserID,
		"request_id", e.RequestID, "quantity", "1", "order_ts", "1", "pay_by", "2", "rank", fmt.Sprint(e.Rank), "ts", "3"}}
}

// Promotions while sweepers are killed with SIGKILL: nobody pays, so every unit goes round
// the whole waitlist; each promotion is written once, in rank order, into free units only.
func TestDrawPromotionSurvivesKilledSweepers(t *testing.T) {
	s := newStack(t)
	const units, entries = 10, 60
	seedFile, at := drawSetup(t, s, "promo", units, 4*time.Second, 300*time.Millisecond)
	enterDraw(t, s, "promo", entries)
	time.Sleep(time.Until(at) + 20*time.Millisecond)
	runCmd(t, s.env(s.dsn), "draw", "run", "-seed-file", seedFile, "promo")

	ctx := context.Background()
	args := []string{"-sweep-interval", "10ms"}
	procs := []*process{startProject(t, s, append(args, "-consumer", "a")...), startProject(t, s, append(args, "-consumer", "b")...)}
	kills := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := s.l.DrawStatus(ctx, "promo")
		if err != nil {
			t.Fatal(err)
		}
		it, err := s.l.Item(ctx, "promo")
		if err != nil {
			t.Fatal(err)
		}
		if st.Waitlisted == 0 && it.Stock == units {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("promotions did not finish: %d waitlisted, stock %d", st.Waitlisted, it.Stock)
		}
		time.Sleep(70 * time.Millisecond)
		k := kills % len(procs)
		procs[k].kill()
		procs[k] = startProject(t, s, append(args, "-consumer", fmt.Sprint("c", kills))...)
		kills++
	}
	t.Logf("%d sweepers killed during the promotions", kills)
	promoted := 0
	for _, e := range testenv.Events(t, s.l) {
		if e.Type == ledger.EventPromoted {
			promoted++
		}
	}
	if promoted != entries-units {
		t.Fatalf("%d promotions, want %d", promoted, entries-units)
	}
	if out := runCmd(t, s.env(s.dsn), "draw", "verify", "-seed-file", seedFile, "promo"); !strings.Contains(out, fmt.Sprintf("%d promoted", entries-units)) {
		t.Fatalf("verify: %s", out)
	}
}

// serve given the seed draws the item by itself once the draw time has come.
func TestDrawAutomaticInServe(t *testing.T) {
	s := newStack(t)
	seedFile, at := drawSetup(t, s, "auto", 5, 4*time.Second, time.Hour)
	srv := startServe(t, s, s.dsn, "-draw-seeds", "auto="+seedFile)
	enterDraw(t, s, "auto", 30)
	if st, _ := s.l.DrawStatus(context.Background(), "auto"); st.Cursor != 0 {
		t.Fatalf("drawn before its time: %+v", st)
	}
	srv.waitLog(t, regexp.MustCompile(`msg=drawn item=auto entries=30 winners=5`), time.Until(at)+15*time.Second)
	if st, _ := s.l.DrawStatus(context.Background(), "auto"); !st.Done || st.Waitlisted != 25 {
		t.Fatalf("after the automatic draw: %+v", st)
	}
}

// The retainer trims the entries (archived and projected) before the draw: the draw and
// verify read them from the archive, and audit folds from checkpoints that carry the entries
// still waiting.
func TestDrawAfterTrim(t *testing.T) {
	s := newStack(t)
	const entries = 300
	seedFile, at := drawSetup(t, s, "trimmed", 20, 4*time.Second, time.Hour)
	startServe(t, s, s.dsn, append([]string{"-sweep-interval", "50ms"}, trimArgs...)...)
	enterDraw(t, s, "trimmed", entries)
	time.Sleep(time.Until(at) + 50*time.Millisecond)
	stream := s.l.Keys().Events(s.l.Keys().Partition("trimmed"))
	if n, err := s.rdb.XLen(context.Background(), stream).Result(); err != nil || n >= entries {
		t.Fatalf("the stream still holds %d entries (%v): nothing was trimmed before the draw", n, err)
	}
	if out := runCmd(t, s.env(s.dsn), "draw", "run", "-seed-file", seedFile, "trimmed"); !strings.Contains(out, "300 entries, 20 winners") {
		t.Fatalf("draw of trimmed entries: %s", out)
	}
	if out := runCmd(t, s.env(s.dsn), "draw", "verify", "-seed-file", seedFile, "trimmed"); !strings.Contains(out, "(finished): 300 entries") {
		t.Fatalf("verify: %s", out)
	}
	s.waitDrained(t, entries, 30*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, _, code := runCode(t, s.env(s.dsn), "audit")
		if code == 0 && strings.Contains(out, "clean") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit after the trimmed draw: exit %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Every winner pays: the waitlist is lost. GET /api/orders answers waitlisted after the draw
// (the draw writes no state for waitlisted entries) and lost at the end; the projection ends
// with the winners paid and every other entry lost, item_totals agreeing, and a replay into an
// empty database gives the same statuses.
func TestDrawWaitlistLostProjected(t *testing.T) {
	s := newStack(t)
	const units, entries = 5, 40
	seedFile, at := drawSetup(t, s, "all-paid", units, 4*time.Second, time.Hour)
	srv := startServe(t, s, s.dsn, "-sweep-interval", "50ms")
	enterDraw(t, s, "all-paid", entries)
	time.Sleep(time.Until(at) + 20*time.Millisecond)
	runCmd(t, s.env(s.dsn), "draw", "run", "-seed-file", seedFile, "all-paid")
	ctx := context.Background()
	var won []ledger.Event
	var waiting []string
	for _, e := range testenv.Events(t, s.l) {
		switch e.Type {
		case ledger.EventWon:
			won = append(won, e)
		case ledger.EventWaitlisted:
			waiting = append(waiting, e.Orders...)
		}
	}
	if len(won) != units || len(waiting) != entries-units {
		t.Fatalf("%d winners and %d waitlisted, want %d and %d", len(won), len(waiting), units, entries-units)
	}
	o, err := s.l.Order(ctx, waiting[0])
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/api/orders/%s?user_id=%s", waiting[0], o.UserID)
	if got := getMap(t, srv, path); got["status"] != "waitlisted" {
		t.Fatalf("a waitlisted entry's order: %v", got)
	}
	for _, e := range won {
		if _, err := s.l.Pay(ctx, e.OrderID, e.UserID, "pay-"+e.UserID); err != nil {
			t.Fatalf("pay winner %s: %v", e.OrderID, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		count := map[string]int{}
		for _, st := range statuses(t, s.db) {
			count[st]++
		}
		if count["paid"] == units && count["lost"] == entries-units {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("projected statuses %v, want %d paid and %d lost", count, units, entries-units)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := getMap(t, srv, path); got["status"] != "lost" {
		t.Fatalf("a lost entry's order: %v", got)
	}
	// audit -full checks item_totals against the rows: the lost events' entries counted once.
	runCmd(t, s.env(s.dsn), "audit", "-full")
	live := statuses(t, s.db)
	dsn2, db2 := testenv.MySQL(t)
	runCmd(t, s.env(dsn2), "migrate")
	runCmd(t, s.env(dsn2), "replay")
	for id, st := range statuses(t, db2) {
		if live[id] != st {
			t.Fatalf("order %s is %s live but %s replayed", id, live[id], st)
		}
	}
}
