package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	oklog "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ingest/admin"
	"github.com/flashsale/flashsale/ledger"
	"github.com/flashsale/flashsale/projector"
)

func serve(ctx context.Context, e *env, args []string) error {
	return serveWith(ctx, e, args, "serve", true)
}

func ingestOnly(ctx context.Context, e *env, args []string) error {
	return serveWith(ctx, e, args, "ingest", false)
}

// serveWith runs the purchase API, and with withMySQL also the projector and the order
// lookups, until SIGINT or SIGTERM (or ctx) stops it: the listeners close, in-flight requests
// finish within the shutdown timeout, the projector finishes its batch in hand, and it
// returns nil.
func serveWith(ctx context.Context, e *env, args []string, name string, withMySQL bool) error {
	sf, err := parseServeFlags(e, args, name, withMySQL)
	if err != nil {
		return err
	}
	log := sf.logger()
	seeds, err := drawSeeds(*sf.seedsFlag)
	if err != nil {
		return err
	}
	auth, err := sf.af.build(ctx, log)
	if err != nil {
		return err
	}
	l, closeLedger, err := sf.rf.open(ctx)
	if err != nil {
		return err
	}
	defer closeLedger()
	warnDurability(ctx, l, log)

	var g oklog.Group
	closeDB, err := sf.wire(ctx, &g, l, auth, seeds, log)
	defer closeDB()
	if err != nil {
		return err
	}
	addSignals(&g, ctx, log)
	err = g.Run()
	log.Info("stopped")
	return err
}

// serveFlags are the flags of serve (withMySQL) and ingest.
type serveFlags struct {
	withMySQL          bool
	rf                 redisFlags
	httpAddr, grpcAddr *string
	adminToken         *string
	idleWarn, shutdown *time.Duration
	lim                ingest.Limits
	af                 authFlags
	dsn                *string
	pf                 projectorFlags
	sf                 sweepFlags
	arf                archiveFlags
	tf                 retainFlags
	seedsFlag          *string
	getenv             func(string) string
	logger             func() *slog.Logger
}

// parseServeFlags defines and reads the flags of command name.
func parseServeFlags(e *env, args []string, name string, withMySQL bool) (*serveFlags, error) {
	about := "Sells over HTTP and gRPC; the ledger is projected by separate 'flashsale project' processes."
	if withMySQL {
		about = "Sells over HTTP and gRPC and projects the ledger into MySQL, in one process."
	}
	f := e.flags(name, "", about)
	sf := &serveFlags{withMySQL: withMySQL, rf: f.redis(), getenv: e.getenv}
	sf.rf.create = true
	sf.httpAddr = f.str("http", "FLASHSALE_HTTP_ADDR", ":8080", "HTTP listen address")
	sf.grpcAddr = f.str("grpc", "FLASHSALE_GRPC_ADDR", ":50051", "gRPC listen address")
	sf.adminToken = f.secret("admin-token", "FLASHSALE_ADMIN_TOKEN", "", "bearer token of the /admin routes (not mounted when empty)", redacted)
	sf.idleWarn = f.duration("admin-idle-warn", "FLASHSALE_ADMIN_IDLE_WARN", 30*time.Second, "the live board warns of a projector consumer idle this long while holding entries")
	sf.shutdown = f.duration("shutdown-timeout", "FLASHSALE_SHUTDOWN_TIMEOUT", 10*time.Second, "how long in-flight requests may take to finish at shutdown")
	lf := f.limits()
	sf.af = f.auth()
	sf.seedsFlag = f.str("draw-seeds", "FLASHSALE_DRAW_SEEDS", "", "ITEM=FILE pairs, comma separated: draw each ITEM with the seed in FILE when its draw time comes")
	if withMySQL {
		sf.dsn = f.mysqlDSN()
		sf.pf = f.projector()
		sf.sf = f.sweeper()
		sf.arf = f.archive()
	}
	sf.tf = f.retention(withMySQL)
	sf.logger = f.logger()
	if err := f.parse(args); err != nil {
		return nil, err
	}
	if f.NArg() > 0 {
		return nil, usageError{"unexpected arguments: " + fmt.Sprint(f.Args())}
	}
	var err error
	if sf.lim, err = lf.build(); err != nil {
		return nil, err
	}
	if err := sf.tf.validate(); err != nil {
		return nil, err
	}
	return sf, nil
}

// warnDurability logs a warning when Redis would lose acknowledged orders in a restart.
func warnDurability(ctx context.Context, l *ledger.Ledger, log *slog.Logger) {
	switch aof, fsync, err := l.Durability(ctx); {
	case err != nil:
		log.Warn("cannot tell whether Redis has AOF on", "err", err)
	case aof != "yes":
		log.Warn("Redis runs without AOF (appendonly no): acknowledged orders are lost if Redis restarts; run it with --appendonly yes --appendfsync always")
	case fsync != "always":
		log.Warn("Redis AOF fsyncs "+fsync+": a Redis crash can lose the last seconds of acknowledged orders; --appendfsync always loses none", "appendfsync", fsync)
	}
}

// wire builds the service on l and adds every actor to g: with MySQL the projector, sweeper,
// archiver and retainer; the drawer of the items in seeds, the winner tail, the board, the
// HTTP and the gRPC servers. closeDB
// closes the MySQL pool (a no-op without one); it is set also when err is not nil.
func (sf *serveFlags) wire(ctx context.Context, g *oklog.Group, l *ledger.Ledger, auth *ingest.Authenticator, seeds map[string][]byte, log *slog.Logger) (closeDB func(), err error) {
	reg := newRegistry()
	reg.MustRegister(newRetainCollector(l, *sf.tf.retain))
	checks := map[string]ingest.Check{"redis": l.Ping}
	var orders ingest.Orders
	var auditFn admin.AuditFunc
	closeDB = func() {}
	if sf.withMySQL {
		db, err := openMySQL(*sf.dsn)
		if err != nil {
			return closeDB, err
		}
		closeDB = func() { db.Close() }
		checks["mysql"] = db.PingContext
		if err := sf.addMySQLActors(ctx, g, l, db, reg, log); err != nil {
			return closeDB, err
		}
		orders = projector.NewLookup(projector.NewStore(db), l)
		auditFn = boardAudit(l, projector.NewStore(db))
	}
	addDrawer(g, ctx, l, seeds, log)
	metrics := ingest.NewMetrics(reg)
	svc := ingest.NewService(l, orders, checks, metrics, log)
	svc.RequireAuth(auth)
	{
		tctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return l.TailWinners(tctx, log) }, func(error) { cancel() })
	}
	router := svc.Router(reg)
	board := admin.Mount(router, admin.Options{
		Token: *sf.adminToken, Ledger: l, Group: projector.DefaultGroup, Audit: auditFn, IdleWarn: *sf.idleWarn, Retain: *sf.tf.retain,
		Metrics: metrics, Log: log,
	})
	addBoard(g, ctx, board) // before the HTTP server, so that its streams end before shutdown waits
	if err := addHTTP(g, ctx, log, "http", *sf.httpAddr, sf.lim.LimitInFlight(router, reg), *sf.shutdown, sf.lim); err != nil {
		return closeDB, err
	}
	return closeDB, addGRPC(g, log, *sf.grpcAddr, svc, *sf.shutdown, sf.lim)
}

// addMySQLActors adds to g serve's projector, sweeper, archiver and retainer.
func (sf *serveFlags) addMySQLActors(ctx context.Context, g *oklog.Group, l *ledger.Ledger, db *sql.DB, reg *prometheus.Registry, log *slog.Logger) error {
	p, err := sf.pf.build(l, db, reg, log)
	if err != nil {
		return usageError{err.Error()}
	}
	addProjector(g, ctx, p)
	addSweeper(g, ctx, l, sf.sf, reg, log)
	arch, err := sf.arf.addArchiver(g, ctx, l, *sf.pf.consumer, reg, log)
	if err != nil {
		return err
	}
	return addRetainer(g, ctx, l, sf.tf, arch, log)
}

// addGRPC listens on addr and adds to g an actor serving svc over gRPC there; interrupted, it
// stops gracefully within shutdown, then hard.
func addGRPC(g *oklog.Group, log *slog.Logger, addr string, svc *ingest.Service, shutdown time.Duration, lim ingest.Limits) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("grpc listen: %w", err)
	}
	ln = lim.LimitListener(ln)
	srv, health := ingest.NewGRPCServer(svc, lim.GRPCOptions()...)
	g.Add(func() error {
		log.Info("grpc listening", "addr", ln.Addr().String())
		return srv.Serve(ln)
	}, func(error) {
		health.Shutdown()
		done := make(chan struct{})
		go func() {
			srv.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(shutdown):
			srv.Stop()
			<-done
		}
	})
	return nil
}

// addSignals adds to g an actor that returns on SIGINT or SIGTERM, which stops the group.
func addSignals(g *oklog.Group, ctx context.Context, log *slog.Logger) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	sctx, cancel := context.WithCancel(ctx)
	g.Add(func() error {
		defer signal.Stop(sigs)
		select {
		case s := <-sigs:
			log.Info("stopping", "signal", s.String())
		case <-sctx.Done():
		}
		return nil
	}, func(error) { cancel() })
}

// newRegistry returns a Prometheus registry with the Go and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// addHTTP listens on addr and adds to g an actor serving h there, with at most lim.MaxConns
// connections at once; interrupted, it stops accepting and lets the requests in flight finish
// within shutdown. name labels the log line and errors.
func addHTTP(g *oklog.Group, ctx context.Context, log *slog.Logger, name, addr string, h http.Handler, shutdown time.Duration, lim ingest.Limits) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listen: %w", name, err)
	}
	ln = lim.LimitListener(ln)
	srv := ingest.NewHTTPServer(addr, h)
	g.Add(func() error {
		log.Info(name+" listening", "addr", ln.Addr().String())
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}, func(error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdown)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn(name+" shutdown", "err", err)
			srv.Close()
		}
	})
	return nil
}
