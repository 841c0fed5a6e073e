package ingest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flashsale/flashsale/ingest/admin"
)

// clock is a settable clock for sessions.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// adminReq is one request to an admin route, with the credentials a browser or script sends.
type adminReq struct {
	method, path, body string
	bearer             string
	cookie             string
	csrf               string
	origin, site       string
}

func (r adminReq) do(t *testing.T, c *http.Client, base string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(r.method, base+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.bearer != "" {
		req.Header.Set("Authorization", r.bearer)
	}
	if r.cookie != "" {
		req.AddCookie(&http.Cookie{Name: "flashsale_admin", Value: r.cookie})
	}
	if r.csrf != "" {
		req.Header.Set("X-CSRF-Token", r.csrf)
	}
	if r.origin != "" {
		req.Header.Set("Origin", r.origin)
	}
	if r.site != "" {
		req.Header.Set("Sec-Fetch-Site", r.site)
	}
	if strings.HasPrefix(r.body, "token=") {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// signIn posts the token to the sign-in form as the page does and returns the session
// cookie and its CSRF token.
func signIn(t *testing.T, c *http.Client, base, token string) (cookie *http.Cookie, csrf string) {
	t.Helper()
	resp, body := adminReq{method: http.MethodPost, path: "/admin/login", body: "token=" + url.QueryEscape(token),
		origin: base, site: "same-origin"}.do(t, c, base)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign in: got %d %s", resp.StatusCode, body)
	}
	var s struct {
		CSRF string `json:"csrf_token"`
	}
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.CSRF == "" {
		t.Fatalf("sign in: body %s: %v", body, err)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == "flashsale_admin" {
			return ck, s.CSRF
		}
	}
	t.Fatalf("sign in: no session cookie in %v", resp.Header["Set-Cookie"])
	return nil, ""
}

// TestAdminRefusals sends the admin routes what an attacker or a stale browser would, and
// requires each to be refused with nothing changed in Redis; the accepted cases alongside
// show that the refusals are the checks', not a broken route.
func TestAdminRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	setStock(t, e.l, "a", stockSet(5))
	base0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clk := &clock{t: base0}
	base, c := e.startBoard(t, admin.Options{Token: "s3cret", Now: clk.now, SessionTTL: 12 * time.Hour})
	off, offc := e.startBoard(t, admin.Options{Token: ""})
	other, otherc := e.startBoard(t, admin.Options{Token: "another-token"})

	ck, csrf := signIn(t, c, base, "s3cret")
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/admin" || ck.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/admin, not Secure over plain HTTP", ck)
	}
	session := ck.Value
	_, csrf2 := signIn(t, c, base, "s3cret") // another session's CSRF token
	foreign, _ := signIn(t, otherc, other, "another-token")
	clk.set(base0.Add(-13 * time.Hour))
	expired, expiredCSRF := signIn(t, c, base, "s3cret")
	clk.set(base0)
	signedOut, signedOutCSRF := signIn(t, c, base, "s3cret")
	if resp, body := (adminReq{method: http.MethodPost, path: "/admin/logout", cookie: signedOut.Value, csrf: signedOutCSRF,
		origin: base, site: "same-origin"}).do(t, c, base); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign out: got %d %s", resp.StatusCode, body)
	} else if cleared := resp.Cookies(); len(cleared) != 1 || cleared[0].MaxAge >= 0 {
		t.Fatalf("sign out: cookies %v, want the session cookie cleared", cleared)
	}
	forged := session[:strings.LastIndex(session, ".")+1] + "AAAA"
	put := `{"stock":99}`

	tests := []struct {
		name string
		req  adminReq
		srv  string
		want int
	}{
		{"no credentials: board", adminReq{method: "GET", path: "/admin/board"}, base, 401},
		{"no credentials: events", adminReq{method: "GET", path: "/admin/events"}, base, 401},
		{"no credentials: put item", adminReq{method: "PUT", path: "/admin/items/a", body: put, origin: base}, base, 401},
		{"no credentials: audit", adminReq{method: "POST", path: "/admin/audit", origin: base}, base, 401},
		{"wrong bearer token", adminReq{method: "PUT", path: "/admin/items/a", body: put, bearer: "Bearer s3cre"}, base, 401},
		{"token as basic auth", adminReq{method: "PUT", path: "/admin/items/a", body: put, bearer: "Basic s3cret"}, base, 401},
		{"wrong bearer with a good cookie", adminReq{method: "PUT", path: "/admin/items/a", body: put, bearer: "Bearer nope", cookie: session, csrf: csrf, origin: base}, base, 401},
		{"forged session", adminReq{method: "GET", path: "/admin/board", cookie: forged}, base, 401},
		{"session of another token", adminReq{method: "GET", path: "/admin/board", cookie: foreign.Value}, base, 401},
		{"expired session", adminReq{method: "GET", path: "/admin/board", cookie: expired.Value}, base, 401},
		{"expired session: put", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: expired.Value, csrf: expiredCSRF, origin: base}, base, 401},
		{"signed out session", adminReq{method: "GET", path: "/admin/events", cookie: signedOut.Value}, base, 401},
		{"signed out session: put", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: signedOut.Value, csrf: signedOutCSRF, origin: base}, base, 401},
		{"cookie, cross-site read", adminReq{method: "GET", path: "/admin/board", cookie: session, site: "cross-site"}, base, 403},
		{"cookie, cross-site event stream", adminReq{method: "GET", path: "/admin/events", cookie: session, site: "cross-site", origin: "https://evil.example"}, base, 403},
		{"cookie, put from another origin", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: session, csrf: csrf, origin: "https://evil.example"}, base, 403},
		{"cookie, put from a sibling site", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: session, csrf: csrf, site: "same-site"}, base, 403},
		{"cookie, put from origin null", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: session, csrf: csrf, origin: "null"}, base, 403},
		{"cookie, put with no origin at all", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: session, csrf: csrf}, base, 403},
		{"cookie, put without CSRF token", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: session, origin: base, site: "same-origin"}, base, 403},
		{"cookie, put with another session's CSRF token", adminReq{method: "PUT", path: "/admin/items/a", body: put, cookie: session, csrf: csrf2, origin: base, site: "same-origin"}, base, 403},
		{"cookie, audit without CSRF token", adminReq{method: "POST", path: "/admin/audit", cookie: session, origin: base}, base, 403},
		{"cookie, sign-out without CSRF token", adminReq{method: "POST", path: "/admin/logout", cookie: session, origin: base}, base, 403},
		{"sign in with a wrong token", adminReq{method: "POST", path: "/admin/login", body: "token=s3cre", origin: base}, base, 401},
		{"sign in from another origin", adminReq{method: "POST", path: "/admin/login", body: "token=s3cret", origin: "https://evil.example", site: "cross-site"}, base, 403},
		{"admin off: page", adminReq{method: "GET", path: "/admin/"}, off, 404},
		{"admin off: sign in", adminReq{method: "POST", path: "/admin/login", body: "token=s3cret"}, off, 404},
		{"admin off: events", adminReq{method: "GET", path: "/admin/events", bearer: "Bearer s3cret"}, off, 404},
		{"admin off: put item", adminReq{method: "PUT", path: "/admin/items/a", body: put, bearer: "Bearer s3cret"}, off, 404},
		{"audit without MySQL", adminReq{method: "POST", path: "/admin/audit", bearer: "Bearer s3cret"}, base, 503},
		// Accepted: the same requests with the right credentials.
		{"ok: cookie read", adminReq{method: "GET", path: "/admin/board", cookie: session, site: "same-origin"}, base, 200},
		{"ok: typed address read", adminReq{method: "GET", path: "/admin/session", cookie: session, site: "none"}, base, 200},
		{"ok: page without credentials", adminReq{method: "GET", path: "/admin/"}, base, 200},
	}
	clients := map[string]*http.Client{base: c, off: offc}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(t, e.rdb)
			resp, body := tt.req.do(t, clients[tt.srv], tt.srv)
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			if tt.want != 200 && len(resp.Cookies()) > 0 {
				t.Fatalf("refused request set cookies %v", resp.Header["Set-Cookie"])
			}
			assertUnchanged(t, e.rdb, before)
		})
	}

	// The right cookie, origin and CSRF token change the item, as the bearer token does.
	for _, r := range []adminReq{
		{method: "PUT", path: "/admin/items/a", body: `{"stock":7}`, cookie: session, csrf: csrf, origin: base, site: "same-origin"},
		{method: "PUT", path: "/admin/items/a", body: `{"add":1}`, bearer: "Bearer s3cret"},
	} {
		if resp, body := r.do(t, c, base); resp.StatusCode != 200 {
			t.Fatalf("%+v: got %d %s", r, resp.StatusCode, body)
		}
	}
	if it, err := e.l.Item(context.Background(), "a"); err != nil || it.Stock != 8 {
		t.Fatalf("item a: %+v %v, want stock 8", it, err)
	}
	// Signing out ends the session that signed out and no other.
	if resp, body := (adminReq{method: "POST", path: "/admin/logout", cookie: session, csrf: csrf, origin: base}).do(t, c, base); resp.StatusCode != 200 {
		t.Fatalf("sign out: got %d %s", resp.StatusCode, body)
	}
	if resp, _ := (adminReq{method: "GET", path: "/admin/board", cookie: session}).do(t, c, base); resp.StatusCode != 401 {
		t.Fatalf("after sign-out: got %d, want 401", resp.StatusCode)
	}
}

// TestAdminSessionSecureOverTLS: served over TLS, the session cookie is Secure.
func TestAdminSessionSecureOverTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.svc.Router(e.reg)
	admin.Mount(r, admin.Options{Token: "tok", Ledger: e.l, Group: "projector", Metrics: e.metrics, Log: e.log})
	ts := httptest.NewTLSServer(r)
	t.Cleanup(ts.Close)
	ck, _ := signIn(t, ts.Client(), ts.URL, "tok")
	if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("cookie over TLS %+v: want Secure, HttpOnly, SameSite=Strict", ck)
	}
}

// TestBoardSnapshot: the board's numbers are the ledger's and the metrics'.
func TestBoardSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	base, c := e.startBoard(t, admin.Options{Token: "tok", IdleWarn: 50 * time.Millisecond})
	apiBase, api := e.startHTTP(t)
	setStock(t, e.l, "hot", stockSet(3))
	setStock(t, e.l, "calm", stockSet(10))
	for i := range 5 {
		send(api, http.MethodPost, apiBase+"/api/purchase", purchaseJSON(string(rune('a'+i)), "u"+string(rune('a'+i)), "hot", 1))
	}
	p := e.l.Keys().Partition("calm")
	for q := range e.l.Keys().Partitions() {
		if err := e.l.EnsureGroup(ctx, q, "projector"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.l.ReadGroup(ctx, p, "projector", "stuck-1", ">", 10, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	resp, body := adminReq{method: "GET", path: "/admin/board", bearer: "Bearer tok"}.do(t, c, base)
	if resp.StatusCode != 200 {
		t.Fatalf("board: %d %s", resp.StatusCode, body)
	}
	var snap struct {
		Items []struct {
			ItemID    string     `json:"item_id"`
			PutOnSale int64      `json:"put_on_sale"`
			Sold      int64      `json:"sold"`
			Left      int64      `json:"left"`
			Status    string     `json:"status"`
			SoldOutAt *time.Time `json:"sold_out_at"`
			Chart     []int64    `json:"chart"`
		} `json:"items"`
		Purchases struct {
			Total map[string]float64 `json:"total"`
			P50MS *float64           `json:"p50_ms"`
		} `json:"purchases"`
		Partitions []struct {
			Partition int   `json:"partition"`
			Pending   int64 `json:"pending"`
			Consumers []struct {
				Name  string `json:"name"`
				Stuck bool   `json:"stuck"`
			} `json:"consumers"`
		} `json:"partitions"`
		SoldOut struct {
			Local      int64 `json:"local"`
			Redis      int64 `json:"redis"`
			Partitions int   `json:"partitions"`
		} `json:"sold_out_answers"`
		Warnings       []string `json:"warnings"`
		AuditAvailable bool     `json:"audit_available"`
	}
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Items) != 2 || snap.Items[0].ItemID != "calm" || snap.Items[1].ItemID != "hot" {
		t.Fatalf("items %+v, want calm and hot", snap.Items)
	}
	hot := snap.Items[1]
	var charted int64
	for _, n := range hot.Chart {
		charted += n
	}
	if hot.PutOnSale != 3 || hot.Sold != 3 || hot.Left != 0 || hot.Status != "sold_out" || hot.SoldOutAt == nil || charted != 3 {
		t.Fatalf("hot %+v, want 3 put on sale, 3 sold, 0 left, sold out, 3 orders charted", hot)
	}
	if snap.Purchases.Total["ok"] != 3 || snap.Purchases.Total["sold_out"] != 2 {
		t.Fatalf("purchase totals %v, want ok 3 and sold_out 2", snap.Purchases.Total)
	}
	if so := snap.SoldOut; so.Local+so.Redis != 2 || so.Redis < 1 || so.Partitions != e.l.Keys().Partitions() {
		t.Fatalf("sold-out answers %+v, want 2, the first from Redis, over %d partitions", so, e.l.Keys().Partitions())
	}
	part := snap.Partitions[p]
	if part.Pending != 1 || len(part.Consumers) != 1 || !part.Consumers[0].Stuck {
		t.Fatalf("partition %d: %+v, want stuck-1 holding one entry", p, part)
	}
	if !strings.Contains(strings.Join(snap.Warnings, "\n"), "consumer stuck-1 idle") {
		t.Fatalf("warnings %q, want stuck-1's", snap.Warnings)
	}
	if snap.AuditAvailable {
		t.Fatal("audit available without MySQL")
	}
}
