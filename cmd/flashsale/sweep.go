package main

import (
	"context"
	"log/slog"
	"time"

	oklog "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/ledger"
)

// sweepFlags tune the sweeper that expires unpaid reserved orders.
type sweepFlags struct {
	interval *time.Duration
	batch    *int
}

func (f *flags) sweeper() sweepFlags {
	return sweepFlags{
		interval: f.duration("sweep-interval", "FLASHSALE_SWEEP_INTERVAL", time.Second, "how often reserved orders past their pay_by are expired (0 = no sweeper in this process)"),
		batch:    f.int("sweep-batch", "FLASHSALE_SWEEP_BATCH", 100, "due orders read per partition at a time"),
	}
}

// addSweeper adds the sweeper of l to g, with its metrics on reg, unless it is turned off.
func addSweeper(g *oklog.Group, ctx context.Context, l *ledger.Ledger, sf sweepFlags, reg prometheus.Registerer, log *slog.Logger) {
	if *sf.interval <= 0 {
		return
	}
	s := l.NewSweeper(*sf.interval, int64(*sf.batch), log)
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flashsale_sweeper_lag_seconds",
			Help: "How far Redis's clock was past the oldest payment deadline still due after the sweeper's last round (0: none overdue).",
		}, func() float64 { return s.Lag().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flashsale_reservations_open",
			Help: "Orders reserved and awaiting payment, at the sweeper's last round.",
		}, func() float64 { return float64(s.Open()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "flashsale_expired_total",
			Help: "Reserved orders this process's sweeper expired (units back on sale).",
		}, func() float64 { return float64(s.Expired()) }),
	)
	sctx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return s.Run(sctx) }, func(error) { cancel() })
}
