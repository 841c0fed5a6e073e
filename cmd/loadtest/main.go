// Command loadtest drives flashsale's purchase API over HTTP or gRPC, closed loop (N clients
// each waiting for its reply) or open loop (a fixed rate, latency measured from the intended
// send time), and then checks the books: the stock must have fallen by exactly the units the
// successful replies claim, and never below zero. With -audit-redis and -audit-mysql it also
// runs `flashsale audit`. It exits 1 on any violation.
//
// `loadtest bare` serves a purchase handler that decodes the body like flashsale and answers
// sold out without asking Redis: the ceiling of an HTTP server on the machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
	}
	os.Exit(exitCode(err))
}

// usageError marks a mistake on the command line, or a run that could not start (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// violationError says the run finished and the books do not add up (exit 1).
type violationError struct{ n int }

func (e violationError) Error() string { return fmt.Sprintf("%d violation(s)", e.n) }

// exitCode is 0 for success or -h, 1 for violations, 2 for anything that kept the run from
// telling (usage, an unreachable target, a failed stock read).
func exitCode(err error) int {
	var v violationError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &v):
		return 1
	}
	return 2
}

// run is the whole program, callable from tests: args excludes the program name. The
// summary goes to stdout; progress and the bare server's log lines go to stderr.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "bare" {
		return bare(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "draw" {
		return drawLoad(ctx, args[1:], stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	return load(ctx, cfg, stdout, stderr)
}

// load runs one measured load against cfg's target and prints its summary.
func load(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	t, err := dial(cfg)
	if err != nil {
		return usageError{err.Error()}
	}
	defer t.close()

	var before int64
	if cfg.verify {
		if before, err = t.stock(ctx, cfg.item); err != nil {
			return usageError{fmt.Sprintf("read stock of %s before the run: %v", cfg.item, err)}
		}
	}
	cpu := startCPU()
	prog := newProgress(stderr, cfg)
	res := generate(ctx, t, cfg, prog)
	prog.finish()
	sum := newSummary(cfg, res, cpu.cores(res.elapsed))

	if cfg.verify {
		// The run's own context may be cancelled (Ctrl-C): still read the stock after it.
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.timeout)
		after, err := t.stock(vctx, cfg.item)
		cancel()
		var took time.Duration
		if err == nil && cfg.pay > 0 {
			after, took, err = settle(context.WithoutCancel(ctx), t, cfg, res, before)
		}
		switch {
		case err != nil:
			sum.Violations = append(sum.Violations, fmt.Sprintf("cannot read the stock of %s after the run: %v", cfg.item, err))
		case cfg.pay > 0:
			v := verifyPaid(cfg, res, before, after)
			sum.Verify = &v
			sum.Violations = append(sum.Violations, v.violations...)
		default:
			v := verifyStock(cfg, res.counts, before, after)
			sum.Verify = &v
			sum.Violations = append(sum.Violations, v.violations...)
		}
		if cfg.pay > 0 {
			p := res.pays
			sum.Payments = &payments{Fraction: cfg.pay, Paid: p[payOK], Late: p[payLate], Refused: p[payRefused],
				Ambiguous: p[payAmbiguous], Unpaid: res.counts[outOK] - p[payOK], SettledS: took.Seconds()}
		}
	}
	if cfg.auditRedis != "" {
		a := runAudit(context.WithoutCancel(ctx), cfg)
		sum.Audit = &a
		if !a.Passed {
			sum.Violations = append(sum.Violations, "flashsale audit failed: "+a.Error)
		}
	}
	sum.Passed = len(sum.Violations) == 0
	if err := sum.print(stdout, cfg.json); err != nil {
		return err
	}
	if !sum.Passed {
		return violationError{len(sum.Violations)}
	}
	return nil
}
