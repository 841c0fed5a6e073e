package projector

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/ledger"
)

// Metrics are the projector's Prometheus metrics.
type Metrics struct {
	events       *prometheus.CounterVec
	batchSize    prometheus.Histogram
	batchSeconds prometheus.Histogram
	restocks     prometheus.Counter
	malformed    prometheus.Counter
	retries      *prometheus.CounterVec
	claimed      prometheus.Counter
}

// NewMetrics creates the projector's metrics and registers them on reg (none when reg is nil).
// With l set, each scrape also reports every partition's lag and pending count for group.
func NewMetrics(reg prometheus.Registerer, l *ledger.Ledger, group string) *Metrics {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashsale_projector_events_total",
			Help: "Ledger events written to MySQL and acknowledged, by type.",
		}, []string{"type"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashsale_projector_batch_size",
			Help:    "Entries per projected batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 8),
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flashsale_projector_batch_seconds",
			Help:    "Time to project one batch: MySQL transaction, restocks and XACK.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 10),
		}),
		restocks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashsale_projector_restocks_total",
			Help: "Orders cancelled and restocked because they could never be projected.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashsale_projector_skipped_total",
			Help: "Dead entries: acknowledged without being projected or restocked, because they never could be (see flashsale pending).",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashsale_projector_retries_total",
			Help: "Transient failures retried, by operation.",
		}, []string{"op"}),
		claimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashsale_projector_claimed_total",
			Help: "Entries taken over from idle consumers.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.batchSize, m.batchSeconds, m.restocks, m.malformed, m.retries, m.claimed)
		if l != nil {
			reg.MustRegister(&groupCollector{l: l, group: group})
		}
	}
	return m
}

var (
	lagDesc = prometheus.NewDesc("flashsale_projector_lag",
		"Entries of the partition stream not yet delivered to the group; -1 when Redis cannot tell (see flashsale_projector_lag_seconds).", []string{"partition"}, nil)
	lagSecondsDesc = prometheus.NewDesc("flashsale_projector_lag_seconds",
		"Age of the oldest entry of the partition stream not yet delivered to the group; 0 when none.", []string{"partition"}, nil)
	pendingDesc = prometheus.NewDesc("flashsale_projector_pending",
		"Entries delivered to the group and not yet acknowledged.", []string{"partition"}, nil)
)

// groupCollector reads the group's lag and pending counts from Redis at scrape time, with
// Ledger.GroupStats: a bounded number of cheap commands per partition, never a read of the
// backlog, so a scrape costs the same however far behind the projector is.
type groupCollector struct {
	l     *ledger.Ledger
	group string
}

func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lagDesc
	ch <- lagSecondsDesc
	ch <- pendingDesc
}

func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	stats, err := c.l.GroupStats(ctx, c.group)
	if err != nil {
		return // Redis away: no series rather than a failed scrape
	}
	now := time.Now()
	for _, g := range stats {
		var age float64
		if !g.Oldest.IsZero() {
			age = max(now.Sub(g.Oldest).Seconds(), 0)
		}
		label := []string{strconv.Itoa(g.Partition)}
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(g.Lag), label...)
		ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, age, label...)
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(g.Pending), label...)
	}
}
