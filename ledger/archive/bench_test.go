package archive_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/flashsale/flashsale/ledger/archive"
)

// orderEntries returns n entries shaped like order events.
func orderEntries(n int) []archive.Entry {
	es := make([]archive.Entry, n)
	for i := range es {
		es[i] = archive.Entry{ID: fmt.Sprintf("1796000000%03d-%d", i/1000, i%1000), Fields: map[string]string{
			"v": "1", "type": "order", "request_id": fmt.Sprintf("req-%016d", i), "user_id": fmt.Sprintf("user-%08d", i%50000),
			"item_id": "sku-1234", "quantity": "1", "ts": "1796000000123",
		}}
	}
	return es
}

// BenchmarkWriteSegment writes segments of 10,000 order entries to a directory (fsync each)
// and reports the bytes an entry takes.
func BenchmarkWriteSegment(b *testing.B) {
	ctx := context.Background()
	a, err := archive.Open(ctx, "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	es := orderEntries(10_000)
	var size int64
	for i := 0; b.Loop(); i++ {
		name, err := a.WriteSegment(ctx, i, "0-0", es)
		if err != nil {
			b.Fatal(err)
		}
		st, _ := os.Stat(name)
		size = st.Size()
	}
	b.ReportMetric(float64(size)/float64(len(es)), "bytes/entry")
	b.ReportMetric(float64(b.N*len(es))/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkReadSegment reads (and verifies) a segment of 10,000 order entries.
func BenchmarkReadSegment(b *testing.B) {
	ctx := context.Background()
	a, err := archive.Open(ctx, "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	es := orderEntries(10_000)
	if _, err := a.WriteSegment(ctx, 0, "0-0", es); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		n := 0
		if err := a.Read(ctx, 0, "", func(archive.Entry) error { n++; return nil }); err != nil || n != len(es) {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.N*len(es))/b.Elapsed().Seconds(), "entries/s")
}
