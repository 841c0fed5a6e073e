package ingest_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
)

func reserveStock(n int64, within time.Duration) ledger.StockChange {
	return ledger.StockChange{Op: ledger.StockSet, Quantity: n, PayWithin: &within}
}

type payBody struct {
	Success    bool       `json:"success"`
	Status     string     `json:"status"`
	OrderID    string     `json:"order_id"`
	PayBy      *time.Time `json:"pay_by"`
	PaidAt     *time.Time `json:"paid_at"`
	PaymentRef string     `json:"payment_ref"`
}

func TestHTTPPayAndCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base, c := e.startHTTP(t)
	setStock(t, e.l, "r", reserveStock(10, time.Minute))
	setStock(t, e.l, "free", stockSet(10))
	a := purchase(t, c, base, "q1", "u1", "r", 2)
	b := purchase(t, c, base, "q2", "u2", "r", 3)
	free := purchase(t, c, base, "q3", "u1", "free", 1)
	url := func(id, verb string) string { return base + "/api/orders/" + id + "/" + verb }

	steps := []struct {
		name, url, body string
		want            int
		status          string
	}{
		{"pay without a user", url(a, "pay"), `{"payment_ref":"pay-1"}`, http.StatusNotFound, ""},
		{"pay by another user", url(a, "pay"), `{"payment_ref":"pay-1","user_id":"u2"}`, http.StatusNotFound, ""},
		{"pay by a user of the same prefix", url(a, "pay"), `{"payment_ref":"pay-1","user_id":"u"}`, http.StatusNotFound, ""},
		{"pay", url(a, "pay"), `{"payment_ref":"pay-1","user_id":"u1"}`, http.StatusOK, "paid"},
		{"pay again, same ref", url(a, "pay"), `{"user_id":"u1","payment_ref":"pay-1"}`, http.StatusOK, "paid"},
		{"pay again, other ref", url(a, "pay"), `{"payment_ref":"pay-2","user_id":"u1"}`, http.StatusConflict, ""},
		{"cancel a paid order", url(a, "cancel"), `{"user_id":"u1"}`, http.StatusConflict, ""},
		{"cancel without a body", url(b, "cancel"), ``, http.StatusNotFound, ""},
		{"cancel without a user", url(b, "cancel"), `{}`, http.StatusNotFound, ""},
		{"cancel by another user", url(b, "cancel"), `{"user_id":"u1"}`, http.StatusNotFound, ""},
		{"cancel", url(b, "cancel"), `{"user_id":"u2"}`, http.StatusOK, "cancelled"},
		{"cancel again", url(b, "cancel"), `{"user_id":"u2"}`, http.StatusOK, "cancelled"},
		{"pay a cancelled order", url(b, "pay"), `{"payment_ref":"pay-3","user_id":"u2"}`, http.StatusGone, ""},
		{"order without payment rule", url(free, "pay"), `{"payment_ref":"pay-4","user_id":"u1"}`, http.StatusConflict, ""},
		{"order without payment rule, another user", url(free, "pay"), `{"payment_ref":"pay-4","user_id":"u2"}`, http.StatusNotFound, ""},
		{"cancel of an order without payment rule", url(free, "cancel"), `{"user_id":"u1"}`, http.StatusConflict, ""},
		{"unknown order", url("0-1-0", "pay"), `{"payment_ref":"pay-5","user_id":"u1"}`, http.StatusNotFound, ""},
		{"bad order id", url("x", "pay"), `{"payment_ref":"pay-5","user_id":"u1"}`, http.StatusBadRequest, ""},
		{"bad order id without a user", url("x", "cancel"), ``, http.StatusBadRequest, ""},
		{"missing ref", url(a, "pay"), `{"user_id":"u1"}`, http.StatusBadRequest, ""},
		{"empty ref", url(a, "pay"), `{"payment_ref":"","user_id":"u1"}`, http.StatusBadRequest, ""},
		{"ref too long", url(a, "pay"), `{"payment_ref":"` + strings.Repeat("x", 129) + `","user_id":"u1"}`, http.StatusBadRequest, ""},
		{"control character", url(a, "pay"), `{"payment_ref":"a\u0007","user_id":"u1"}`, http.StatusBadRequest, ""},
		{"control character in user_id", url(b, "cancel"), `{"user_id":"u2\u0007"}`, http.StatusBadRequest, ""},
		{"user_id not a string", url(b, "cancel"), `{"user_id":2}`, http.StatusBadRequest, ""},
		{"unknown key", url(a, "pay"), `{"payment_ref":"pay-1","user_id":"u1","x":1}`, http.StatusBadRequest, ""},
		{"key twice", url(a, "pay"), `{"payment_ref":"pay-1","payment_ref":"pay-1","user_id":"u1"}`, http.StatusBadRequest, ""},
		{"user_id twice", url(b, "cancel"), `{"user_id":"u1","user_id":"u2"}`, http.StatusBadRequest, ""},
		{"key in another case", url(a, "pay"), `{"Payment_Ref":"pay-1","user_id":"u1"}`, http.StatusBadRequest, ""},
		{"ref not a string", url(a, "pay"), `{"payment_ref":1,"user_id":"u1"}`, http.StatusBadRequest, ""},
		{"trailing data", url(a, "pay"), `{"payment_ref":"pay-1","user_id":"u1"} {}`, http.StatusBadRequest, ""},
		{"invalid UTF-8", url(a, "pay"), "{\"payment_ref\":\"\xff\",\"user_id\":\"u1\"}", http.StatusBadRequest, ""},
		{"cancel with a field", url(b, "cancel"), `{"user_id":"u2","reason":"x"}`, http.StatusBadRequest, ""},
	}
	for _, s := range steps {
		before := snapshot(t, e.rdb)
		r := mustSend(t, c, http.MethodPost, s.url, []byte(s.body))
		if r.status != s.want {
			t.Fatalf("%s: got %d %s, want %d", s.name, r.status, r.body, s.want)
		}
		if s.want != http.StatusOK {
			assertUnchanged(t, e.rdb, before)
			continue
		}
		var got payBody
		if err := json.Unmarshal(r.body, &got); err != nil || !got.Success || got.Status != s.status || got.PayBy == nil {
			t.Fatalf("%s: reply %s (%v)", s.name, r.body, err)
		}
		if s.status == "paid" && (got.PaymentRef != "pay-1" || got.PaidAt == nil) {
			t.Fatalf("%s: reply %s lacks the payment", s.name, r.body)
		}
	}
	it, _ := e.l.Item(context.Background(), "r")
	if it.Stock != 8 {
		t.Fatalf("stock %d, want 8 (2 paid, 3 cancelled and back)", it.Stock)
	}
	r := mustSend(t, c, http.MethodGet, base+"/api/items/r", nil)
	if !strings.Contains(string(r.body), `"pay_within":"1m0s"`) {
		t.Fatalf("item reply %s lacks pay_within", r.body)
	}
}

func TestHTTPPayOnlyByTheBuyer(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, newAuth(t, ingest.AuthConfig{PublicKeyPEM: publicPEM(t, &ecKey().PublicKey)}))
	base, c := e.startHTTP(t)
	setStock(t, e.l, "r", reserveStock(10, time.Minute))
	alice := sign(t, jwt.SigningMethodES256, ecKey(), "", claims("alice", nil))
	bob := sign(t, jwt.SigningMethodES256, ecKey(), "", claims("bob", nil))
	rc := buy(t, e.l, ledger.PurchaseRequest{RequestID: "q", UserID: "alice", ItemID: "r", Quantity: 1})
	for _, s := range []struct {
		token, verb, body string
		want              int
	}{
		{"", "pay", `{"payment_ref":"p"}`, http.StatusUnauthorized},
		{"", "pay", `{"payment_ref":"p","user_id":"alice"}`, http.StatusUnauthorized},
		{bob, "pay", `{"payment_ref":"p"}`, http.StatusNotFound},
		{bob, "pay", `{"payment_ref":"p","user_id":"alice"}`, http.StatusForbidden},
		{bob, "cancel", ``, http.StatusNotFound},
		{bob, "cancel", `{"user_id":"bob"}`, http.StatusNotFound},
		{alice, "pay", `{"payment_ref":"p","user_id":"alice"}`, http.StatusOK},
		{alice, "pay", `{"payment_ref":"p"}`, http.StatusOK},
	} {
		r, _ := sendAs(t, c, s.token, http.MethodPost, base+"/api/orders/"+rc.OrderID+"/"+s.verb, []byte(s.body))
		if r.status != s.want {
			t.Fatalf("%s with token %v: got %d %s, want %d", s.verb, s.token != "", r.status, r.body, s.want)
		}
	}
}

func TestGRPCPayAndCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.orderClient(t)
	ctx := context.Background()
	setStock(t, e.l, "r", reserveStock(10, time.Minute))
	a := buy(t, e.l, ledger.PurchaseRequest{RequestID: "q1", UserID: "u1", ItemID: "r", Quantity: 1})
	b := buy(t, e.l, ledger.PurchaseRequest{RequestID: "q2", UserID: "u2", ItemID: "r", Quantity: 1})
	for i := range 2 {
		res, err := client.Pay(ctx, &pb.PayRequest{OrderId: a.OrderID, PaymentRef: "ref", UserId: "u1"})
		if err != nil || res.GetStatus() != "paid" || res.GetPaidAtMs() == 0 || res.GetPayByMs() == 0 {
			t.Fatalf("pay %d: %v %v", i, res, err)
		}
	}
	for _, req := range []*pb.PayRequest{
		{OrderId: a.OrderID, PaymentRef: "ref"},
		{OrderId: a.OrderID, PaymentRef: "ref", UserId: "u2"},
	} {
		if _, err := client.Pay(ctx, req); status.Code(err) != codes.NotFound {
			t.Fatalf("pay as %q: got %v, want NotFound", req.GetUserId(), err)
		}
	}
	for _, req := range []*pb.CancelRequest{{OrderId: b.OrderID}, {OrderId: b.OrderID, UserId: "u1"}} {
		if _, err := client.Cancel(ctx, req); status.Code(err) != codes.NotFound {
			t.Fatalf("cancel as %q: got %v, want NotFound", req.GetUserId(), err)
		}
	}
	if _, err := client.Pay(ctx, &pb.PayRequest{OrderId: a.OrderID, PaymentRef: "other", UserId: "u1"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("pay with another ref: %v", err)
	}
	if res, err := client.Cancel(ctx, &pb.CancelRequest{OrderId: b.OrderID, UserId: "u2"}); err != nil || res.GetStatus() != "cancelled" {
		t.Fatalf("cancel: %v %v", res, err)
	}
	if _, err := client.Pay(ctx, &pb.PayRequest{OrderId: b.OrderID, PaymentRef: "ref", UserId: "u2"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("pay after cancel: %v", err)
	}
	if _, err := client.Pay(ctx, &pb.PayRequest{OrderId: "0-1-0", PaymentRef: "ref", UserId: "u1"}); status.Code(err) != codes.NotFound {
		t.Fatalf("pay of an unknown order: %v", err)
	}
	if _, err := client.Pay(ctx, &pb.PayRequest{OrderId: a.OrderID, UserId: "u1"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("pay without a ref: %v", err)
	}
	it, err := client.GetItem(ctx, &pb.GetItemRequest{ItemId: "r"})
	if err != nil || it.GetPayWithinMs() != 60000 || it.GetStock() != 9 {
		t.Fatalf("item %v (%v)", it, err)
	}
}

func TestGRPCPayOnlyByTheBuyer(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, newAuth(t, ingest.AuthConfig{HS256Secret: hsSecret}))
	client := e.orderClient(t)
	setStock(t, e.l, "r", reserveStock(10, time.Minute))
	rc := buy(t, e.l, ledger.PurchaseRequest{RequestID: "q", UserID: "alice", ItemID: "r", Quantity: 1})
	as := func(user string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "authorization",
			"Bearer "+sign(t, jwt.SigningMethodHS256, hsSecret, "", claims(user, nil)))
	}
	if _, err := client.Pay(context.Background(), &pb.PayRequest{OrderId: rc.OrderID, PaymentRef: "p"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("pay without a token: %v", err)
	}
	if _, err := client.Pay(as("bob"), &pb.PayRequest{OrderId: rc.OrderID, PaymentRef: "p"}); status.Code(err) != codes.NotFound {
		t.Fatalf("pay by bob: %v", err)
	}
	if _, err := client.Cancel(as("bob"), &pb.CancelRequest{OrderId: rc.OrderID}); status.Code(err) != codes.NotFound {
		t.Fatalf("cancel by bob: %v", err)
	}
	if _, err := client.Cancel(as("bob"), &pb.CancelRequest{OrderId: rc.OrderID, UserId: "alice"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("cancel by bob naming alice: %v", err)
	}
	if res, err := client.Cancel(as("alice"), &pb.CancelRequest{OrderId: rc.OrderID}); err != nil || res.GetStatus() != "cancelled" {
		t.Fatalf("cancel by alice: %v %v", res, err)
	}
}
