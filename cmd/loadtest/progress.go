package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows a run as it goes: a bar when w is a terminal, a line a second otherwise.
type progress struct {
	w     io.Writer
	bar   *progressbar.ProgressBar // nil: plain lines
	slots int64                    // the bar counts requests when known, else milliseconds
	dur   time.Duration

	done atomic.Int64
	stop chan struct{}
	wg   sync.WaitGroup
}

func newProgress(w io.Writer, cfg config) *progress {
	p := &progress{w: w, slots: cfg.slots(), dur: cfg.duration, stop: make(chan struct{})}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		total := p.slots
		if total == 0 {
			total = cfg.duration.Milliseconds()
		}
		p.bar = progressbar.NewOptions64(total, progressbar.OptionSetWriter(f),
			progressbar.OptionSetDescription(cfg.target+" "+cfg.addr),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	return p
}

// add counts one finished purchase.
func (p *progress) add() { p.done.Add(1) }

// start begins reporting; the run began at begin.
func (p *progress) start(begin time.Time) {
	every := time.Second
	if p.bar != nil {
		every = 200 * time.Millisecond
	}
	p.wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		last := int64(0)
		for {
			select {
			case <-p.stop:
				return
			case now := <-tick.C:
				done := p.done.Load()
				elapsed := now.Sub(begin)
				if p.bar == nil {
					fmt.Fprintf(p.w, "loadtest: %4.0fs  %d requests  %.0f req/s\n", elapsed.Seconds(), done, float64(done-last)/every.Seconds())
					last = done
					continue
				}
				p.bar.Describe(fmt.Sprintf("%d requests, %.0f req/s", done, float64(done)/elapsed.Seconds()))
				if p.slots > 0 {
					p.bar.Set64(done)
				} else {
					p.bar.Set64(min(elapsed.Milliseconds(), p.dur.Milliseconds()))
				}
			}
		}
	})
}

// finish stops reporting.
func (p *progress) finish() {
	close(p.stop)
	p.wg.Wait()
	if p.bar != nil {
		p.bar.Finish()
	}
}
