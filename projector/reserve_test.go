package projector_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	migrations "github.com/flashsale/flashsale/sql"
	"github.com/flashsale/flashsale/tests/testenv"
)

func (e env) reserveStock(t testing.TB, item string, n int64, within time.Duration) {
	t.Helper()
	if _, err := e.l.SetStock(context.Background(), item, ledger.StockChange{Op: ledger.StockSet, Quantity: n, PayWithin: &within}); err != nil {
		t.Fatal(err)
	}
}

func (e env) audit(t *testing.T) projector.AuditReport {
	t.Helper()
	rep, err := projector.Audit(context.Background(), e.l, projector.NewStore(e.db), projector.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// reservationSale places orders under a pay-within rule and closes them every way: paid,
// cancelled, expired, left reserved; one more is restocked after it expired. It returns the
// status each order must end with.
func reservationSale(t *testing.T, e env) map[string]string {
	ctx := context.Background()
	e.reserveStock(t, "r", 20, 500*time.Millisecond)
	e.setStock(t, "free", 5)
	want := map[string]string{}
	var ids []string
	for i := range 8 {
		id := e.buy(t, "r", fmt.Sprintf("u%d", i), fmt.Sprintf("q%d", i), 2)
		ids = append(ids, id)
	}
	want[e.buy(t, "free", "u0", "q0", 1)] = ledger.StatusConfirmed
	for i, id := range ids {
		switch i % 4 {
		case 0:
			if _, err := e.l.Pay(ctx, id, fmt.Sprintf("u%d", i), "pay-"+id); err != nil {
				t.Fatal(err)
			}
			want[id] = ledger.StatusPaid
		case 1:
			if _, err := e.l.Cancel(ctx, id, fmt.Sprintf("u%d", i)); err != nil {
				t.Fatal(err)
			}
			want[id] = ledger.StatusCancelled
		case 2, 3:
			want[id] = ledger.StatusExpired
		}
	}
	time.Sleep(520 * time.Millisecond)
	s := e.l.NewSweeper(time.Second, 10, slog.New(slog.DiscardHandler))
	if n, err := s.Sweep(ctx); err != nil || n != 4 {
		t.Fatalf("sweep expired %d (%v), want 4", n, err)
	}
	// A reservation left open.
	e.reserveStock(t, "open", 3, time.Hour)
	want[e.buy(t, "open", "u9", "q9", 1)] = ledger.StatusReserved
	return want
}

// TestReservationsProjectAndAudit: paid, cancelled, expired and reserved orders end in MySQL
// with their status, pay_by, paid_at, payment_ref and expired_at; the audit is clean with the
// units of expired and cancelled orders back once; a fresh replay rebuilds the same rows.
func TestReservationsProjectAndAudit(t *testing.T) {
	e := newEnv(t)
	want := reservationSale(t, e)
	e.start(t, projector.Config{})
	e.waitSettled(t)
	check := func(stage string) {
		t.Helper()
		got := e.statuses(t)
		for id, w := range want {
			if got[id] != w {
				t.Fatalf("%s: order %s is %q in MySQL, want %q", stage, id, got[id], w)
			}
		}
		var bad int
		err := e.db.QueryRow(`SELECT COUNT(*) FROM orders WHERE
			(status = 'paid' AND (paid_at IS NULL OR payment_ref IS NULL OR pay_by IS NULL)) OR
			(status = 'expired' AND expired_at IS NULL) OR
			(status = 'reserved' AND pay_by IS NULL) OR
			(status = 'confirmed' AND pay_by IS NOT NULL)`).Scan(&bad)
		if err != nil || bad != 0 {
			t.Fatalf("%s: %d rows lack their columns (%v)", stage, bad, err)
		}
		rep := e.audit(t)
		if !rep.Clean() {
			t.Fatalf("%s: audit: %+v", stage, rep.Violations)
		}
		for _, it := range rep.Items {
			if it.ItemID == "r" && (it.Stock != 16 || it.Sold != 4 || it.Reserved != 0 || it.Released != 12 || it.Stock+it.Sold+it.Reserved != it.PutOnSale) {
				t.Fatalf("%s: books of r %+v", stage, it)
			}
			if it.ItemID == "open" && (it.Reserved != 1 || it.Stock+it.Sold+it.Reserved != it.PutOnSale) {
				t.Fatalf("%s: books of open %+v", stage, it)
			}
		}
	}
	check("projected")
	if _, err := projector.Replay(context.Background(), e.l, projector.NewStore(e.db), projector.ReplayOptions{Fresh: true, Force: true}); err != nil {
		t.Fatal(err)
	}
	check("replayed")
}

// TestApplyIsOrderIndependent applies a reservation sale's events to MySQL in shuffled orders,
// each event twice: the rows always end the same.
func TestApplyIsOrderIndependent(t *testing.T) {
	e := newEnv(t)
	want := reservationSale(t, e)
	events := testenv.Events(t, e.l)
	store := projector.NewStore(e.db)
	for round := range 5 {
		if _, err := e.db.Exec("DELETE FROM orders"); err != nil {
			t.Fatal(err)
		}
		shuffled := append(append([]ledger.Event{}, events...), events...)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for i := 0; i < len(shuffled); i += 3 {
			if _, err := store.Apply(context.Background(), shuffled[i:min(i+3, len(shuffled))]); err != nil {
				t.Fatal(err)
			}
		}
		got := e.statuses(t)
		for id, w := range want {
			if got[id] != w {
				t.Fatalf("round %d: order %s is %q, want %q", round, id, got[id], w)
			}
		}
	}
}

// TestReservationsMigrationRunsTwice: 0003 applied again (a crash before it was recorded)
// changes nothing and fails nothing.
func TestReservationsMigrationRunsTwice(t *testing.T) {
	e := newEnv(t)
	b, err := migrations.FS.ReadFile("0003_reservations.sql")
	if err != nil {
		t.Fatal(err)
	}
	var stmt strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "--") {
			stmt.WriteString(line + "\n")
		}
	}
	if _, err := e.db.Exec(strings.TrimSuffix(strings.TrimSpace(stmt.String()), ";")); err != nil {
		t.Fatalf("0003 again: %v", err)
	}
}

// TestLookupShowsTheReservation: an order's status follows its reservation at once, before
// and after projection, with its pay_by.
func TestLookupShowsTheReservation(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.reserveStock(t, "r", 5, time.Hour)
	id := e.buy(t, "r", "u", "q", 1)
	lk := projector.NewLookup(projector.NewStore(e.db), e.l)
	o, err := lk.Order(ctx, id)
	if err != nil || o.Status != ledger.StatusReserved || o.PayBy.Sub(o.CreatedAt) != time.Hour {
		t.Fatalf("before projection: %+v (%v)", o, err)
	}
	if _, err := e.l.Pay(ctx, id, "u", "p"); err != nil {
		t.Fatal(err)
	}
	if o, err = lk.Order(ctx, id); err != nil || o.Status != ledger.StatusPaid {
		t.Fatalf("paid, before projection: %+v (%v)", o, err)
	}
	e.start(t, projector.Config{})
	e.waitSettled(t)
	if o, err = lk.Order(ctx, id); err != nil || o.Status != ledger.StatusPaid || o.PayBy.IsZero() {
		t.Fatalf("paid, projected: %+v (%v)", o, err)
	}
}

// TestPaidEventLeavesAnotherOrderOfItsRequestAlone: a paid event applied before its order
// event, whose (item_id, request_id) a live reserved order of MySQL already holds (the
// request_id reused after its idempotency key expired), must not pay that other order.
func TestPaidEventLeavesAnotherOrderOfItsRequestAlone(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	store := projector.NewStore(e.db)
	now := time.Now()
	other := ledger.Event{Partition: 0, StreamID: "1-0", Type: ledger.EventOrder, OrderID: "0-1-0", ItemID: "x",
		RequestID: "q", UserID: "u", Quantity: 1, Time: now, PayBy: now.Add(time.Minute)}
	paid := ledger.Event{Partition: 0, StreamID: "3-0", Type: ledger.EventPaid, OrderID: "0-2-0", ItemID: "x",
		RequestID: "q", UserID: "u", Quantity: 1, Time: now, Placed: now, PayBy: now.Add(time.Minute), PaymentRef: "p"}
	if _, err := store.Apply(ctx, []ledger.Event{other}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Apply(ctx, []ledger.Event{paid}); err != nil {
		t.Fatal(err)
	}
	if got := e.statuses(t); got["0-1-0"] != ledger.StatusReserved {
		t.Fatalf("statuses %v: the other order of the request was changed", got)
	}
}
