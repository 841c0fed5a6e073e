// Package lua holds the Redis scripts that decide every change of stock. Each script documents
// its KEYS, ARGV and return codes in its header; package ledger wraps them and turns their
// codes into typed errors.
package lua

import _ "embed"

// Purchase decides one purchase: idempotency, sale rules, stock decrement and the order event.
//
//go:embed purchase.lua
var Purchase string

// Stock sets or adjusts an item's stock and rules and appends the matching stock event.
//
//go:embed stock.lua
var Stock string

// Restock cancels an order that cannot be projected: units back, restock event, XACK.
//
//go:embed restock.lua
var Restock string

// Snapshot reads one partition at one instant for audit: last stream ID, group position and
// stock counters.
//
//go:embed snapshot.lua
var Snapshot string

// Alive refreshes and reads the projectors' heartbeats on one partition.
//
//go:embed alive.lua
var Alive string

// Pay accepts the payment of a reserved order before its deadline: state paid, paid event.
//
//go:embed pay.lua
var Pay string

// Cancel cancels a reserved order for its buyer: units and per-user count back, cancelled event.
//
//go:embed cancel.lua
var Cancel string

// Expire expires a reserved order past its deadline: units and per-user count back, expired
// event. Safe to call any number of times from any number of sweepers.
//
//go:embed expire.lua
var Expire string

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

// Lease takes, renews or gives up a lease held by one holder at a time (the archiver's).
//
//go:embed lease.lua
var Lease string
