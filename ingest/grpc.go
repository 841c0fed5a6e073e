package ingest

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/flashsale/flashsale/ledger"
	pb "github.com/flashsale/flashsale/proto"
)

// NewGRPCServer returns a gRPC server offering OrderService backed by s, grpc.health.v1 and
// server reflection, with a message size limit, a handshake timeout and keepalive (idle
// connections closed after 5 minutes, dead peers found by pings; see limits.go); opts add
// Limits.GRPCOptions. OrderService requests are decoded strictly (see requestCodec); opts
// must not replace the server codec. The returned health server is SERVING; set it
// NOT_SERVING before a graceful stop.
func NewGRPCServer(s *Service, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	defaults := append(grpcKeepalive(),
		grpc.MaxRecvMsgSize(MaxBodyBytes),
		grpc.ConnectionTimeout(5*time.Second), // handshake, as ReadHeaderTimeout for HTTP
		grpc.ForceServerCodecV2(newRequestCodec()),
	)
	srv := grpc.NewServer(append(defaults, opts...)...)
	srv.RegisterService(strictService(&pb.OrderService_ServiceDesc), &grpcService{s: s})
	hs := health.NewServer()
	hs.SetServingStatus(pb.OrderService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}

type grpcService struct {
	pb.UnimplementedOrderServiceServer
	s *Service
}

// PurchaseRequest turns a gRPC purchase into the ledger's request.
func PurchaseRequest(in *pb.PurchaseRequest) ledger.PurchaseRequest {
	return ledger.PurchaseRequest{
		RequestID: in.GetRequestId(),
		UserID:    in.GetUserId(),
		ItemID:    in.GetItemId(),
		Quantity:  int64(in.GetQuantity()),
	}
}

func (g *grpcService) Purchase(ctx context.Context, in *pb.PurchaseRequest) (*pb.PurchaseResponse, error) {
	user, err := g.s.authenticate(authorization(ctx))
	if err != nil {
		return nil, g.status(ctx, "Purchase", g.s.grpc.refused(err))
	}
	req := PurchaseRequest(in)
	if err := claimUser(user, &req); err != nil {
		return nil, g.status(ctx, "Purchase", g.s.grpc.refused(err))
	}
	rc, err := g.s.purchase(ctx, g.s.grpc, req)
	if err != nil {
		return nil, g.status(ctx, "Purchase", err)
	}
	if rc.Registered {
		return &pb.PurchaseResponse{Success: true, Message: msgRegistered, OrderId: rc.OrderID}, nil
	}
	return &pb.PurchaseResponse{Success: true, Message: "order placed successfully", OrderId: rc.OrderID}, nil
}

func (g *grpcService) GetItem(ctx context.Context, in *pb.GetItemRequest) (*pb.Item, error) {
	it, err := g.s.ledger.Item(ctx, in.GetItemId())
	if err != nil {
		return nil, g.status(ctx, "GetItem", err)
	}
	out := &pb.Item{ItemId: it.ItemID, Stock: it.Stock, PerUserLimit: it.Limit}
	if !it.Start.IsZero() {
		out.StartsAtMs = it.Start.UnixMilli()
	}
	if !it.End.IsZero() {
		out.EndsAtMs = it.End.UnixMilli()
	}
	out.PayWithinMs = it.PayWithin.Milliseconds()
	return out, nil
}

func (g *grpcService) GetOrder(ctx context.Context, in *pb.GetOrderRequest) (*pb.Order, error) {
	if g.s.orders == nil {
		return nil, status.Error(codes.Unimplemented, "order lookup is not served by this process")
	}
	o, err := g.s.order(ctx, authorization(ctx), in.GetUserId(), in.GetOrderId())
	if err != nil {
		return nil, g.status(ctx, "GetOrder", err)
	}
	out := &pb.Order{
		OrderId: o.OrderID, RequestId: o.RequestID, UserId: o.UserID, ItemId: o.ItemID,
		Quantity: int32(o.Quantity), Status: o.Status, CreatedAtMs: o.CreatedAt.UnixMilli(),
	}
	if !o.PayBy.IsZero() {
		out.PayByMs = o.PayBy.UnixMilli()
	}
	return out, nil
}

// authorization returns the authorization metadata of the call.
func authorization(ctx context.Context) []string {
	md, _ := metadata.FromIncomingContext(ctx)
	return md.Get("authorization")
}

// status turns err into a gRPC status through the table; a duplicate carries the original
// order_id in its message and in a PurchaseResponse detail. Internal errors are logged once.
func (g *grpcService) status(ctx context.Context, method string, err error) error {
	code, msg, ok := grpcError(err)
	if !ok {
		g.s.log.ErrorContext(ctx, "rpc failed", "method", method, "err", err)
	}
	var dup *ledger.DuplicateError
	if !errors.As(err, &dup) {
		return status.Error(code, msg)
	}
	st := status.New(code, msg+": order_id "+dup.OrderID)
	if withDetail, derr := st.WithDetails(&pb.PurchaseResponse{Message: msg, OrderId: dup.OrderID}); derr == nil {
		st = withDetail
	}
	return st.Err()
}
