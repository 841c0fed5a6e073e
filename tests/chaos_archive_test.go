package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
)

// TestChaosArchiverKill9 writes orders to the ledger without pause while two `flashsale
// project` processes archive it; one is killed with SIGKILL five times (0.7 s apart, times
// the chaos scale), each time with entries read but not yet written as a segment, and restarted under
// the same name. Afterwards every partition's archive reads exactly as its stream: no entry
// missing, none twice, in order, field for field.
func TestChaosArchiverKill9(t *testing.T) {
	ctx := context.Background()
	s := newStack(t)
	env, getenv := archiveEnv(t, s, false)
	items := itemsPerPartition(s.l, 1)
	for _, it := range items {
		s.setStock(t, it, ledger.MaxStock)
	}
	wctx, stop := context.WithCancel(ctx)
	var orders atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				_, err := s.l.Purchase(wctx, ledger.PurchaseRequest{
					RequestID: fmt.Sprintf("w%d-%d", w, i), UserID: "u" + strconv.Itoa(i%97), ItemID: items[i%len(items)], Quantity: 1,
				})
				if err == nil {
					orders.Add(1)
				} else if wctx.Err() == nil {
					t.Errorf("purchase: %v", err)
					return
				}
			}
		})
	}
	args := func(name string) []string {
		return []string{"project", "-consumer", name, "-archive-segment-age", "300ms", "-archive-lease", "1s"}
	}
	victim := startProcess(t, "project a", env, args("arch-a")...)
	startProcess(t, "project b", env, args("arch-b")...)
	a := openArchive(t, getenv)
	const kills = 5
	unarchived := 0
	for k := range kills {
		time.Sleep(scaled(t, 700*time.Millisecond))
		victim.kill()
		for p := range s.l.Keys().Partitions() { // what the archive did not hold at the kill
			th, err := a.Through(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := s.rdb.XRange(ctx, s.l.Keys().Events(p), "("+th, "+").Result()
			unarchived += len(n)
		}
		victim = startProcess(t, fmt.Sprintf("project a (%d)", k+2), env, args("arch-a")...)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	if unarchived == 0 {
		t.Fatal("every kill found the archive up to date: none landed mid-segment")
	}
	waitArchived(t, s, a, 60*time.Second)

	var entries, files, inFiles int
	for p := range s.l.Keys().Partitions() {
		var got []archive.Entry
		if err := a.Read(ctx, p, "", func(e archive.Entry) error { got = append(got, e); return nil }); err != nil {
			t.Fatal(err)
		}
		want := streamOf(t, s, p)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("partition %d: the archive reads %d entries, the stream holds %d; they differ (%s)", p, len(got), len(want), entryDiff(got, want))
		}
		entries += len(got)
		segs, _ := filepath.Glob(filepath.Join(trimFile(getenv("FLASHSALE_ARCHIVE")), fmt.Sprintf("p%04d", p), "*.seg"))
		files += len(segs)
		for _, f := range segs {
			b, _ := os.ReadFile(f)
			inFiles += countLines(b) - 2 // header and checksum lines
		}
	}
	t.Logf("archiver killed %d times while %d entries were not yet archived; %d orders, %d entries archived in %d segments, "+
		"0 missing, 0 duplicated as read (%d entries in the files: %d written twice by overlapping segments, each read once)",
		kills, unarchived, orders.Load(), entries, files, inFiles, inFiles-entries)
}

// streamOf returns partition p's stream as archive entries.
func streamOf(t *testing.T, s *stack, p int) []archive.Entry {
	t.Helper()
	msgs, err := s.rdb.XRange(context.Background(), s.l.Keys().Events(p), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]archive.Entry, 0, len(msgs))
	for _, m := range msgs {
		f := make(map[string]string, len(m.Values))
		for k, v := range m.Values {
			f[k] = v.(string)
		}
		out = append(out, archive.Entry{ID: m.ID, Fields: f})
	}
	return out
}

// entryDiff names the first entry where got and want part.
func entryDiff(got, want []archive.Entry) string {
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			return fmt.Sprintf("entry %d: got %s, want %s", i, got[i].ID, want[i].ID)
		}
	}
	return fmt.Sprintf("one is a prefix of the other at %d", min(len(got), len(want)))
}

func trimFile(u string) string { return u[len("file://"):] }

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}
