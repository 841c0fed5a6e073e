package ingest_test

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
)

// checkValid asserts what every request that passes validation must satisfy.
func checkValid(t *testing.T, r ledger.PurchaseRequest) {
	t.Helper()
	for _, id := range []string{r.RequestID, r.UserID, r.ItemID} {
		if id == "" || len(id) > 128 || !utf8.ValidString(id) {
			t.Fatalf("accepted bad id %q", id)
		}
		for _, c := range id {
			if c == utf8.RuneError || unicode.In(c, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
				t.Fatalf("accepted id %q with a control, format, separator or replacement character", id)
			}
		}
	}
	if ledger.ValidateItemID(r.ItemID) != nil {
		t.Fatalf("accepted item_id %q", r.ItemID)
	}
	if r.Quantity < 1 || r.Quantity > ledger.MaxQuantity {
		t.Fatalf("accepted quantity %d", r.Quantity)
	}
}

func FuzzDecodePurchase(f *testing.F) {
	f.Add([]byte(`{"request_id":"r-1","user_id":"alice","item_id":"demo","quantity":1}`))
	f.Add([]byte(`{"request_id":"r","user_id":"u","item_id":"a","quantity":1}{}`))
	f.Add([]byte(`{"REQUEST_ID":"r","user_id":"u","item_id":"a","quantity":1}`))
	f.Add([]byte(`{"request_id":"\ud800","user_id":"u","item_id":"a","quantity":1e2}`))
	f.Add([]byte("{\"request_id\":\"r\",\"user_id\":\"u\xff\",\"item_id\":\"a\",\"quantity\":1}"))
	f.Add([]byte(`[[[[{"quantity":-1}]]]]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ingest.DecodePurchase(body)
		if err != nil {
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("decoded a body that is not UTF-8: %q", body)
		}
		// What decodes must decode the same after a round trip through its canonical form.
		again, err := json.Marshal(map[string]any{"request_id": req.RequestID, "user_id": req.UserID, "item_id": req.ItemID, "quantity": req.Quantity})
		if err != nil {
			t.Fatal(err)
		}
		if req2, err := ingest.DecodePurchase(again); err != nil || req2 != req {
			t.Fatalf("round trip of %q: got %+v (%v), want %+v", body, req2, err, req)
		}
		if err := req.Validate(); err == nil {
			checkValid(t, req)
		} else if !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("validation error %v does not match ErrInvalid", err)
		}
	})
}

func FuzzGRPCPurchaseRequest(f *testing.F) {
	f.Add("r-1", "alice", "demo", int32(1))
	f.Add("", "u", "a", int32(0))
	f.Add("r", "u\x00", "a:b", int32(-1))
	f.Add("r", "u", "a", int32(2147483647))
	f.Fuzz(func(t *testing.T, requestID, userID, itemID string, quantity int32) {
		req := ingest.PurchaseRequest(&pb.PurchaseRequest{RequestId: requestID, UserId: userID, ItemId: itemID, Quantity: quantity})
		if err := req.Validate(); err == nil {
			checkValid(t, req)
		} else if !errors.Is(err, ledger.ErrInvalid) {
			t.Fatalf("validation error %v does not match ErrInvalid", err)
		}
	})
}
