package projector_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
	"github.com/flashsale/flashsale/tests/testenv"
)

// lines returns the rows of query, one line each.
func (e env) lines(t *testing.T, query string) string {
	t.Helper()
	rows, err := e.db.Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var item, status string
		var units, orders int64
		if err := rows.Scan(&item, &status, &units, &orders); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s %d %d\n", item, status, units, orders)
	}
	return b.String()
}

// totalsAgree fails unless item_totals hold exactly the rows' units and counts per item and
// status, and every row is counted under its status.
func (e env) totalsAgree(t *testing.T, stage string) {
	t.Helper()
	got := e.lines(t, "SELECT item_id, status, units, orders FROM item_totals WHERE units <> 0 OR orders <> 0 ORDER BY item_id, status")
	want := e.lines(t, "SELECT item_id, status, SUM(quantity), COUNT(*) FROM orders GROUP BY item_id, status ORDER BY item_id, status")
	if got != want || want == "" {
		t.Fatalf("%s: item_totals\n%swant the rows'\n%s", stage, got, want)
	}
	var off int
	if err := e.db.QueryRow("SELECT COUNT(*) FROM orders WHERE NOT (tally <=> status)").Scan(&off); err != nil || off != 0 {
		t.Fatalf("%s: %d rows counted under another status than theirs (%v)", stage, off, err)
	}
}

// TestItemTotalsFollowEveryWrite applies a sale's events (orders, a request conflict and its
// restock, reservations paid, cancelled by their buyer, expired and restocked) each twice, in
// shuffled order, from two writers at once as two consumers redelivered the same entries:
// item_totals always end as the rows' sums.
func TestItemTotalsFollowEveryWrite(t *testing.T) {
	e := newEnv(t)
	e.sale(t)
	reservationSale(t, e)
	e.waitSettled(t)
	e.totalsAgree(t, "projected")
	events := testenv.Events(t, e.l)
	store := projector.NewStore(e.db)
	for round := range 3 {
		for _, q := range []string{"DELETE FROM orders", "DELETE FROM item_totals"} {
			if _, err := e.db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		var wg sync.WaitGroup
		for range 2 {
			shuffled := append(append([]ledger.Event{}, events...), events...)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			wg.Go(func() {
				for i := 0; i < len(shuffled); i += 5 {
					for try := 0; ; try++ { // a deadlock between the two writers is retried
						_, err := store.Apply(context.Background(), shuffled[i:min(i+5, len(shuffled))])
						if err == nil {
							break
						}
						if try == 20 {
							t.Errorf("apply: %v", err)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		e.totalsAgree(t, fmt.Sprintf("round %d", round))
	}
}
