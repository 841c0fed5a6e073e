package main

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// config is one run of the load generator, as the flags describe it.
type config struct {
	target      string // http or grpc
	addr        string // host:port
	allowRemote bool

	clients  int           // concurrent requests at most (closed loop: exactly)
	duration time.Duration // 0: until requests are sent
	requests int64         // 0: until duration is over
	rate     float64       // requests per second; 0 = closed loop
	timeout  time.Duration // per request
	conns    int           // gRPC connections

	item     string
	quantity int
	users    int
	runID    string // prefix of every request_id of this run

	verify     bool
	auditRedis string
	auditMySQL string
	prefix     string
	flashsale  string

	pay    float64       // fraction of the winners that pay their order
	settle time.Duration // with pay: how long to wait for unpaid units to come back

	json bool
}

// openLoop reports whether requests are sent at a fixed rate rather than back to back.
func (c config) openLoop() bool { return c.rate > 0 }

// slots is the number of requests an open-loop run schedules (its rate times its duration,
// or -requests when that is smaller); 0 when unbounded.
func (c config) slots() int64 {
	if !c.openLoop() {
		return c.requests
	}
	n := int64(c.rate * c.duration.Seconds())
	if c.duration == 0 || (c.requests > 0 && c.requests < n) {
		n = c.requests
	}
	return n
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: loadtest [flags]
       loadtest bare [-addr 127.0.0.1:8090]

Sends purchases to flashsale over HTTP or gRPC and checks afterwards, through the API, that the
stock fell by exactly the units of the successful replies and never below zero. Closed loop by
default (-clients requests in flight, each client sending its next one when the last returns);
open loop with -rate (latency counted from the intended send time, so a stalled server is not
hidden). Exit 0 clean, 1 violation, 2 could not run.

'loadtest bare' serves POST /api/purchase with flashsale's body decoding and a constant 410
sold-out reply, without Redis: the HTTP ceiling of the machine.

Flags:
`)
		fs.PrintDefaults()
	}
	var c config
	fs.StringVar(&c.target, "target", "http", "protocol: http or grpc")
	fs.StringVar(&c.addr, "addr", "", "target host:port (default 127.0.0.1 with the port of FLASHSALE_HTTP_ADDR or FLASHSALE_GRPC_ADDR, else 8080 or 50051)")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a target that is not a loopback address")
	fs.IntVar(&c.clients, "clients", 64, "concurrent clients (open loop: most requests in flight)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send (with -requests and no -duration: until the requests are sent)")
	requests := fs.Int64("requests", 0, "send this many requests at most (0: no limit)")
	fs.Float64Var(&c.rate, "rate", 0, "open loop: send this many requests per second (0: closed loop)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "per-request timeout")
	fs.IntVar(&c.conns, "conns", 2, "gRPC connections shared by the clients")
	fs.StringVar(&c.item, "item", "demo", "item to buy")
	fs.IntVar(&c.quantity, "quantity", 1, "units per purchase")
	fs.IntVar(&c.users, "users", 1000, "user IDs drawn at random from u0..u(N-1), so per-user limits are exercised")
	fs.BoolVar(&c.verify, "verify", true, "read the item's stock before and after the run and check it against the replies")
	fs.StringVar(&c.auditRedis, "audit-redis", "", "after the run, run 'flashsale audit' against this Redis (needs -audit-mysql)")
	fs.StringVar(&c.auditMySQL, "audit-mysql", "", "MySQL DSN for the audit")
	fs.StringVar(&c.prefix, "prefix", or(getenv("FLASHSALE_REDIS_PREFIX"), ledger.DefaultPrefix), "ledger key prefix for the audit (env FLASHSALE_REDIS_PREFIX)")
	fs.StringVar(&c.flashsale, "flashsale", "flashsale", "flashsale binary that runs the audit")
	fs.Float64Var(&c.pay, "pay", 0, "fraction of the winners that pay their order (item with a pay-within rule); the rest never pay, and their units must come back on sale")
	fs.DurationVar(&c.settle, "settle", 30*time.Second, "with -pay: how long to wait after the run for the unpaid units to come back")
	fs.BoolVar(&c.json, "json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return config{}, err
		}
		return config{}, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return config{}, usageError{fmt.Sprintf("unexpected arguments: %v", fs.Args())}
	}
	c.requests = *requests
	durationSet := false
	fs.Visit(func(f *flag.Flag) { durationSet = durationSet || f.Name == "duration" })
	if c.requests > 0 && !durationSet {
		c.duration = 0
	}
	if c.addr == "" {
		c.addr = defaultAddr(c.target, getenv)
	}
	if err := c.validate(); err != nil {
		return config{}, usageError{err.Error()}
	}
	id := make([]byte, 4)
	rand.Read(id)
	c.runID = "lt" + hex.EncodeToString(id)
	return c, nil
}

func (c config) validate() error {
	switch {
	case c.target != "http" && c.target != "grpc":
		return fmt.Errorf("-target %q: want http or grpc", c.target)
	case c.clients < 1 || c.clients > 10000:
		return fmt.Errorf("-clients %d: want 1..10000", c.clients)
	case c.duration < 0 || c.requests < 0 || c.rate < 0:
		return fmt.Errorf("-duration, -requests and -rate must not be negative")
	case c.duration == 0 && c.requests == 0:
		return fmt.Errorf("give -duration or -requests: a run must end")
	case c.timeout <= 0:
		return fmt.Errorf("-timeout must be positive")
	case c.conns < 1 || c.conns > 64:
		return fmt.Errorf("-conns %d: want 1..64", c.conns)
	case c.quantity < 1 || c.quantity > ledger.MaxQuantity:
		return fmt.Errorf("-quantity %d: want 1..%d", c.quantity, ledger.MaxQuantity)
	case c.users < 1:
		return fmt.Errorf("-users %d: want at least 1", c.users)
	case c.pay < 0 || c.pay > 1:
		return fmt.Errorf("-pay %g: want 0..1", c.pay)
	case (c.auditRedis == "") != (c.auditMySQL == ""):
		return fmt.Errorf("-audit-redis and -audit-mysql go together")
	}
	if err := ledger.ValidateItemID(c.item); err != nil {
		return fmt.Errorf("-item: %w", err)
	}
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", c.addr, err)
	}
	if !c.allowRemote && !loopback(host) {
		return fmt.Errorf("-addr %q is not a loopback address; add -allow-remote to load another machine", c.addr)
	}
	return nil
}

// defaultAddr is 127.0.0.1 with the port flashsale listens on by its environment.
func defaultAddr(target string, getenv func(string) string) string {
	key, port := "FLASHSALE_HTTP_ADDR", "8080"
	if target == "grpc" {
		key, port = "FLASHSALE_GRPC_ADDR", "50051"
	}
	if _, p, err := net.SplitHostPort(getenv(key)); err == nil && p != "" {
		port = p
	}
	return net.JoinHostPort("127.0.0.1", port)
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
