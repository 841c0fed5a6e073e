package ingest_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/flashsale/flashsale/ingest/admin"
)

// TestSignOutEndsTheSessionEverywhere: two processes serve the board with one token on one
// Redis. A session signed in on one works on the other and survives a restart; once signed
// out on one, its cookie (with its CSRF token) is refused by the other and by a restarted
// process, and changes nothing. A changed token ends every session.
func TestSignOutEndsTheSessionEverywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	setStock(t, e.l, "x", stockSet(5))
	a, stopA := e.boardServer(t, "127.0.0.1:0", admin.Options{Token: "tok"})
	b, _ := e.startBoard(t, admin.Options{Token: "tok"})
	rotated, _ := e.startBoard(t, admin.Options{Token: "tok-2"})
	c := &http.Client{}
	t.Cleanup(c.CloseIdleConnections)

	add := func(base, cookie, csrf string) int {
		resp, _ := adminReq{method: http.MethodPut, path: "/admin/items/x", body: `{"add":1}`,
			cookie: cookie, csrf: csrf, origin: base, site: "same-origin"}.do(t, c, base)
		return resp.StatusCode
	}
	read := func(base, cookie string) int {
		resp, _ := adminReq{method: http.MethodGet, path: "/admin/session", cookie: cookie, site: "same-origin"}.do(t, c, base)
		return resp.StatusCode
	}
	stock := func() int64 {
		it, err := e.l.Item(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		return it.Stock
	}

	ck, csrf := signIn(t, c, a, "tok")
	if got := add(b, ck.Value, csrf); got != http.StatusOK {
		t.Fatalf("session of process A on process B: got %d, want 200", got)
	}
	if got := read(rotated, ck.Value); got != http.StatusUnauthorized {
		t.Fatalf("session on a process with another token: got %d, want 401", got)
	}

	// A restart keeps the session; signing out there ends it everywhere.
	stopA()
	c.CloseIdleConnections() // a restarted server has none of the old connections
	a2, stopA2 := e.boardServer(t, a[len("http://"):], admin.Options{Token: "tok"})
	if got := read(a2, ck.Value); got != http.StatusOK {
		t.Fatalf("session after a restart: got %d, want 200", got)
	}
	resp, body := adminReq{method: http.MethodPost, path: "/admin/logout", cookie: ck.Value, csrf: csrf,
		origin: a2, site: "same-origin"}.do(t, c, a2)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out: got %d %s", resp.StatusCode, body)
	}

	before := snapshot(t, e.rdb)
	stockBefore := stock()
	if got := add(b, ck.Value, csrf); got != http.StatusUnauthorized {
		t.Errorf("signed-out session on another process: put got %d, want 401", got)
	}
	if got := read(b, ck.Value); got != http.StatusUnauthorized {
		t.Errorf("signed-out session on another process: read got %d, want 401", got)
	}
	stopA2()
	c.CloseIdleConnections()
	a3, _ := e.boardServer(t, a[len("http://"):], admin.Options{Token: "tok"})
	if got := add(a3, ck.Value, csrf); got != http.StatusUnauthorized {
		t.Errorf("signed-out session after a restart: put got %d, want 401", got)
	}
	if got := stock(); got != stockBefore {
		t.Errorf("stock after the refused puts: got %d, want %d", got, stockBefore)
	}
	assertUnchanged(t, e.rdb, before)

	// Another session of the same token is not touched by that sign-out.
	ck2, csrf2 := signIn(t, c, b, "tok")
	if got := add(a3, ck2.Value, csrf2); got != http.StatusOK {
		t.Errorf("another session: got %d, want 200", got)
	}
}
