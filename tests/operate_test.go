package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// TestOperatorsRebuildAndAudit is the operators' day: a sale through serve, MySQL rebuilt from
// the ledger twice over, pending entries inspected, and the books audited and broken.
func TestOperatorsRebuildAndAudit(t *testing.T) { forTopologies(t, testOperatorsRebuildAndAudit) }

func testOperatorsRebuildAndAudit(t *testing.T, tp testenv.Topology) {
	ctx := context.Background()
	s := newStackOn(t, tp)
	env := s.env(s.dsn)
	items := itemsPerPartition(s.l, 1)
	for _, it := range items {
		runCmd(t, env, "stock", "set", it, "100")
	}
	srv := startServe(t, s, s.dsn, "-consumer", "ops")
	c := newHTTPClient()
	sold := 0
	for i := range 300 {
		status, _, err := purchaseHTTP(c, srv, fmt.Sprintf("r%d", i), fmt.Sprintf("u%d", i%17), items[i%len(items)], 1)
		if err != nil {
			t.Fatal(err)
		}
		if status == 200 {
			sold++
		}
	}
	s.waitDrained(t, sold, 30*time.Second)
	want := testenv.OrdersHash(t, s.db)

	// Replay -fresh refuses while the projector inside serve is live.
	if _, stderr, code := runCode(t, env, "replay", "-fresh"); code != 1 || !strings.Contains(stderr, "projectors are live (ops)") {
		t.Fatalf("replay -fresh with serve live: exit %d, %s; want exit 1 naming ops", code, stderr)
	}
	srv.signal(t, syscall.SIGTERM)
	if code, ok := srv.wait(15 * time.Second); !ok || code != 0 {
		t.Fatalf("serve after SIGTERM: exit %d (exited %v), want 0", code, ok)
	}
	out := runCmd(t, env, "replay", "-fresh", "-force")
	if !strings.Contains(out, fmt.Sprintf("(%d orders,", sold)) {
		t.Fatalf("replay summary %q does not count %d orders", out, sold)
	}
	if got := testenv.OrdersHash(t, s.db); got != want {
		t.Fatalf("after replay -fresh: got %s, want %s", got, want)
	}
	// MySQL lost: the table goes, migrate brings the schema back, replay the rows.
	for _, q := range []string{"DROP TABLE orders", "DELETE FROM schema_migrations"} {
		if _, err := s.db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	runCmd(t, env, "migrate")
	runCmd(t, env, "replay")
	runCmd(t, env, "replay") // twice changes nothing
	if got := testenv.OrdersHash(t, s.db); got != want {
		t.Fatalf("after drop + migrate + replay: got %s, want %s", got, want)
	}
	if out, _, code := runCode(t, env, "audit"); code != 0 || !strings.Contains(out, "clean") {
		t.Fatalf("audit after the rebuild: exit %d\n%s", code, out)
	}

	// A consumer that reads and never acknowledges shows up in pending, as a table and as JSON.
	p := s.l.Keys().Partition(items[0])
	if _, err := s.l.Purchase(ctx, ledger.PurchaseRequest{RequestID: "late", UserID: "u", ItemID: items[0], Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.l.ReadGroup(ctx, p, "projector", "stuck", ">", 10, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var rep ledger.PendingReport
	if err := json.Unmarshal([]byte(runCmd(t, env, "pending", "-json", "-consumer", "stuck")), &rep); err != nil {
		t.Fatalf("pending -json: %v", err)
	}
	if len(rep.Entries) != 1 || rep.Entries[0].RequestID != "late" || rep.Entries[0].Quantity != 2 || rep.Entries[0].Deliveries != 1 {
		t.Fatalf("pending -json: got %+v, want the late order held by stuck", rep.Entries)
	}
	if table := runCmd(t, env, "pending"); !strings.Contains(table, "stuck=1") || !strings.Contains(table, rep.Entries[0].OrderID) {
		t.Fatalf("pending table does not show the stuck entry:\n%s", table)
	}
	// While it is pending, the order missing from MySQL is in flight, not a violation.
	if out, _, code := runCode(t, env, "audit"); code != 0 || !strings.Contains(out, "not yet projected") {
		t.Fatalf("audit with an entry pending: exit %d\n%s", code, out)
	}
	if err := s.l.Ack(ctx, p, "projector", rep.Entries[0].StreamID); err != nil {
		t.Fatal(err)
	}
	// Acknowledged but never written: now the audit says so.
	if out, _, code := runCode(t, env, "audit"); code != 1 || !strings.Contains(out, "in the ledger but not in MySQL") {
		t.Fatalf("audit with an order lost from MySQL: exit %d\n%s", code, out)
	}
	runCmd(t, env, "replay")
	if _, _, code := runCode(t, env, "audit"); code != 0 {
		t.Fatalf("audit after replay: exit %d", code)
	}
	// A counter raised by hand.
	if err := s.rdb.IncrBy(ctx, s.l.Keys().Stock(items[1]), 5).Err(); err != nil {
		t.Fatal(err)
	}
	if out, _, code := runCode(t, env, "audit"); code != 1 || !strings.Contains(out, "item "+items[1]+": redis stock") {
		t.Fatalf("audit with a raised counter: exit %d\n%s", code, out)
	}
}
