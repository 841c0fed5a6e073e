package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// drawLoad is `loadtest draw`: a crowd registers for a draw over HTTP, one entry per user
// u0..u(N-1); then, with -pay, it waits for the draw and a fraction of the winners pay.
func drawLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest draw", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "flashsale's HTTP host:port (loopback)")
	item := fs.String("item", "demo", "the draw item")
	users := fs.Int("users", 10000, "users u0..u(N-1), each registering once")
	clients := fs.Int("clients", 64, "concurrent clients")
	pay := fs.Float64("pay", 0, "fraction of the users that pay once the item is drawn (the winners among them are paid; 0: do not wait for the draw)")
	wait := fs.Duration("wait", 5*time.Minute, "with -pay: how long to wait for the draw")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	host, _, err := net.SplitHostPort(*addr)
	switch {
	case err != nil || !loopback(host):
		return usageError{fmt.Sprintf("-addr %q: want a loopback host:port", *addr)}
	case *users < 1 || *clients < 1 || *pay < 0 || *pay > 1:
		return usageError{"-users and -clients must be at least 1, -pay within 0..1"}
	}
	d := drawCrowd{
		c:    &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *clients}},
		base: "http://" + *addr, item: *item, users: *users, clients: *clients,
	}
	orders := d.register(ctx, stdout)
	if *pay == 0 {
		return nil
	}
	if err := d.waitDrawn(ctx, *wait); err != nil {
		return err
	}
	d.pay(ctx, orders, *pay, stdout)
	return nil
}

// drawCrowd is the crowd of `loadtest draw`: users u0..u(users-1) over clients connections.
type drawCrowd struct {
	c              *http.Client
	base, item     string
	users, clients int
}

// register registers every user once and returns the order ID each got (202 or 409).
func (d drawCrowd) register(ctx context.Context, stdout io.Writer) []string {
	orders := make([]string, d.users)
	var codes sync.Map // status -> *atomic.Int64
	count := func(code int) {
		v, _ := codes.LoadOrStore(code, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range d.clients {
		wg.Go(func() {
			for i := w; i < d.users && ctx.Err() == nil; i += d.clients {
				u := fmt.Sprintf("u%d", i)
				body := fmt.Sprintf(`{"request_id":"draw-%s","user_id":%q,"item_id":%q,"quantity":1}`, u, u, d.item)
				var out struct {
					OrderID string `json:"order_id"`
				}
				code, err := call(ctx, d.c, http.MethodPost, d.base+"/api/purchase", body, &out)
				if err != nil {
					count(0)
					continue
				}
				count(code)
				if code == http.StatusAccepted || code == http.StatusConflict {
					orders[i] = out.OrderID
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	var summary []string
	codes.Range(func(k, v any) bool {
		summary = append(summary, fmt.Sprintf("%v: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	fmt.Fprintf(stdout, "registered %d users in %s: %.0f entries/s (HTTP status: %s)\n",
		d.users, took.Round(time.Millisecond), float64(d.users)/took.Seconds(), strings.Join(summary, ", "))
	return orders
}

// waitDrawn waits until the item reports its draw drawn, for at most wait.
func (d drawCrowd) waitDrawn(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		var it struct {
			Draw *struct {
				State string `json:"state"`
			} `json:"draw"`
		}
		if _, err := call(ctx, d.c, http.MethodGet, d.base+"/api/items/"+d.item, "", &it); err == nil && it.Draw != nil && it.Draw.State == "drawn" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s was not drawn within %s", d.item, wait)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pay makes the fraction of the users pay: a winner's payment succeeds, anyone else is told
// the entry has not won (409); the others never pay, and their units go down the waitlist
// when their reservations expire.
func (d drawCrowd) pay(ctx context.Context, orders []string, fraction float64, stdout io.Writer) {
	var paid, notWon, other atomic.Int64
	payers := int(float64(d.users) * fraction)
	var wg sync.WaitGroup
	for w := range d.clients {
		wg.Go(func() {
			for i := w; i < d.users && ctx.Err() == nil; i += d.clients {
				if orders[i] == "" || (i*7919)%d.users >= payers {
					continue
				}
				code, err := call(ctx, d.c, http.MethodPost, fmt.Sprintf("%s/api/orders/%s/pay", d.base, orders[i]),
					fmt.Sprintf(`{"user_id":"u%d","payment_ref":"pay-u%d"}`, i, i), nil)
				switch {
				case err == nil && code == http.StatusOK:
					paid.Add(1)
				case err == nil && code == http.StatusConflict:
					notWon.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(stdout, "drawn: %d of %d users tried to pay: %d winners paid, %d had not won, %d other answers\n",
		paid.Load()+notWon.Load()+other.Load(), d.users, paid.Load(), notWon.Load(), other.Load())
}

// call sends one JSON request and decodes the reply into out (when not nil).
func call(ctx context.Context, c *http.Client, method, url, body string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode, nil
}
