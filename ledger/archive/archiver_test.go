package archive_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
	"github.com/flashsale/flashsale/tests/testenv"
)

// streamEntries returns partition p's stream as archive entries.
func streamEntries(t *testing.T, rdb redis.UniversalClient, l *ledger.Ledger, p int) []archive.Entry {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), l.Keys().Events(p), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var out []archive.Entry
	for _, m := range msgs {
		f := map[string]string{}
		for k, v := range m.Values {
			f[k] = v.(string)
		}
		out = append(out, archive.Entry{ID: m.ID, Fields: f})
	}
	return out
}

// waitArchived waits until the archive holds partition p through last and the group has
// acknowledged it.
func waitArchived(t *testing.T, a *archive.Archive, l *ledger.Ledger, rdb redis.UniversalClient, parts int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for p := range parts {
		last, _ := rdb.XRevRangeN(ctx, l.Keys().Events(p), "+", "-", 1).Result()
		if len(last) == 0 {
			continue
		}
		for {
			th, err := a.Through(ctx, p)
			groups, _ := rdb.XInfoGroups(ctx, l.Keys().Events(p)).Result()
			acked := false
			for _, g := range groups {
				acked = acked || (g.Name == archive.Group && g.LastDeliveredID == last[0].ID && g.Pending == 0)
			}
			if err == nil && th == last[0].ID && acked {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: archived through %s (%v), acknowledged %v; want %s", p, th, err, acked, last[0].ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestArchiversCopyEveryEntryOnce(t *testing.T) {
	ctx := context.Background()
	_, rdb := testenv.StartRedis(t)
	l, err := ledger.Open(ctx, rdb, ledger.Config{Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := openDir(t)
	add := func(n int) {
		for i := range n {
			item := fmt.Sprintf("item-%d", i%7)
			op := ledger.StockSet
			if i >= 7 {
				op = ledger.StockAdd
			}
			if _, err := l.SetStock(ctx, item, ledger.StockChange{Op: op, Quantity: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(200) // history before any archiver ran
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	reg := prometheus.NewRegistry()
	metrics := archive.NewMetrics(reg)
	for i := range 3 { // three at once: one holder per partition
		ar, err := archive.NewArchiver(a, l, archive.Config{
			Partitions: 3, Holder: fmt.Sprint("h", i), SegmentEntries: 50,
			SegmentAge: 30 * time.Millisecond, Poll: 20 * time.Millisecond, LeaseTTL: 300 * time.Millisecond,
			Metrics: metrics,
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { ar.Run(actx) })
		if i == 1 {
			add(300) // while they run
		}
	}
	waitArchived(t, a, l, rdb, 3)
	cancel()
	wg.Wait()
	var total int
	for p := range 3 {
		total += len(streamEntries(t, rdb, l, p))
	}
	if n := testutil.ToFloat64(metricOf(t, reg, "flashsale_archive_entries_total")); int(n) < total {
		t.Errorf("flashsale_archive_entries_total = %v, want at least the %d entries archived", n, total)
	}
	for p := range 3 {
		var got []archive.Entry
		if err := a.Read(ctx, p, "", func(e archive.Entry) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		if want := streamEntries(t, rdb, l, p); !reflect.DeepEqual(got, want) {
			t.Fatalf("partition %d: archive holds %d entries, stream %d; they differ", p, len(got), len(want))
		}
	}
}

// metricOf returns the collector registered on reg under name.
func metricOf(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: "copy"}, func() float64 {
				return mf.GetMetric()[0].GetCounter().GetValue()
			})
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
