// Package lua holds the Redis scripts that decide every change of stock. Each script documents
// its KEYS, ARGV and return codes in its header; package ledger wraps them and turns their
// codes into typed errors.
package lua

import (
	_ "embed"
	"regexp"
	"strings"
)

// Purchase decides one purchase: idempotency, sale rules, stock decrement and the order event.
//
//go:embed purchase.lua
var Purchase string

// PurchaseBatch decides several purchases in one call, each exactly as Purchase decides it
// alone: it is purchase.lua's own text, wrapped as a Lua function that runs once per purchase,
// in order, under pcall. Every purchase of the call sees the writes of those before it, as
// successive calls of Purchase would; an error raised by one (a key of the wrong type) is that
// purchase's reply, and does not stop the others. The whole call is one atomic step of Redis,
// and its purchases are decided at one instant: Redis TIME is read once per call.
//
// KEYS: the keys of each purchase in turn, ARGV[1] of them per purchase.
// ARGV[1] keys per purchase; ARGV[2] arguments per purchase; then the arguments of each
// purchase in turn (ARGV[3..]), as Purchase takes them.
// Returns an array with one element per purchase: Purchase's reply, or an error reply.
var PurchaseBatch = batch(Purchase)

// scriptArg is a key or argument read with a literal index, KEYS[3] or ARGV[12].
var scriptArg = regexp.MustCompile(`\b(KEYS|ARGV)\[(\d+)\]`)

// batch wraps script (which reads KEYS[n] and ARGV[n] with literal indexes only, and returns
// one reply) as a function called once per purchase. The function reads its purchase's keys
// and arguments where they are, KEYS[n] as KEYS[ko + n] and ARGV[n] as ARGV[ao + n], rather
// than from tables built per purchase (which cost Redis about a tenth of a purchase); and
// redis.call('TIME') as the call's one reading of the clock. A script that names KEYS or ARGV
// any other way (#KEYS, KEYS[i]) cannot be wrapped so, and batch panics at start. A shebang
// line (#!lua flags=...) must stay the script's first line.
func batch(script string) string {
	var head string
	if strings.HasPrefix(script, "#!") {
		head, script, _ = strings.Cut(script, "\n")
		head += "\n"
	}
	var code strings.Builder
	for line := range strings.Lines(script) {
		code.WriteString(strings.SplitN(line, "--", 2)[0])
	}
	named := regexp.MustCompile(`\b(KEYS|ARGV)\b`).FindAllStringIndex(code.String(), -1)
	if len(named) != len(scriptArg.FindAllStringIndex(code.String(), -1)) {
		panic("lua: a batched script reads KEYS or ARGV other than with a literal index")
	}
	body := scriptArg.ReplaceAllStringFunc(script, func(m string) string {
		name, n, _ := strings.Cut(m, "[")
		off := "ko"
		if name == "ARGV" {
			off = "ao"
		}
		return name + "[" + off + " + " + n
	})
	body = strings.ReplaceAll(body, "redis.call('TIME')", "batch_time()")
	return head + batchClock + "local function decide(ko, ao)\n" + body + "\nend\n" + batchLoop
}

// batchClock reads Redis TIME once per batch call.
const batchClock = `local batch_t = nil
local function batch_time()
  if not batch_t then batch_t = redis.call('TIME') end
  return batch_t
end
`

// batchLoop runs decide over the purchases of a PurchaseBatch call.
const batchLoop = `
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 0, #KEYS / nk - 1 do
  local ok, reply = pcall(decide, i * nk, 2 + i * na)
  if ok then
    out[i + 1] = reply
  elseif type(reply) == 'table' and reply.err then
    out[i + 1] = reply
  else
    out[i + 1] = {err = tostring(reply)}
  end
end
return out
`

// Stock sets or adjusts an item's stock and rules and appends the matching stock event.
//
//go:embed stock.lua
var Stock string

// Restock cancels an order that cannot be projected: units back, restock event, XACK.
var Restock = units + restock

//go:embed restock.lua
var restock string

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

// Advance moves a consumer group's last delivered ID forward, never back, delivering nothing.
//
//go:embed advance.lua
var Advance string
