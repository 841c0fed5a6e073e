package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	oklog "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// projectorFlags tune the projector.
type projectorFlags struct {
	consumer               *string
	workers                *int
	batch                  *int
	block, minIdle, writeT *time.Duration
	linger, heartbeat      *time.Duration
}

func (f *flags) projector() projectorFlags {
	return projectorFlags{
		consumer: f.str("consumer", "FLASHSALE_CONSUMER", "", "consumer name in the group; keep it stable across restarts (default: hostname)"),
		workers:  f.int("workers", "FLASHSALE_WORKERS", 1, "consumers per partition in this process"),
		batch:    f.int("batch", "FLASHSALE_BATCH", 500, "entries per MySQL transaction"),
		block:    f.duration("block", "FLASHSALE_BLOCK", time.Second, "how long one read waits for new entries"),
		linger:   f.duration("linger", "FLASHSALE_LINGER", projector.DefaultLinger, "after a read of new entries that did not fill a batch, how long to wait before the next: fewer, larger reads, XACKs and transactions, that much more projection lag (negative: no wait)"),
		minIdle:  f.duration("min-idle", "FLASHSALE_MIN_IDLE", 30*time.Second, "how long another consumer's entry must sit unacknowledged before it is taken over"),
		writeT:   f.duration("write-timeout", "FLASHSALE_WRITE_TIMEOUT", 10*time.Second, "bound on one MySQL transaction"),
		heartbeat: f.duration("heartbeat", "FLASHSALE_HEARTBEAT", 2*time.Second,
			fmt.Sprintf("how often the projector refreshes its heartbeat (replay -fresh refuses while one is fresh); a heartbeat lives %dx this", projector.HeartbeatTTL)),
	}
}

// build returns the projector of l on db, with its metrics on reg.
func (pf projectorFlags) build(l *ledger.Ledger, db *sql.DB, reg prometheus.Registerer, log *slog.Logger) (*projector.Projector, error) {
	return projector.New(l, projector.NewStore(db), projector.Config{
		Consumer:     *pf.consumer,
		Workers:      *pf.workers,
		BatchSize:    int64(*pf.batch),
		Block:        *pf.block,
		Linger:       *pf.linger,
		MinIdle:      *pf.minIdle,
		WriteTimeout: *pf.writeT,
		Heartbeat:    *pf.heartbeat,
	}, projector.NewMetrics(reg, l, projector.DefaultGroup), log)
}

// addProjector adds the projector to g: it stops when interrupted, after the batch in hand.
func addProjector(g *oklog.Group, ctx context.Context, p *projector.Projector) {
	pctx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return p.Run(pctx) }, func(error) { cancel() })
}

func project(ctx context.Context, e *env, args []string) error {
	f := e.flags("project", "", "Projects the ledger into MySQL only (no purchase API). Run several with distinct -consumer names to share the work.")
	rf := f.redis()
	rf.create = true
	pf := f.projector()
	sf := f.sweeper()
	arf := f.archive()
	tf := f.retention(true)
	dsn := f.mysqlDSN()
	metricsAddr := f.str("metrics", "FLASHSALE_METRICS_ADDR", "", "address for /metrics and /health (off when empty)")
	logger := f.logger()
	if err := f.parse(args); err != nil {
		return err
	}
	if err := tf.validate(); err != nil {
		return err
	}
	log := logger()
	l, db, closeAll, err := rf.openWithMySQL(ctx, *dsn)
	if err != nil {
		return err
	}
	defer closeAll()
	reg := newRegistry()
	p, err := pf.build(l, db, reg, log)
	if err != nil {
		return usageError{err.Error()}
	}
	var g oklog.Group
	addProjector(&g, ctx, p)
	addSweeper(&g, ctx, l, sf, reg, log)
	arch, err := arf.addArchiver(&g, ctx, l, *pf.consumer, reg, log)
	if err != nil {
		return err
	}
	if err := addRetainer(&g, ctx, l, tf, arch, log); err != nil {
		return err
	}
	reg.MustRegister(newRetainCollector(l, *tf.retain))
	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, `{"status":"ok"}`) })
		if err := addHTTP(&g, ctx, log, "metrics", *metricsAddr, mux, 5*time.Second, ingest.Limits{}); err != nil {
			return err
		}
	}
	addSignals(&g, ctx, log)
	err = g.Run()
	log.Info("stopped")
	return err
}
