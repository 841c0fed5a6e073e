package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/flashsale/flashsale/ledger"
)

func TestCompareIDs(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0},
		{"9-0", "10-0", -1}, // as strings "9-0" > "10-0"
		{"10-2", "10-10", -1},
		{"1795829822810-1", "1795829822810-0", 1},
		{"", "0-0", -1},
		{"", "", 0},
		{"junk", "0-1", -1},
		{"18446744073709551615-0", "1-0", 1},
	}
	for _, tt := range tests {
		if got := ledger.CompareIDs(tt.a, tt.b); got != tt.want {
			t.Errorf("CompareIDs(%q, %q): got %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := ledger.CompareIDs(tt.b, tt.a); got != -tt.want {
			t.Errorf("CompareIDs(%q, %q): got %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

// A snapshot's counters are the fold of its partition up to its last ID, while purchases run.
func TestSnapshotIsOneInstant(t *testing.T) {
	ctx := context.Background()
	l, _ := newLedger(t)
	setStock(t, l, "a", 100000)
	p := l.Keys().Partition("a")
	if snap, err := l.Snapshot(ctx, (p+1)%l.Keys().Partitions(), "g", []string{"a"}); !errors.Is(err, ledger.ErrInvalid) {
		t.Fatalf("snapshot of an item of another partition: got %+v, %v, want ErrInvalid", snap, err)
	}

	never := "never-set"
	for i := 0; l.Keys().Partition(never) != p; i++ {
		never = fmt.Sprintf("never-set-%d", i) // an item of a's partition that has no stock
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := buy(l, "a", "u", fmt.Sprintf("g%d-%d", g, i), 1); err != nil {
					t.Errorf("buy: %v", err)
					return
				}
			}
		})
	}
	defer wg.Wait()
	defer close(stop)
	for range 20 {
		snap, err := l.Snapshot(ctx, p, "g", []string{"a", never})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := snap.Stock[never]; ok || snap.GroupExists {
			t.Fatalf("snapshot: got %+v, want no counter for never-set and no group", snap)
		}
		var fold int64
		after := ""
		for {
			evs, err := l.RangeTo(ctx, p, after, snap.LastID, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			for _, e := range evs {
				if ledger.CompareIDs(e.StreamID, snap.LastID) > 0 {
					t.Fatalf("RangeTo %s returned %s", snap.LastID, e.StreamID)
				}
				switch e.Type {
				case ledger.EventStock:
					fold = e.Stock
				case ledger.EventOrder:
					fold -= e.Quantity
				}
			}
			after = evs[len(evs)-1].StreamID
		}
		if after != snap.LastID || snap.Stock["a"] != fold {
			t.Fatalf("snapshot at %s: counter %d, fold %d up to %s", snap.LastID, snap.Stock["a"], fold, after)
		}
	}
}
