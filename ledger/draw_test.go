package ledger_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

var drawSeed = []byte("seed-of-the-draw-0123456789abcdef")

// newDraw makes item a draw of units units at Redis time + in, winners paying within payIn.
func newDraw(t *testing.T, l *ledger.Ledger, item string, units int64, in, payIn time.Duration) time.Time {
	t.Helper()
	ctx := context.Background()
	now, err := l.RedisTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := now.Add(in)
	limit := int64(1)
	_, err = l.SetStock(ctx, item, ledger.StockChange{Op: ledger.StockSet, Quantity: units, Limit: &limit,
		PayWithin: dur(payIn), DrawAt: &at, DrawCommit: ledger.SeedCommitment(drawSeed)})
	if err != nil {
		t.Fatalf("create draw: %v", err)
	}
	return at
}

// enterAll registers users user-0..user-(n-1) in item's draw and returns their orders.
func enterAll(t *testing.T, l *ledger.Ledger, item string, n int) map[string]string {
	t.Helper()
	orders := map[string]string{}
	for i := range n {
		user := fmt.Sprintf("user-%d", i)
		rc, err := l.Purchase(context.Background(), ledger.PurchaseRequest{RequestID: "r-" + user, UserID: user, ItemID: item, Quantity: 1})
		if err != nil || !rc.Registered {
			t.Fatalf("enter %s: %+v %v", user, rc, err)
		}
		orders[user] = rc.OrderID
	}
	return orders
}

// ranked returns the users in the order the seed ranks them, computed here from the
// definition: HMAC-SHA256(seed, user_id), lowest first.
func ranked(users []string) []string {
	rank := func(u string) []byte {
		m := hmac.New(sha256.New, drawSeed)
		m.Write([]byte(u))
		return m.Sum(nil)
	}
	out := slices.Clone(users)
	slices.SortFunc(out, func(a, b string) int { return bytes.Compare(rank(a), rank(b)) })
	return out
}

func waitRedisTime(t *testing.T, l *ledger.Ledger, at time.Time) {
	t.Helper()
	for {
		now, err := l.RedisTime(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !now.Before(at) {
			return
		}
		time.Sleep(at.Sub(now) + time.Millisecond)
	}
}

func states(t *testing.T, l *ledger.Ledger, orders map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for user, id := range orders {
		r, err := l.Reservation(context.Background(), id)
		if err != nil {
			t.Fatalf("state of %s: %v", id, err)
		}
		out[user] = r.State
	}
	return out
}

// A draw of 20 units over 100 users: duplicates get their entry back, late entries and a
// wrong seed are refused, the 20 lowest ranks win, 5 unpaid winners are replaced by the next
// 5 of the waitlist, and once every unit is paid the rest is lost.
func TestDrawTwentyUnitsOverHundredUsers(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	at := newDraw(t, l, "lot", 20, 4*time.Second, 3*time.Second)
	orders := enterAll(t, l, "lot", 100)

	// Duplicates: the same request, and another request of the same user, get the entry.
	for _, req := range []string{"r-user-7", "r-again"} {
		_, err := l.Purchase(ctx, ledger.PurchaseRequest{RequestID: req, UserID: "user-7", ItemID: "lot", Quantity: 1})
		var dup *ledger.DuplicateError
		if !errors.As(err, &dup) || dup.OrderID != orders["user-7"] {
			t.Fatalf("second entry (%s): %v, want duplicate of %s", req, err, orders["user-7"])
		}
	}
	if _, err := l.Purchase(ctx, ledger.PurchaseRequest{RequestID: "big", UserID: "greedy", ItemID: "lot", Quantity: 2}); !errors.Is(err, ledger.ErrLimit) {
		t.Fatalf("entry over the limit: %v", err)
	}
	if it, _ := l.Item(ctx, "lot"); it.Stock != 20 || it.DrawSeed != "" {
		t.Fatalf("entries took stock or revealed the seed: %+v", it)
	}
	if _, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{}); !errors.Is(err, ledger.ErrDrawNotDue) {
		t.Fatalf("draw before its time: %v", err)
	}

	waitRedisTime(t, l, at)
	if _, err := l.Purchase(ctx, ledger.PurchaseRequest{RequestID: "late", UserID: "late", ItemID: "lot", Quantity: 1}); !errors.Is(err, ledger.ErrRegistrationClosed) {
		t.Fatalf("late entry: %v, want registration closed", err)
	}
	if _, err := l.RunDraw(ctx, "lot", []byte("not-the-seed-not-the-seed-0000000"), ledger.DrawOptions{}); !errors.Is(err, ledger.ErrSeedMismatch) {
		t.Fatalf("wrong seed: %v", err)
	}
	if st, _ := l.DrawStatus(ctx, "lot"); st.Cursor != 0 {
		t.Fatalf("wrong seed wrote something: %+v", st)
	}
	res, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{Batch: 7})
	if err != nil {
		t.Fatalf("draw: %v", err)
	}
	if res.Entries != 100 || res.Winners != 20 || res.WonUnits != 20 || res.Batches != 15 {
		t.Fatalf("draw result %+v", res)
	}
	users := make([]string, 0, 100)
	for u := range orders {
		users = append(users, u)
	}
	order := ranked(users)
	st := states(t, l, orders)
	for i, u := range order {
		want := ledger.StateWaitlisted
		if i < 20 {
			want = ledger.StateReserved
		}
		if st[u] != want {
			t.Fatalf("%s (rank %d) is %s, want %s", u, i, st[u], want)
		}
	}
	if again, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{}); err != nil || again.Batches != 0 {
		t.Fatalf("second draw wrote %d batches (%v)", again.Batches, err)
	}
	if it, _ := l.Item(ctx, "lot"); it.Stock != 0 || it.DrawSeed == "" {
		t.Fatalf("after the draw: %+v", it)
	}
	// A waitlisted entry has nothing to pay.
	if _, err := l.Pay(ctx, orders[order[50]], order[50], "pay-x"); !errors.Is(err, ledger.ErrNotWon) {
		t.Fatalf("pay of a waitlisted entry: %v", err)
	}

	// 15 winners pay; 5 do not and expire; the next 5 ranks are promoted.
	for _, u := range order[:15] {
		if _, err := l.Pay(ctx, orders[u], u, "pay-"+u); err != nil {
			t.Fatalf("pay %s: %v", u, err)
		}
	}
	sw := l.NewSweeper(time.Second, 100, slog.New(slog.DiscardHandler))
	r, err := l.Reservation(ctx, orders[order[19]])
	if err != nil {
		t.Fatal(err)
	}
	waitRedisTime(t, l, r.PayBy.Add(10*time.Millisecond))
	if n, err := sw.Sweep(ctx); err != nil || n != 5 {
		t.Fatalf("sweep expired %d (%v), want 5", n, err)
	}
	st = states(t, l, orders)
	for i, u := range order[:30] {
		want := map[bool]string{true: ledger.StatePaid, false: ledger.StateExpired}[i < 15]
		switch {
		case i >= 20 && i < 25:
			want = ledger.StateReserved
		case i >= 25:
			want = ledger.StateWaitlisted
		}
		if st[u] != want {
			t.Fatalf("%s (rank %d) is %s after the sweep, want %s", u, i, st[u], want)
		}
	}
	for _, u := range order[20:25] {
		if _, err := l.Pay(ctx, orders[u], u, "pay-"+u); err != nil {
			t.Fatalf("pay promoted %s: %v", u, err)
		}
	}
	if _, err := sw.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	st = states(t, l, orders)
	for _, u := range order[25:] {
		if st[u] != ledger.StateLost {
			t.Fatalf("%s is %s once every unit was paid, want lost", u, st[u])
		}
	}
	check, err := l.VerifyDraw(ctx, "lot", drawSeed, nil)
	if err != nil || !check.Finished || check.Winners != 20 || check.Promoted != 5 || check.Lost != 75 {
		t.Fatalf("verify: %+v %v", check, err)
	}
	if _, err := l.VerifyDraw(ctx, "lot", []byte("not-the-seed-not-the-seed-0000000"), nil); !errors.Is(err, ledger.ErrSeedMismatch) {
		t.Fatalf("verify with a wrong seed: %v", err)
	}
}

// Several processes drawing at once, with batches of different sizes, write each entry's
// outcome once.
func TestDrawConcurrentRunsWriteOnce(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	at := newDraw(t, l, "lot", 50, 5*time.Second, time.Hour)
	orders := enterAll(t, l, "lot", 400)
	waitRedisTime(t, l, at)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{Batch: 3 + 4*i, WinnerBatch: 1 + i})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	outcomes := map[string]int{}
	for _, e := range testenv.Events(t, l) {
		switch e.Type {
		case ledger.EventWon:
			outcomes[e.OrderID]++
		case ledger.EventWaitlisted:
			for _, id := range e.Orders {
				outcomes[id]++
			}
		}
	}
	for _, id := range orders {
		if outcomes[id] != 1 {
			t.Fatalf("order %s has %d outcomes", id, outcomes[id])
		}
	}
	if n, _ := rdb.Get(ctx, l.Keys().Stock("lot")).Int64(); n != 0 {
		t.Fatalf("stock after the draw %d, want 0", n)
	}
	if _, err := l.VerifyDraw(ctx, "lot", drawSeed, nil); err != nil {
		t.Fatal(err)
	}
}

// draw verify names the first hand-made deviation: a won event for a waitlisted entry.
func TestVerifyDrawCatchesDeviation(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	at := newDraw(t, l, "lot", 3, 2*time.Second, time.Hour)
	orders := enterAll(t, l, "lot", 10)
	waitRedisTime(t, l, at)
	if _, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.VerifyDraw(ctx, "lot", drawSeed, nil); err != nil {
		t.Fatalf("honest draw: %v", err)
	}
	users := make([]string, 0, len(orders))
	for u := range orders {
		users = append(users, u)
	}
	loser := ranked(users)[7]
	p := l.Keys().Partition("lot")
	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: l.Keys().Events(p), Values: []string{
		"v", "1", "type", "promoted", "order_id", orders[loser], "item_id", "lot", "user_id", loser,
		"request_id", "r-" + loser, "quantity", "1", "order_ts", "1", "pay_by", "2", "rank", "7", "ts", "3"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.VerifyDraw(ctx, "lot", drawSeed, nil)
	var dev *ledger.DeviationError
	if !errors.As(err, &dev) || dev.OrderID != orders[loser] || dev.StreamID != id {
		t.Fatalf("verify of a forged promotion: %v, want a deviation at %s (%s)", err, id, orders[loser])
	}
}

// The oversell race: sweepers promoting at once while winners pay, cancel or let their
// reservations expire: reserved plus paid units never exceed the units drawn, at any event.
func TestDrawOversellRace(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	const units, entries = 10, 200
	at := newDraw(t, l, "lot", units, 4*time.Second, 150*time.Millisecond)
	orders := enterAll(t, l, "lot", entries)
	waitRedisTime(t, l, at)
	if _, err := l.RunDraw(ctx, "lot", drawSeed, ledger.DrawOptions{Batch: 13}); err != nil {
		t.Fatal(err)
	}
	stop := time.Now().Add(3 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			sw := l.NewSweeper(time.Millisecond, 10, slog.New(slog.DiscardHandler))
			for time.Now().Before(stop) {
				if _, err := sw.Sweep(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for w := range 4 {
		wg.Go(func() {
			i := 0
			for time.Now().Before(stop) {
				for user, id := range orders {
					i++
					if i%4 != w {
						continue
					}
					switch i % 3 {
					case 0:
						l.Pay(ctx, id, user, "pay-"+user)
					case 1:
						l.Cancel(ctx, id, user)
					}
				}
			}
		})
	}
	wg.Wait()
	held := map[string]bool{}
	var most int
	for _, e := range testenv.Events(t, l) {
		switch e.Type {
		case ledger.EventWon, ledger.EventPromoted:
			held[e.OrderID] = true
		case ledger.EventCancelled, ledger.EventExpired:
			delete(held, e.OrderID)
		}
		if len(held) > units {
			t.Fatalf("%d units reserved or paid at %s, of %d", len(held), e.StreamID, units)
		}
		most = max(most, len(held))
	}
	check, err := l.VerifyDraw(ctx, "lot", drawSeed, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d promoted, %d lost; at most %d units held", check.Promoted, check.Lost, most)
	if check.Promoted == 0 {
		t.Fatalf("no promotion happened: the race was not run")
	}
}

// scriptCalls returns how many scripts rdb's server has run (EVALSHA and EVAL calls).
func scriptCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	stats, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, line := range strings.Split(stats, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:", "cmdstat_eval:"} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd+"calls="); ok {
				calls, _, _ := strings.Cut(rest, ",")
				c, _ := strconv.ParseInt(calls, 10, 64)
				n += c
			}
		}
	}
	return n
}

// Once purchase.lua has named an item a draw, its entries are one script call each
// (draw_enter.lua alone), with the same answers: a duplicate gets the entry, and once the
// sale is closed an entry is refused as closed, by this process and by a new one.
func TestDrawEntryOneScriptCall(t *testing.T) {
	l, rdb := newLedger(t)
	ctx := context.Background()
	newDraw(t, l, "lot", 5, time.Hour, time.Hour)
	first := enterAll(t, l, "lot", 1)
	before := scriptCalls(t, rdb)
	for i := 1; i <= 10; i++ {
		user := fmt.Sprintf("user-%d", i)
		if rc, err := l.Purchase(ctx, ledger.PurchaseRequest{RequestID: "r-" + user, UserID: user, ItemID: "lot", Quantity: 1}); err != nil || !rc.Registered || rc.Stock != 5 {
			t.Fatalf("enter %s: %+v %v", user, rc, err)
		}
	}
	if n := scriptCalls(t, rdb) - before; n != 10 {
		t.Fatalf("10 entries took %d script calls, want 10", n)
	}
	_, err := l.Purchase(ctx, ledger.PurchaseRequest{RequestID: "again", UserID: "user-0", ItemID: "lot", Quantity: 1})
	var dup *ledger.DuplicateError
	if !errors.As(err, &dup) || dup.OrderID != first["user-0"] {
		t.Fatalf("second entry of user-0: %v, want its entry %s", err, first["user-0"])
	}
	if _, err := l.CloseItem(ctx, "lot"); err != nil {
		t.Fatal(err)
	}
	other, err := ledger.Open(ctx, rdb, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*ledger.Ledger{l, other} {
		if _, err := h.Purchase(ctx, ledger.PurchaseRequest{RequestID: "late", UserID: "late", ItemID: "lot", Quantity: 1}); !errors.Is(err, ledger.ErrItemClosed) {
			t.Fatalf("entry into a closed sale: %v, want closed", err)
		}
	}
}

// A lost event lists its entries; one of a ledger written before that names its one entry;
// one with neither is malformed.
func TestDecodeLostEvents(t *testing.T) {
	l, _ := newLedger(t)
	p := l.Keys().Partition("lot")
	listed := l.DecodeEntry(p, "5-0", map[string]string{"v": "1", "type": "lost", "item_id": "lot", "orders": "1-2-0,1-3-0", "ts": "7"})[0]
	if listed.Malformed != nil || !slices.Equal(listed.Orders, []string{"1-2-0", "1-3-0"}) || listed.OrderID != "" {
		t.Fatalf("listed lost event: %+v", listed)
	}
	one := l.DecodeEntry(p, "6-0", map[string]string{"v": "1", "type": "lost", "order_id": "1-2-0", "item_id": "lot", "user_id": "u",
		"request_id": "r", "quantity": "1", "order_ts": "1", "ts": "7"})[0]
	if one.Malformed != nil || one.OrderID != "1-2-0" || one.Orders != nil || one.UserID != "u" {
		t.Fatalf("lost event of one entry: %+v", one)
	}
	if bad := l.DecodeEntry(p, "7-0", map[string]string{"v": "1", "type": "lost", "item_id": "lot", "ts": "7"})[0]; bad.Malformed == nil {
		t.Fatalf("lost event naming no entry decoded: %+v", bad)
	}
}

// TestDrawTimeFixedOnceDue: before its draw time a draw may be moved; once the time has come
// (by Redis's clock) a new time or commitment is refused and nothing changes.
func TestDrawTimeFixedOnceDue(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	at := newDraw(t, l, "fixed", 2, 300*time.Millisecond, time.Hour)
	later := at.Add(time.Hour)
	change := ledger.StockChange{Op: ledger.StockAdd, PayWithin: dur(time.Hour), DrawAt: &at, DrawCommit: ledger.SeedCommitment(drawSeed)}
	if _, err := l.SetStock(ctx, "fixed", change); err != nil {
		t.Fatalf("set the same draw time before it comes: %v", err)
	}
	waitRedisTime(t, l, at)
	change.DrawAt = &later
	if _, err := l.SetStock(ctx, "fixed", change); !errors.Is(err, ledger.ErrInvalid) {
		t.Fatalf("move the draw after its time: %v, want ErrInvalid", err)
	}
	change.DrawAt, change.DrawCommit = &at, ledger.SeedCommitment([]byte("another seed"))
	if _, err := l.SetStock(ctx, "fixed", change); !errors.Is(err, ledger.ErrInvalid) {
		t.Fatalf("change the commitment after the draw time: %v, want ErrInvalid", err)
	}
	it, err := l.Item(ctx, "fixed")
	if err != nil {
		t.Fatal(err)
	}
	if !it.DrawAt.Equal(at.Truncate(time.Millisecond)) || it.DrawCommit != ledger.SeedCommitment(drawSeed) {
		t.Fatalf("draw now at %v with %s, want %v with the first commitment", it.DrawAt, it.DrawCommit, at)
	}
	if _, err := l.RunDraw(ctx, "fixed", drawSeed, ledger.DrawOptions{}); err != nil {
		t.Fatalf("draw: %v", err)
	}
}
