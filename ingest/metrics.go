package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the purchase path's Prometheus metrics.
type Metrics struct {
	purchases *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	inFlight  prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		purchases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flashsale_purchases_total",
			Help: "Purchase attempts by transport and outcome (ok, sold_out, duplicate, request_id_taken, limit, closed, unknown_item, invalid, unavailable, unauthenticated, user_mismatch, error).",
		}, []string{"transport", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flashsale_purchase_duration_seconds",
			Help:    "Time to decide a purchase, from decoded request to reply, by transport.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"transport"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "flashsale_purchases_in_flight",
			Help: "Purchases being decided right now.",
		}),
	}
	reg.MustRegister(m.purchases, m.latency, m.inFlight)
	return m
}

// outcomes are the labels outcome returns; their series exist from the start, at zero.
var outcomes = []string{"ok", "sold_out", "duplicate", "request_id_taken", "invalid", "unknown_item", "limit", "closed", "unavailable", "unauthenticated", "user_mismatch", "error"}

// transportMetrics are one transport's series, resolved once so that a request does no label
// lookup.
type transportMetrics struct {
	latency  prometheus.Observer
	outcomes map[string]prometheus.Counter
	inFlight prometheus.Gauge
}

// refused counts a purchase refused before the ledger was asked (no verified identity) and
// returns err.
func (t transportMetrics) refused(err error) error {
	c, ok := t.outcomes[outcome(err)]
	if !ok {
		c = t.outcomes["error"]
	}
	c.Inc()
	return err
}

func (m *Metrics) transport(name string) transportMetrics {
	t := transportMetrics{
		latency:  m.latency.WithLabelValues(name),
		outcomes: make(map[string]prometheus.Counter, len(outcomes)),
		inFlight: m.inFlight,
	}
	for _, o := range outcomes {
		t.outcomes[o] = m.purchases.WithLabelValues(name, o)
	}
	return t
}
