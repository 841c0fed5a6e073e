package main

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/flashsale/flashsale/proto"
)

// grpcTarget talks to OrderService over a few HTTP/2 connections; client i uses connection
// i mod len(conns), so the streams spread evenly.
type grpcTarget struct {
	conns   []*grpc.ClientConn
	clients []pb.OrderServiceClient
}

func dialGRPC(addr string, n int) (*grpcTarget, error) {
	g := &grpcTarget{}
	for range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			g.close()
			return nil, fmt.Errorf("grpc %s: %w", addr, err)
		}
		cc.Connect()
		g.conns = append(g.conns, cc)
		g.clients = append(g.clients, pb.NewOrderServiceClient(cc))
	}
	return g, nil
}

func (g *grpcTarget) purchase(ctx context.Context, client int, p purchase) (outcome, string) {
	c := g.clients[client%len(g.clients)]
	resp, err := c.Purchase(ctx, &pb.PurchaseRequest{
		RequestId: p.requestID, UserId: p.userID, ItemId: p.item, Quantity: int32(p.quantity),
	})
	if err != nil {
		return classifyGRPC(err), ""
	}
	if !resp.GetSuccess() || resp.GetOrderId() == "" {
		return outOther, ""
	}
	return outOK, resp.GetOrderId()
}

func (g *grpcTarget) pay(ctx context.Context, client int, orderID, user, ref string) payOutcome {
	_, err := g.clients[client%len(g.clients)].Pay(ctx, &pb.PayRequest{OrderId: orderID, PaymentRef: ref, UserId: user})
	switch status.Code(err) {
	case codes.OK:
		return payOK
	case codes.FailedPrecondition:
		if strings.Contains(status.Convert(err).Message(), "expired") {
			return payLate
		}
		return payRefused
	case codes.NotFound, codes.InvalidArgument:
		return payRefused
	}
	return payAmbiguous
}

// serverUnavailable starts the message flashsale sends with Unavailable when Redis cannot be
// asked; any other Unavailable comes from the client's own transport.
const serverUnavailable = "service unavailable"

// classifyGRPC maps a refused purchase to an outcome.
func classifyGRPC(err error) outcome {
	st, ok := status.FromError(err)
	if !ok {
		return outTransport
	}
	switch st.Code() {
	case codes.ResourceExhausted:
		return outSoldOut
	case codes.AlreadyExists:
		return outDuplicate
	case codes.FailedPrecondition:
		if strings.Contains(st.Message(), "limit") {
			return outLimit
		}
		return outClosed
	case codes.NotFound:
		return outNotFound
	case codes.InvalidArgument:
		return outBadRequest
	case codes.Unavailable:
		if strings.HasPrefix(st.Message(), serverUnavailable) {
			return outUnavailable
		}
		return outTransport
	case codes.DeadlineExceeded, codes.Canceled:
		return outTransport
	}
	return outOther
}

func (g *grpcTarget) stock(ctx context.Context, item string) (int64, error) {
	it, err := g.clients[0].GetItem(ctx, &pb.GetItemRequest{ItemId: item})
	if err != nil {
		return 0, fmt.Errorf("GetItem %s: %w", item, err)
	}
	return it.GetStock(), nil
}

func (g *grpcTarget) close() {
	for _, cc := range g.conns {
		cc.Close()
	}
}
