package main

import (
	"time"

	"github.com/flashsale/flashsale/ingest"
)

// limitFlags bound what the purchase API takes on at once (see ingest.Limits).
type limitFlags struct {
	grpcStreams, maxConns, maxInFlight *int
	grpcRecv                           *time.Duration
}

func (f *flags) limits() limitFlags {
	d := ingest.DefaultLimits()
	return limitFlags{
		grpcStreams: f.int("grpc-max-streams", "FLASHSALE_GRPC_MAX_STREAMS", d.GRPCMaxStreams, "concurrent streams per gRPC connection (0: no limit)"),
		grpcRecv:    f.duration("grpc-recv-timeout", "FLASHSALE_GRPC_RECV_TIMEOUT", d.GRPCRecvTimeout, "time a gRPC stream has to send its request before it is cancelled (0: no limit)"),
		maxConns:    f.int("max-conns", "FLASHSALE_MAX_CONNS", d.MaxConns, "connections served at once per listener, HTTP and gRPC; more wait to be accepted (0: no limit)"),
		maxInFlight: f.int("max-inflight", "FLASHSALE_MAX_INFLIGHT", d.MaxInFlight, "HTTP requests handled at once; more are answered 503 with Retry-After at once (0: no limit)"),
	}
}

// build returns the limits, or a usage error for a negative one.
func (l limitFlags) build() (ingest.Limits, error) {
	lim := ingest.Limits{
		GRPCMaxStreams: *l.grpcStreams, GRPCRecvTimeout: *l.grpcRecv,
		MaxConns: *l.maxConns, MaxInFlight: *l.maxInFlight,
	}
	if err := lim.Validate(); err != nil {
		return ingest.Limits{}, usageError{err.Error()}
	}
	return lim, nil
}
