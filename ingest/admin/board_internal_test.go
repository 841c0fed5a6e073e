package admin

import (
	"math"
	"testing"

	"github.com/flashsale/flashsale/ingest"
)

func TestBacklogGrowing(t *testing.T) {
	tests := []struct {
		h    []int64
		want bool
	}{
		{[]int64{0, 0, 0, 0, 0, 1, 2, 3, 4, 5}, true},
		{[]int64{10, 50, 20, 30, 40, 41, 60, 80, 90, 95}, true},
		{[]int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 3}, false},           // one batch arriving
		{[]int64{5, 0, 7, 0, 6, 0, 9, 0, 8, 12}, false},          // a projector keeping up
		{[]int64{90, 80, 70, 60, 50, 51, 52, 53, 54, 55}, false}, // still below where it began
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9}, false},              // window not full yet
		{[]int64{0, 1, 2, 3, 4, 5, 6, 7, 7, 8}, false},           // paused for a second
	}
	for _, tt := range tests {
		if got := growing(tt.h); got != tt.want {
			t.Errorf("growing(%v) = %v, want %v", tt.h, got, tt.want)
		}
	}
}

func TestQuantileOfHistogramDelta(t *testing.T) {
	bounds := []float64{0.001, 0.01, 0.1}
	before := ingest.Totals{Bounds: bounds, Counts: []uint64{100, 100, 100, 100}}
	// Since before: 50 observations <= 1 ms, 40 in (1 ms, 10 ms], 10 in (10 ms, 100 ms].
	after := ingest.Totals{Bounds: bounds, Counts: []uint64{150, 190, 200, 200}}
	tests := []struct{ q, want float64 }{
		{0.5, 0.001},               // the 50th of 100 is the last of the first bucket
		{0.7, 0.001 + 0.009*20/40}, // halfway through the second bucket
		{0.99, 0.01 + 0.09*9/10},   // nine tenths into the third
		{0.25, 0.001 * 25 / 50},    // inside the first bucket, from 0
	}
	for _, tt := range tests {
		got, ok := quantile(tt.q, before, after)
		if !ok || math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("quantile(%v) = %v, %v; want %v", tt.q, got, ok, tt.want)
		}
	}
	if _, ok := quantile(0.5, after, after); ok {
		t.Error("quantile with no observations in between reported a value")
	}
	// Observations above the last bound report the last bound, as histogram_quantile does.
	over := ingest.Totals{Bounds: bounds, Counts: []uint64{100, 100, 100, 110}}
	if got, ok := quantile(0.99, before, over); !ok || got != 0.1 {
		t.Errorf("quantile above the buckets = %v, %v; want 0.1", got, ok)
	}
}
