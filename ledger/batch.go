package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// batcher sends the commands of concurrent purchases (script calls, and the idempotency GETs of
// the sold-out path) as pipelines: while one pipeline is on the wire, calls queue up and go out
// together in the next. Under load this turns many round trips, system calls and Redis reads
// into one; an idle system sends each call alone, without waiting.
type batcher struct {
	rdb   redis.UniversalClient
	repl  replication
	calls chan *call
	max   int

	mu     sync.RWMutex // held for reading while queueing, for writing to close
	closed bool
	wg     sync.WaitGroup
}

var errClosed = errors.New("ledger closed")

// calls is how a purchase reaches Redis: direct (one command per round trip) or through a
// batcher (pipelines).
type calls interface {
	// script runs the purchase script.
	script(ctx context.Context, keys []string, args ...any) (any, error)
	// get reads a string key; redis.Nil when it is missing.
	get(ctx context.Context, key string) (string, error)
	close()
}

// direct sends each command on its own round trip; the script goes as EVALSHA, and as EVAL
// after a NOSCRIPT. With replicas to wait for, the command, the sync write and the wait go
// together as one pipeline to the keys' master.
type direct struct {
	rdb  redis.UniversalClient
	repl replication
}

func (d direct) script(ctx context.Context, keys []string, args ...any) (any, error) {
	var v any
	var err error
	if d.repl.min > 0 {
		v, err = d.repl.scriptWaited(ctx, d.rdb, purchaseScript, keys, args...)
	} else {
		v, err = purchaseScript.Run(ctx, d.rdb, keys, args...).Result()
	}
	if err != nil {
		return nil, err
	}
	replies, err := callReplies(v, 1)
	if err != nil {
		return nil, err
	}
	if rerr, isErr := replies[0].(redis.Error); isErr {
		return nil, rerr
	}
	return replies[0], nil
}

// callReplies splits v, the reply of a purchase.lua call deciding n purchases (three elements
// each, in one array), into each purchase's reply: its three elements as a []any, or its
// redis.Error.
func callReplies(v any, n int) ([]any, error) {
	flat, ok := v.([]any)
	if !ok || len(flat) != 3*n {
		return nil, fmt.Errorf("purchase script: %d reply elements to %d purchases", len(flat), n)
	}
	replies := make([]any, n)
	for i := range replies {
		r := flat[3*i : 3*i+3 : 3*i+3]
		if rerr, isErr := r[0].(redis.Error); isErr {
			replies[i] = rerr
		} else {
			replies[i] = r
		}
	}
	return replies, nil
}

func (d direct) get(ctx context.Context, key string) (string, error) {
	if d.repl.min == 0 {
		return d.rdb.Get(ctx, key).Result()
	}
	node, err := nodeFor(ctx, d.rdb, key)
	if err != nil {
		return "", err
	}
	pipe := node.Pipeline()
	g := pipe.Get(ctx, key)
	w := d.repl.queue(ctx, pipe, key)
	pipe.Exec(ctx)
	v, err := g.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		movedOrDown(ctx, d.rdb, err)
		return "", err
	}
	if werr := d.repl.check(w); werr != nil {
		return "", werr
	}
	return v, err
}

func (d direct) close() {}

// call is one queued command: the purchase script with keys and args, or a GET of key when
// keys is nil. Its fields are the command itself rather than a closure that queues it: one
// allocation less per purchase.
type call struct {
	ctx  context.Context
	keys []string
	args []any
	key  string
	cmd  redis.Cmder // the command that carries the call: its own, or its batch's
	res  any         // the script's reply, once answered
	err  error       // the call's error: routing, its reply, or replicas that did not confirm it
	done chan struct{}
}

// route is the key that says which node runs c: the script's first key, or the key read.
func (c *call) route() string {
	if len(c.keys) > 0 {
		return c.keys[0]
	}
	return c.key
}

// tag is the hash tag of c's keys ("{p3}"): the purchases of one partition share it, and so
// one slot of a cluster, and may be decided in one purchase.lua call.
func (c *call) tag() string {
	k := c.keys[0]
	if i := strings.IndexByte(k, '{'); i >= 0 {
		if j := strings.IndexByte(k[i+1:], '}'); j > 0 {
			return k[i : i+j+2]
		}
	}
	return k
}

// batch is one command of a pipeline and the calls it answers: a GET, or the purchases of one
// partition in one purchase.lua call.
type batch struct {
	calls []*call
	cmd   *redis.Cmd // nil for a GET, whose command is its call's
}

// maxCallPurchases bounds the purchases of one script call, and so the orders of one ledger
// entry (and the size of its one XADD, of readers' replies and of the script's reply).
const maxCallPurchases = 1000

// queue adds b to pipe: a script first as EVALSHA (evalsha true); a command refused NOSCRIPT
// did not run and is queued again with evalsha false. The purchases are joined into one call
// (joinCalls).
func (b *batch) queue(ctx context.Context, pipe redis.Pipeliner, evalsha bool) {
	c := b.calls[0]
	switch {
	case c.keys == nil:
		// MGET of the one key: a missing key is a nil element, not an error reply. go-redis
		// examines a pipeline's first error for retry and redirection, with a dozen allocations.
		c.cmd = pipe.MGet(ctx, c.key)
		return
	case len(b.calls) == 1:
		b.cmd = runScript(ctx, pipe, purchaseScript, evalsha, c.keys, c.args)
	default:
		keys, args := joinCalls(b.calls)
		b.cmd = runScript(ctx, pipe, purchaseScript, evalsha, keys, args)
	}
	for _, c := range b.calls {
		c.cmd = b.cmd
	}
}

// joinCalls is the KEYS and ARGV of one purchase.lua call deciding the purchases of calls, all
// of one partition, in order: the partition's keys and arguments once (the first call's), the
// keys of each item once, in the order of its first purchase, and each purchase's arguments.
func joinCalls(calls []*call) ([]string, []any) {
	c := calls[0]
	keys := make([]string, 2, 6)
	args := make([]any, 3, 3+4*len(calls))
	copy(keys, c.keys[:2])
	copy(args, c.args[:3])
	var items []any // the items whose keys are in keys, in order: a batch holds few
	for _, c := range calls {
		if !slices.Contains(items, c.args[3]) {
			items = append(items, c.args[3])
			keys = append(keys, c.keys[2:]...)
		}
		args = append(args, c.args[3:]...)
	}
	return keys, args
}

func runScript(ctx context.Context, pipe redis.Pipeliner, s *redis.Script, evalsha bool, keys []string, args []any) *redis.Cmd {
	if evalsha {
		return s.EvalSha(ctx, pipe, keys, args...)
	}
	return s.Eval(ctx, pipe, keys, args...)
}

// noScript reports whether b is a script call that the server refused with NOSCRIPT.
func (b *batch) noScript() bool {
	if b.cmd == nil {
		return false
	}
	err := b.cmd.Err()
	return err != nil && err != redis.Nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// answer sets the reply of each call of b from its command.
func (b *batch) answer() {
	if b.cmd == nil {
		return // a GET: get reads its own command
	}
	v, err := b.cmd.Result()
	var replies []any
	if err == nil {
		replies, err = callReplies(v, len(b.calls))
	}
	for i, c := range b.calls {
		if err != nil {
			c.res, c.err = nil, err
			continue
		}
		if rerr, isErr := replies[i].(redis.Error); isErr {
			c.res, c.err = nil, rerr
			continue
		}
		c.res, c.err = replies[i], nil
	}
}

// newBatcher starts `senders` goroutines, each sending pipelines of up to max calls, until
// close.
func newBatcher(rdb redis.UniversalClient, repl replication, senders, max int) *batcher {
	b := &batcher{rdb: rdb, repl: repl, calls: make(chan *call, senders*max), max: max}
	for range senders {
		b.wg.Go(b.send)
	}
	return b
}

// script runs the purchase script with keys and args in the next pipeline.
func (b *batcher) script(ctx context.Context, keys []string, args ...any) (any, error) {
	if keys == nil {
		keys = []string{} // nil keys mean a GET
	}
	c := &call{ctx: ctx, keys: keys, args: args}
	if _, err := b.do(c); err != nil {
		return nil, err
	}
	return c.res, c.err
}

// get reads key in the next pipeline.
func (b *batcher) get(ctx context.Context, key string) (string, error) {
	c := &call{ctx: ctx, key: key}
	cmd, err := b.do(c)
	if err != nil {
		return "", err
	}
	if c.err != nil {
		return "", c.err
	}
	vals, err := cmd.(*redis.SliceCmd).Result()
	switch {
	case err != nil:
		return "", err
	case len(vals) != 1:
		return "", fmt.Errorf("get %s: %d values from MGET of one key", key, len(vals))
	case vals[0] == nil:
		return "", redis.Nil
	}
	v, ok := vals[0].(string)
	if !ok {
		return "", fmt.Errorf("get %s: value of type %T", key, vals[0])
	}
	return v, nil
}

// do queues c and waits for its command to be answered; c.err then holds the call's own error.
func (b *batcher) do(c *call) (redis.Cmder, error) {
	ctx := c.ctx
	c.done = make(chan struct{})
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
		return c.cmd, nil
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
	batch := make([]*call, 0, b.max)
	live := make([]*call, 0, b.max)
	pipe := b.rdb.Pipeline() // Exec empties it: one per sender, reused
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
		b.exec(batch, live, pipe)
	}
}

// exec sends the calls whose callers still wait as one pipeline; calls the server refused with
// NOSCRIPT (it lost the script: restart, SCRIPT FLUSH) did not run, and go out again as EVAL,
// which carries the script and so cannot be refused that way. With replicas to wait for, the
// calls go as one pipeline per master, each ending with the sync write and one WAIT. live is
// scratch space for the calls still waited for; pipe (on b.rdb) is empty.
func (b *batcher) exec(batch, live []*call, pipe redis.Pipeliner) {
	live = live[:0]
	for _, c := range batch {
		if c.ctx.Err() != nil {
			continue // the caller has gone (do returned its ctx error); nothing is sent
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	if b.repl.min == 0 {
		b.execOn(b.rdb, live, pipe)
		return
	}
	groups := map[redis.UniversalClient][]*call{}
	for _, c := range live {
		node, err := nodeFor(context.WithoutCancel(c.ctx), b.rdb, c.route())
		if err != nil {
			c.err = redisErr("route", err)
			close(c.done)
			continue
		}
		groups[node] = append(groups[node], c)
	}
	var wg sync.WaitGroup
	for node, cs := range groups {
		wg.Go(func() { b.execOn(node, cs, node.Pipeline()) })
	}
	wg.Wait()
}

// execOn sends live as pipelines on node (the client itself, or a cluster master's client);
// pipe is an empty pipeline of node. The purchases of one partition go as one purchase.lua
// call, in the order they were queued; GETs go one command
// each.
func (b *batcher) execOn(node redis.UniversalClient, live []*call, pipe redis.Pipeliner) {
	batches := group(live)
	for evalsha := true; len(batches) > 0; evalsha = false {
		ctx := context.WithoutCancel(live[0].ctx)
		for i := range batches {
			batches[i].queue(ctx, pipe, evalsha)
		}
		var wait *redis.Cmd
		if b.repl.min > 0 {
			wait = b.repl.queue(ctx, pipe, live[0].route())
		}
		pipe.Exec(ctx)
		var werr error
		if wait != nil {
			werr = b.repl.check(wait)
		}
		again := batches[:0]
		for i := range batches {
			bt := &batches[i]
			if evalsha && bt.noScript() {
				again = append(again, *bt)
				continue
			}
			if node != b.rdb {
				movedOrDown(ctx, b.rdb, bt.calls[0].cmd.Err())
			}
			bt.answer()
			for _, c := range bt.calls {
				if werr != nil {
					c.err = werr
				}
				close(c.done)
			}
		}
		batches = again
	}
}

// group splits live into the commands of one pipeline: each GET alone, and the purchases of
// each partition together, in the order of their first call.
func group(live []*call) []batch {
	batches := make([]batch, 0, len(live))
	for _, c := range live {
		if c.keys == nil {
			batches = append(batches, batch{calls: []*call{c}})
			continue
		}
		tag, joined := c.tag(), false
		for i := range batches {
			first := batches[i].calls[0]
			if first.keys != nil && len(batches[i].calls) < maxCallPurchases && first.tag() == tag {
				batches[i].calls = append(batches[i].calls, c)
				joined = true
				break
			}
		}
		if !joined {
			batches = append(batches, batch{calls: []*call{c}})
		}
	}
	return batches
}
