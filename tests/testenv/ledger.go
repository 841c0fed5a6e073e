package testenv

import (
	"context"
	"strconv"
	"testing"

	"github.com/flashsale/flashsale/ledger"
)

// Events returns every event of every partition of l, in stream order per partition.
func Events(t testing.TB, l *ledger.Ledger) []ledger.Event {
	t.Helper()
	var all []ledger.Event
	for p := range l.Keys().Partitions() {
		after := ""
		for {
			evs, err := l.Range(context.Background(), p, after, 1000)
			if err != nil {
				t.Fatalf("range partition %d: %v", p, err)
			}
			if len(evs) == 0 {
				break
			}
			all = append(all, evs...)
			after = evs[len(evs)-1].StreamID
		}
	}
	return all
}

// SamePartition returns an item ID other than item, in item's partition: item followed by the
// first number that puts it there.
func SamePartition(k ledger.Keys, item string) string {
	for i := 0; ; i++ {
		if c := item + strconv.Itoa(i); k.Partition(c) == k.Partition(item) {
			return c
		}
	}
}
