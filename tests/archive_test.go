package tests

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
	"github.com/flashsale/flashsale/tests/testenv"
)

// archiveEnv returns the stack's process environment with its archive (a temporary
// directory, or a prefix of a gofakes3 bucket with s3), and a getenv over it.
func archiveEnv(t *testing.T, s *stack, s3 bool) ([]string, func(string) string) {
	t.Helper()
	env := s.env(s.dsn)
	if s3 {
		srv := testenv.StartS3(t)
		env = append(env, srv.EnvList()...)
		env = append(env, "FLASHSALE_ARCHIVE=s3://"+srv.Bucket+"/ledger")
	}
	return env, func(k string) string {
		v := ""
		for _, kv := range env {
			if key, val, _ := strings.Cut(kv, "="); key == k {
				v = val // the last one counts, as for a process
			}
		}
		return v
	}
}

// openArchive opens, for reading, the archive the stack's processes use.
func openArchive(t *testing.T, getenv func(string) string) *archive.Archive {
	t.Helper()
	a, err := archive.OpenReader(context.Background(), getenv("FLASHSALE_ARCHIVE"), getenv)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitArchived waits until every partition's stream is archived up to its last entry and the
// archive group has acknowledged it; it returns the archived IDs.
func waitArchived(t *testing.T, s *stack, a *archive.Archive, timeout time.Duration) []string {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	through := make([]string, s.l.Keys().Partitions())
	for p := range through {
		for {
			last, err := s.rdb.XRevRangeN(ctx, s.l.Keys().Events(p), "+", "-", 1).Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(last) == 0 {
				through[p] = "0-0"
				break
			}
			th, err := a.Through(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			g, err := s.l.GroupInfo(ctx, p, archive.Group)
			if err != nil {
				t.Fatal(err)
			}
			if th == last[0].ID && g.Exists && g.Pending == 0 && g.Lag == 0 {
				through[p] = th
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition %d archived through %s (group %+v), stream ends at %s", p, th, g, last[0].ID)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return through
}

// activity writes a mix of every event type: stock sets and adds, orders, and on an item
// with a pay-within rule, payments and buyers' cancels. tag keeps request IDs apart.
func activity(t *testing.T, s *stack, tag string, items []string, payItem string) {
	t.Helper()
	ctx := context.Background()
	for _, it := range items {
		if _, err := s.l.SetStock(ctx, it, ledger.StockChange{Op: ledger.StockAdd, Quantity: 40}); err != nil {
			t.Fatal(err)
		}
	}
	s.placeOrdersTagged(t, tag, items, 120, 4)
	for i := range 12 {
		user := "payer-" + strconv.Itoa(i)
		rc, err := s.l.Purchase(ctx, ledger.PurchaseRequest{RequestID: tag + "-pay-" + strconv.Itoa(i), UserID: user, ItemID: payItem, Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			_, err = s.l.Pay(ctx, rc.OrderID, user, "ref-"+tag+strconv.Itoa(i))
		case 1:
			_, err = s.l.Cancel(ctx, rc.OrderID, user)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// placeOrdersTagged is placeOrders with request IDs of its own.
func (s *stack) placeOrdersTagged(t *testing.T, tag string, items []string, n, workers int) {
	t.Helper()
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < n; i += workers {
				_, err := s.l.Purchase(context.Background(), ledger.PurchaseRequest{
					RequestID: tag + "-" + strconv.Itoa(i), UserID: "user-" + strconv.Itoa(i), ItemID: items[i%len(items)], Quantity: 1,
				})
				if err != nil {
					errs <- fmt.Errorf("purchase %d: %w", i, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// dumpTables returns every row of orders, items and item_totals, every column but updated_at
// (the wall clock of the write, which no two runs share), in key order.
func dumpTables(t *testing.T, db *sql.DB) string {
	t.Helper()
	var out bytes.Buffer
	for _, tb := range []struct{ name, key string }{{"orders", "order_id"}, {"items", "item_id"}, {"item_totals", "item_id, status"}} {
		rows, err := db.Query("SELECT * FROM " + tb.name + " ORDER BY " + tb.key)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		n := 0
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, c := range cols {
				if c != "updated_at" {
					fmt.Fprintf(&out, "%s=%q ", c, vals[i])
				}
			}
			out.WriteByte('\n')
			n++
		}
		rows.Close()
		fmt.Fprintf(&out, "%s: %d rows\n", tb.name, n)
	}
	return out.String()
}

// replayInto replays into a new, empty database and returns its tables.
func replayInto(t *testing.T, env []string, extra ...string) string {
	t.Helper()
	dsn, db := testenv.MySQL(t)
	env = append(append([]string{}, env...), "FLASHSALE_MYSQL_DSN="+dsn)
	runCmd(t, env, "migrate")
	out := runCmd(t, env, append([]string{"replay", "-fresh"}, extra...)...)
	if !strings.Contains(out, "replayed") {
		t.Fatalf("replay: %s", out)
	}
	return dumpTables(t, db)
}

// TestReplayFromArchiveMatchesUntrimmedTwin: a ledger is archived by a running `project`,
// replayed whole from its stream (the twin), trimmed by hand up to what was archived
// (XTRIM MINID), and replayed again from archive plus retained stream into an empty database:
// the tables are identical. Replay without the archive refuses the trimmed stream.
func TestReplayFromArchiveMatchesUntrimmedTwin(t *testing.T) {
	for _, tt := range []struct {
		name string
		tp   testenv.Topology
		s3   bool
	}{{"single", testenv.Single, false}, {"cluster", testenv.Cluster, false}, {"s3", testenv.Single, true}} {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.tp != testenv.Single {
				t.Skip("-short")
			}
			testReplayFromArchive(t, tt.tp, tt.s3)
		})
	}
}

func testReplayFromArchive(t *testing.T, tp testenv.Topology, s3 bool) {
	ctx := context.Background()
	s := newStackOn(t, tp)
	env, getenv := archiveEnv(t, s, s3)
	items := itemsPerPartition(s.l, 2)
	payItem := items[0]
	d := time.Hour
	for _, it := range items {
		ch := ledger.StockChange{Op: ledger.StockSet, Quantity: 10}
		if it == payItem {
			ch.Quantity, ch.PayWithin = 100, &d
		}
		if _, err := s.l.SetStock(ctx, it, ch); err != nil {
			t.Fatal(err)
		}
	}
	activity(t, s, "a", items, payItem)
	proj := startProcess(t, "project", env, "project", "-consumer", "arch", "-archive-segment-age", "50ms")
	activity(t, s, "b", items, payItem) // while it archives
	a := openArchive(t, getenv)
	through := waitArchived(t, s, a, 60*time.Second)
	proj.signal(t, syscall.SIGTERM)
	if code, ok := proj.wait(15 * time.Second); !ok || code != 0 {
		t.Fatalf("project after SIGTERM: exit %d (exited %v), want 0", code, ok)
	}
	activity(t, s, "c", items, payItem) // retained only: never archived

	twin := replayInto(t, env, "-archive", "none")
	if !strings.Contains(twin, "\norders: 396 rows\n") { // 3 x (120 + 12) orders
		t.Fatalf("twin holds too little:\n%s", twin[max(len(twin)-200, 0):])
	}

	var before, after int64
	for p, th := range through {
		key := s.l.Keys().Events(p)
		n, _ := s.rdb.XLen(ctx, key).Result()
		before += n
		if err := s.rdb.XTrimMinID(ctx, key, th).Err(); err != nil {
			t.Fatal(err)
		}
		n, _ = s.rdb.XLen(ctx, key).Result()
		after += n
	}
	if after >= before/2 {
		t.Fatalf("trimming kept %d of %d entries; want most of them gone", after, before)
	}
	t.Logf("trimmed the streams from %d to %d entries", before, after)

	_, stderr, code := runCode(t, append(env, "FLASHSALE_MYSQL_DSN="+s.dsn), "replay", "-archive", "none")
	if code != 1 || !strings.Contains(stderr, "trimmed or deleted from the stream") || !strings.Contains(stderr, "no archive was given") {
		t.Fatalf("replay of a trimmed stream without the archive: exit %d, %s; want a refusal", code, stderr)
	}
	if got := replayInto(t, env); got != twin {
		t.Fatalf("replay from archive + stream differs from the untrimmed twin:\n%s", firstDiff(got, twin))
	}
	if s3 {
		return
	}

	// A damaged segment stops replay with its name, before any of its entries is written.
	dir := strings.TrimPrefix(getenv("FLASHSALE_ARCHIVE"), "file://")
	segs, _ := filepath.Glob(filepath.Join(dir, "p*", "*.seg"))
	if len(segs) == 0 {
		t.Fatalf("no segments under %s", dir)
	}
	victim := segs[len(segs)/2]
	b, _ := os.ReadFile(victim)
	b[len(b)/3] ^= 0x04
	os.WriteFile(victim, b, 0o644)
	_, stderr, code = runCode(t, append(env, "FLASHSALE_MYSQL_DSN="+s.dsn), "replay", "-fresh")
	if code != 1 || !strings.Contains(stderr, victim) || !strings.Contains(stderr, "checksum mismatch") {
		t.Fatalf("replay over a damaged segment: exit %d, %s; want exit 1 naming %s", code, stderr, victim)
	}
}

// firstDiff shows the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got  %s\n want %s", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(g), len(w))
}

// An archive that cannot be written refuses serve and project at start, in one line, before
// they serve or project anything.
func TestUnwritableArchiveRefusesToStart(t *testing.T) {
	s := newStack(t)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	for _, url := range []string{"file://" + file + "/archive", "s3://bucket/x", "ftp://host/x", "archive"} {
		for _, cmd := range [][]string{{"project"}, {"serve", "-http", "127.0.0.1:0", "-grpc", "127.0.0.1:0"}} {
			env := append(s.env(s.dsn), "FLASHSALE_ARCHIVE="+url, "AWS_ENDPOINT_URL=http://127.0.0.1:1", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=y")
			_, stderr, code := runCode(t, env, cmd...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			t.Logf("%s -archive %s: %s", cmd[0], url, last)
			if code != 1 || !strings.HasPrefix(last, "flashsale: archive") || strings.Contains(stderr, "listening") {
				t.Errorf("%s with -archive %s: exit %d, %q; want exit 1 and one line about the archive", cmd[0], url, code, stderr)
			}
		}
	}
}
