package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The archiver's names in Redis.
const (
	// Group is the archiver's consumer group on every partition stream. An entry the group
	// has acknowledged is durably in the archive: the archiver acknowledges entries only
	// after the segment holding them was written.
	Group = "archive"
	// LeaseName names the per-partition lease that makes one archiver at a time work on it.
	LeaseName = "archive"
)

// Source is the ledger as the archiver needs it; *ledger.Ledger is one.
type Source interface {
	// EnsureGroup creates a consumer group from the stream's first entry (kept if it exists).
	EnsureGroup(ctx context.Context, p int, group string) error
	// EntriesAfter returns up to count entries after the stream ID after, waiting up to block
	// for the first.
	EntriesAfter(ctx context.Context, p int, after string, count int64, block time.Duration) ([]redis.XMessage, error)
	// AckThrough leaves no entry up to through unacknowledged in group, and the group's last
	// delivered ID at least through, delivering nothing.
	AckThrough(ctx context.Context, p int, group, through string, count int64) error
	HoldLease(ctx context.Context, p int, name, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, p int, name, holder string) error
}

// Config tunes an Archiver; zero fields take the defaults.
type Config struct {
	// Partitions is the number of partition streams (required).
	Partitions int
	// Holder names this archiver in the leases (default host-pid-random).
	Holder string
	// SegmentEntries is the most entries in one segment (default 10,000).
	SegmentEntries int
	// SegmentAge is how long the first entry of a segment waits for more before the segment is
	// written anyway (default 5 s): the archive, and so trimming, lags the stream by about this.
	SegmentAge time.Duration
	// Poll is how long the archiver waits after a read that found fewer entries than it could
	// take (default 1 s; less when a segment's age runs out sooner).
	Poll time.Duration
	// LeaseTTL is how long a partition's lease lives unrenewed (default 10 s); it is renewed
	// every third of it, and an idle archiver tries for free leases as often.
	LeaseTTL time.Duration
	// Metrics, if set, counts segments, entries and failures.
	Metrics *Metrics
}

func (c *Config) setDefaults() {
	if c.Holder == "" {
		host, _ := os.Hostname()
		var b [4]byte
		rand.Read(b[:])
		c.Holder = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	if c.SegmentEntries <= 0 {
		c.SegmentEntries = 10_000
	}
	if c.SegmentAge <= 0 {
		c.SegmentAge = 5 * time.Second
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 10 * time.Second
	}
	c.Poll = min(c.Poll, c.LeaseTTL/3) // the lease is renewed between reads
}

// Archiver copies every partition stream into an archive, in order. Any number may run: each
// partition is worked on by the holder of its lease. A segment is written from the stream
// entries right after the archive's last (XRANGE, not the group's deliveries), then the group
// acknowledges them: a crash before the write leaves the entries to the next holder, a crash
// after it leaves a segment that the next holder reads as archived. Two holders at once (a
// lease that lapsed under a stalled process) can only write overlapping segments of the same
// entries, which Read gives once.
type Archiver struct {
	archive *Archive
	src     Source
	cfg     Config
	log     *slog.Logger
}

// NewArchiver returns an archiver of src into a.
func NewArchiver(a *Archive, src Source, cfg Config, log *slog.Logger) (*Archiver, error) {
	cfg.setDefaults()
	if cfg.Partitions < 1 {
		return nil, errors.New("archiver: no partitions")
	}
	return &Archiver{archive: a, src: src, cfg: cfg, log: log.With("component", "archiver", "archive", a.String())}, nil
}

// Run archives until ctx ends, then gives up its leases and returns nil. Failures (Redis or
// the archive unreachable) are logged and retried with backoff; they never stop Run.
func (ar *Archiver) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for p := range ar.cfg.Partitions {
		wg.Go(func() { ar.runPartition(ctx, p) })
	}
	wg.Wait()
	return nil
}

// runPartition takes partition p's lease whenever it is free and archives p while it holds it.
func (ar *Archiver) runPartition(ctx context.Context, p int) {
	log := ar.log.With("partition", p)
	every := ar.cfg.LeaseTTL / 3
	var failing error
	for ctx.Err() == nil {
		err := ar.src.EnsureGroup(ctx, p, Group)
		held := false
		if err == nil {
			held, err = ar.src.HoldLease(ctx, p, LeaseName, ar.cfg.Holder, ar.cfg.LeaseTTL)
		}
		if err == nil && held {
			ar.cfg.Metrics.holding(1)
			err = ar.holdPartition(ctx, p, log)
			ar.cfg.Metrics.holding(-1)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			ar.src.ReleaseLease(rctx, p, LeaseName, ar.cfg.Holder)
			cancel()
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && (failing == nil || failing.Error() != err.Error()):
			ar.cfg.Metrics.failed()
			log.Warn("archiving stalled; retrying", "err", err)
		case err != nil:
			ar.cfg.Metrics.failed()
		case err == nil && failing != nil:
			log.Info("archiving resumed")
		}
		failing = err
		sleep(ctx, every)
	}
}

// holdPartition archives p while its lease is held; it returns when the lease is lost (nil),
// on the first failure or when ctx ends.
func (ar *Archiver) holdPartition(ctx context.Context, p int, log *slog.Logger) error {
	renewed := time.Now()
	renew := func() error {
		if time.Since(renewed) < ar.cfg.LeaseTTL/3 {
			return nil
		}
		ok, err := ar.src.HoldLease(ctx, p, LeaseName, ar.cfg.Holder, ar.cfg.LeaseTTL)
		if err != nil {
			return err
		}
		if !ok {
			return errLeaseLost
		}
		renewed = time.Now()
		return nil
	}
	if n := ar.archive.RemoveStaleTemps(p); n > 0 {
		log.Info("removed temporary files of writers killed mid-write", "files", n)
	}
	through, err := ar.archive.Through(ctx, p)
	if err != nil {
		return err
	}
	if err := ar.src.AckThrough(ctx, p, Group, through, int64(ar.cfg.SegmentEntries)); err != nil {
		return err
	}
	log.Debug("archiving", "through", through)
	var buf []Entry
	var started time.Time
	for ctx.Err() == nil {
		if err := renew(); err != nil {
			if errors.Is(err, errLeaseLost) {
				log.Info("lease taken over by another archiver")
				return nil
			}
			return err
		}
		if len(buf) > 0 && (len(buf) >= ar.cfg.SegmentEntries || time.Since(started) >= ar.cfg.SegmentAge) {
			if err := ar.flush(ctx, p, through, buf, renew); err != nil {
				return err
			}
			through, buf = buf[len(buf)-1].ID, buf[:0]
			continue
		}
		after := through
		if len(buf) > 0 {
			after = buf[len(buf)-1].ID
		}
		want := ar.cfg.SegmentEntries - len(buf)
		msgs, err := ar.src.EntriesAfter(ctx, p, after, int64(want), 0)
		if err != nil {
			return err
		}
		if len(msgs) > 0 && len(buf) == 0 {
			started = time.Now()
		}
		for _, m := range msgs {
			buf = append(buf, entryOf(m))
		}
		if len(msgs) < want {
			// Polled rather than blocked: a blocking read would hold a pooled connection per
			// partition, which the purchase path needs.
			wait := ar.cfg.Poll
			if len(buf) > 0 {
				wait = min(wait, max(ar.cfg.SegmentAge-time.Since(started), time.Millisecond))
			}
			sleep(ctx, wait)
		}
	}
	return nil
}

var errLeaseLost = errors.New("lease lost")

// flush writes buf as the segment after through, retrying the same bytes until it is written
// (a write whose answer was lost is then written again identically), then acknowledges it.
func (ar *Archiver) flush(ctx context.Context, p int, through string, buf []Entry, renew func() error) error {
	backoff := 100 * time.Millisecond
	for {
		_, err := ar.archive.WriteSegment(ctx, p, through, buf)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		ar.cfg.Metrics.failed()
		ar.log.Warn("segment write failed; retrying", "partition", p, "err", err)
		sleep(ctx, backoff)
		backoff = min(2*backoff, 5*time.Second)
		if err := renew(); err != nil {
			return err
		}
	}
	if err := ar.src.AckThrough(ctx, p, Group, buf[len(buf)-1].ID, int64(len(buf))); err != nil {
		return err
	}
	ar.cfg.Metrics.written(len(buf))
	return nil
}

// entryOf copies a stream entry's fields (strings, as go-redis returns them).
func entryOf(m redis.XMessage) Entry {
	f := make(map[string]string, len(m.Values))
	for k, v := range m.Values {
		switch v := v.(type) {
		case string:
			f[k] = v
		default:
			f[k] = fmt.Sprint(v)
		}
	}
	return Entry{ID: m.ID, Fields: f}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
