package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// verification compares the item's stock before and after a run with what the replies said.
// It assumes that nothing else changed the item's stock during the run.
type verification struct {
	Item        string `json:"item"`
	StockBefore int64  `json:"stock_before"`
	StockAfter  int64  `json:"stock_after"`
	// Decrease is StockBefore - StockAfter: the units sold during the run.
	Decrease int64 `json:"decrease"`
	// Acknowledged is ok replies x quantity: the units the server said it sold.
	Acknowledged int64 `json:"acknowledged"`
	// Ambiguous counts replies that do not tell whether a purchase happened (no reply, 503,
	// other errors): each may hide up to one purchase the client never heard of.
	Ambiguous int64 `json:"ambiguous"`

	violations []string
}

// verifyStock checks the books of one run:
//   - the stock is never negative;
//   - every unit a success reply claims left the stock: fewer units gone than acknowledged is
//     an oversell (the server said yes more often than it had stock for);
//   - every unit that left the stock was acknowledged, allowing one purchase per reply that
//     gave no verdict;
//   - no sold-out reply came while the stock never fell below the quantity asked for.
func verifyStock(cfg config, c counts, before, after int64) verification {
	q := int64(cfg.quantity)
	v := verification{
		Item: cfg.item, StockBefore: before, StockAfter: after, Decrease: before - after,
		Acknowledged: c[outOK] * q, Ambiguous: c.ambiguous(),
	}
	if before < 0 || after < 0 {
		v.violations = append(v.violations, fmt.Sprintf("negative stock: %d before, %d after", before, after))
	}
	switch {
	case v.Decrease < v.Acknowledged:
		v.violations = append(v.violations, fmt.Sprintf(
			"oversell: %d ok replies x %d = %d units acknowledged, but the stock fell by only %d (%d -> %d)",
			c[outOK], q, v.Acknowledged, v.Decrease, before, after))
	case v.Decrease > v.Acknowledged+v.Ambiguous*q:
		v.violations = append(v.violations, fmt.Sprintf(
			"unacknowledged sales: the stock fell by %d (%d -> %d) but only %d units were acknowledged and %d replies gave no verdict",
			v.Decrease, before, after, v.Acknowledged, v.Ambiguous))
	}
	// The stock only falls during a run, so it was at least `after` throughout.
	if c[outSoldOut] > 0 && after >= q {
		v.violations = append(v.violations, fmt.Sprintf(
			"%d sold-out replies although the stock never fell below %d (quantity %d)", c[outSoldOut], after, q))
	}
	return v
}

// auditResult is the outcome of `flashsale audit` after a run.
type auditResult struct {
	Command  string `json:"command"`
	ExitCode int    `json:"exit_code"`
	Passed   bool   `json:"passed"`
	Error    string `json:"error,omitempty"`
	Output   string `json:"output,omitempty"` // on failure: the audit's report
}

// runAudit runs cfg.flashsale audit against cfg's Redis, MySQL and prefix; it passes when the
// audit exits 0.
func runAudit(ctx context.Context, cfg config) auditResult {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	args := []string{"audit", "-redis", cfg.auditRedis, "-mysql", cfg.auditMySQL, "-prefix", cfg.prefix}
	cmd := exec.CommandContext(ctx, cfg.flashsale, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	a := auditResult{Command: cfg.flashsale + " audit -redis " + cfg.auditRedis + " -mysql *** -prefix " + cfg.prefix}
	if err == nil {
		a.Passed = true
		return a
	}
	a.ExitCode = -1
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		a.ExitCode = exit.ExitCode()
	}
	a.Error = err.Error()
	a.Output = lastLines(out.String(), 40)
	return a
}

// lastLines returns at most n final lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
