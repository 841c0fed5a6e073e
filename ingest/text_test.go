package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
)

// invisibleTexts are strings that do not show what they hold: Unicode format characters (Cf:
// bidi overrides and isolates, zero-width characters, the BOM, soft hyphen) and the line and
// paragraph separators (Zl, Zp), alone or around visible text.
var invisibleTexts = []string{
	"\u202e\u200bevil\u2028", // right-to-left override, zero-width space, line separator
	"\u202e\u2028",
	"evil\u2029",      // paragraph separator
	"a\u200db",        // zero-width joiner
	"\ufeffbom",       // byte order mark
	"soft\u00adhyph",  // soft hyphen
	"\u2066iso\u2069", // left-to-right isolate, pop directional isolate
	"tag\U000e0041",   // tag character
}

// TestInvisibleTextRefused: request_id, user_id and payment_ref holding invisible characters
// are refused over HTTP (400) and gRPC (InvalidArgument) with nothing changed, while visible
// text beyond ASCII is accepted.
func TestInvisibleTextRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	client := e.orderClient(t)
	ctx := context.Background()
	setStock(t, e.l, "a", reserveStock(100, time.Hour))
	own := buy(t, e.l, ledger.PurchaseRequest{RequestID: "r", UserID: "u", ItemID: "a", Quantity: 1}).OrderID

	for _, text := range invisibleTexts {
		str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
		httpCalls := map[string][2]string{
			"purchase user_id":    {"/api/purchase", `{"request_id":"r1","user_id":` + str(text) + `,"item_id":"a","quantity":1}`},
			"purchase request_id": {"/api/purchase", `{"request_id":` + str(text) + `,"user_id":"u","item_id":"a","quantity":1}`},
			"pay payment_ref":     {"/api/orders/" + own + "/pay", `{"payment_ref":` + str(text) + `,"user_id":"u"}`},
			"pay user_id":         {"/api/orders/" + own + "/pay", `{"payment_ref":"p","user_id":` + str(text) + `}`},
			"cancel user_id":      {"/api/orders/" + own + "/cancel", `{"user_id":` + str(text) + `}`},
		}
		for name, call := range httpCalls {
			before := snapshot(t, e.rdb)
			r := mustSend(t, c, http.MethodPost, base+call[0], []byte(call[1]))
			if r.status != http.StatusBadRequest {
				t.Errorf("HTTP %s %q: got %d %s, want 400", name, text, r.status, r.body)
			}
			assertUnchanged(t, e.rdb, before)
		}
		grpcCalls := map[string]func() error{
			"Purchase user_id": func() error {
				_, err := client.Purchase(ctx, &pb.PurchaseRequest{RequestId: "r1", UserId: text, ItemId: "a", Quantity: 1})
				return err
			},
			"Purchase request_id": func() error {
				_, err := client.Purchase(ctx, &pb.PurchaseRequest{RequestId: text, UserId: "u", ItemId: "a", Quantity: 1})
				return err
			},
			"Pay payment_ref": func() error {
				_, err := client.Pay(ctx, &pb.PayRequest{OrderId: own, PaymentRef: text, UserId: "u"})
				return err
			},
			"Pay user_id": func() error {
				_, err := client.Pay(ctx, &pb.PayRequest{OrderId: own, PaymentRef: "p", UserId: text})
				return err
			},
			"Cancel user_id": func() error {
				_, err := client.Cancel(ctx, &pb.CancelRequest{OrderId: own, UserId: text})
				return err
			},
		}
		for name, call := range grpcCalls {
			before := snapshot(t, e.rdb)
			if err := call(); status.Code(err) != codes.InvalidArgument {
				t.Errorf("gRPC %s %q: got %v, want InvalidArgument", name, text, err)
			}
			assertUnchanged(t, e.rdb, before)
		}
	}

	// Visible text beyond ASCII is fine, on both transports.
	purchase(t, c, base, "r-é", "ユーザー😀", "a", 1)
	if _, err := client.Purchase(ctx, &pb.PurchaseRequest{RequestId: "r-ü", UserId: "ünïcødé ok", ItemId: "a", Quantity: 1}); err != nil {
		t.Errorf("gRPC purchase with visible Unicode: %v", err)
	}
	if _, err := client.Pay(ctx, &pb.PayRequest{OrderId: own, PaymentRef: "réf-€", UserId: "u"}); err != nil {
		t.Errorf("gRPC pay with a visible Unicode payment_ref: %v", err)
	}
}
