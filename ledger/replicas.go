package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotReplicated: the write was made on the master but fewer replicas than asked for
// confirmed it in time. It may be lost in a failover, so it is not acknowledged; a retry with
// the same request_id answers the order if it survived, or places it anew if it did not.
var ErrNotReplicated = fmt.Errorf("%w: not confirmed by enough replicas in time", ErrUnavailable)

// DefaultReplicaTimeout is how long a write waits for its replicas, with MinReplicas.
const DefaultReplicaTimeout = time.Second

// replication is how writes are confirmed before they are answered: with min > 0, the
// pipeline that carries them ends with a write of the partition's sync counter (so that the
// connection's replication offset covers everything the scripts read, also an earlier order a
// duplicate answers) and WAIT min timeout, or WAITAOF local min timeout on Redis >= 7.2.
// WAIT is keyless: on a cluster the pipeline goes to the node client of the keys' master, so
// that WAIT reaches the node that ran the scripts.
type replication struct {
	min     int
	timeout time.Duration
	waitAOF bool // the server has WAITAOF (Redis >= 7.2)
	local   int  // WAITAOF's numlocal: 1 when the master has AOF on
}

// newReplication reads, when min > 0, whether the master has WAITAOF and AOF.
func newReplication(ctx context.Context, rdb redis.UniversalClient, min int, timeout time.Duration) (replication, error) {
	r := replication{min: min, timeout: timeout}
	if min <= 0 {
		return r, nil
	}
	if r.timeout <= 0 {
		r.timeout = DefaultReplicaTimeout
	}
	var node redis.UniversalClient = rdb
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, "{p0}")
		if err != nil {
			return r, redisErr("find a master", err)
		}
		node = m
	}
	info, err := node.Info(ctx, "server", "persistence").Result()
	if err != nil {
		return r, redisErr("info server", err)
	}
	r.waitAOF = versionAtLeast(infoField(info, "redis_version"), 7, 2)
	if infoField(info, "aof_enabled") == "1" {
		r.local = 1
	}
	return r, nil
}

func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// versionAtLeast reports whether the dotted version v is at least major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	a, err1 := strconv.Atoi(parts[0])
	b, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return a > major || a == major && b >= minor
}

// queue adds the sync write of key's partition and the wait to pipe; check reads the wait.
func (r replication) queue(ctx context.Context, pipe redis.Pipeliner, key string) *redis.Cmd {
	pipe.Incr(ctx, syncKeyOf(key))
	ms := r.timeout.Milliseconds()
	if r.waitAOF {
		return pipe.Do(ctx, "waitaof", r.local, r.min, ms)
	}
	return pipe.Do(ctx, "wait", r.min, ms)
}

// check returns nil when cmd (from queue) says min replicas (and the local AOF, with WAITAOF)
// confirmed, ErrNotReplicated when fewer did in time.
func (r replication) check(cmd *redis.Cmd) error {
	v, err := cmd.Result()
	if err != nil {
		return redisErr("wait for replicas", err)
	}
	switch n := v.(type) {
	case int64: // WAIT: replicas that have the writes
		if n < int64(r.min) {
			return fmt.Errorf("%w: %d of %d replicas", ErrNotReplicated, n, r.min)
		}
		return nil
	case []any: // WAITAOF: local fsyncs, replicas that fsynced
		if len(n) == 2 {
			local, ok1 := n[0].(int64)
			reps, ok2 := n[1].(int64)
			if ok1 && ok2 {
				if local < int64(r.local) || reps < int64(r.min) {
					return fmt.Errorf("%w: WAITAOF answered %d local, %d replicas; want %d and %d", ErrNotReplicated, local, reps, r.local, r.min)
				}
				return nil
			}
		}
	}
	return fmt.Errorf("wait for replicas: unexpected reply %v", v)
}

// nodeFor returns the client to pipeline key's commands on, with a WAIT that reaches the node
// that runs them: the master's own client on a cluster, the client itself otherwise (a
// pipeline runs on one connection).
func nodeFor(ctx context.Context, rdb redis.UniversalClient, key string) (redis.UniversalClient, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb, nil
	}
	m, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// movedOrDown tells the cluster client to reload the slot map when a node client met MOVED,
// ASK or a dead connection (a reshard or a failover).
func movedOrDown(ctx context.Context, rdb redis.UniversalClient, err error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, redis.Nil) {
		return
	}
	if redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") || !isServerReply(err) {
		cc.ReloadState(ctx)
	}
}

func isServerReply(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// scriptWaited runs script on its keys' node in one pipeline with the sync write of their
// partition and the wait: as EVALSHA, and as EVAL after NOSCRIPT. Whatever the script answered, an
// unconfirmed wait returns ErrNotReplicated: what it read or wrote may not survive a failover.
func (r replication) scriptWaited(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, keys []string, args ...any) (any, error) {
	node, err := nodeFor(ctx, rdb, keys[0])
	if err != nil {
		return nil, err
	}
	for evalsha := true; ; evalsha = false {
		pipe := node.Pipeline()
		var cmd *redis.Cmd
		if evalsha {
			cmd = script.EvalSha(ctx, pipe, keys, args...)
		} else {
			cmd = script.Eval(ctx, pipe, keys, args...)
		}
		w := r.queue(ctx, pipe, keys[0])
		pipe.Exec(ctx)
		v, err := cmd.Result()
		if evalsha && redis.HasErrorPrefix(err, "NOSCRIPT") {
			continue
		}
		if err != nil {
			movedOrDown(ctx, rdb, err)
			return nil, err
		}
		if err := r.check(w); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// confirm returns nil when, with MinReplicas, the replicas have everything partition p's
// master had written so far (a sync write and WAIT on one connection), so that the entries
// just read from p can be projected: an entry a failover may still lose never reaches MySQL.
// Without MinReplicas it does nothing.
func (l *Ledger) confirm(ctx context.Context, p int) error {
	if l.repl.min == 0 {
		return nil
	}
	key := l.keys.Events(p)
	node, err := nodeFor(ctx, l.rdb, key)
	if err != nil {
		return redisErr("confirm on replicas", err)
	}
	pipe := node.Pipeline()
	w := l.repl.queue(ctx, pipe, key)
	pipe.Exec(ctx)
	if err := l.repl.check(w); err != nil {
		movedOrDown(ctx, l.rdb, w.Err())
		return fmt.Errorf("confirm on replicas: %w", err)
	}
	return nil
}
