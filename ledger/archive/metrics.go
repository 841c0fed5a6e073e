package archive

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the archiver's Prometheus metrics. A nil *Metrics counts nothing.
type Metrics struct {
	segments prometheus.Counter
	entries  prometheus.Counter
	failures prometheus.Counter
	held     prometheus.Gauge
}

// NewMetrics creates the archiver's metrics and registers them on reg (none when reg is nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		segments: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashsale_archive_segments_total",
			Help: "Segments this process wrote to the archive.",
		}),
		entries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashsale_archive_entries_total",
			Help: "Ledger entries this process wrote to the archive and acknowledged in the archive group.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "flashsale_archive_failures_total",
			Help: "Failed segment writes and stalls of a partition's archiving (each retried).",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flashsale_archive_partitions_held",
			Help: "Partitions whose archiver lease this process holds.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.segments, m.entries, m.failures, m.held)
	}
	return m
}

func (m *Metrics) written(entries int) {
	if m != nil {
		m.segments.Inc()
		m.entries.Add(float64(entries))
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.failures.Inc()
	}
}

func (m *Metrics) holding(delta float64) {
	if m != nil {
		m.held.Add(delta)
	}
}
