package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCloseOverHTTP: PUT /admin/items/{id} with "close":true (alone) closes the item; its
// purchases and stock changes are 410, GET /api/items/{id} says closed, and once the closed
// sale is cleaned a payment retried is 410.
func TestCloseOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startAdmin(t, "tok")
	setStock(t, e.l, "r", reserveStock(10, time.Minute))
	paid := purchase(t, c, base, "q1", "u1", "r", 2)
	pay := func() int {
		return mustSend(t, c, "POST", base+"/api/orders/"+paid+"/pay", []byte(`{"payment_ref":"ref-1","user_id":"u1"}`)).status
	}
	if got := pay(); got != http.StatusOK {
		t.Fatalf("pay: got %d, want 200", got)
	}
	before := snapshot(t, e.rdb)
	for _, body := range []string{`{"close":true,"stock":5}`, `{"close":false}`, `{"close":"yes"}`} {
		if code, b := adminDo(t, c, "PUT", base+"/admin/items/r", "tok", body); code != http.StatusBadRequest {
			t.Errorf("PUT %s: got %d %s, want 400", body, code, b)
		}
	}
	assertUnchanged(t, e.rdb, before)
	code, b := adminDo(t, c, "PUT", base+"/admin/items/r", "tok", `{"close":true}`)
	if code != http.StatusOK || !strings.Contains(string(b), `"status":"closed"`) {
		t.Fatalf("close: got %d %s, want 200 with status closed", code, b)
	}
	var item map[string]any
	if err := json.Unmarshal(mustSend(t, c, "GET", base+"/api/items/r", nil).body, &item); err != nil || item["status"] != "closed" || item["stock"] != float64(8) {
		t.Fatalf("GET item: %v (%v), want status closed and stock 8", item, err)
	}
	r := mustSend(t, c, "POST", base+"/api/purchase", purchaseJSON("q2", "u2", "r", 1))
	if rep, err := decodeReply(r); r.status != http.StatusGone || err != nil || rep.Message != "sale closed" {
		t.Fatalf("purchase of a closed item: got %d %s, want 410 sale closed", r.status, r.body)
	}
	if code, b := adminDo(t, c, "PUT", base+"/admin/items/r", "tok", `{"add":5}`); code != http.StatusGone {
		t.Fatalf("stock add on a closed item: got %d %s, want 410", code, b)
	}
	if got := pay(); got != http.StatusOK {
		t.Fatalf("payment retried before the cleanup: got %d, want 200 (the original success)", got)
	}
	// Everything projected through far past the close event: the sale is settled.
	if done, err := e.l.Cleanup(context.Background(), "r", "99999999999999-0"); err != nil || !done {
		t.Fatalf("cleanup: %v (%v)", done, err)
	}
	if got := pay(); got != http.StatusGone {
		t.Fatalf("payment retried after the cleanup: got %d, want 410", got)
	}
}
