package main

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	oklog "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
	"github.com/flashsale/flashsale/projector"
)

// retainFlags tune retention: how long the ledger keeps entries in Redis and how often it is
// trimmed.
type retainFlags struct {
	retain   *time.Duration
	interval *time.Duration
}

func (f *flags) retention(trims bool) retainFlags {
	rf := retainFlags{
		retain: f.duration("retain", "FLASHSALE_RETAIN", ledger.DefaultRetain,
			"how long ledger entries stay in Redis at least (only archived and projected ones older than this are trimmed; a sale window that ended longer ago closes its item)"),
	}
	if trims {
		rf.interval = f.duration("trim-interval", "FLASHSALE_TRIM_INTERVAL", projector.DefaultTrimInterval, "how often the ledger is trimmed and closed sales cleaned")
	}
	return rf
}

// validate refuses a retention that cannot work.
func (rf retainFlags) validate() error {
	if *rf.retain <= 0 {
		return usageError{"-retain " + rf.retain.String() + ": want more than 0"}
	}
	if rf.interval != nil && *rf.interval <= 0 {
		return usageError{"-trim-interval " + rf.interval.String() + ": want more than 0"}
	}
	return nil
}

// addRetainer adds to g the retainer of l: trims, closes ended sales and cleans closed ones.
// Checkpoints go to arch too, when the process has an archive.
func addRetainer(g *oklog.Group, ctx context.Context, l *ledger.Ledger, rf retainFlags, arch *archive.Archive, log *slog.Logger) error {
	// Never a window shorter than twice the sold-out lease: a winner tail answers locally only
	// while it read the stream less than the lease ago, and must not lose an entry it has not
	// read to a trim (docs/DESIGN.md, "A trimmed ledger").
	retain := *rf.retain
	if least := 2 * l.SoldOutLease(); retain < least {
		log.Warn("-retain is shorter than twice the sold-out lease: trimming keeps that much", "retain", retain, "kept", least)
		retain = least
	}
	cfg := projector.RetainConfig{Retain: retain, Interval: *rf.interval}
	if arch != nil {
		cfg.Archive = arch
	}
	r, err := projector.NewRetainer(l, cfg, log)
	if err != nil {
		return usageError{err.Error()}
	}
	rctx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return r.Run(rctx) }, func(error) { cancel() })
	return nil
}

// retainCollector reports at scrape time, per partition, what the ledger retains and how far
// its trimming is held back, and by what (ledger.RetainState: one script call per partition).
type retainCollector struct {
	l                          *ledger.Ledger
	retain                     time.Duration
	entries, heldBack, ckptAge *prometheus.Desc
}

func newRetainCollector(l *ledger.Ledger, retain time.Duration) *retainCollector {
	return &retainCollector{
		l: l, retain: retain,
		entries: prometheus.NewDesc("flashsale_ledger_retained_entries",
			"Entries of the partition's stream kept in Redis.", []string{"partition"}, nil),
		heldBack: prometheus.NewDesc("flashsale_ledger_held_back_seconds",
			"How much older than the retention window the partition's first retained entry is (0 while trimming keeps up), by what holds it: projector, archive, no projector group, no archive group, retention (the trimmer has not run yet).",
			[]string{"partition", "by"}, nil),
		ckptAge: prometheus.NewDesc("flashsale_ledger_checkpoint_age_seconds",
			"Age of the partition's latest checkpoint (the position it folded through); absent before the first trim.", []string{"partition"}, nil),
	}
}

func (c *retainCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.entries
	ch <- c.heldBack
	ch <- c.ckptAge
}

func (c *retainCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for p := range c.l.Keys().Partitions() {
		st, err := c.l.RetainState(ctx, p, c.retain)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.entries, err)
			return
		}
		part := strconv.Itoa(p)
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(st.Length), part)
		ch <- prometheus.MustNewConstMetric(c.heldBack, prometheus.GaugeValue, st.HeldBack.Seconds(), part, st.HeldBy)
		if ms := ledger.StreamMS(st.Checkpoint); ms > 0 {
			ch <- prometheus.MustNewConstMetric(c.ckptAge, prometheus.GaugeValue, st.Now.Sub(time.UnixMilli(ms)).Seconds(), part)
		}
	}
}
