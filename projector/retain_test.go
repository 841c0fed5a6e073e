package projector_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// archiveAll stands in for the archiver: a consumer of the archive group that acknowledges
// every entry it reads, until the test ends (or the returned stop is called).
func (e env) archiveAll(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := range e.l.Keys().Partitions() {
		if err := e.l.EnsureGroup(ctx, p, ledger.ArchiveGroup); err != nil {
			t.Fatal(err)
		}
	}
	wg.Go(func() {
		for ctx.Err() == nil {
			for p := range e.l.Keys().Partitions() {
				events, err := e.l.ReadGroup(ctx, p, ledger.ArchiveGroup, "a1", ">", 1000, -1)
				if err != nil || len(events) == 0 {
					continue
				}
				ids := make([]string, len(events))
				for i, ev := range events {
					ids[i] = ev.StreamID
				}
				e.l.Ack(ctx, p, ledger.ArchiveGroup, ids...)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

func (e env) retainer(t *testing.T, retain time.Duration) *projector.Retainer {
	t.Helper()
	r, err := projector.NewRetainer(e.l, projector.RetainConfig{Retain: retain, Interval: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runRetainer runs r until the test ends.
func runRetainer(t *testing.T, r *projector.Retainer) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { r.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func (e env) retained(t *testing.T) int64 {
	t.Helper()
	var n int64
	for p := range e.l.Keys().Partitions() {
		k, err := e.l.Length(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		n += k
	}
	return n
}

// TestTrimmedLedgerAuditsClean: with a retainer trimming as fast as it may while a sale runs
// (orders, stock changes, paid, cancelled and expired reservations), every audit is clean, and
// after the sale the stream is trimmed down to what the window keeps while the books still add
// up from the checkpoints.
func TestTrimmedLedgerAuditsClean(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	items := saleItems(e, t)
	e.start(t, projector.Config{BatchSize: 16})
	e.archiveAll(t)
	runRetainer(t, e.retainer(t, 50*time.Millisecond))
	want := reservationSale(t, e)

	stop := make(chan struct{})
	wait := e.burst(t, items, stop)
	end := sync.OnceFunc(func() { close(stop); wait() })
	defer end()
	store := projector.NewStore(e.db)
	trimmedDuring := false
	for range 12 {
		rep, err := projector.Audit(ctx, e.l, store, projector.DefaultGroup)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.Clean() {
			t.Fatalf("audit during the sale: %d violations, first %+v", len(rep.Violations), rep.Violations[:min(5, len(rep.Violations))])
		}
		for _, it := range rep.Items {
			if it.Stock+it.Sold+it.Reserved != it.PutOnSale {
				t.Errorf("item %s does not add up during the sale: %+v", it.ItemID, it)
			}
			if it.CheckpointLive > 0 {
				trimmedDuring = true
			}
		}
	}
	end()
	if !trimmedDuring {
		t.Fatal("no audit ran from a checkpoint: nothing was trimmed during the sale")
	}
	e.waitSettled(t)
	time.Sleep(300 * time.Millisecond) // retention 50ms, rounds every 10ms
	if n, parts := e.retained(t), e.l.Keys().Partitions(); n > int64(parts) {
		t.Errorf("%d entries still in Redis after the sale, want at most the %d kept at the checkpoints", n, parts)
	}
	rep := e.audit(t)
	if !rep.Clean() || rep.Pending != 0 {
		t.Fatalf("audit after the sale: %+v, pending %d", rep.Violations, rep.Pending)
	}
	for _, it := range rep.Items {
		if it.Confirmed != it.Sold+it.Reserved || it.Stock+it.Sold+it.Reserved != it.PutOnSale {
			t.Errorf("item %s does not add up after the sale: %+v", it.ItemID, it)
		}
	}
	got := e.statuses(t)
	for id, w := range want {
		if got[id] != w {
			t.Errorf("order %s: got %s, want %s", id, got[id], w)
		}
	}
}

// TestAuditFromCheckpointCatchesMissingRows: an order whose entry is trimmed is still checked
// by AuditAll (audit -full), in sum per item and against item_totals: deleting its MySQL row
// by hand is a violation. Audit reads no row before the checkpoint: its books are the
// projector's item_totals, which a row deleted by hand leaves as they were.
func TestAuditFromCheckpointCatchesMissingRows(t *testing.T) {
	e := newEnv(t)
	e.setStock(t, "a", 10)
	id := e.buy(t, "a", "u1", "r1", 2)
	e.buy(t, "a", "u2", "r2", 1)
	e.start(t, projector.Config{})
	e.archiveAll(t)
	e.waitSettled(t)
	time.Sleep(20 * time.Millisecond)
	if err := e.retainer(t, 10*time.Millisecond).Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.retained(t); n != 1 {
		t.Fatalf("%d entries retained, want the 1 at the checkpoint", n)
	}
	all := func() projector.AuditReport {
		t.Helper()
		rep, err := projector.AuditAll(context.Background(), e.l, projector.NewStore(e.db), projector.DefaultGroup)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := all(); !rep.Clean() {
		t.Fatalf("audit -full before the row is deleted: %+v", rep.Violations)
	}
	if err := e.deleteOrder(id); err != nil {
		t.Fatal(err)
	}
	if rep := e.audit(t); !rep.Clean() || rep.OrderRows != 0 {
		t.Fatalf("audit after the row is deleted: %+v, %d rows read; want none read before the checkpoint", rep.Violations, rep.OrderRows)
	}
	rep := all()
	if len(rep.Violations) == 0 {
		t.Fatal("audit -full after the row is deleted: clean")
	}
	for _, v := range rep.Violations {
		if v.ItemID != "a" {
			t.Errorf("audit -full after the row is deleted: got %+v, want violations of item a", rep.Violations)
		}
	}
}

// TestTrimStopsAtTheSlowestReader: nothing is trimmed without both groups; an entry not
// archived, or not projected (also one pending below acknowledged ones), stays; RetainState
// says what holds the trimming back.
func TestTrimStopsAtTheSlowestReader(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	item := "x"
	p := e.l.Keys().Partition(item)
	e.setStock(t, item, 100)
	for i := range 5 {
		e.buy(t, item, "u", fmt.Sprintf("r%d", i), 1)
	}
	r := e.retainer(t, time.Millisecond)
	state := func() ledger.RetainState {
		t.Helper()
		time.Sleep(5 * time.Millisecond)
		if err := r.Round(ctx); err != nil {
			t.Fatal(err)
		}
		st, err := e.l.RetainState(ctx, p, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := state(); st.Length != 6 || st.HeldBy != ledger.HeldByNoProjector {
		t.Fatalf("without groups: %+v, want 6 entries held by %q", st, ledger.HeldByNoProjector)
	}
	// The projector reads all and acknowledges all but the third order.
	if err := e.l.EnsureGroup(ctx, p, projector.DefaultGroup); err != nil {
		t.Fatal(err)
	}
	events, err := e.l.ReadGroup(ctx, p, projector.DefaultGroup, "c", ">", 100, -1)
	if err != nil || len(events) != 6 {
		t.Fatalf("read %d entries (%v)", len(events), err)
	}
	for i, ev := range events {
		if i != 3 {
			e.l.Ack(ctx, p, projector.DefaultGroup, ev.StreamID)
		}
	}
	if st := state(); st.Length != 6 || st.HeldBy != ledger.HeldByNoArchive {
		t.Fatalf("without the archive group: %+v, want 6 entries held by %q", st, ledger.HeldByNoArchive)
	}
	// The archiver has archived the first two entries only.
	if err := e.l.EnsureGroup(ctx, p, ledger.ArchiveGroup); err != nil {
		t.Fatal(err)
	}
	arch, err := e.l.ReadGroup(ctx, p, ledger.ArchiveGroup, "a", ">", 2, -1)
	if err != nil || len(arch) != 2 {
		t.Fatalf("archive read %d entries (%v)", len(arch), err)
	}
	e.l.Ack(ctx, p, ledger.ArchiveGroup, arch[0].StreamID, arch[1].StreamID)
	if st := state(); st.Length != 5 || st.First != events[2].StreamID || st.HeldBy != ledger.HeldByArchive || st.HeldBack <= 0 {
		t.Fatalf("archived through the second entry: %+v, want 5 entries (one at the checkpoint) from %s held by %q", st, events[2].StreamID, ledger.HeldByArchive)
	}
	// Everything archived: the pending fourth entry holds the rest.
	rest, _ := e.l.ReadGroup(ctx, p, ledger.ArchiveGroup, "a", ">", 100, -1)
	for _, ev := range rest {
		e.l.Ack(ctx, p, ledger.ArchiveGroup, ev.StreamID)
	}
	if st := state(); st.Length != 4 || st.First != events[3].StreamID || st.HeldBy != ledger.HeldByProjector {
		t.Fatalf("with the fourth entry pending: %+v, want 4 entries from %s held by %q", st, events[3].StreamID, ledger.HeldByProjector)
	}
	e.l.Ack(ctx, p, projector.DefaultGroup, events[3].StreamID)
	if st := state(); st.Length != 1 || st.First != "" || st.HeldBy != ledger.HeldByNothing || st.Checkpoint != events[5].StreamID {
		t.Fatalf("all acknowledged: %+v, want only the entry at checkpoint %s retained", st, events[5].StreamID)
	}
	c, err := e.l.LoadCheckpoint(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Items[item]; got.Sold != 5 || got.Stock != 95 || got.PutOnSale != 100 || c.Entries != 6 {
		t.Fatalf("checkpoint %+v, want sold 5, stock 95, put on sale 100 after 6 entries", c)
	}
}

// TestClosedSaleIsCleaned: a closed item refuses purchases and stock changes, answers closed,
// and once its last reservation is settled and projected, its per-user counters, idempotency
// keys, order state hashes and restock markers are gone; a payment retried then is 410, and
// the books still add up. An item of another sale keeps its keys.
func TestClosedSaleIsCleaned(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.reserveStock(t, "gone", 10, time.Hour)
	e.reserveStock(t, "kept", 10, time.Hour)
	paid := e.buy(t, "gone", "u1", "r1", 2)
	open := e.buy(t, "gone", "u2", "r2", 1)
	e.buy(t, "kept", "u1", "r1", 1)
	if _, err := e.l.Pay(ctx, paid, "u1", "ref-1"); err != nil {
		t.Fatal(err)
	}
	e.start(t, projector.Config{})
	r := e.retainer(t, time.Hour)

	if _, err := e.l.CloseItem(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.CloseItem(ctx, "gone"); err != nil {
		t.Fatalf("closing again: %v", err)
	}
	_, err := e.l.Purchase(ctx, ledger.PurchaseRequest{RequestID: "r9", UserID: "u9", ItemID: "gone", Quantity: 1})
	if !errors.Is(err, ledger.ErrItemClosed) {
		t.Fatalf("purchase of a closed item: got %v, want ErrItemClosed", err)
	}
	if _, err := e.l.SetStock(ctx, "gone", ledger.StockChange{Op: ledger.StockAdd, Quantity: 5}); !errors.Is(err, ledger.ErrItemClosed) {
		t.Fatalf("stock add on a closed item: got %v, want ErrItemClosed", err)
	}
	if it, err := e.l.Item(ctx, "gone"); err != nil || !it.Closed || it.Stock != 7 {
		t.Fatalf("closed item: %+v (%v), want closed with 7 left", it, err)
	}
	keys := func(item string) int {
		t.Helper()
		n := 0
		for _, pattern := range []string{"fs:*:users:" + item, "fs:*:requests:" + item + "*", "fs:*:restocked:" + item + ":*"} {
			ks, err := e.rdb.Keys(ctx, pattern).Result()
			if err != nil {
				t.Fatal(err)
			}
			n += len(ks)
		}
		hashes, _ := e.rdb.Keys(ctx, "fs:*:order:*").Result()
		for _, h := range hashes {
			if e.rdb.HGet(ctx, h, "item_id").Val() == item {
				n++
			}
		}
		return n
	}
	e.waitSettled(t)
	if err := r.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if n := keys("gone"); n != 4 {
		t.Fatalf("with a reservation open: %d keys of the closed item, want all 4 kept", n)
	}
	if _, err := e.l.Cancel(ctx, open, "u2"); err != nil {
		t.Fatal(err)
	}
	e.waitSettled(t)
	if err := r.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if n := keys("gone"); n != 0 {
		t.Fatalf("after the sale settled: %d keys of the closed item, want 0", n)
	}
	if n := keys("kept"); n != 3 {
		t.Fatalf("the open sale's keys: %d, want 3", n)
	}
	if _, err := e.l.Pay(ctx, paid, "u1", "ref-1"); !errors.Is(err, ledger.ErrOrderGone) {
		t.Fatalf("payment retried after the cleanup: got %v, want ErrOrderGone", err)
	}
	if rep := e.audit(t); !rep.Clean() {
		t.Fatalf("audit: %+v", rep.Violations)
	}
}

// TestEndedSaleClosesAfterTheRetention: an item whose sale window ended more than the
// retention ago is closed by the retainer; one that ended more recently is not.
func TestEndedSaleClosesAfterTheRetention(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	for item, ended := range map[string]time.Duration{"old": 2 * time.Hour, "recent": 30 * time.Minute} {
		end, start := time.Now().Add(-ended), time.Now().Add(-3*time.Hour)
		if _, err := e.l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockSet, Quantity: 5, Start: &start, End: &end}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.retainer(t, time.Hour).Round(ctx); err != nil {
		t.Fatal(err)
	}
	for item, want := range map[string]bool{"old": true, "recent": false} {
		it, err := e.l.Item(ctx, item)
		if err != nil || it.Closed != want {
			t.Errorf("item %s: closed %v (%v), want %v", item, it.Closed, err, want)
		}
	}
}
