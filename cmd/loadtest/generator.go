package main

import (
	"context"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// maxLatency is the largest latency the histograms track, in microseconds; longer ones are
// recorded as this value.
const maxLatency = int64(time.Minute / time.Microsecond)

// newHistogram returns a latency histogram in microseconds, three significant digits.
func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxLatency, 3) }

// result is what one run measured.
type result struct {
	counts  counts
	latency *hdrhistogram.Histogram // microseconds
	elapsed time.Duration
	done    int64 // purchases sent and classified
	missed  int64 // open loop: scheduled sends that never happened because the run was stopped
	pays    payCounts
}

// generate sends purchases to t as cfg says and returns the counts and latencies. Closed
// loop: cfg.clients workers each send their next purchase when the last one returned, and
// latency is reply time minus send time. Open loop: send i is due at start + i/rate; a worker
// takes the next due send, waits for its time (or sends at once when behind) and measures
// latency from the due time, so a server that stalls is charged for the sends it held up.
// The run ends when the duration is over or cfg.requests were sent; in-flight requests get
// up to cfg.timeout more, then the run is cut off.
func generate(ctx context.Context, t target, cfg config, prog *progress) result {
	start := time.Now()
	var deadline time.Time
	if cfg.duration > 0 {
		deadline = start.Add(cfg.duration)
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(cfg.timeout+time.Second))
		defer cancel()
	}
	prog.start(start)
	var seq atomic.Int64
	workers := make([]*worker, cfg.clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{id: i, hist: newHistogram(), t: t, cfg: cfg, seq: &seq, prog: prog, start: start, deadline: deadline}
		workers[i] = w
		wg.Go(func() { w.run(ctx) })
	}
	wg.Wait()
	res := result{latency: newHistogram(), elapsed: time.Since(start)}
	for _, w := range workers {
		for o, n := range w.counts {
			res.counts[o] += n
		}
		for o, n := range w.pays {
			res.pays[o] += n
		}
		res.latency.Merge(w.hist)
	}
	res.done = res.counts.total()
	if cfg.openLoop() {
		res.missed = max(cfg.slots()-res.done, 0)
	}
	return res
}

// worker is one client of the generator; it keeps its own counts and histogram, merged when
// the run is over.
type worker struct {
	id              int
	t               target
	cfg             config
	seq             *atomic.Int64 // the next send's number, shared by the workers
	prog            *progress
	start, deadline time.Time // deadline zero: no time limit
	counts          counts
	pays            payCounts
	hist            *hdrhistogram.Histogram
}

func (w *worker) run(ctx context.Context) {
	cfg := w.cfg
	slots := cfg.slots()
	var interval float64 // nanoseconds between due times, open loop
	if cfg.openLoop() {
		interval = float64(time.Second) / cfg.rate
	}
	for ctx.Err() == nil {
		i := w.seq.Add(1) - 1
		if slots > 0 && i >= slots {
			return
		}
		var sent time.Time
		if cfg.openLoop() {
			sent = w.start.Add(time.Duration(float64(i) * interval))
			if !w.deadline.IsZero() && !sent.Before(w.deadline) {
				return
			}
			if !sleepUntil(ctx, sent) {
				return
			}
		} else {
			sent = time.Now()
			if !w.deadline.IsZero() && !sent.Before(w.deadline) {
				return
			}
		}
		p := purchase{
			requestID: cfg.runID + "-" + strconv.FormatInt(i, 10),
			userID:    "u" + strconv.Itoa(rand.IntN(cfg.users)),
			item:      cfg.item,
			quantity:  cfg.quantity,
		}
		rctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		o, orderID := w.t.purchase(rctx, w.id, p)
		cancel()
		w.record(o, time.Since(sent))
		if o == outOK && orderID != "" && cfg.pay > 0 && rand.Float64() < cfg.pay {
			w.payOrder(context.WithoutCancel(ctx), orderID, p.userID, p.requestID)
		}
	}
}

// payOrder pays an order it won as its user, retrying (with the same payment_ref, which is
// safe) when a reply gives no verdict.
func (w *worker) payOrder(ctx context.Context, orderID, user, ref string) {
	o := payAmbiguous
	for range 3 {
		pctx, cancel := context.WithTimeout(ctx, w.cfg.timeout)
		o = w.t.pay(pctx, w.id, orderID, user, ref)
		cancel()
		if o != payAmbiguous {
			break
		}
	}
	w.pays[o]++
}

func (w *worker) record(o outcome, d time.Duration) {
	w.counts[o]++
	us := min(max(d.Microseconds(), 1), maxLatency)
	w.hist.RecordValue(us)
	w.prog.add()
}

// sleepUntil waits until t; it returns false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
