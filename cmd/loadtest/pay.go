package main

import (
	"context"
	"fmt"
	"time"
)

// payOutcome is how paying a won order ended, as the client saw it.
type payOutcome int

const (
	payOK        payOutcome = iota // paid (also: paid before, same payment_ref)
	payLate                        // 410 / expired: the deadline passed first; units come back
	payRefused                     // another 4xx: the order cannot be paid
	payAmbiguous                   // no verdict after the retries
	numPayOutcomes
)

type payCounts [numPayOutcomes]int64

// payments is the summary of a run with -pay.
type payments struct {
	Fraction  float64 `json:"fraction"`
	Paid      int64   `json:"paid"`
	Late      int64   `json:"late"`
	Refused   int64   `json:"refused"`
	Ambiguous int64   `json:"ambiguous"`
	// Unpaid counts the won orders nobody paid: their units must be back on sale.
	Unpaid int64 `json:"unpaid"`
	// SettledS is how long the stock took after the run to reach what the payments say.
	SettledS float64 `json:"settled_s"`
}

// settle waits, after a run with -pay, until every unpaid order's units are back: the stock
// is then exactly before minus the paid units (up to the replies without a verdict). It
// returns the last stock read.
func settle(ctx context.Context, t target, cfg config, res result, before int64) (int64, time.Duration, error) {
	start := time.Now()
	q := int64(cfg.quantity)
	paid := res.pays[payOK] * q
	slack := (res.counts.ambiguous() + res.pays[payAmbiguous]) * q
	var stock int64
	for {
		var err error
		rctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		stock, err = t.stock(rctx, cfg.item)
		cancel()
		if err != nil {
			return 0, time.Since(start), err
		}
		gone := before - stock
		if gone >= paid && gone <= paid+slack {
			return stock, time.Since(start), nil
		}
		if time.Since(start) > cfg.settle {
			return stock, time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verifyPaid checks the books of a run with -pay once settled: the units gone are those of the
// paid orders (never fewer: a paid unit back on sale, or an oversell; never more: an unpaid
// unit that did not come back), up to one purchase or payment per reply without a verdict.
func verifyPaid(cfg config, res result, before, after int64) verification {
	q := int64(cfg.quantity)
	v := verification{
		Item: cfg.item, StockBefore: before, StockAfter: after, Decrease: before - after,
		Acknowledged: res.pays[payOK] * q, Ambiguous: res.counts.ambiguous() + res.pays[payAmbiguous],
	}
	if after < 0 {
		v.violations = append(v.violations, fmt.Sprintf("negative stock: %d after", after))
	}
	switch {
	case v.Decrease < v.Acknowledged:
		v.violations = append(v.violations, fmt.Sprintf(
			"oversell: %d orders paid x %d = %d units, but the stock fell by only %d (%d -> %d)",
			res.pays[payOK], q, v.Acknowledged, v.Decrease, before, after))
	case v.Decrease > v.Acknowledged+v.Ambiguous*q:
		v.violations = append(v.violations, fmt.Sprintf(
			"unpaid units not back on sale after %s: the stock fell by %d (%d -> %d) but only %d units were paid and %d replies gave no verdict",
			cfg.settle, v.Decrease, before, after, v.Acknowledged, v.Ambiguous))
	}
	return v
}
