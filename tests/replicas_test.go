package tests

import (
	"net/http"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/tests/testenv"
)

// TestServeMinReplicas runs `serve -min-replicas 1` on the sentinel set-up: a purchase is 200
// with the replica there; with the replica hung it is 503 "retry with the same request_id";
// once the replica is back the retry answers 409 with the order the first call placed.
func TestServeMinReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a sentinel set-up")
	}
	s := newStackOn(t, testenv.Sentinel)
	env := s.env(s.dsn)
	runCmd(t, env, "stock", "set", "phone", "10")
	srv := startServe(t, s, s.dsn, "-consumer", "mr", "-min-replicas", "1", "-min-replicas-timeout", "300ms")
	c := newHTTPClient()
	if status, r, err := purchaseHTTP(c, srv, "r1", "u1", "phone", 1); err != nil || status != http.StatusOK {
		t.Fatalf("with the replica: got %d %+v %v, want 200", status, r, err)
	}
	replica := s.target.SentinelSet.Replica
	replica.Pause()
	status, r, err := purchaseHTTP(c, srv, "r2", "u2", "phone", 1)
	replica.Resume()
	if err != nil || status != http.StatusServiceUnavailable || !strings.Contains(r.Message, "retry with the same request_id") {
		t.Fatalf("with the replica hung: got %d %+v %v, want 503 asking for a retry", status, r, err)
	}
	waitStatus := func(req, user string, want int) apiReply {
		t.Helper()
		var r apiReply
		var status int
		for range 50 {
			status, r, err = purchaseHTTP(c, srv, req, user, "phone", 1)
			if err == nil && status == want {
				return r
			}
			if status != http.StatusServiceUnavailable {
				break
			}
		}
		t.Fatalf("retry of %s: got %d %+v %v, want %d", req, status, r, err, want)
		return r
	}
	if r := waitStatus("r2", "u2", http.StatusConflict); r.OrderID == "" {
		t.Fatalf("retry: got %+v, want the order", r)
	}
	waitStatus("r3", "u3", http.StatusOK)
	if n := len(s.ledgerOrders(t)); n != 3 {
		t.Fatalf("%d orders in the ledger, want 3", n)
	}
}
