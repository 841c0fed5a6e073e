package admin

import (
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/flashsale/flashsale/ingest"
)

// brake limits failed admin sign-ins and bearer attempts per client address: after max
// failures within one window, every attempt from that address (the right token included, so
// that a lucky guess is not told apart) is answered 429 with Retry-After until the window
// ends. Other addresses are not affected. The address is the connection's peer (IPv6 by its
// /64), never a header a client could set: behind a proxy, the proxy is one client.
//
// Each address that reaches the limit is logged once per window, with its count of failures
// and of the attempts refused in its previous window; the tokens tried are never logged.
type brake struct {
	max    int
	window time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu    sync.Mutex
	addrs map[netip.Prefix]*brakeWindow
}

// brakeWindow is one address's current window.
type brakeWindow struct {
	start    time.Time
	failures int
	refused  int // attempts answered 429 in this window
	previous int // attempts answered 429 in the window before, for the log
}

// maxBrakeAddrs bounds the addresses tracked; past it, expired windows are dropped, and an
// address that still finds no room is not tracked (it is not refused either).
const maxBrakeAddrs = 1 << 16

func newBrake(max int, window time.Duration, now func() time.Time, log *slog.Logger) *brake {
	return &brake{max: max, window: window, now: now, log: log, addrs: map[netip.Prefix]*brakeWindow{}}
}

// clientKey is the address r came from: its IPv4 address, or its IPv6 /64.
func clientKey(r *http.Request) netip.Prefix {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		ap = netip.AddrPortFrom(a, 0)
	}
	a := ap.Addr().Unmap()
	bits := a.BitLen()
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// roll returns key's window (nil when it has none), starting a new one at now when the last
// has ended. Call with b.mu held.
func (b *brake) roll(key netip.Prefix, now time.Time) *brakeWindow {
	w := b.addrs[key]
	if w != nil && !now.Before(w.start.Add(b.window)) {
		w.previous, w.refused, w.failures, w.start = w.refused, 0, 0, now
	}
	return w
}

// refuse reports whether r's address is over the limit and, if so, answers it 429 with
// Retry-After.
func (b *brake) refuse(w http.ResponseWriter, r *http.Request) bool {
	key, now := clientKey(r), b.now()
	b.mu.Lock()
	win := b.roll(key, now)
	over := win != nil && win.failures >= b.max
	var wait time.Duration
	if over {
		win.refused++
		wait = win.start.Add(b.window).Sub(now)
	}
	b.mu.Unlock()
	if !over {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	ingest.WriteError(w, http.StatusTooManyRequests, "too many failed attempts, retry later")
	return true
}

// fail counts a failed attempt of r's address, and logs the address once when it reaches the
// limit in a window.
func (b *brake) fail(r *http.Request) {
	key, now := clientKey(r), b.now()
	b.mu.Lock()
	win := b.roll(key, now)
	if win == nil {
		if len(b.addrs) >= maxBrakeAddrs {
			b.prune(now)
		}
		if len(b.addrs) >= maxBrakeAddrs {
			b.mu.Unlock()
			return
		}
		win = &brakeWindow{start: now}
		b.addrs[key] = win
	}
	win.failures++
	reached := win.failures == b.max
	failures, previous, until := win.failures, win.previous, win.start.Add(b.window)
	b.mu.Unlock()
	if reached {
		b.log.Warn("admin authentication failures: refusing the address until the window ends",
			"addr", key.String(), "failures", failures, "window", b.window.String(),
			"until", until.UTC().Format(time.RFC3339), "refused_in_previous_window", previous)
	}
}

// succeed forgets r's address's failures: a typo before the right token costs nothing later.
func (b *brake) succeed(r *http.Request) {
	key := clientKey(r)
	b.mu.Lock()
	if w := b.addrs[key]; w != nil && w.failures < b.max {
		delete(b.addrs, key)
	}
	b.mu.Unlock()
}

// prune drops the windows that have ended. Call with b.mu held.
func (b *brake) prune(now time.Time) {
	for k, w := range b.addrs {
		if !now.Before(w.start.Add(b.window)) {
			delete(b.addrs, k)
		}
	}
}
