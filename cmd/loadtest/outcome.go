package main

import (
	"context"
	"fmt"
)

// outcome is how one purchase ended, as the client saw it.
type outcome int

// The outcomes, in the order the summary lists them.
const (
	outOK          outcome = iota // 200 / OK: an order was placed
	outSoldOut                    // 410 / ResourceExhausted
	outDuplicate                  // 409 / AlreadyExists
	outLimit                      // 403 / FailedPrecondition: per-user limit
	outClosed                     // 403 / FailedPrecondition: outside the sale window
	outNotFound                   // 404 / NotFound
	outBadRequest                 // 400, 413 / InvalidArgument
	outUnavailable                // 503 / Unavailable from the server: Redis could not be asked
	outOther                      // any other status, or a 200 without an order
	outTransport                  // no reply: connection refused or reset, timeout
	numOutcomes
)

func (o outcome) String() string {
	switch o {
	case outOK:
		return "ok"
	case outSoldOut:
		return "sold_out"
	case outDuplicate:
		return "duplicate"
	case outLimit:
		return "limit"
	case outClosed:
		return "closed"
	case outNotFound:
		return "not_found"
	case outBadRequest:
		return "bad_request"
	case outUnavailable:
		return "unavailable"
	case outOther:
		return "other"
	case outTransport:
		return "transport_errors"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// counts holds how many purchases ended in each outcome.
type counts [numOutcomes]int64

// total is the number of purchases counted.
func (c counts) total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// ambiguous counts the purchases whose fate the client cannot know: no reply, or a reply that
// says the server could not tell (503 after Redis may have run the script, other errors).
func (c counts) ambiguous() int64 {
	return c[outTransport] + c[outUnavailable] + c[outOther]
}

// purchase is one request the generator sends.
type purchase struct {
	requestID string
	userID    string
	item      string
	quantity  int
}

// target is a flashsale API the generator talks to.
type target interface {
	// purchase sends p on behalf of client number client and classifies the reply; an ok
	// reply comes with its order_id.
	purchase(ctx context.Context, client int, p purchase) (outcome, string)
	// pay pays orderID with ref as user, the order's, and classifies the reply.
	pay(ctx context.Context, client int, orderID, user, ref string) payOutcome
	// stock reads item's remaining stock through the API.
	stock(ctx context.Context, item string) (int64, error)
	close()
}

// dial returns the target cfg names.
func dial(cfg config) (target, error) {
	if cfg.target == "grpc" {
		return dialGRPC(cfg.addr, cfg.conns)
	}
	return newHTTPTarget(cfg.addr, cfg.clients), nil
}
