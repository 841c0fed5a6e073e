package ledger

import (
	"context"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var aliveScript = redis.NewScript(lua.Alive)

// Beat refreshes the heartbeats of consumers on every partition: each stays alive for ttl,
// by Redis's clock, unless refreshed again. One pipeline of one script call per partition.
func (l *Ledger) Beat(ctx context.Context, consumers []string, ttl time.Duration) error {
	args := make([]any, 0, len(consumers)+1)
	args = append(args, max(ttl.Milliseconds(), 1))
	for _, c := range consumers {
		args = append(args, c)
	}
	pipe := l.rdb.Pipeline()
	for p := range l.keys.Partitions() {
		aliveScript.Eval(ctx, pipe, []string{l.keys.Alive(p)}, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr("heartbeat", err)
	}
	return nil
}

// Leave removes the heartbeats of consumers (a projector that stops).
func (l *Ledger) Leave(ctx context.Context, consumers []string) error {
	members := make([]any, len(consumers))
	for i, c := range consumers {
		members[i] = c
	}
	pipe := l.rdb.Pipeline()
	for p := range l.keys.Partitions() {
		pipe.ZRem(ctx, l.keys.Alive(p), members...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return redisErr("leave heartbeat", err)
	}
	return nil
}

// Alive returns, sorted and once each, the consumers whose heartbeat has not expired on any
// partition: the projectors running now.
func (l *Ledger) Alive(ctx context.Context) ([]string, error) {
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, l.keys.Partitions())
	for p := range cmds {
		cmds[p] = aliveScript.Eval(ctx, pipe, []string{l.keys.Alive(p)}, 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, redisErr("read heartbeats", err)
	}
	live := []string{}
	for _, c := range cmds {
		names, err := c.StringSlice()
		if err != nil {
			return nil, redisErr("read heartbeats", err)
		}
		for _, n := range names {
			if !slices.Contains(live, n) {
				live = append(live, n)
			}
		}
	}
	slices.Sort(live)
	return live, nil
}
