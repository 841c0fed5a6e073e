package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"
)

// summary is what a run prints: as text, or as JSON with -json. Field names are stable, for
// scripts.
type summary struct {
	Target     string         `json:"target"`
	Addr       string         `json:"addr"`
	Mode       string         `json:"mode"` // closed or open
	Clients    int            `json:"clients"`
	Rate       float64        `json:"rate,omitempty"`
	Item       string         `json:"item"`
	Quantity   int            `json:"quantity"`
	Users      int            `json:"users"`
	RunID      string         `json:"run_id"`
	Requests   int64          `json:"requests"`
	Missed     int64          `json:"missed,omitempty"`
	ElapsedS   float64        `json:"elapsed_s"`
	RPS        float64        `json:"rps"`
	ClientCPU  float64        `json:"client_cpu_cores"`
	Outcomes   outcomeCounts  `json:"outcomes"`
	Latency    latencySummary `json:"latency_ms"`
	Payments   *payments      `json:"payments,omitempty"`
	Verify     *verification  `json:"verify,omitempty"`
	Audit      *auditResult   `json:"audit,omitempty"`
	Violations []string       `json:"violations"`
	Passed     bool           `json:"passed"`
}

// outcomeCounts is counts with names, in the summary's order.
type outcomeCounts struct {
	OK          int64 `json:"ok"`
	SoldOut     int64 `json:"sold_out"`
	Duplicate   int64 `json:"duplicate"`
	Limit       int64 `json:"limit"`
	Closed      int64 `json:"closed"`
	NotFound    int64 `json:"not_found"`
	BadRequest  int64 `json:"bad_request"`
	Unavailable int64 `json:"unavailable"`
	Other       int64 `json:"other"`
	Transport   int64 `json:"transport_errors"`
}

// latencySummary holds latency percentiles in milliseconds.
type latencySummary struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func newSummary(cfg config, res result, cpu float64) summary {
	mode := "closed"
	if cfg.openLoop() {
		mode = "open"
	}
	c := res.counts
	ms := func(us int64) float64 { return float64(us) / 1000 }
	h := res.latency
	return summary{
		Target: cfg.target, Addr: cfg.addr, Mode: mode, Clients: cfg.clients, Rate: cfg.rate,
		Item: cfg.item, Quantity: cfg.quantity, Users: cfg.users, RunID: cfg.runID,
		Requests: res.done, Missed: res.missed,
		ElapsedS:  res.elapsed.Seconds(),
		RPS:       float64(res.done) / max(res.elapsed.Seconds(), 1e-9),
		ClientCPU: cpu,
		Outcomes: outcomeCounts{
			OK: c[outOK], SoldOut: c[outSoldOut], Duplicate: c[outDuplicate], Limit: c[outLimit],
			Closed: c[outClosed], NotFound: c[outNotFound], BadRequest: c[outBadRequest],
			Unavailable: c[outUnavailable], Other: c[outOther], Transport: c[outTransport],
		},
		Latency: latencySummary{
			P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
			P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000,
		},
		Violations: []string{},
	}
}

func (s summary) print(w io.Writer, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(s)
	}
	var b strings.Builder
	loop := fmt.Sprintf("closed loop, %d clients", s.Clients)
	if s.Mode == "open" {
		loop = fmt.Sprintf("open loop, %.0f req/s, up to %d in flight", s.Rate, s.Clients)
	}
	fmt.Fprintf(&b, "target       %s %s, %s\n", s.Target, s.Addr, loop)
	fmt.Fprintf(&b, "purchases    item %s x%d, users u0..u%d, request_ids %s-N\n", s.Item, s.Quantity, s.Users-1, s.RunID)
	fmt.Fprintf(&b, "requests     %d in %.2f s = %.0f req/s (client CPU %.2f cores)\n", s.Requests, s.ElapsedS, s.RPS, s.ClientCPU)
	if s.Missed > 0 {
		fmt.Fprintf(&b, "missed       %d scheduled requests were never sent (the run was stopped)\n", s.Missed)
	}
	o := s.Outcomes
	fmt.Fprintf(&b, "outcomes     ok %d, sold_out %d, duplicate %d, limit %d, closed %d, not_found %d, bad_request %d, unavailable %d, other %d, transport_errors %d\n",
		o.OK, o.SoldOut, o.Duplicate, o.Limit, o.Closed, o.NotFound, o.BadRequest, o.Unavailable, o.Other, o.Transport)
	l := s.Latency
	fmt.Fprintf(&b, "latency ms   p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Mean)
	if p := s.Payments; p != nil {
		fmt.Fprintf(&b, "payments     %.0f%% of the winners pay: paid %d, late %d, refused %d, no verdict %d; %d unpaid, back on sale in %.1f s\n",
			p.Fraction*100, p.Paid, p.Late, p.Refused, p.Ambiguous, p.Unpaid, p.SettledS)
	}
	if v := s.Verify; v != nil && s.Payments != nil {
		fmt.Fprintf(&b, "stock        %d -> %d: fell by %d; paid: %d units\n", v.StockBefore, v.StockAfter, v.Decrease, v.Acknowledged)
	} else if v != nil {
		fmt.Fprintf(&b, "stock        %d -> %d: fell by %d; replies: %d ok x %d = %d units", v.StockBefore, v.StockAfter, v.Decrease, o.OK, s.Quantity, v.Acknowledged)
		if v.Ambiguous > 0 {
			fmt.Fprintf(&b, ", %d replies without a verdict", v.Ambiguous)
		}
		b.WriteString("\n")
	}
	if a := s.Audit; a != nil {
		verdict := "clean"
		if !a.Passed {
			verdict = "FAILED"
		}
		fmt.Fprintf(&b, "audit        flashsale audit exit %d: %s\n", a.ExitCode, verdict)
		if a.Output != "" {
			fmt.Fprintf(&b, "%s\n", indent(a.Output, "  | "))
		}
	}
	if s.Passed {
		b.WriteString("result       PASS\n")
	} else {
		fmt.Fprintf(&b, "result       FAIL, %d violation(s):\n", len(s.Violations))
		for _, v := range s.Violations {
			fmt.Fprintf(&b, "  - %s\n", v)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cpuClock reads this process's CPU time (user + system), to tell how much of the machine
// the load generator itself used.
type cpuClock struct{ at time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{at: processCPU()} }

// cores is the CPU used since the clock started, divided by the wall time elapsed.
func (c cpuClock) cores(elapsed time.Duration) float64 {
	return (processCPU() - c.at).Seconds() / max(elapsed.Seconds(), 1e-9)
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
