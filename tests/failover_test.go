package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/tests/testenv"
)

// failoverFigures is what one failover run reports.
type failoverFigures struct {
	acked, found, lost, duplicated, oversold, leaked int
	unconfirmed                                      int // 503 answers (retried)
	mysqlOnly                                        int // orders in MySQL the ledger does not have
	gap                                              time.Duration
	audit                                            string
}

func (f failoverFigures) String() string {
	return fmt.Sprintf("acked %d, found %d, lost %d, duplicated %d, oversold %d, leaked units %d, 503s %d, in MySQL only %d, longest time without a sale %.1fs, audit: %s",
		f.acked, f.found, f.lost, f.duplicated, f.oversold, f.leaked, f.unconfirmed, f.mysqlOnly, f.gap.Seconds(), f.audit)
}

// TestChaosFailover sells under load through `flashsale serve`, kill -9s the Redis master that
// owns the busiest partition (cluster) or the primary (sentinel), lets the replica be
// promoted, restarts the killed node (it comes back as a replica) and counts what the clients
// were told against what the ledger and MySQL hold. With -min-replicas 1 no acknowledged order
// may be lost; with 0 the loss is reported. Never a duplicate, never an oversell.
func TestChaosFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts clusters and sentinels")
	}
	for _, tp := range []testenv.Topology{testenv.Cluster, testenv.Sentinel} {
		for _, min := range []int{1, 0} {
			if chaosScale(t) == 1 && (tp != testenv.Cluster || min != 1) {
				continue // make test runs one; make chaos (FLASHSALE_CHAOS_SCALE) all
			}
			t.Run(fmt.Sprintf("%s/min-replicas-%d", tp, min), func(t *testing.T) {
				f := runFailover(t, tp, min)
				t.Logf("%s -min-replicas %d: %s", tp, min, f)
				if f.duplicated != 0 || f.oversold != 0 {
					t.Errorf("duplicated %d, oversold %d; want 0", f.duplicated, f.oversold)
				}
				if min > 0 && (f.lost != 0 || f.mysqlOnly != 0 || f.leaked != 0) {
					t.Errorf("with -min-replicas %d: lost %d, in MySQL only %d, leaked %d; want 0", min, f.lost, f.mysqlOnly, f.leaked)
				}
			})
		}
	}
}

func runFailover(t *testing.T, tp testenv.Topology, minReplicas int) failoverFigures {
	ctx := context.Background()
	s := newStackOn(t, tp)
	env := s.env(s.dsn)
	items := itemsPerPartition(s.l, 1)
	const stock = 1_000_000
	for _, it := range items {
		s.setStock(t, it, stock)
	}
	hot := items[0]
	srv := startServe(t, s, s.dsn, "-consumer", "fo", "-min-replicas", fmt.Sprint(minReplicas), "-min-replicas-timeout", "500ms")

	// The node to kill: the master of the hot item's partition, or the primary.
	var victim *testenv.Redis
	switch tp {
	case testenv.Cluster:
		victim = s.target.ClusterSet.MasterOf(t, s.l.Keys().Events(s.l.Keys().Partition(hot)))
	default:
		victim = s.target.SentinelSet.Primary
	}

	c := newHTTPClient()
	c.Timeout = 5 * time.Second
	var mu sync.Mutex
	acked := map[string]string{} // request_id -> order_id
	var sales []time.Time
	unconfirmed := 0
	stop := make(chan struct{})
	var wg sync.WaitGroup
	workers := 16
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				item := hot
				if rand.IntN(2) == 0 {
					item = items[rand.IntN(len(items))]
				}
				req, user := fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf("u%d-%d", w, i)
				// Retry with the same request_id until the answer is final (or the run ends:
				// then the request was never acknowledged).
				for {
					status, r, err := purchaseHTTP(c, srv, req, user, item, 1)
					if err == nil && (status == http.StatusOK || status == http.StatusConflict) {
						mu.Lock()
						acked[req] = r.OrderID
						if status == http.StatusOK {
							sales = append(sales, time.Now())
						}
						mu.Unlock()
						break
					}
					if err == nil && status != http.StatusServiceUnavailable {
						t.Errorf("purchase %s: got %d %+v", req, status, r)
						return
					}
					if status == http.StatusServiceUnavailable {
						mu.Lock()
						unconfirmed++
						mu.Unlock()
					}
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
				}
			}
		})
	}
	scale := time.Duration(chaosScale(t))
	time.Sleep(1500 * time.Millisecond * scale)
	killedAt := time.Now()
	victim.Kill()
	time.Sleep(4 * time.Second) // the replica is promoted; the killed node stays away a while
	if err := victim.Start(); err != nil {
		t.Fatalf("restart the killed node: %v", err)
	}
	restarted := time.Now()
	// Sales go on: wait for the first sale after the restart (at most 30 s), then sell on.
	for time.Since(restarted) < 30*time.Second {
		mu.Lock()
		resumed := len(sales) > 0 && sales[len(sales)-1].After(restarted)
		mu.Unlock()
		if resumed {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second * scale)
	close(stop)
	ended := time.Now()
	wg.Wait()

	var f failoverFigures
	f.acked, f.unconfirmed = len(acked), unconfirmed
	slices.SortFunc(sales, func(a, b time.Time) int { return a.Compare(b) })
	var prev time.Time
	for _, at := range sales {
		if !prev.IsZero() && at.After(killedAt) {
			f.gap = max(f.gap, at.Sub(prev))
		}
		prev = at
	}
	if prev.Before(killedAt) {
		f.gap = ended.Sub(prev) // no sale since the kill
	}

	// The ledger, read through the topology's client once the failover is over.
	byReq := map[string][]ledger.Event{}
	sold := map[string]int64{}
	orders := s.ledgerOrders(t)
	for _, e := range orders {
		byReq[e.RequestID] = append(byReq[e.RequestID], e)
		sold[e.ItemID] += e.Quantity
	}
	for req, id := range acked {
		es := byReq[req]
		if len(es) == 0 || es[0].OrderID != id {
			f.lost++
		} else {
			f.found++
		}
	}
	for _, es := range byReq {
		if len(es) > 1 {
			f.duplicated++
		}
	}
	for _, it := range items {
		st, err := s.l.Item(ctx, it)
		if err != nil {
			t.Fatalf("item %s: %v", it, err)
		}
		if st.Stock < 0 || sold[it] > stock {
			f.oversold++
		}
		if d := stock - st.Stock - sold[it]; d != 0 {
			f.leaked += int(d)
		}
	}

	// MySQL catches up with the ledger; what it holds that the ledger lost is counted.
	want := len(orders)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && (s.countOrders(t) < want || !s.groupsSettled(t)) {
		time.Sleep(200 * time.Millisecond)
	}
	rows, err := s.db.Query("SELECT order_id FROM orders")
	if err != nil {
		t.Fatal(err)
	}
	inMySQL := 0
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		inMySQL++
		if _, ok := orders[id]; !ok {
			f.mysqlOnly++
		}
	}
	rows.Close()
	if inMySQL-f.mysqlOnly != want {
		t.Errorf("MySQL holds %d of the ledger's %d orders", inMySQL-f.mysqlOnly, want)
	}
	out, _, code := runCode(t, env, "audit")
	f.audit = fmt.Sprintf("exit %d", code)
	if strings.Contains(out, "clean") {
		f.audit += " clean"
	}
	return f
}
