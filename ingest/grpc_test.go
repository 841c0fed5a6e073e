package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
	"github.com/flashsale/flashsale/tests/testenv"
)

func TestGRPCPurchaseNeverOversells(t *testing.T) {
	t.Parallel()
	forTopologies(t, testGRPCPurchaseNeverOversells)
}

func testGRPCPurchaseNeverOversells(t *testing.T, tp testenv.Topology) {
	e := newEnvOn(t, tp)
	client := e.orderClient(t)
	ctx := context.Background()
	const stock, buyers = 40, 400
	setStock(t, e.l, "hot", stockSet(stock))

	won := sellOut(t, stock, buyers, func(req ledger.PurchaseRequest) (string, bool, string) {
		resp, err := client.Purchase(ctx, &pb.PurchaseRequest{
			RequestId: req.RequestID, UserId: req.UserID, ItemId: req.ItemID, Quantity: int32(req.Quantity),
		})
		switch {
		case err == nil && resp.GetSuccess() && resp.GetOrderId() != "":
			return resp.GetOrderId(), false, ""
		case status.Code(err) == codes.ResourceExhausted:
			return "", true, ""
		}
		return "", false, fmt.Sprintf("got %v, %v, want an order or %v", resp, err, codes.ResourceExhausted)
	})
	it, err := client.GetItem(ctx, &pb.GetItemRequest{ItemId: "hot"})
	if err != nil || it.GetStock() != 0 {
		t.Errorf("stock after sale: got %d (%v), want 0", it.GetStock(), err)
	}
	checkLedger(t, e.l, won)
}

func TestGRPCDuplicateReturnsOriginalOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.orderClient(t)
	ctx := context.Background()
	setStock(t, e.l, "a", stockSet(5))
	req := &pb.PurchaseRequest{RequestId: "once", UserId: "u1", ItemId: "a", Quantity: 2}

	first, err := client.Purchase(ctx, req)
	if err != nil || first.GetOrderId() == "" {
		t.Fatalf("first purchase: got %v, %v, want an order", first, err)
	}
	before := snapshot(t, e.rdb)
	_, err = client.Purchase(ctx, req)
	st := status.Convert(err)
	if st.Code() != codes.AlreadyExists {
		t.Fatalf("second purchase: got %v, want %v", err, codes.AlreadyExists)
	}
	if !strings.Contains(st.Message(), first.GetOrderId()) {
		t.Errorf("second purchase message: got %q, want it to contain %q", st.Message(), first.GetOrderId())
	}
	var detail *pb.PurchaseResponse
	for _, d := range st.Details() {
		if pr, ok := d.(*pb.PurchaseResponse); ok {
			detail = pr
		}
	}
	if detail == nil || detail.GetOrderId() != first.GetOrderId() {
		t.Errorf("second purchase detail: got %v in %v, want a PurchaseResponse with order_id %s", detail, st.Details(), first.GetOrderId())
	}
	assertUnchanged(t, e.rdb, before)
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		first.GetOrderId(): {RequestID: "once", UserID: "u1", ItemID: "a", Quantity: 2},
	})
}

func TestGRPCRequestIDOfAnotherUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.orderClient(t)
	ctx := context.Background()
	setStock(t, e.l, "a", stockSet(5))

	first, err := client.Purchase(ctx, &pb.PurchaseRequest{RequestId: "shared", UserId: "alice", ItemId: "a", Quantity: 2})
	if err != nil || first.GetOrderId() == "" {
		t.Fatalf("first purchase: got %v, %v, want an order", first, err)
	}
	before := snapshot(t, e.rdb)
	_, err = client.Purchase(ctx, &pb.PurchaseRequest{RequestId: "shared", UserId: "mallory", ItemId: "a", Quantity: 1})
	st := status.Convert(err)
	if st.Code() != codes.AlreadyExists || st.Message() != "request_id already used" {
		t.Fatalf("other user's purchase: got %v %q, want %v request_id already used", st.Code(), st.Message(), codes.AlreadyExists)
	}
	if len(st.Details()) != 0 {
		t.Errorf("other user's purchase details: got %v, want none", st.Details())
	}
	assertUnchanged(t, e.rdb, before)
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		first.GetOrderId(): {RequestID: "shared", UserID: "alice", ItemID: "a", Quantity: 2},
	})
}

func TestGRPCSoldOutDoesNotBurnRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.orderClient(t)
	ctx := context.Background()
	setStock(t, e.l, "a", stockSet(1))
	req := &pb.PurchaseRequest{RequestId: "later", UserId: "u1", ItemId: "a", Quantity: 2}

	if _, err := client.Purchase(ctx, req); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("purchase of 2 out of 1: got %v, want %v", err, codes.ResourceExhausted)
	}
	setStock(t, e.l, "a", ledger.StockChange{Op: ledger.StockAdd, Quantity: 1})
	resp, err := client.Purchase(ctx, req)
	if err != nil {
		t.Fatalf("purchase after restock: %v", err)
	}
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		resp.GetOrderId(): {RequestID: "later", UserID: "u1", ItemID: "a", Quantity: 2},
	})
}

func TestGRPCStatusCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.orderClient(t)
	limit := int64(1)
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	setStock(t, e.l, "a", stockSet(100))
	setStock(t, e.l, "gone", stockSet(0))
	setStock(t, e.l, "limited", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, Limit: &limit})
	setStock(t, e.l, "early", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, Start: &future})
	setStock(t, e.l, "late", ledger.StockChange{Op: ledger.StockSet, Quantity: 10, End: &past})
	buy(t, e.l, ledger.PurchaseRequest{RequestID: "lim-1", UserID: "u-lim", ItemID: "limited", Quantity: 1})
	dup := buy(t, e.l, ledger.PurchaseRequest{RequestID: "dup-1", UserID: "u-dup", ItemID: "a", Quantity: 1})

	purchase := func(req *pb.PurchaseRequest) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := client.Purchase(ctx, req)
			return err
		}
	}
	getItem := func(item string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := client.GetItem(ctx, &pb.GetItemRequest{ItemId: item})
			return err
		}
	}
	const missing = "missing required fields"
	tests := []struct {
		name        string
		call        func(context.Context) error
		wantCode    codes.Code
		wantMessage string // "" means any
	}{
		{"request_id missing", purchase(&pb.PurchaseRequest{UserId: "u", ItemId: "a", Quantity: 1}), codes.InvalidArgument, missing},
		{"user_id missing", purchase(&pb.PurchaseRequest{RequestId: "r", ItemId: "a", Quantity: 1}), codes.InvalidArgument, missing},
		{"item_id missing", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", Quantity: 1}), codes.InvalidArgument, missing},
		{"quantity 0", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "a"}), codes.InvalidArgument, missing},
		{"empty request", purchase(&pb.PurchaseRequest{}), codes.InvalidArgument, missing},
		{"quantity -1", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "a", Quantity: -1}), codes.InvalidArgument, ""},
		{"quantity 101", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "a", Quantity: 101}), codes.InvalidArgument, ""},
		{"item_id with colon", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "a:b", Quantity: 1}), codes.InvalidArgument, ""},
		{"item_id 65 chars", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: strings.Repeat("a", 65), Quantity: 1}), codes.InvalidArgument, ""},
		{"request_id 129 bytes", purchase(&pb.PurchaseRequest{RequestId: strings.Repeat("r", 129), UserId: "u", ItemId: "a", Quantity: 1}), codes.InvalidArgument, ""},
		{"user_id control character", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u\x01", ItemId: "a", Quantity: 1}), codes.InvalidArgument, ""},
		{"unknown item", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "nope", Quantity: 1}), codes.NotFound, "item not found"},
		{"duplicate", purchase(&pb.PurchaseRequest{RequestId: "dup-1", UserId: "u-dup", ItemId: "a", Quantity: 1}), codes.AlreadyExists, "duplicate request: order_id " + dup.OrderID},
		{"sold out", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "gone", Quantity: 1}), codes.ResourceExhausted, "sold out"},
		{"limit reached", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u-lim", ItemId: "limited", Quantity: 1}), codes.FailedPrecondition, "purchase limit reached"},
		{"not started", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "early", Quantity: 1}), codes.FailedPrecondition, "sale has not started"},
		{"ended", purchase(&pb.PurchaseRequest{RequestId: "r", UserId: "u", ItemId: "late", Quantity: 1}), codes.FailedPrecondition, "sale has ended"},
		{"GetItem unknown item", getItem("nope"), codes.NotFound, "item not found"},
		{"GetItem bad item id", getItem("a:b"), codes.InvalidArgument, ""},
		{"GetItem empty item id", getItem(""), codes.InvalidArgument, ""},
		{"GetOrder without order lookup", func(ctx context.Context) error {
			_, err := client.GetOrder(ctx, &pb.GetOrderRequest{OrderId: dup.OrderID})
			return err
		}, codes.Unimplemented, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, e.rdb)
			st := status.Convert(tt.call(context.Background()))
			if st.Code() != tt.wantCode {
				t.Errorf("code: got %v (%q), want %v", st.Code(), st.Message(), tt.wantCode)
			}
			if tt.wantMessage != "" && st.Message() != tt.wantMessage {
				t.Errorf("message: got %q, want %q", st.Message(), tt.wantMessage)
			}
			if st.Message() == "" || st.Message() == "internal error" {
				t.Errorf("message: got %q, want a client-facing reason", st.Message())
			}
			assertUnchanged(t, e.rdb, before)
		})
	}
}

func TestGRPCGetItem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.orderClient(t)
	limit := int64(2)
	start, end := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	setStock(t, e.l, "windowed", ledger.StockChange{Op: ledger.StockSet, Quantity: 7, Limit: &limit, Start: &start, End: &end})
	setStock(t, e.l, "open", stockSet(3))
	buy(t, e.l, ledger.PurchaseRequest{RequestID: "r", UserID: "u", ItemID: "windowed", Quantity: 2})

	tests := []struct {
		item string
		want *pb.Item
	}{
		{"windowed", &pb.Item{ItemId: "windowed", Stock: 5, PerUserLimit: 2, StartsAtMs: start.UnixMilli(), EndsAtMs: end.UnixMilli()}},
		{"open", &pb.Item{ItemId: "open", Stock: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.item, func(t *testing.T) {
			got, err := client.GetItem(context.Background(), &pb.GetItemRequest{ItemId: tt.item})
			if err != nil {
				t.Fatalf("GetItem: %v", err)
			}
			if got.GetItemId() != tt.want.GetItemId() || got.GetStock() != tt.want.GetStock() ||
				got.GetPerUserLimit() != tt.want.GetPerUserLimit() ||
				got.GetStartsAtMs() != tt.want.GetStartsAtMs() || got.GetEndsAtMs() != tt.want.GetEndsAtMs() {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn := e.startGRPC(t)
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(),
		&healthpb.HealthCheckRequest{Service: "flashsale.OrderService"})
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if got := resp.GetStatus(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health of flashsale.OrderService: got %v, want %v", got, healthpb.HealthCheckResponse_SERVING)
	}
}

func TestGRPCReflection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn := e.startGRPC(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("reflection stream: %v", err)
	}
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	})
	if err != nil {
		t.Fatalf("send list services: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("receive list services: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"flashsale.OrderService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("services: got %v, want %s among them", names, want)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("close send: %v", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after close: got %v, want %v", err, io.EOF)
	}
}

// wireBytes is a request already encoded, sent as is by wireCodec.
type wireBytes []byte

// wireCodec is the client-side proto codec, except that it sends a wireBytes unchanged: bytes
// that protobuf-go would refuse to marshal, or that a client with other types would send.
type wireCodec struct{ encoding.CodecV2 }

func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(wireBytes); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// wire encodes fields: a string or []byte as a length-delimited field, a uint64 as a varint.
func wire(fields ...any) wireBytes {
	var b []byte
	for i := 0; i < len(fields); i += 2 {
		num := protowire.Number(fields[i].(int))
		switch v := fields[i+1].(type) {
		case string:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendString(b, v)
		case []byte:
			b = protowire.AppendTag(b, num, protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		case uint64:
			b = protowire.AppendTag(b, num, protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
	}
	return b
}

// TestGRPCDecodesLikeHTTP sends requests as raw protobuf bytes: what HTTP refuses as a bad
// request (a quantity beyond 32 bits, a string that is not UTF-8) gRPC refuses as
// InvalidArgument, without truncating the number or answering Internal, and changes nothing.
func TestGRPCDecodesLikeHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	conn := e.startGRPC(t)
	setStock(t, e.l, "a", stockSet(10))
	codec := grpc.ForceCodecV2(wireCodec{encoding.GetCodecV2("proto")})
	call := func(method string, in wireBytes, out proto.Message) error {
		return conn.Invoke(context.Background(), "/flashsale.OrderService/"+method, in, out, codec)
	}
	purchase := func(quantity uint64, userID any) wireBytes {
		return wire(1, "r-wire", 2, userID, 3, "a", 4, quantity)
	}
	minusOne := uint64(math.MaxUint64) // int32 -1, sign-extended as protobuf sends it

	tests := []struct {
		name     string
		method   string
		in       wireBytes
		wantCode codes.Code
		wantMsg  string // "" means any
	}{
		{"quantity 2^32+1", "Purchase", purchase(1<<32+1, "u"), codes.InvalidArgument, "invalid request: quantity is out of range"},
		{"quantity 2^31", "Purchase", purchase(1<<31, "u"), codes.InvalidArgument, "invalid request: quantity is out of range"},
		{"quantity 2^63", "Purchase", purchase(1<<63, "u"), codes.InvalidArgument, "invalid request: quantity is out of range"},
		{"quantity -1", "Purchase", purchase(minusOne, "u"), codes.InvalidArgument, "invalid request: quantity must be between 1 and 100"},
		{"user_id not UTF-8", "Purchase", purchase(1, []byte("u\xff")), codes.InvalidArgument, "invalid request: user_id is not valid UTF-8"},
		{"request_id not UTF-8", "Purchase", wire(1, []byte{0xc3}, 2, "u", 3, "a", 4, uint64(1)), codes.InvalidArgument, "invalid request: request_id is not valid UTF-8"},
		{"truncated", "Purchase", purchase(1, "u")[:5], codes.InvalidArgument, "invalid request: malformed message"},
		{"GetItem item_id not UTF-8", "GetItem", wire(1, []byte("a\xff")), codes.InvalidArgument, "invalid request: item_id is not valid UTF-8"},
		{"GetOrder order_id not UTF-8", "GetOrder", wire(1, []byte("0-1-0\xff")), codes.InvalidArgument, "invalid request: order_id is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, e.rdb)
			st := status.Convert(call(tt.method, tt.in, &pb.PurchaseResponse{}))
			if st.Code() != tt.wantCode || (tt.wantMsg != "" && st.Message() != tt.wantMsg) {
				t.Errorf("got %v %q, want %v %q", st.Code(), st.Message(), tt.wantCode, tt.wantMsg)
			}
			assertUnchanged(t, e.rdb, before)
		})
	}

	// The same bytes with a quantity that fits buy, so the refusals above are the checks'.
	var out pb.PurchaseResponse
	if err := call("Purchase", purchase(2, "u"), &out); err != nil || out.GetOrderId() == "" {
		t.Fatalf("purchase of 2 as raw bytes: got %v, %v, want an order", &out, err)
	}
	checkLedger(t, e.l, map[string]ledger.PurchaseRequest{
		out.GetOrderId(): {RequestID: "r-wire", UserID: "u", ItemID: "a", Quantity: 2},
	})
}
