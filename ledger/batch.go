package ledger

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher runs concurrent purchase-script calls as pipelines: while one pipeline is on the
// wire, calls queue up and go out together in the next. Under load this turns many round trips
// and Redis reads into one; an idle system sends each call alone, without waiting.
type batcher struct {
	rdb   redis.UniversalClient
	calls chan *scriptCall
	max   int

	mu     sync.RWMutex // held for reading while queueing, for writing to close
	closed bool
	wg     sync.WaitGroup
}

var errClosed = errors.New("ledger closed")

type scriptCall struct {
	ctx  context.Context
	keys []string
	args []any
	res  any
	err  error
	done chan struct{}
}

// newBatcher starts `senders` goroutines, each sending pipelines of up to max calls, until
// close.
func newBatcher(rdb redis.UniversalClient, senders, max int) *batcher {
	b := &batcher{rdb: rdb, calls: make(chan *scriptCall, senders*max), max: max}
	for range senders {
		b.wg.Go(b.send)
	}
	return b
}

// run queues one call of the purchase script and waits for its reply.
func (b *batcher) run(ctx context.Context, keys []string, args ...any) (any, error) {
	c := &scriptCall{ctx: ctx, keys: keys, args: args, done: make(chan struct{})}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, errClosed
	}
	select {
	case b.calls <- c:
	case <-ctx.Done():
		b.mu.RUnlock()
		return nil, ctx.Err()
	}
	b.mu.RUnlock()
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		// The call may still run; as on a lost reply, a retry with the same request_id tells.
		return nil, ctx.Err()
	}
}

// close refuses new calls, lets the queued ones finish and waits for the senders.
func (b *batcher) close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.calls)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *batcher) send() {
	batch := make([]*scriptCall, 0, b.max)
	for c := range b.calls {
		batch = append(batch[:0], c)
	fill:
		for len(batch) < b.max {
			select {
			case c, ok := <-b.calls:
				if !ok {
					break fill
				}
				batch = append(batch, c)
			default:
				break fill
			}
		}
		b.exec(batch)
	}
}

// exec sends the calls whose callers still wait as one pipeline of EVALSHA; calls the server
// refused with NOSCRIPT (it lost the script: restart, SCRIPT FLUSH) did not run, and go out
// again as EVAL, which carries the script and so cannot be refused that way.
func (b *batcher) exec(batch []*scriptCall) {
	live := batch[:0:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		live = append(live, c)
	}
	for attempt := 0; len(live) > 0; attempt++ {
		ctx := context.WithoutCancel(live[0].ctx)
		pipe := b.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(live))
		for i, c := range live {
			if attempt == 0 {
				cmds[i] = purchaseScript.EvalSha(ctx, pipe, c.keys, c.args...)
			} else {
				cmds[i] = purchaseScript.Eval(ctx, pipe, c.keys, c.args...)
			}
		}
		pipe.Exec(ctx)
		var again []*scriptCall
		for i, c := range live {
			c.res, c.err = cmds[i].Result()
			if c.err != nil && attempt == 0 && redis.HasErrorPrefix(c.err, "NOSCRIPT") {
				again = append(again, c)
				continue
			}
			close(c.done)
		}
		live = again
	}
}
