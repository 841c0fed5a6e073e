package projector

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

func TestInsertRows(t *testing.T) {
	for _, tt := range []struct {
		cols, rows int
		want       string
	}{
		{1, 1, "H (?) T"},
		{3, 1, "H (?,?,?) T"},
		{2, 3, "H (?,?),(?,?),(?,?) T"},
	} {
		if got := insertRows("H ", tt.cols, tt.rows, " T"); got != tt.want {
			t.Errorf("insertRows(%d, %d): got %q, want %q", tt.cols, tt.rows, got, tt.want)
		}
	}
}

// TestApplyReusesTheOrdersInsert: batches of one size share one prepared INSERT, other sizes get
// their own up to the cap and beyond it are sent unprepared; every order is written either way.
func TestApplyReusesTheOrdersInsert(t *testing.T) {
	ctx := context.Background()
	_, db := testenv.MySQL(t)
	if _, err := Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	s := NewStore(db)
	n := 0
	apply := func(rows int) {
		t.Helper()
		events := make([]ledger.Event, rows)
		for i := range events {
			n++
			events[i] = ledger.Event{
				Type: ledger.EventOrder, OrderID: fmt.Sprintf("0-%d-0", n), RequestID: fmt.Sprintf("r%d", n),
				UserID: "u", ItemID: "a", Quantity: 1, Time: time.Now(),
			}
		}
		conflicts, err := s.Apply(ctx, events)
		if err != nil || len(conflicts) != 0 {
			t.Fatalf("apply %d orders: %v, conflicts %v", rows, err, conflicts)
		}
	}
	apply(3)
	apply(3)
	if len(s.inserts) != 1 {
		t.Fatalf("after two batches of 3: %d prepared inserts, want 1", len(s.inserts))
	}
	for rows := 1; rows <= maxInsertStatements+2; rows++ {
		apply(rows)
	}
	if len(s.inserts) != maxInsertStatements {
		t.Fatalf("%d prepared inserts, want the cap %d", len(s.inserts), maxInsertStatements)
	}
	var count int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM orders WHERE status = ?", ledger.StatusConfirmed).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("%d confirmed orders, want %d", count, n)
	}
}
