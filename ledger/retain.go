package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var (
	retainScript = redis.NewScript(lua.Retain)
	trimScript   = redis.NewScript(lua.Trim)
)

// DefaultRetain is how long ledger entries stay in Redis at least, by default.
const DefaultRetain = 24 * time.Hour

// StreamMS returns the millisecond part of a stream ID (0 for "" or an ID that does not parse).
func StreamMS(id string) int64 {
	p, _ := parsePos(id)
	return int64(p.ms)
}

// The consumer groups whose acknowledgements bound trimming.
const (
	// ProjectorGroup is the projector's group: an entry is trimmed only once projected.
	ProjectorGroup = "projector"
	// ArchiveGroup is the archiver's group: it acknowledges an entry only once the entry is
	// durably in the archive, and an entry is trimmed only once archived.
	ArchiveGroup = "archive"
)

// What holds a partition's trimming back (RetainState.HeldBy).
const (
	HeldByNothing     = ""
	HeldByRetention   = "retention"
	HeldByProjector   = "projector"
	HeldByArchive     = "archive"
	HeldByNoProjector = "no projector group"
	HeldByNoArchive   = "no archive group"
)

// RetainState is what bounds the trimming of one partition at one instant (one script call).
type RetainState struct {
	Partition int `json:"partition"`
	// Now is Redis's clock.
	Now time.Time `json:"now"`
	// First is the first retained entry after the checkpoint ("" when there is none), Length
	// the entries in the stream (the one at the checkpoint, which a trim keeps, included).
	First  string `json:"first_id,omitempty"`
	Length int64  `json:"length"`
	// Checkpoint is the stream ID the latest checkpoint folded through ("" when none).
	Checkpoint string `json:"checkpoint_id,omitempty"`
	// Projected and Archived are the stream IDs through which the projector and archive
	// groups have acknowledged every entry ("" when the group does not exist or has
	// acknowledged nothing).
	Projected string `json:"projected_through,omitempty"`
	Archived  string `json:"archived_through,omitempty"`
	// Horizon is the last stream ID older than the retention window.
	Horizon string `json:"retention_through"`
	// Safe is the minimum of Projected, Archived and Horizon: every entry up to it may be
	// trimmed ("" when none may).
	Safe string `json:"safe_through,omitempty"`
	// HeldBy names the position that Safe is (HeldByRetention when trimming keeps up).
	HeldBy string `json:"held_by"`
	// HeldBack is how much older than the retention window the first retained entry is:
	// 0 while trimming keeps up.
	HeldBack time.Duration `json:"held_back_ns"`
}

// RetainState reads what bounds the trimming of partition p with a retention window of
// retain: the projector's and the archiver's positions and the window. A missing group
// means that nothing may be trimmed. Errors: ErrInvalid, ErrUnavailable.
func (l *Ledger) RetainState(ctx context.Context, p int, retain time.Duration) (RetainState, error) {
	k := l.keys
	if p < 0 || p >= k.Partitions() {
		return RetainState{}, invalid("partition %d: want 0..%d", p, k.Partitions()-1)
	}
	v, err := retainScript.Run(ctx, l.rdb, []string{k.Events(p), k.Checkpoint(p)}, ProjectorGroup, ArchiveGroup).Result()
	if err != nil {
		return RetainState{}, redisErr("retain state", err)
	}
	a, code, err := scriptReply(v, 11)
	if err != nil {
		return RetainState{}, err
	}
	if code != 0 {
		return RetainState{}, fmt.Errorf("retain script: unknown code %d", code)
	}
	now, _ := strconv.ParseInt(str(a[1]), 10, 64)
	st := RetainState{Partition: p, Now: time.UnixMilli(now), First: str(a[2]), Checkpoint: str(a[4])}
	st.Length, _ = a[3].(int64)
	projected, pOK := groupThrough(a[5:8])
	archived, aOK := groupThrough(a[8:11])
	st.Projected, st.Archived = projected.idOrEmpty(), archived.idOrEmpty()
	horizon := streamPos{ms: uint64(max(now-retain.Milliseconds(), 1)) - 1, seq: ^uint64(0)}
	st.Horizon = horizon.String()
	safe, by := horizon, HeldByRetention
	switch {
	case !pOK:
		safe, by = streamPos{}, HeldByNoProjector
	case !aOK:
		safe, by = streamPos{}, HeldByNoArchive
	default:
		if projected.less(safe) {
			safe, by = projected, HeldByProjector
		}
		if archived.less(safe) {
			safe, by = archived, HeldByArchive
		}
	}
	st.Safe, st.HeldBy = safe.idOrEmpty(), by
	if first, ok := parsePos(st.First); ok && first.ms <= horizon.ms {
		st.HeldBack = time.Duration(horizon.ms-first.ms) * time.Millisecond
	}
	if st.First == "" || st.HeldBack == 0 {
		st.HeldBy = HeldByNothing
	}
	return st, nil
}

// groupThrough reads one group's {exists, last_delivered, lowest_pending} from the retain
// script: the position through which the group has acknowledged every entry. Entries up to
// the last delivered one are acknowledged but for those pending, so it is the entry before
// the lowest pending one, or the last delivered one when none is pending.
func groupThrough(a []any) (streamPos, bool) {
	if n, _ := a[0].(int64); n != 1 {
		return streamPos{}, false
	}
	last, _ := parsePos(str(a[1]))
	if lower, ok := parsePos(str(a[2])); ok {
		if prev := lower.prev(); prev.less(last) {
			last = prev
		}
	}
	return last, true
}

// prev is the position just before a (the zero position for the first ones).
func (a streamPos) prev() streamPos {
	switch {
	case a.seq > 0:
		return streamPos{a.ms, a.seq - 1}
	case a.ms > 0:
		return streamPos{a.ms - 1, ^uint64(0)}
	}
	return streamPos{}
}

// idOrEmpty is the position as a stream ID, "" for the zero position (before every entry).
func (a streamPos) idOrEmpty() string {
	if a == (streamPos{}) {
		return ""
	}
	return a.String()
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Checkpoint is the folded state of one partition through one stream position: what audit
// needs of the entries up to it once they are trimmed. Per item the books as audit folds them,
// and the orders still reserved at that position (the only older orders a later event can
// still change in ways that need their details).
type Checkpoint struct {
	Partition int `json:"partition"`
	// ID is the last stream ID folded in.
	ID    string                    `json:"id"`
	Items map[string]CheckpointItem `json:"items"`
	// Open are the orders still reserved at ID, by order ID.
	Open map[string]CheckpointOrder `json:"open,omitempty"`
	// Violations are what the fold found wrong in the entries folded (audit reports them).
	Violations []CheckpointViolation `json:"violations,omitempty"`
	// Entries counts the entries folded in since the ledger began.
	Entries int64 `json:"entries"`
}

// CheckpointItem is one item's books at a checkpoint.
type CheckpointItem struct {
	PutOnSale int64 `json:"put_on_sale"`
	Sold      int64 `json:"sold"`
	Reserved  int64 `json:"reserved"`
	Restocked int64 `json:"restocked"`
	Released  int64 `json:"released"`
	// Stock is the stock the events add up to.
	Stock int64 `json:"stock"`
	// Live counts the units of the orders up to the checkpoint that are live (not cancelled,
	// restocked or expired): what MySQL holds for them once projected.
	Live int64 `json:"live"`
	// The rules of the item's last stock event.
	Limit       int64 `json:"limit"`
	StartMS     int64 `json:"start_ms"`
	EndMS       int64 `json:"end_ms"`
	PayWithinMS int64 `json:"pay_within_ms"`
	Closed      bool  `json:"closed"`
	// Orders counts the item's order events.
	Orders int64 `json:"orders"`
}

// CheckpointOrder is an order still reserved at a checkpoint.
type CheckpointOrder struct {
	ItemID    string `json:"item_id"`
	RequestID string `json:"request_id"`
	Quantity  int64  `json:"quantity"`
	// State is set for a draw entry that holds no units yet: registered or waitlisted.
	State string `json:"state,omitempty"`
}

// CheckpointViolation is one violation found while folding into a checkpoint.
type CheckpointViolation struct {
	ItemID  string `json:"item_id,omitempty"`
	OrderID string `json:"order_id,omitempty"`
	What    string `json:"what"`
}

// LoadCheckpoint returns partition p's latest checkpoint from Redis, or a zero one (ID "")
// when none was written. Errors: ErrInvalid, ErrMalformed, ErrUnavailable.
func (l *Ledger) LoadCheckpoint(ctx context.Context, p int) (Checkpoint, error) {
	if p < 0 || p >= l.keys.Partitions() {
		return Checkpoint{}, invalid("partition %d: want 0..%d", p, l.keys.Partitions()-1)
	}
	v, err := l.rdb.HMGet(ctx, l.keys.Checkpoint(p), "id", "data").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Checkpoint{}, redisErr("read checkpoint", err)
	}
	c := Checkpoint{Partition: p, Items: map[string]CheckpointItem{}}
	id, data := str(v[0]), str(v[1])
	if id == "" {
		return c, nil
	}
	if err := json.Unmarshal([]byte(data), &c); err != nil || c.ID != id || c.Partition != p {
		return Checkpoint{}, fmt.Errorf("checkpoint of partition %d: %w", p, ErrMalformed)
	}
	if c.Items == nil {
		c.Items = map[string]CheckpointItem{}
	}
	return c, nil
}

// CheckpointID returns the stream ID partition p's latest checkpoint folded through ("" for
// none): one HGET, for a reader that must know whether a trim happened meanwhile.
func (l *Ledger) CheckpointID(ctx context.Context, p int) (string, error) {
	id, err := l.rdb.HGet(ctx, l.keys.Checkpoint(p), "id").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", redisErr("read checkpoint id", err)
	}
	return id, nil
}

// ErrCheckpointMoved: another trimmer moved the checkpoint first; nothing was done.
var ErrCheckpointMoved = errors.New("checkpoint moved")

// Trim records c as partition c.Partition's checkpoint and trims every entry before c.ID
// (XTRIM MINID; the entry at c.ID stays, so that an archive that ends there joins the stream
// without a gap), in one script call, if the checkpoint is still from (the ID c was folded
// from); else it does nothing and returns ErrCheckpointMoved. The caller must have checked
// that every entry up to c.ID is safe to trim (RetainState.Safe) and folded it into c. It
// returns the number of entries trimmed. Errors: ErrInvalid, ErrCheckpointMoved,
// ErrUnavailable.
func (l *Ledger) Trim(ctx context.Context, c Checkpoint, from string, data []byte) (int64, error) {
	pos, ok := parsePos(c.ID)
	if !ok || c.Partition < 0 || c.Partition >= l.keys.Partitions() {
		return 0, invalid("checkpoint %d/%q", c.Partition, c.ID)
	}
	k := l.keys
	v, err := trimScript.Run(ctx, l.rdb, []string{k.Checkpoint(c.Partition), k.Events(c.Partition)},
		from, c.ID, data, pos.String()).Result()
	if err != nil {
		return 0, redisErr("trim", err)
	}
	a, code, err := scriptReply(v, 2)
	if err != nil {
		return 0, err
	}
	n, _ := a[1].(int64)
	switch code {
	case 0:
		return n, nil
	case 1:
		return 0, ErrCheckpointMoved
	}
	return 0, fmt.Errorf("trim script: unknown code %d", code)
}
