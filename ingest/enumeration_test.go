package ingest_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
)

// TestOrderEnumerationFindsNothing is the guessing attack on order IDs in the default mode
// (no verified identity): three victims reserve units, and an attacker who knows the time to
// within 100 ms tries every `<partition>-<ms>-0` around it, over HTTP and gRPC, reading,
// paying and cancelling each guess with no user or with its own. Every guess must be
// answered as an order that does not exist, and nothing may change.
func TestOrderEnumerationFindsNothing(t *testing.T) {
	t.Parallel()
	f := newOrderFixture(t)
	base, c := f.startHTTP(t)
	client := f.orderClient(t)
	ctx := context.Background()
	setStock(t, f.l, "hot", reserveStock(10, time.Hour))
	// The stock event is an entry of the same stream: a victim's order in its millisecond
	// would get sequence 1.
	time.Sleep(3 * time.Millisecond)

	from := time.Now().Add(-100 * time.Millisecond)
	victims := map[string]string{} // order ID -> its user
	for i := range 3 {
		user := fmt.Sprintf("victim-%d", i)
		victims[purchase(t, c, base, "v-"+strconv.Itoa(i), user, "hot", 1)] = user
		time.Sleep(3 * time.Millisecond) // one order per millisecond: sequence 0
	}
	until := time.Now().Add(100 * time.Millisecond)
	it, err := f.l.Item(ctx, "hot")
	if err != nil || it.Stock != 7 {
		t.Fatalf("stock after the victims: %d (%v), want 7", it.Stock, err)
	}

	var guesses []string
	for p := range f.l.Keys().Partitions() {
		for ms := from.UnixMilli(); ms <= until.UnixMilli(); ms++ {
			guesses = append(guesses, fmt.Sprintf("%d-%d-0", p, ms))
		}
	}
	guessed := map[string]bool{}
	for _, g := range guesses {
		guessed[g] = true
	}
	for id := range victims {
		if !guessed[id] {
			t.Fatalf("victim order %s is not among the guesses", id)
		}
	}

	// Each attempt reports whether the reply gave the order away (found) and whether it was
	// anything but the answer for an order that does not exist (odd).
	type attempt func(id string) (found bool, odd string)
	httpDo := func(method, u, body string) (bool, string) {
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		r, err := send(c, method, u, b)
		if err != nil {
			return false, err.Error()
		}
		if r.status == http.StatusNotFound {
			return false, ""
		}
		found := r.status == http.StatusOK || r.status == http.StatusConflict || r.status == http.StatusGone
		return found, fmt.Sprintf("%s %s %s: %d %s", method, u, body, r.status, r.body)
	}
	grpcDo := func(name string, err error) (bool, string) {
		switch status.Code(err) {
		case codes.NotFound:
			return false, ""
		case codes.OK, codes.FailedPrecondition:
			return true, fmt.Sprintf("%s: %v", name, err)
		}
		return false, fmt.Sprintf("%s: %v", name, err)
	}
	attempts := []attempt{
		func(id string) (bool, string) { return httpDo(http.MethodGet, base+"/api/orders/"+id, "") },
		func(id string) (bool, string) { return httpDo(http.MethodPost, base+"/api/orders/"+id+"/cancel", "") },
		func(id string) (bool, string) {
			return httpDo(http.MethodPost, base+"/api/orders/"+id+"/cancel", `{"user_id":"mallory"}`)
		},
		func(id string) (bool, string) {
			return httpDo(http.MethodPost, base+"/api/orders/"+id+"/pay", `{"payment_ref":"m","user_id":"mallory"}`)
		},
		func(id string) (bool, string) {
			_, err := client.GetOrder(ctx, &pb.GetOrderRequest{OrderId: id, UserId: "mallory"})
			return grpcDo("GetOrder as mallory "+id, err)
		},
		func(id string) (bool, string) {
			_, err := client.Cancel(ctx, &pb.CancelRequest{OrderId: id})
			return grpcDo("Cancel "+id, err)
		},
	}

	before := snapshot(t, f.rdb)
	var (
		tries atomic.Int64
		mu    sync.Mutex
		found = map[string]bool{}
		odd   []string
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(guesses) {
					return
				}
				for _, try := range attempts {
					tries.Add(1)
					hit, why := try(guesses[i])
					if hit || why != "" {
						mu.Lock()
						if hit {
							found[guesses[i]] = true
						}
						if why != "" && len(odd) < 10 {
							odd = append(odd, why)
						}
						mu.Unlock()
					}
				}
			}
		})
	}
	wg.Wait()

	changed := 0
	for id, user := range victims {
		r, err := f.l.Reservation(ctx, id)
		if err != nil || r.State != ledger.StateReserved {
			changed++
			t.Errorf("victim %s's order %s: state %q (%v), want reserved", user, id, r.State, err)
		}
	}
	t.Logf("%d guesses, %d tries: %d orders found, %d changed", len(guesses), tries.Load(), len(found), changed)
	if len(found) != 0 || len(odd) != 0 {
		t.Errorf("the scan found %d orders, want 0; replies other than not found: %q", len(found), odd)
	}
	assertUnchanged(t, f.rdb, before)

	// The orders were there to find: each victim reads and cancels their own.
	for id, user := range victims {
		r := mustSend(t, c, http.MethodGet, base+"/api/orders/"+id+"?user_id="+user, nil)
		if r.status != http.StatusOK {
			t.Errorf("victim %s reads order %s: got %d %s, want 200", user, id, r.status, r.body)
		}
		r = mustSend(t, c, http.MethodPost, base+"/api/orders/"+id+"/cancel", []byte(`{"user_id":"`+user+`"}`))
		if r.status != http.StatusOK {
			t.Errorf("victim %s cancels order %s: got %d %s, want 200", user, id, r.status, r.body)
		}
	}
}
