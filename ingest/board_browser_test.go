package ingest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/flashsale/flashsale/ingest/admin"
	"github.com/flashsale/flashsale/ledger"
)

// browser starts headless Chromium with a fresh profile and returns a chromedp context on a
// tab; everything is stopped by t.Cleanup. FLASHSALE_SKIP_BROWSER=1 skips the test; without
// Chromium it fails, saying how to get it.
func browser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if os.Getenv("FLASHSALE_SKIP_BROWSER") == "1" {
		t.Skip("FLASHSALE_SKIP_BROWSER=1")
	}
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("chromium not installed: `apt-get install -y chromium` (make test's set-up does it), or set FLASHSALE_SKIP_BROWSER=1 to skip the browser test")
	}
	// Chromium keeps its singleton socket in a TMPDIR directory that it leaves behind
	// (org.chromium.Chromium.*): give it the test's own, which t.Cleanup removes.
	tmp, profile := t.TempDir(), t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.Env("TMPDIR=" + tmp),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1440, 1100),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	tctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	if err := chromedp.Do(tctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	if link, err := os.Readlink(filepath.Join(profile, "SingletonSocket")); err == nil && !strings.HasPrefix(link, tmp+string(filepath.Separator)) {
		t.Fatalf("chromium keeps its socket in %s, outside the test's temp dir: it would be left behind", filepath.Dir(link))
	}
	return tctx
}

// screenshots saves PNGs of the page to FLASHSALE_BOARD_SCREENSHOTS, or a temp dir.
type screenshots struct {
	t   *testing.T
	dir string
}

func newScreenshots(t *testing.T) screenshots {
	dir := os.Getenv("FLASHSALE_BOARD_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return screenshots{t: t, dir: dir}
}

func (s screenshots) take(ctx context.Context, name string) {
	s.t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(s.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		s.t.Fatal(err)
	}
	s.t.Logf("screenshot %s", p)
}

// itemLeft reads the units left the page shows for item; ok is false while it shows none.
func itemLeft(ctx context.Context, item string) (left int64, ok bool, err error) {
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		fmt.Sprintf(`(document.querySelector('[data-item=%q] .left') || {dataset: {left: ''}}).dataset.left`, item)))
	if err != nil || v == "" {
		return 0, false, err
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil, err
}

func textOf(ctx context.Context, sel string) string {
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {innerText: ''}).innerText`, sel)))
	return s
}

// shown reports whether the element with id is displayed.
func shown(ctx context.Context, id string) bool {
	d, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`getComputedStyle(document.getElementById(%q)).display`, id)))
	return err == nil && d != "none"
}

// waitFor polls cond every 100 ms until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// projectorStandIn acknowledges every new entry of every partition as consumer name, like a
// healthy projector, until the returned func is called.
func projectorStandIn(t *testing.T, l *ledger.Ledger, name string) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			for p := range l.Keys().Partitions() {
				events, err := l.ReadGroup(ctx, p, "projector", name, ">", 500, 20*time.Millisecond)
				if err != nil {
					continue
				}
				ids := make([]string, len(events))
				for i, e := range events {
					ids[i] = e.StreamID
				}
				l.Ack(ctx, p, "projector", ids...)
			}
		}
	}()
	stop := func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// TestBoardInBrowser drives the board in headless Chromium: sign in, watch an item's stock
// fall while a load runs, see it sold out, see a stuck consumer's warning, put a new item on
// sale from the form, sign out and be refused.
func TestBoardInBrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t, 50*time.Second)
	shots := newScreenshots(t)
	e := newEnv(t)
	bg := context.Background()
	opts := admin.Options{Token: "board-token", IdleWarn: 2 * time.Second}
	base, stopServer := e.boardServer(t, "127.0.0.1:0", opts)
	client := &http.Client{Timeout: 5 * time.Second}

	// Earlier today: a poster sold out; a projector consumer took some of its entries and hung.
	const sneakers = 400
	limit := int64(2)
	setStock(t, e.l, "poster-2026", stockSet(40))
	for i := range 40 {
		buy(t, e.l, ledger.PurchaseRequest{RequestID: fmt.Sprintf("p%d", i), UserID: fmt.Sprintf("fan%d", i), ItemID: "poster-2026", Quantity: 1})
	}
	for p := range e.l.Keys().Partitions() {
		if err := e.l.EnsureGroup(bg, p, "projector"); err != nil {
			t.Fatal(err)
		}
	}
	stuckPart := e.l.Keys().Partition("poster-2026")
	if _, err := e.l.ReadGroup(bg, stuckPart, "projector", "worker-b", ">", 12, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	projectorStandIn(t, e.l, "worker-a")
	setStock(t, e.l, "sneaker-x", ledger.StockChange{Op: ledger.StockSet, Quantity: sneakers, Limit: &limit})
	setStock(t, e.l, "hoodie", stockSet(5000))

	// The sale: buyers at ~60 orders/s on the sneaker once the operator watches, a steady
	// trickle on the hoodie from the start; some clients retry (duplicates), some go over the
	// per-user limit.
	var stopLoad, sneakerOpen atomic.Bool
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			last := ""
			for i := 0; !stopLoad.Load(); i++ {
				item := "sneaker-x"
				if w == 0 || !sneakerOpen.Load() {
					item = "hoodie"
				}
				req := fmt.Sprintf("w%d-%d", w, i)
				if last != "" && rng.IntN(10) == 0 {
					req = last // a client retrying
				}
				last = req
				user := fmt.Sprintf("user%d", rng.IntN(sneakers))
				send(client, http.MethodPost, base+"/api/purchase", purchaseJSON(req, user, item, 1))
				pause := 60 + rng.IntN(60)
				if item == "hoodie" {
					pause = 300 + rng.IntN(400)
				}
				time.Sleep(time.Duration(pause) * time.Millisecond)
			}
		})
	}
	t.Cleanup(func() {
		stopLoad.Store(true)
		wg.Wait()
	})

	// Sign in.
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("token")),
	)
	if err != nil {
		t.Fatalf("open the board: %v", err)
	}
	shots.take(ctx, "1-sign-in")
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("token"), "board-token"),
		chromedp.Click(chromedp.ID("signin-button")),
		chromedp.WaitVisible(chromedp.ID("board")),
		chromedp.WaitVisible(chromedp.CSS(`[data-item="sneaker-x"]`)),
	)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	if shown(ctx, "signin") {
		t.Fatal("the sign-in form still shows after signing in")
	}
	sneakerOpen.Store(true)

	// Units left fall on the page, sample after sample, to zero.
	var seen []int64
	midSale := false
	waitFor(t, ctx, "sneaker-x to sell out on the page", func() bool {
		left, ok, err := itemLeft(ctx, "sneaker-x")
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		if ok && (len(seen) == 0 || left != seen[len(seen)-1]) {
			seen = append(seen, left)
		}
		if ok && !midSale && left < sneakers*4/10 && left > sneakers/10 {
			midSale = true
			shots.take(ctx, "2-mid-sale")
		}
		return ok && left == 0
	})
	for i := 1; i < len(seen); i++ {
		if seen[i] > seen[i-1] {
			t.Fatalf("units left went up on the page: %v", seen)
		}
	}
	if len(seen) < 4 || seen[0] <= 0 {
		t.Fatalf("the page showed units left %v: want at least three values falling to 0", seen)
	}
	waitFor(t, ctx, "the sold-out badge and time", func() bool {
		return strings.Contains(textOf(ctx, `[data-item="sneaker-x"] .badge`), "SOLD OUT") &&
			strings.Contains(textOf(ctx, `[data-item="sneaker-x"] .soldout-at`), "sold out at")
	})
	if it, err := e.l.Item(bg, "sneaker-x"); err != nil || it.Stock != 0 {
		t.Fatalf("ledger: sneaker-x %+v %v, want 0 left", it, err)
	}

	// The hung consumer is called out.
	waitFor(t, ctx, "the stuck consumer's warning", func() bool {
		w := textOf(ctx, `#warnings`)
		return strings.Contains(w, "consumer worker-b idle") && strings.Contains(w, "holding 12 entries") &&
			strings.Contains(textOf(ctx, `.chip.stuck`), "worker-b")
	})
	waitFor(t, ctx, "sold-out refusals on the purchases panel", func() bool {
		return textOf(ctx, `[data-outcome="sold_out"] .total`) != "0 total" && textOf(ctx, `#p99`) != "–"
	})
	shots.take(ctx, "3-sold-out-and-stuck-consumer")

	// The server restarts: the page says it is reconnecting, then carries on by itself, on
	// the same session.
	stopServer()
	waitFor(t, ctx, "the page to show it is reconnecting", func() bool {
		return strings.Contains(textOf(ctx, "#conn"), "reconnecting")
	})
	e.boardServer(t, strings.TrimPrefix(base, "http://"), opts)
	waitFor(t, ctx, "the page to be live again", func() bool { return textOf(ctx, "#conn") == "live" })
	if shown(ctx, "signin") || !shown(ctx, "board") {
		t.Fatal("after the restart the page asks to sign in again")
	}

	// Put a new item on sale from the form.
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("f-item"), "new-drop"),
		chromedp.SetValue(chromedp.ID("f-op"), "stock"),
		chromedp.SendKeys(chromedp.ID("f-qty"), "250"),
		chromedp.SendKeys(chromedp.ID("f-limit"), "1"),
		chromedp.Click(chromedp.ID("f-submit")),
	)
	if err != nil {
		t.Fatalf("fill the form: %v", err)
	}
	waitFor(t, ctx, "new-drop on the board", func() bool {
		left, ok, _ := itemLeft(ctx, "new-drop")
		return ok && left == 250 && strings.Contains(textOf(ctx, `#item-message`), "new-drop: 250 left")
	})
	if it, err := e.l.Item(bg, "new-drop"); err != nil || it.Stock != 250 || it.Limit != 1 {
		t.Fatalf("ledger: new-drop %+v %v, want 250 left, limit 1", it, err)
	}
	stopLoad.Store(true)
	shots.take(ctx, "4-new-item")

	// Sign out: the page shows the sign-in form, the cookie is gone, and the admin routes
	// refuse the browser.
	err = chromedp.Do(ctx,
		chromedp.Click(chromedp.ID("signout")),
		chromedp.WaitVisible(chromedp.ID("signin")),
	)
	if err != nil {
		t.Fatalf("sign out: %v", err)
	}
	statuses, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](
		`Promise.all(['board', 'session', 'events'].map((p) => fetch(p).then((r) => r.status)))`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("fetch after sign-out: %v", err)
	}
	for _, s := range statuses {
		if s != http.StatusUnauthorized {
			t.Fatalf("after sign-out the browser got %v from board, session and events, want 401s", statuses)
		}
	}
	cookies, err := chromedp.Run(ctx, func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/admin/"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(cookies.Cookies) != 0 {
		t.Fatalf("cookies after sign-out: %+v", cookies.Cookies)
	}
	shots.take(ctx, "5-signed-out")
}
