// Package lua holds the Redis scripts that decide every change of stock. Each script documents
// its KEYS, ARGV and return codes in its header; package ledger wraps them and turns their
// codes into typed errors.
package lua

import _ "embed"

// Purchase decides the purchases of one call, one partition, each atomically and in order,
// and appends the orders it placed as one ledger entry: idempotency, sale rules, stock
// decrement and the orders event. A single purchase is a call of one.
//
//go:embed purchase.lua
var Purchase string

// Layout moves one partition's per-key idempotency keys and per-user counters, the older
// layout, into their item's request and per-user count hashes.
//
//go:embed layout.lua
var Layout string

// Stock sets or adjusts an item's stock and rules and appends the matching stock event.
//
//go:embed stock.lua
var Stock string

// Restock cancels an order that cannot be projected: units back, restock event (the projector
// acknowledges the entry after its batch).
var Restock = units + restock

//go:embed restock.lua
var restock string

// Snapshot reads one partition at one instant for audit: last stream ID, group position and
// stock counters (groups.lua joined in front).
var Snapshot = groups + snapshot

//go:embed snapshot.lua
var snapshot string

// groups is the fragment that reads one consumer group's XINFO fields (groups.lua).
//
//go:embed groups.lua
var groups string

// Alive refreshes and reads the projectors' heartbeats on one partition.
//
//go:embed alive.lua
var Alive string

// Pay accepts the payment of a reserved order before its deadline: state paid, paid event.
//
//go:embed pay.lua
var Pay string

// Cancel cancels a reserved order for its buyer: units and per-user count back, cancelled event.
var Cancel = units + release + cancel

// Expire expires a reserved order past its deadline: units and per-user count back, expired
// event. Safe to call any number of times from any number of sweepers.
var Expire = units + release + expire

// units is the give-back of sold units that Restock, Cancel and Expire share, and release the
// release of a reserved order that Cancel and Expire share: Lua functions, joined in front of
// each script.
//
//go:embed units.lua
var units string

//go:embed release.lua
var release string

//go:embed cancel.lua
var cancel string

//go:embed expire.lua
var expire string

// DrawEnter registers one entry in a draw: an order event with the draw marker, no stock.
//
//go:embed draw_enter.lua
var DrawEnter string

// DrawBatch writes one batch of a draw's result (won or waitlisted), once, at the draw's
// position.
//
//go:embed draw_batch.lua
var DrawBatch string

// DrawPromote promotes the head of a drawn item's waitlist when units came back, or marks the
// waitlist lost once every unit is paid.
//
//go:embed draw_promote.lua
var DrawPromote string

// Retain reads what bounds the trimming of one partition: first entry, checkpoint, and the
// positions the consumer groups have acknowledged through.
//
//go:embed retain.lua
var Retain string

// Trim records a partition's new checkpoint and trims the stream up to it, in one call.
//
//go:embed trim.lua
var Trim string

// Close closes an item's sale for good: rules closed, stock event with op close.
//
//go:embed close.lua
var Close string

// Lease takes, renews or gives up a lease held by one holder at a time (the archiver's).
//
//go:embed lease.lua
var Lease string

// Advance moves a consumer group's last delivered ID forward, never back, delivering nothing
// (groups.lua joined in front).
var Advance = groups + advance

//go:embed advance.lua
var advance string
