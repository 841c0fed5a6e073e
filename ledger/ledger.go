// Package ledger owns everything flashsale keeps in Redis: key names, the partitioned event
// streams, the scripts that decide purchases and stock changes, and the typed errors their
// replies turn into. It never touches MySQL.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

// The scripts, built once from the embedded sources. Run sends EVALSHA and falls back to EVAL
// when the server answers NOSCRIPT (after a restart or SCRIPT FLUSH).
var (
	purchaseScript = redis.NewScript(lua.Purchase)
	stockScript    = redis.NewScript(lua.Stock)
)

// Defaults of Config.
const (
	DefaultPrefix         = "fs"
	DefaultPartitions     = 16
	DefaultIdempotencyTTL = 24 * time.Hour
	DefaultSoldOutLease   = time.Second
	// MinSoldOutLease and MaxSoldOutLease bound Config.SoldOutLease.
	MinSoldOutLease = 10 * time.Millisecond
	MaxSoldOutLease = time.Minute
	// MaxPartitions bounds the partition count a new ledger may be created with.
	MaxPartitions = 1024
)

// Config says where the ledger lives and how it is created.
type Config struct {
	// Prefix starts every key; distinct prefixes are distinct ledgers on one Redis.
	Prefix string
	// Partitions is the stream count for a ledger created by Open; an existing ledger keeps the
	// count it was created with.
	Partitions int
	// IdempotencyTTL is how long a request_id at least keeps returning its original order (at
	// most about twice as long: see purchase.lua).
	IdempotencyTTL time.Duration
	// SoldOutLease is how long an item that had no stock stays sold out after units come back
	// (a stock change, restock, cancel or expiry records reopen_at, Redis TIME plus it, and
	// the purchase script refuses the item until then), and so how long a serving process
	// may answer sold out from memory after its tail's last read of the partition was sent
	// (see TailWinners). Every process of a ledger must use the same value (a writer's at
	// least the servers'). 0 means DefaultSoldOutLease.
	SoldOutLease time.Duration
	// Pipeline, when > 0, sends concurrent purchases as pipelines of up to this many script
	// calls (see batcher); 0 sends each call on its own round trip.
	Pipeline int
	// Senders is the number of pipelines in flight at once, with Pipeline.
	Senders int
	// MinReplicas, when > 0, makes every purchase and stock change wait until that many
	// replicas have it (WAIT, or WAITAOF on Redis >= 7.2) before it is answered; fewer in
	// ReplicaTimeout (default DefaultReplicaTimeout) answer ErrNotReplicated.
	MinReplicas    int
	ReplicaTimeout time.Duration
	// WinnerIndexMax is the most orders the winner index holds (see TailWinners); an item
	// whose orders would pass it is answered through Redis. 0 means DefaultWinnerIndexMax,
	// negative disables the index.
	WinnerIndexMax int64
	// MustExist opens only a ledger that exists: Open then writes nothing and returns
	// ErrNoLedger when the prefix has no ledger. Commands that only read set it.
	MustExist bool
}

// ErrNoLedger is Open's answer, with Config.MustExist, when Redis has no ledger under the
// prefix.
var ErrNoLedger = errors.New("no flashsale ledger")

func (c *Config) setDefaults() {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.IdempotencyTTL == 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.SoldOutLease == 0 {
		c.SoldOutLease = DefaultSoldOutLease
	}
	if c.WinnerIndexMax == 0 {
		c.WinnerIndexMax = DefaultWinnerIndexMax
	}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.Partitions < 1 || c.Partitions > MaxPartitions {
		return fmt.Errorf("partitions %d: want 1..%d", c.Partitions, MaxPartitions)
	}
	if c.MinReplicas < 0 {
		return fmt.Errorf("min replicas %d: want 0 or more", c.MinReplicas)
	}
	if c.IdempotencyTTL < time.Second {
		return fmt.Errorf("idempotency TTL %s: want at least 1s", c.IdempotencyTTL)
	}
	if c.SoldOutLease < MinSoldOutLease || c.SoldOutLease > MaxSoldOutLease {
		return fmt.Errorf("sold-out lease %s: want %s..%s", c.SoldOutLease, MinSoldOutLease, MaxSoldOutLease)
	}
	if !validID(c.Prefix, maxItemID, false) {
		return fmt.Errorf("prefix %q: want 1..%d of [A-Za-z0-9._-]", c.Prefix, maxItemID)
	}
	return nil
}

// Ledger is a handle on one ledger in Redis. It is safe for concurrent use.
type Ledger struct {
	rdb     redis.UniversalClient
	keys    Keys
	idemTTL string   // milliseconds, as the purchase script takes it
	leaseMS int64    // the sold-out lease, as the scripts take it
	winners *winners // nil: disabled
	// soldOutLocal and soldOutRedis count the sold-out answers given from the winner index
	// and by the purchase script.
	soldOutLocal, soldOutRedis atomic.Int64
	calls                      calls
	repl                       replication
	// heads holds, per partition, what every purchase.lua call of it starts with (built once:
	// they would otherwise be three key strings built per purchase).
	heads []callHead
	// drawItems holds the items purchase.lua answered "draw" for (code 9): their purchases go
	// to draw_enter.lua first, one script call instead of two.
	drawItems sync.Map
}

// Open returns the ledger under cfg.Prefix, creating it with cfg.Partitions partitions if it
// does not exist yet. Without cfg.MustExist it also moves the keys of an existing ledger's older
// key layout into the current one (see upgradeLayout) before it returns.
func Open(ctx context.Context, rdb redis.UniversalClient, cfg Config) (*Ledger, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ledger config: %w", err)
	}
	meta := NewKeys(cfg.Prefix, 1).Meta()
	created := false // by this Open: it then has the current layout
	if !cfg.MustExist {
		var err error
		if created, err = rdb.HSetNX(ctx, meta, "partitions", cfg.Partitions).Result(); err != nil {
			return nil, redisErr("create ledger", err)
		}
		if created {
			if err := rdb.HSet(ctx, meta, "layout", layoutVersion).Err(); err != nil {
				return nil, redisErr("create ledger", err)
			}
		}
	}
	p, err := rdb.HGet(ctx, meta, "partitions").Int()
	if cfg.MustExist && errors.Is(err, redis.Nil) {
		return nil, ErrNoLedger
	}
	if err != nil {
		return nil, redisErr("read ledger partitions", err)
	}
	if p < 1 || p > MaxPartitions {
		return nil, fmt.Errorf("ledger %s: stored partition count %d out of range", meta, p)
	}
	repl, err := newReplication(ctx, rdb, cfg.MinReplicas, cfg.ReplicaTimeout)
	if err != nil {
		return nil, err
	}
	var c calls = direct{rdb, repl}
	if cfg.Pipeline > 0 {
		c = newBatcher(rdb, repl, max(cfg.Senders, 1), cfg.Pipeline)
	}
	var w *winners
	if cfg.WinnerIndexMax > 0 {
		w = newWinners(p, cfg.WinnerIndexMax, cfg.IdempotencyTTL, cfg.SoldOutLease)
	}
	keys := NewKeys(cfg.Prefix, p)
	heads := make([]callHead, p)
	for i := range heads {
		heads[i] = callHead{events: keys.Events(i), due: keys.Due(i), orderPrefix: keys.OrderPrefix(i)}
	}
	l := &Ledger{
		heads:   heads,
		winners: w,
		rdb:     rdb,
		keys:    keys,
		idemTTL: strconv.FormatInt(cfg.IdempotencyTTL.Milliseconds(), 10),
		leaseMS: cfg.SoldOutLease.Milliseconds(),
		calls:   c,
		repl:    repl,
	}
	if !cfg.MustExist && !created {
		if err := l.upgradeLayout(ctx, meta); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Close stops the ledger's background work (the pipeline senders), after the calls in flight.
// The Redis client stays open; it belongs to the caller.
func (l *Ledger) Close() {
	l.calls.close()
}

// Keys returns the ledger's key builder.
func (l *Ledger) Keys() Keys { return l.keys }

// Ping checks that Redis answers.
func (l *Ledger) Ping(ctx context.Context) error {
	if err := l.rdb.Ping(ctx).Err(); err != nil {
		return redisErr("ping", err)
	}
	return nil
}

// Durability reports how Redis persists writes: appendonly ("yes" or "no") and appendfsync
// ("always", "everysec" or "no"). Without AOF every acknowledged order is lost when Redis
// restarts; with everysec a crash can lose about the last two seconds of them.
func (l *Ledger) Durability(ctx context.Context) (appendonly, appendfsync string, err error) {
	v, err := l.rdb.ConfigGet(ctx, "append*").Result()
	if err != nil {
		return "", "", redisErr("config get append*", err)
	}
	return v["appendonly"], v["appendfsync"], nil
}

// EvictionPolicy returns Redis's maxmemory-policy. Only "noeviction" keeps the ledger whole
// when Redis reaches maxmemory: any other policy may evict the streams, stock counters and
// idempotency keys, losing acknowledged orders. Errors match ErrUnavailable when Redis cannot
// be reached; any other error means Redis refused CONFIG GET (renamed, or not allowed by ACL).
func EvictionPolicy(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	v, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return "", redisErr("config get maxmemory-policy", err)
	}
	return v["maxmemory-policy"], nil
}

// scriptReply reads the {code, ...} array every script returns.
func scriptReply(v any, want int) ([]any, int64, error) {
	a, ok := v.([]any)
	if !ok || len(a) < want {
		return nil, 0, fmt.Errorf("unexpected script reply %v", v)
	}
	code, ok := a[0].(int64)
	if !ok {
		return nil, 0, fmt.Errorf("unexpected script code %v", a[0])
	}
	return a, code, nil
}

// SoldOutLease is the sold-out lease the ledger's scripts record (Config.SoldOutLease).
func (l *Ledger) SoldOutLease() time.Duration { return time.Duration(l.leaseMS) * time.Millisecond }
