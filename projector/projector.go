package projector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// Config tunes the projector. Zero values take the defaults.
type Config struct {
	// Group is the consumer group on every partition stream.
	Group string
	// Consumer names this process in the group; keep it stable across restarts so that a
	// restarted process first finishes its own pending entries. Default: the hostname.
	Consumer string
	// Workers is the number of consumers per partition in this process (named Consumer-N when
	// more than one).
	Workers int
	// BatchSize is the most entries read, written in one MySQL transaction and acked at once.
	BatchSize int64
	// Block is how long one read waits for new entries.
	Block time.Duration
	// Linger is how long a consumer waits, after a read of new entries that did not fill a
	// batch, before it reads again. Under load the next read then finds more entries, so each
	// read and XACK (each a Redis write, and so an AOF fsync of its own) and each MySQL
	// transaction carries more orders, at the price of up to that much more projection lag.
	// The first entry after a quiet spell is still read at once. Negative: no wait.
	Linger time.Duration
	// MinIdle is how long an entry must sit unacknowledged with another consumer before the
	// claim loop takes it over; it must be well above the time a batch takes. Entries being
	// retried are touched so that they never reach it.
	MinIdle time.Duration
	// ClaimEvery is how often the claim loop looks for such entries.
	ClaimEvery time.Duration
	// RetryMin and RetryMax bound the backoff between retries of transient failures.
	RetryMin, RetryMax time.Duration
	// WriteTimeout bounds one MySQL transaction.
	WriteTimeout time.Duration
	// Heartbeat is how often the process refreshes its consumers' heartbeats (Ledger.Beat),
	// from start until its last batch is done, idle or not; each heartbeat lives for
	// HeartbeatTTL times Heartbeat. LiveConsumers reads them.
	Heartbeat time.Duration
}

// HeartbeatTTL is how many heartbeat intervals a heartbeat outlives its refresh: a process
// that stopped without leaving (killed) counts as live for that long.
const HeartbeatTTL = 5

// DefaultLinger is Config.Linger's default.
const DefaultLinger = 50 * time.Millisecond

// DefaultGroup is the consumer group name.
const DefaultGroup = "projector"

func (c *Config) setDefaults() {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Consumer == "" {
		c.Consumer, _ = os.Hostname()
		if c.Consumer == "" {
			c.Consumer = "projector"
		}
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	if c.Block == 0 {
		c.Block = time.Second
	}
	if c.Linger == 0 {
		c.Linger = DefaultLinger
	}
	if c.MinIdle == 0 {
		c.MinIdle = 30 * time.Second
	}
	if c.ClaimEvery == 0 {
		c.ClaimEvery = c.MinIdle / 3
	}
	if c.RetryMin == 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 2 * time.Second
	}
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Workers < 1 || c.Workers > 64:
		return fmt.Errorf("workers %d: want 1..64", c.Workers)
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return fmt.Errorf("batch size %d: want 1..10000", c.BatchSize)
	case c.Block < time.Millisecond:
		return fmt.Errorf("block %s: want at least 1ms", c.Block)
	case c.Linger > time.Second:
		return fmt.Errorf("linger %s: want at most 1s", c.Linger)
	case c.MinIdle < 3*c.WriteTimeout:
		return fmt.Errorf("min-idle %s: want at least 3x the write timeout (%s) so that a slow batch is not taken over", c.MinIdle, c.WriteTimeout)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("retry backoff %s..%s: want 0 < min <= max", c.RetryMin, c.RetryMax)
	case c.Heartbeat < 10*time.Millisecond:
		return fmt.Errorf("heartbeat %s: want at least 10ms", c.Heartbeat)
	}
	return nil
}

// Projector runs the consumer-group workers of every partition.
type Projector struct {
	ledger  *ledger.Ledger
	store   *Store
	cfg     Config
	metrics *Metrics
	log     *slog.Logger
}

// New returns a Projector; m may be nil when no metrics are wanted.
func New(l *ledger.Ledger, store *Store, cfg Config, m *Metrics, log *slog.Logger) (*Projector, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("projector config: %w", err)
	}
	if m == nil {
		m = NewMetrics(nil, nil, "")
	}
	return &Projector{ledger: l, store: store, cfg: cfg, metrics: m, log: log.With("component", "projector")}, nil
}

// Run projects every partition until ctx is done, then waits for the batches in hand to be
// committed and acknowledged (or left pending) and returns nil. It returns an error only if
// it cannot start: ErrOtherLedger when the database holds another ledger's projection (see
// BindLedger).
func (p *Projector) Run(ctx context.Context) error {
	parts := p.ledger.Keys().Partitions()
	err := p.retry(ctx, "bind ledger", func() error {
		err := BindLedger(ctx, p.store.db, p.ledger.Keys().Prefix())
		if errors.Is(err, ErrOtherLedger) {
			return backoffStop{err}
		}
		return err
	})
	if stop := (backoffStop{}); errors.As(err, &stop) {
		return stop.err
	} else if err != nil {
		return nil // ctx done while MySQL was away
	}
	for part := range parts {
		if err := p.retry(ctx, "create group", func() error { return p.ledger.EnsureGroup(ctx, part, p.cfg.Group) }); err != nil {
			return nil // ctx done while Redis was away: nothing started, nothing to stop
		}
	}
	p.log.Info("projecting", "partitions", parts, "consumer", p.cfg.Consumer, "workers", p.cfg.Workers, "batch", p.cfg.BatchSize)
	names := make([]string, p.cfg.Workers)
	for w := range names {
		names[w] = p.consumerName(w)
	}
	// The heartbeat outlives ctx until the batches in hand are done.
	hbCtx, stopBeat := context.WithCancel(context.WithoutCancel(ctx))
	var beat sync.WaitGroup
	beat.Go(func() { p.heartbeat(hbCtx, names) })
	var wg sync.WaitGroup
	for part := range parts {
		for _, name := range names {
			wg.Go(func() { p.consume(ctx, part, name) })
		}
		wg.Go(func() { p.claim(ctx, part, names[0]) })
	}
	wg.Wait()
	stopBeat()
	beat.Wait()
	return nil
}

// heartbeat refreshes the heartbeats of names every Heartbeat until ctx is done, then removes
// them. It runs beside the consumer loops rather than in them, so that a consumer waiting in a
// long retry (MySQL down) still counts as live: it will write as soon as MySQL is back.
func (p *Projector) heartbeat(ctx context.Context, names []string) {
	ttl := HeartbeatTTL * p.cfg.Heartbeat
	t := time.NewTicker(p.cfg.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		bctx, cancel := context.WithTimeout(ctx, p.cfg.Heartbeat)
		err := p.ledger.Beat(bctx, names, ttl)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			p.log.Warn("heartbeat failed", "err", err)
			failing = true
		case err == nil && failing:
			p.log.Info("heartbeat back")
			failing = false
		}
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := p.ledger.Leave(lctx, names); err != nil {
				p.log.Warn("heartbeat not removed; it expires by itself", "in", ttl, "err", err)
			}
			return
		case <-t.C:
		}
	}
}

func (p *Projector) consumerName(w int) string {
	if p.cfg.Workers == 1 {
		return p.cfg.Consumer
	}
	return fmt.Sprintf("%s-%d", p.cfg.Consumer, w)
}

// consume reads the consumer's own pending entries first (ID 0: what it had read before a
// crash), then new ones, and projects them batch by batch.
func (p *Projector) consume(ctx context.Context, part int, consumer string) {
	id := "0"
	for ctx.Err() == nil {
		var events []ledger.Event
		err := p.retry(ctx, "read", func() (err error) {
			events, err = p.ledger.ReadGroup(ctx, part, p.cfg.Group, consumer, id, p.cfg.BatchSize, p.cfg.Block)
			if err != nil {
				// Redis may have delivered entries whose reply was lost: they are pending on
				// this consumer now, and only ID 0 reads them again.
				id = "0"
			}
			return err
		})
		if err != nil {
			return
		}
		if len(events) == 0 {
			id = ">"
			continue
		}
		n := p.handle(ctx, part, consumer, events)
		if id == ">" && p.cfg.Linger > 0 && int64(n) < p.cfg.BatchSize {
			sleep(ctx, p.cfg.Linger) // see Config.Linger
		}
	}
}

// claim takes over entries that another consumer of the group left pending for MinIdle (it
// crashed or lost its network), and projects them as this consumer.
func (p *Projector) claim(ctx context.Context, part int, consumer string) {
	t := time.NewTicker(p.cfg.ClaimEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := "0-0"
		for ctx.Err() == nil {
			events, next, err := p.ledger.AutoClaim(ctx, part, p.cfg.Group, consumer, p.cfg.MinIdle, start, p.cfg.BatchSize)
			if err != nil {
				if ctx.Err() == nil {
					p.log.Warn("claim failed", "partition", part, "err", err)
				}
				break
			}
			if len(events) > 0 {
				p.log.Info("claimed idle entries", "partition", part, "count", len(events))
				p.metrics.claimed.Add(float64(len(events)))
				p.handle(ctx, part, consumer, events)
			}
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
	}
}

// backoffStop, returned by retry's f, ends the retries with that error.
type backoffStop struct{ err error }

func (b backoffStop) Error() string { return b.err.Error() }

// retry runs f until it succeeds, returns a backoffStop, or ctx is done, backing off between
// attempts; it returns ctx's error in the last case.
func (p *Projector) retry(ctx context.Context, what string, f func() error) error {
	backoff := p.cfg.RetryMin
	for {
		err := f()
		if err == nil {
			return nil
		}
		if errors.As(err, &backoffStop{}) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.metrics.retries.WithLabelValues(what).Inc()
		p.log.Warn("retrying", "op", what, "in", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, p.cfg.RetryMax)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
