package ingest_test

import (
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ingest/admin"
)

// clientFrom returns an HTTP client whose connections come from the local address ip.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestAdminAuthBrake: failed sign-ins and bearer attempts from one address are answered 429
// with Retry-After once 5 failed within a minute, the right token included, while the right
// token still works from another address; the address is logged once for the window, with
// its count and without the tokens tried; when the window ends it may try again.
func TestAdminAuthBrake(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	logs := &syncBuffer{}
	e.reg = prometheus.NewRegistry()
	e.metrics, e.log = ingest.NewMetrics(e.reg), slog.New(slog.NewTextHandler(logs, nil))
	e.svc = ingest.NewService(e.l, nil, nil, e.metrics, e.log)
	setStock(t, e.l, "x", stockSet(5))
	clk := &clock{t: time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)}
	base, _ := e.startBoard(t, admin.Options{Token: "the-admin-token", Now: clk.now})
	attacker, other := clientFrom(t, "127.0.0.1"), clientFrom(t, "127.0.0.2")

	guess := func(i int) adminReq {
		token := "guess-" + strconv.Itoa(i) + "-wrong"
		if i%2 == 0 {
			return adminReq{method: http.MethodPost, path: "/admin/login", body: "token=" + token, origin: base, site: "same-origin"}
		}
		return adminReq{method: http.MethodGet, path: "/admin/board", bearer: "Bearer " + token}
	}
	bearer := adminReq{method: http.MethodGet, path: "/admin/board", bearer: "Bearer the-admin-token"}
	signIn := adminReq{method: http.MethodPost, path: "/admin/login", body: "token=the-admin-token", origin: base, site: "same-origin"}

	before := snapshot(t, e.rdb)
	for i := range 5 {
		if resp, body := guess(i).do(t, attacker, base); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: got %d %s, want 401", i, resp.StatusCode, body)
		}
	}
	for i, r := range []adminReq{guess(5), guess(6), bearer, signIn} {
		resp, body := r.do(t, attacker, base)
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("attempt %d after 5 failures: got %d %s, want 429", i, resp.StatusCode, body)
		}
		if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
			t.Errorf("attempt %d: Retry-After %q, want 1..60 seconds", i, resp.Header.Get("Retry-After"))
		}
	}
	assertUnchanged(t, e.rdb, before)
	if resp, body := bearer.do(t, other, base); resp.StatusCode != http.StatusOK {
		t.Fatalf("the right token from another address: got %d %s, want 200", resp.StatusCode, body)
	}
	if resp, body := signIn.do(t, other, base); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in from another address: got %d %s, want 200", resp.StatusCode, body)
	}

	logged := logs.String()
	if n := strings.Count(logged, "admin authentication failures"); n != 1 {
		t.Errorf("log: got %d lines about the failures, want 1:\n%s", n, logged)
	}
	if !strings.Contains(logged, "failures=5") || !strings.Contains(logged, "addr=127.0.0.1/32") {
		t.Errorf("log: %q lacks the address or the count", logged)
	}
	if strings.Contains(logged, "guess-") || strings.Contains(logged, "the-admin-token") {
		t.Errorf("log holds a token: %q", logged)
	}

	// A new window: the address may try again.
	clk.set(clk.now().Add(time.Minute))
	if resp, body := bearer.do(t, attacker, base); resp.StatusCode != http.StatusOK {
		t.Fatalf("the right token after the window: got %d %s, want 200", resp.StatusCode, body)
	}
	if resp, _ := guess(7).do(t, attacker, base); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a guess after the window: got %d, want 401", resp.StatusCode)
	}
}
