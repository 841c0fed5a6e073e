package ledger

import (
	"strconv"
	"strings"
)

// Keys builds every Redis key of the ledger; no other code spells a key name. Every key that
// one script touches carries its partition's hash tag ({pN}), so each script runs in one slot
// on a single Redis as on Redis Cluster.
type Keys struct {
	prefix     string
	partitions int
}

// NewKeys returns the key builder for a ledger under prefix with the given partition count.
func NewKeys(prefix string, partitions int) Keys {
	return Keys{prefix: prefix, partitions: partitions}
}

// Prefix reports the prefix of every key of the ledger.
func (k Keys) Prefix() string { return k.prefix }

// Partitions reports the number of partition streams.
func (k Keys) Partitions() int { return k.partitions }

// Partition returns the partition that owns item: FNV-1a of the item ID modulo the count.
// (hash/fnv's, computed in place: it is on every purchase's path, and that one allocates.)
func (k Keys) Partition(item string) int {
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for i := 0; i < len(item); i++ {
		h ^= uint32(item[i])
		h *= prime32
	}
	return int(h % uint32(k.partitions))
}

// Meta is the hash that records the ledger's fixed settings (partitions). It is read once when
// the ledger is opened and is not touched by any script.
func (k Keys) Meta() string { return k.prefix + ":meta" }

// Events is partition p's ledger stream.
func (k Keys) Events(p int) string { return k.tag(p) + "events" }

// Dead is partition p's hash of dead entries: stream ID -> why the projector acknowledged
// that entry without projecting or restocking it.
func (k Keys) Dead(p int) string { return k.tag(p) + "dead" }

// Alive is partition p's heartbeat set: consumer name -> expiry (unix ms, Redis's clock) of
// the projectors running a consumer on p.
func (k Keys) Alive(p int) string { return k.tag(p) + "alive" }

// Items is the set of the item IDs of partition p that have ever been given stock (the
// stock script adds them), so that items can be listed without SCAN, also on Redis Cluster.
func (k Keys) Items(p int) string { return k.tag(p) + "items" }

// ID is the string that names the ledger (random, set once): an archive records the ID of
// the ledger it holds and refuses another's.
func (k Keys) ID() string { return k.prefix + ":id" }

// Lease is partition p's lease called name: the name of the one process that may do that
// partition's work of that kind (the archiver's), with a TTL.
func (k Keys) Lease(p int, name string) string { return k.tag(p) + "lease:" + name }

// Due is partition p's sorted set of reserved orders by payment deadline: order_id -> pay_by
// (unix ms, Redis's clock). The sweeper reads it; pay, cancel and expire remove from it.
func (k Keys) Due(p int) string { return k.tag(p) + "due" }

// Order is the state hash of orderID, an order of partition p placed under a pay-within rule:
// state (reserved, paid, cancelled or expired), pay_by, user_id, item_id, request_id, quantity,
// ts, and once paid payment_ref and paid_at.
func (k Keys) Order(p int, orderID string) string { return k.OrderPrefix(p) + orderID }

// OrderPrefix is Order without the order ID: the purchase script completes it with the ID it
// gives the order.
func (k Keys) OrderPrefix(p int) string { return k.tag(p) + "order:" }

// Sync is partition p's counter that a pipeline waiting for replicas (-min-replicas) writes
// before WAIT, so that the wait covers everything its scripts read.
func (k Keys) Sync(p int) string { return k.tag(p) + "sync" }

// syncKeyOf is the Sync key of the partition of key (a key of the ledger with a {pN} tag).
func syncKeyOf(key string) string {
	if i := strings.Index(key, "}:"); i >= 0 {
		return key[:i+2] + "sync"
	}
	return key + ":sync"
}

// Stock is item's stock counter (units left).
func (k Keys) Stock(item string) string { return k.itemKey("stock", item) }

// Rules is item's sale rules hash (limit, start_ms, end_ms, pay_within_ms).
func (k Keys) Rules(item string) string { return k.itemKey("rules", item) }

// Requests is item's request hash: request_id -> "<order_id>|<user_id>" (see RequestOwner),
// the idempotency of its purchases. Its older generation is RequestsOld (see purchase.lua).
func (k Keys) Requests(item string) string { return k.itemKey("requests", item) }

// RequestsOld is the generation of item's request hash before Requests.
func (k Keys) RequestsOld(item string) string { return k.Requests(item) + ":old" }

// Users is item's per-user counts: a hash of user_id -> units bought (the per-user limit).
func (k Keys) Users(item string) string { return k.itemKey("users", item) }

// Restocked marks orderID (an order of item) as restocked, so that it is restocked once.
func (k Keys) Restocked(item, orderID string) string {
	return k.itemKey("restocked", item) + ":" + orderID
}

// itemKey is tag(partition of item) + kind + ":" + item, built in one allocation: these keys
// are on every purchase's path.
func (k Keys) itemKey(kind, item string) string {
	return k.prefix + ":{p" + strconv.Itoa(k.Partition(item)) + "}:" + kind + ":" + item
}

func (k Keys) tag(p int) string {
	var b strings.Builder
	b.Grow(len(k.prefix) + 8)
	b.WriteString(k.prefix)
	b.WriteString(":{p")
	b.WriteString(strconv.Itoa(p))
	b.WriteString("}:")
	return b.String()
}

// AdminSession is the key of a signed-in board session, by the session's ID (a digest of its
// cookie's nonce); it lives until the session expires. It is outside every partition's slot:
// only single-key commands touch it.
func (k Keys) AdminSession(id string) string { return k.prefix + ":admin-session:" + id }

// Checkpoint is partition p's latest checkpoint: a hash of id (the stream ID it folded
// through) and data (the folded state, see Checkpoint).
func (k Keys) Checkpoint(p int) string { return k.tag(p) + "checkpoint" }

// DrawEntries is a draw item's hash of entries: user_id -> order_id.
func (k Keys) DrawEntries(item string) string { return k.itemKey("draw-entries", item) }

// DrawState is item's draw progress hash: cursor (entries written, in rank order), units,
// started_at, done, done_at, and head_rank (the rank of the waitlist's head).
func (k Keys) DrawState(item string) string { return k.itemKey("draw", item) }

// Waitlist is item's list of waitlisted entries' order IDs in rank order, the lowest rank
// (DrawState's head_rank) at the head.
func (k Keys) Waitlist(item string) string { return k.itemKey("waitlist", item) }

// Held is item's set of winners' orders that may still hold units (reserved or paid).
func (k Keys) Held(item string) string { return k.itemKey("held", item) }

// Draws is partition p's set of drawn items whose waitlist may still be promoted.
func (k Keys) Draws(p int) string { return k.tag(p) + "draws" }
