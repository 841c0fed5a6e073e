package ingest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/tap"
)

// Limits bound what one process takes on at once, so that overload is turned away early and
// cheaply instead of piling up goroutines and memory. A zero field means no limit.
type Limits struct {
	// GRPCMaxStreams caps the concurrent streams of one gRPC connection; the server refuses
	// more (REFUSED_STREAM) and tells clients the cap in its SETTINGS.
	GRPCMaxStreams int
	// GRPCRecvTimeout is how long a gRPC stream may take, once opened, to deliver its first
	// message (a unary RPC's request); a stream that sends nothing is then cancelled.
	GRPCRecvTimeout time.Duration
	// MaxConns caps the connections served at once on each listener (HTTP and gRPC); more wait
	// to be accepted.
	MaxConns int
	// MaxInFlight caps the HTTP requests handled at once; beyond it a request is answered 503
	// with Retry-After at once (see LimitInFlight).
	MaxInFlight int
}

// DefaultLimits returns the limits of serve and ingest unless flags say otherwise.
func DefaultLimits() Limits {
	return Limits{GRPCMaxStreams: 128, GRPCRecvTimeout: 10 * time.Second, MaxConns: 4096, MaxInFlight: 1024}
}

// Validate refuses negative limits.
func (l Limits) Validate() error {
	if l.GRPCMaxStreams < 0 || l.GRPCRecvTimeout < 0 || l.MaxConns < 0 || l.MaxInFlight < 0 {
		return fmt.Errorf("limits %+v: want none negative", l)
	}
	return nil
}

// Keepalive of gRPC connections: the server pings a connection silent for grpcPingAfter and
// closes it when the ping is not answered within grpcPingTimeout (a peer gone without a FIN
// holds no streams for long); it closes connections idle (no stream) for grpcMaxIdle; and it
// closes a connection whose client pings more often than every grpcMinPing (too_many_pings).
const (
	grpcPingAfter   = time.Minute
	grpcPingTimeout = 20 * time.Second
	grpcMaxIdle     = 5 * time.Minute
	grpcMinPing     = 10 * time.Second
)

// grpcKeepalive are the keepalive options every server of NewGRPCServer has.
func grpcKeepalive() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: grpcMaxIdle, Time: grpcPingAfter, Timeout: grpcPingTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: grpcMinPing, PermitWithoutStream: true}),
	}
}

// GRPCOptions returns the server options that apply l to a gRPC server; pass them to
// NewGRPCServer, once.
func (l Limits) GRPCOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if l.GRPCMaxStreams > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(l.GRPCMaxStreams)))
	}
	if l.GRPCRecvTimeout > 0 {
		opts = append(opts,
			grpc.InTapHandle(recvDeadline(l.GRPCRecvTimeout)),
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				received(ctx) // an interceptor runs once the request is decoded
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				defer received(ss.Context())
				return h(srv, recvStream{ss})
			}),
		)
	}
	return opts
}

// errNoRequest is the cause of a stream cancelled for sending nothing in time.
var errNoRequest = errors.New("no request received in time")

// recvDeadline returns a tap that gives every new stream a context cancelled after d unless
// received calls it off first. A deadline (WithTimeout) could not be called off, and would
// also bound the work after the request arrived, which is not this limit's business.
func recvDeadline(d time.Duration) tap.ServerInHandle {
	return func(ctx context.Context, _ *tap.Info) (context.Context, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		return &recvCtx{Context: ctx, timer: time.AfterFunc(d, func() { cancel(errNoRequest) })}, nil
	}
}

// recvCtx is a stream's context with a receive deadline. Cancelled by it, its Err is
// context.DeadlineExceeded, so that grpc answers DEADLINE_EXCEEDED rather than CANCELLED.
type recvCtx struct {
	context.Context
	timer *time.Timer
}

type recvCtxKey struct{}

func (c *recvCtx) Err() error {
	err := c.Context.Err()
	if err != nil && errors.Is(context.Cause(c.Context), errNoRequest) {
		return context.DeadlineExceeded
	}
	return err
}

func (c *recvCtx) Value(key any) any {
	if key == (recvCtxKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// received calls off the receive deadline of the stream of ctx, if it has one.
func received(ctx context.Context) {
	if c, ok := ctx.Value(recvCtxKey{}).(*recvCtx); ok {
		c.timer.Stop()
	}
}

// recvStream stops its stream's receive deadline at the first message received.
type recvStream struct{ grpc.ServerStream }

func (s recvStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	received(s.Context())
	return err
}

// LimitListener returns ln accepting at most l.MaxConns connections at once (ln itself when
// there is no limit); further clients wait in the listen backlog until one closes.
func (l Limits) LimitListener(ln net.Listener) net.Listener {
	if l.MaxConns <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, l.MaxConns)
}

// shedExempt reports whether path is served beyond the in-flight cap: liveness and metrics
// must answer most of all when the process is overloaded.
func shedExempt(path string) bool { return path == "/health" || path == "/metrics" }

// LimitInFlight returns h behind a cap of l.MaxInFlight requests handled at once. A request
// beyond it is answered at once with 503, Retry-After: 1 and the usual error body, without
// reading its body, and counted in flashsale_shed_total (registered on reg). /health and
// /metrics are not capped.
func (l Limits) LimitInFlight(h http.Handler, reg prometheus.Registerer) http.Handler {
	shed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "flashsale_shed_total",
		Help: "HTTP requests answered 503 at once because the in-flight cap was reached.",
	})
	reg.MustRegister(shed)
	if l.MaxInFlight <= 0 {
		return h
	}
	slots := make(chan struct{}, l.MaxInFlight)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if shedExempt(r.URL.Path) {
			h.ServeHTTP(w, r)
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			shed.Inc()
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusServiceUnavailable, "server busy, retry later", "")
		}
	})
}
