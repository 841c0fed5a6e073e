package main

import (
	"context"
	"fmt"

	oklog "github.com/oklog/run"

	"github.com/flashsale/flashsale/ingest/admin"
	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

// boardAudit runs `flashsale audit`'s check for the live board and summarises its report.
func boardAudit(l *ledger.Ledger, store *projector.Store) admin.AuditFunc {
	return func(ctx context.Context) (admin.AuditSummary, error) {
		rep, err := projector.Audit(ctx, l, store, projector.DefaultGroup)
		if err != nil {
			return admin.AuditSummary{}, err
		}
		sum := admin.AuditSummary{
			Clean: rep.Clean(), Items: len(rep.Items), Pending: rep.Pending,
			ViolationCount: len(rep.Violations), Violations: []string{},
		}
		for i, v := range rep.Violations {
			if i == 20 {
				sum.Violations = append(sum.Violations, fmt.Sprintf("… and %d more (flashsale audit lists them all)", len(rep.Violations)-i))
				break
			}
			line := "item " + dash(v.ItemID)
			if v.OrderID != "" {
				line += " order " + v.OrderID
			}
			sum.Violations = append(sum.Violations, line+": "+v.What)
		}
		return sum, nil
	}
}

// addBoard adds to g the live board's sampler; interrupted, it also ends the board's open
// event streams, which would otherwise hold the HTTP server's shutdown until its timeout.
func addBoard(g *oklog.Group, ctx context.Context, b *admin.Board) {
	bctx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return b.Run(bctx) }, func(error) { cancel() })
}
