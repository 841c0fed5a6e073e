package projector_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// TestAuditReportsTamperedTotals: Audit takes MySQL's books per item from item_totals, so a
// total changed by hand is a violation of its item, for Audit and AuditAll alike.
func TestAuditReportsTamperedTotals(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.sale(t)
	store := projector.NewStore(e.db)
	for _, tamper := range []struct{ status, break_, fix string }{
		{"confirmed", "units + 1", "units - 1"},
		{"cancelled", "units + 2", "units - 2"},
	} {
		if _, err := e.db.Exec("UPDATE item_totals SET units = "+tamper.break_+" WHERE item_id = 'a' AND status = ?", tamper.status); err != nil {
			t.Fatal(err)
		}
		for name, run := range map[string]func(context.Context, *ledger.Ledger, *projector.Store, string) (projector.AuditReport, error){
			"audit": projector.Audit, "audit -full": projector.AuditAll,
		} {
			rep, err := run(ctx, e.l, store, projector.DefaultGroup)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Violations) == 0 || rep.Violations[0].ItemID != "a" || !strings.Contains(rep.Violations[0].What, "item_totals") {
				t.Errorf("%s after %s totals changed: got %+v, want a violation of item a's item_totals", name, tamper.status, rep.Violations)
			}
		}
		if _, err := e.db.Exec("UPDATE item_totals SET units = "+tamper.fix+" WHERE item_id = 'a' AND status = ?", tamper.status); err != nil {
			t.Fatal(err)
		}
		if rep := e.audit(t); !rep.Clean() {
			t.Fatalf("after the fix: %+v", rep.Violations)
		}
	}
}

// TestAuditReadsNoRowBeforeTheCheckpoint: with most of the history trimmed behind the
// checkpoints, Audit reads only the order rows after them, and its books still add up;
// AuditAll reads every row, and catches a row before the checkpoint changed by hand, which
// Audit does not read.
func TestAuditReadsNoRowBeforeTheCheckpoint(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.setStock(t, "a", 1000)
	e.setStock(t, "b", 1000)
	var old []string
	for i := range 200 {
		old = append(old, e.buy(t, []string{"a", "b"}[i%2], fmt.Sprintf("u%d", i), fmt.Sprintf("old-%d", i), 1+int64(i%3)))
	}
	e.start(t, projector.Config{})
	e.archiveAll(t)
	e.waitSettled(t)
	r := e.retainer(t, 10*time.Millisecond)
	for try := 0; e.retained(t) > 2; try++ { // a and b keep the entry at their checkpoints
		if try == 200 {
			t.Fatalf("%d entries retained, want the history trimmed", e.retained(t))
		}
		time.Sleep(10 * time.Millisecond)
		if err := r.Round(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		e.buy(t, "a", fmt.Sprintf("u%d", i), fmt.Sprintf("new-%d", i), 1)
	}
	e.waitSettled(t)
	rep := e.audit(t)
	if !rep.Clean() || rep.OrderRows != 3 {
		t.Fatalf("audit: %+v, %d order rows read, want clean and the 3 after the checkpoint", rep.Violations, rep.OrderRows)
	}
	for _, it := range rep.Items {
		if it.Confirmed != it.Sold || it.CheckpointLive == 0 {
			t.Errorf("item %s: %+v, want MySQL's confirmed units equal to the sold ones, from a checkpoint", it.ItemID, it)
		}
	}
	all, err := projector.AuditAll(ctx, e.l, projector.NewStore(e.db), projector.DefaultGroup)
	if err != nil || !all.Clean() || all.OrderRows != 203 {
		t.Fatalf("audit -full: %+v, %d order rows read (%v), want clean and all 203", all.Violations, all.OrderRows, err)
	}

	if _, err := e.db.Exec("UPDATE orders SET status = 'cancelled' WHERE order_id = ?", old[7]); err != nil {
		t.Fatal(err)
	}
	if rep := e.audit(t); !rep.Clean() {
		t.Fatalf("audit of a row before the checkpoint changed by hand: %+v, want clean (the row is not read)", rep.Violations)
	}
	all, err = projector.AuditAll(ctx, e.l, projector.NewStore(e.db), projector.DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range all.Violations {
		found = found || (v.OrderID == old[7] && strings.Contains(v.What, "changed outside the projector"))
	}
	if !found {
		t.Fatalf("audit -full of a row before the checkpoint changed by hand: %+v, want it named", all.Violations)
	}
}
