package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/flashsale/flashsale/ledger"
)

// Metrics are the purchase path's Prometheus metrics.
type Metrics struct {
	purchases *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	payments  *prometheus.CounterVec
	cancels   *prometheus.CounterVec
	reg       prometheus.Registerer
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
	m.payments = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashsale_payments_total",
		Help: "Pay attempts by outcome (ok, closed, conflict, unknown_order, invalid, unavailable, unauthenticated, error).",
	}, []string{"outcome"})
	m.cancels = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "flashsale_buyer_cancels_total",
		Help: "Cancel attempts by buyers, by outcome (as flashsale_payments_total).",
	}, []string{"outcome"})
	reg.MustRegister(m.purchases, m.latency, m.inFlight, m.payments, m.cancels)
	m.reg = reg
	return m
}

// soldOutStats is the ledger's count of sold-out answers (ledger.Ledger has it).
type soldOutStats interface {
	WinnerStats() ledger.WinnerStats
}

// countSoldOut exports the sold-out answers that l gave from memory (the winner index) and
// from the purchase script, and its partitions answered locally now.
func (m *Metrics) countSoldOut(l soldOutStats) {
	answers := func(local bool) func() float64 {
		return func() float64 {
			st := l.WinnerStats()
			if local {
				return float64(st.SoldOutLocal)
			}
			return float64(st.SoldOutRedis)
		}
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "flashsale_sold_out_answers_total",
			Help:        "Sold-out answers of this process, by source: local (the winner index, no Redis command) or redis (the purchase script).",
			ConstLabels: prometheus.Labels{"source": "local"},
		}, answers(true)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "flashsale_sold_out_answers_total",
			Help:        "Sold-out answers of this process, by source: local (the winner index, no Redis command) or redis (the purchase script).",
			ConstLabels: prometheus.Labels{"source": "redis"},
		}, answers(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "flashsale_sold_out_leased_partitions",
			Help: "Partitions whose sold-out lease holds now: their sold-out items are answered from memory.",
		}, func() float64 { return float64(l.WinnerStats().Leased) }),
	} {
		m.reg.MustRegister(c)
	}
}

// outcomes are the labels outcome returns, at the indexes outcomeOf returns; their series exist
// from the start, at zero.
var outcomes = [...]string{"ok", "sold_out", "duplicate", "request_id_taken", "invalid", "unknown_item", "limit", "closed", "unavailable", "unauthenticated", "user_mismatch", "error"}

const (
	outOK = iota
	outSoldOut
	outDuplicate
	outRequestIDTaken
	outInvalid
	outUnknownItem
	outLimit
	outClosed
	outUnavailable
	outUnauthenticated
	outUserMismatch
	outError
)

// transportMetrics are one transport's series, resolved once so that a request does no label
// or map lookup.
type transportMetrics struct {
	latency  prometheus.Observer
	outcomes *[len(outcomes)]prometheus.Counter
	inFlight prometheus.Gauge
}

// count counts one purchase decided with err.
func (t transportMetrics) count(err error) { t.outcomes[outcomeOf(err)].Inc() }

// refused counts a purchase refused before the ledger was asked (no verified identity) and
// returns err.
func (t transportMetrics) refused(err error) error {
	t.count(err)
	return err
}

func (m *Metrics) transport(name string) transportMetrics {
	t := transportMetrics{
		latency:  m.latency.WithLabelValues(name),
		outcomes: new([len(outcomes)]prometheus.Counter),
		inFlight: m.inFlight,
	}
	for i, o := range outcomes {
		t.outcomes[i] = m.purchases.WithLabelValues(name, o)
	}
	return t
}

// Totals are the purchase metrics' values at one moment, summed over transports: purchases by
// outcome, and the latency histogram.
type Totals struct {
	Outcomes map[string]float64
	// Bounds are the latency buckets' upper bounds (seconds); Counts their cumulative counts,
	// then the count of every observation.
	Bounds []float64
	Counts []uint64
}

// Totals reads the values the purchase metrics hold, as a scrape of /metrics would.
func (m *Metrics) Totals() Totals {
	t := Totals{Outcomes: map[string]float64{}}
	for _, metric := range collect(m.purchases) {
		var out string
		for _, l := range metric.GetLabel() {
			if l.GetName() == "outcome" {
				out = l.GetValue()
			}
		}
		t.Outcomes[out] += metric.GetCounter().GetValue()
	}
	for _, metric := range collect(m.latency) {
		bs := metric.GetHistogram().GetBucket()
		if t.Bounds == nil {
			t.Bounds = make([]float64, len(bs))
			t.Counts = make([]uint64, len(bs)+1)
			for i, b := range bs {
				t.Bounds[i] = b.GetUpperBound()
			}
		}
		for i, b := range bs {
			t.Counts[i] += b.GetCumulativeCount()
		}
		t.Counts[len(bs)] += metric.GetHistogram().GetSampleCount()
	}
	return t
}

func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric, 32)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for pm := range ch {
		var d dto.Metric
		if pm.Write(&d) == nil {
			out = append(out, &d)
		}
	}
	return out
}
