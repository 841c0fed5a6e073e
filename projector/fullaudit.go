package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/ledger/archive"
)

// HistoryAudit is what AuditHistory found: the entries refolded and the checkpoints checked.
type HistoryAudit struct {
	Entries     int64 `json:"entries"`
	Checkpoints int   `json:"checkpoints"`
}

// AuditHistory refolds every partition's whole history, the archive first and then the
// retained stream after it, with audit's fold, and checks every checkpoint (each one the
// archive holds, and the one in Redis) against the refold at its position: a checkpoint that
// differs, or that no entry reaches, is a violation. A damaged archive file stops it with an
// error that names the file (archive.ErrCorrupt); nothing is reported from a partial read.
func AuditHistory(ctx context.Context, l *ledger.Ledger, arch *archive.Archive) (HistoryAudit, []Violation, error) {
	var h HistoryAudit
	var out []Violation
	keys := l.Keys()
	for p := range keys.Partitions() {
		checks, err := historyChecks(ctx, l, arch, p)
		if err != nil {
			return h, nil, err
		}
		pa := fromCheckpoint(ledger.Checkpoint{Partition: p})
		last := ""
		// check compares every checkpoint at or before the fold's position with it.
		check := func() {
			for len(checks) > 0 && ledger.CompareIDs(checks[0].id, last) <= 0 {
				c := checks[0]
				checks = checks[1:]
				h.Checkpoints++
				if c.id != last {
					out = append(out, Violation{What: fmt.Sprintf("partition %d: %s is at no entry of the history", p, c.where)})
					continue
				}
				if what := compareCheckpoint(pa.checkpointAt(p, last), c.data); what != "" {
					out = append(out, Violation{What: fmt.Sprintf("partition %d: %s differs from the refold: %s", p, c.where, what)})
				}
			}
		}
		// apply folds one entry (all its events: a checkpoint is never inside an entry).
		apply := func(entry []ledger.Event) {
			id := entry[0].StreamID
			if len(checks) > 0 && ledger.CompareIDs(checks[0].id, id) < 0 {
				check()
			}
			pa.applyEntry(keys, p, entry)
			last = id
			h.Entries++
			check()
		}
		err = arch.Read(ctx, p, "", func(e archive.Entry) error {
			apply(l.DecodeEntry(p, e.ID, e.Fields))
			return nil
		})
		if err != nil {
			return h, nil, fmt.Errorf("audit history of partition %d: %w", p, err)
		}
		if first, err := l.TrimmedPast(ctx, p, last); err != nil {
			return h, nil, err
		} else if first != "" {
			return h, nil, fmt.Errorf("audit history of partition %d: the stream starts at %s, after the archive's end %q: entries are missing", p, first, last)
		}
		for {
			events, err := l.Range(ctx, p, last, 1000)
			if err != nil {
				return h, nil, err
			}
			if len(events) == 0 {
				break
			}
			for entry := range ledger.ByEntry(events) {
				apply(entry)
			}
		}
		for _, c := range checks {
			h.Checkpoints++
			out = append(out, Violation{What: fmt.Sprintf("partition %d: %s is past the history's end %q", p, c.where, last)})
		}
	}
	return h, out, nil
}

// historyCheck is a stored checkpoint that AuditHistory compares with the refold: its ID,
// where it is kept, and its data.
type historyCheck struct {
	id, where string
	data      []byte
}

// historyChecks returns partition p's checkpoints in order of ID: each one the archive holds,
// and the one in Redis (after an archive one at the same ID).
func historyChecks(ctx context.Context, l *ledger.Ledger, arch *archive.Archive, p int) ([]historyCheck, error) {
	stored, err := arch.Checkpoints(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("audit history of partition %d: %w", p, err)
	}
	var checks []historyCheck
	for _, c := range stored {
		checks = append(checks, historyCheck{c.ID, "archive checkpoint " + c.ID, c.Data})
	}
	redisCkpt, err := l.LoadCheckpoint(ctx, p)
	if err != nil {
		return nil, err
	}
	if redisCkpt.ID != "" {
		data, err := json.Marshal(redisCkpt)
		if err != nil {
			return nil, fmt.Errorf("encode checkpoint: %w", err)
		}
		i := 0
		for i < len(checks) && ledger.CompareIDs(checks[i].id, redisCkpt.ID) <= 0 {
			i++
		}
		checks = append(checks[:i], append([]historyCheck{{redisCkpt.ID, "Redis checkpoint " + redisCkpt.ID, data}}, checks[i:]...)...)
	}
	return checks, nil
}

// compareCheckpoint returns what differs between the refold got and the stored checkpoint
// data, or "".
func compareCheckpoint(got ledger.Checkpoint, data []byte) string {
	var want ledger.Checkpoint
	if err := json.Unmarshal(data, &want); err != nil {
		return "does not decode: " + err.Error()
	}
	switch {
	case want.Partition != got.Partition || want.ID != got.ID:
		return fmt.Sprintf("names %d/%s", want.Partition, want.ID)
	case want.Entries != got.Entries:
		return fmt.Sprintf("%d entries folded, the refold %d", want.Entries, got.Entries)
	}
	for id, w := range want.Items {
		if g, ok := got.Items[id]; !ok || g != w {
			return fmt.Sprintf("item %s: %+v, the refold %+v", id, w, g)
		}
	}
	for id := range got.Items {
		if _, ok := want.Items[id]; !ok {
			return fmt.Sprintf("item %s missing", id)
		}
	}
	if len(want.Open) != len(got.Open) || (len(want.Open) > 0 && !reflect.DeepEqual(want.Open, got.Open)) {
		return fmt.Sprintf("%d orders reserved, the refold %d", len(want.Open), len(got.Open))
	}
	if len(want.Violations) != len(got.Violations) {
		return fmt.Sprintf("%d violations, the refold %d", len(want.Violations), len(got.Violations))
	}
	return ""
}
