package main

import (
	"context"
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
	about := "Sells over HTTP and gRPC; the ledger is projected by separate 'flashsale project' processes."
	if withMySQL {
		about = "Sells over HTTP and gRPC and projects the ledger into MySQL, in one process."
	}
	f := e.flags(name, "", about)
	rf := f.redis()
	rf.create = true
	httpAddr := f.str("http", "FLASHSALE_HTTP_ADDR", ":8080", "HTTP listen address")
	grpcAddr := f.str("grpc", "FLASHSALE_GRPC_ADDR", ":50051", "gRPC listen address")
	adminToken := f.secret("admin-token", "FLASHSALE_ADMIN_TOKEN", "", "bearer token of the /admin routes (not mounted when empty)", redacted)
	idleWarn := f.duration("admin-idle-warn", "FLASHSALE_ADMIN_IDLE_WARN", 30*time.Second, "the live board warns of a projector consumer idle this long while holding entries")
	shutdown := f.duration("shutdown-timeout", "FLASHSALE_SHUTDOWN_TIMEOUT", 10*time.Second, "how long in-flight requests may take to finish at shutdown")
	lf := f.limits()
	af := f.auth()
	seedsFlag := f.str("draw-seeds", "FLASHSALE_DRAW_SEEDS", "", "ITEM=FILE pairs, comma separated: draw each ITEM with the seed in FILE when its draw time comes")
	var dsn *string
	var pf projectorFlags
	var sf sweepFlags
	var arf archiveFlags
	if withMySQL {
		dsn = f.mysqlDSN()
		pf = f.projector()
		sf = f.sweeper()
		arf = f.archive()
	}
	tf := f.retention(withMySQL)
	logger := f.logger()
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usageError{"unexpected arguments: " + fmt.Sprint(f.Args())}
	}
	lim, err := lf.build()
	if err != nil {
		return err
	}
	if err := tf.validate(); err != nil {
		return err
	}
	log := logger()
	seeds, err := drawSeeds(*seedsFlag)
	if err != nil {
		return err
	}
	auth, err := af.build(ctx, log)
	if err != nil {
		return err
	}

	l, closeLedger, err := rf.open(ctx)
	if err != nil {
		return err
	}
	defer closeLedger()
	switch aof, fsync, err := l.Durability(ctx); {
	case err != nil:
		log.Warn("cannot tell whether Redis has AOF on", "err", err)
	case aof != "yes":
		log.Warn("Redis runs without AOF (appendonly no): acknowledged orders are lost if Redis restarts; run it with --appendonly yes --appendfsync always")
	case fsync != "always":
		log.Warn("Redis AOF fsyncs "+fsync+": a Redis crash can lose the last seconds of acknowledged orders; --appendfsync always loses none", "appendfsync", fsync)
	}

	reg := newRegistry()
	reg.MustRegister(newRetainCollector(l, *tf.retain))
	checks := map[string]ingest.Check{"redis": l.Ping}
	var g oklog.Group
	var orders ingest.Orders
	var auditFn ingest.AuditFunc
	if withMySQL {
		db, err := openMySQL(*dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		checks["mysql"] = db.PingContext
		p, err := pf.build(l, db, reg, log)
		if err != nil {
			return usageError{err.Error()}
		}
		addProjector(&g, ctx, p)
		addSweeper(&g, ctx, l, sf, reg, log)
		arch, err := arf.addArchiver(&g, ctx, l, *pf.consumer, reg, log)
		if err != nil {
			return err
		}
		if err := addRetainer(&g, ctx, l, tf, arch, log); err != nil {
			return err
		}
		orders = orderLookup{projector.NewLookup(projector.NewStore(db), l)}
		auditFn = boardAudit(l, projector.NewStore(db))
	}
	source := historySource(l, nil)
	if withMySQL && len(seeds) > 0 {
		arch, err := openArchiveReader(ctx, *arf.url, e.getenv, l)
		if err != nil {
			return err
		}
		source = historySource(l, arch)
	}
	addDrawer(&g, ctx, l, seeds, source, log)
	svc := ingest.NewService(l, orders, checks, ingest.NewMetrics(reg), log)
	svc.RequireAuth(auth)
	{
		tctx, cancel := context.WithCancel(ctx)
		g.Add(func() error { return l.TailWinners(tctx, log) }, func(error) { cancel() })
	}
	router := svc.Router(reg)
	board := svc.MountAdmin(router, ingest.AdminOptions{
		Token: *adminToken, Ledger: l, Group: projector.DefaultGroup, Audit: auditFn, IdleWarn: *idleWarn, Retain: *tf.retain,
	})
	addBoard(&g, ctx, board) // before the HTTP server, so that its streams end before shutdown waits
	if err := addHTTP(&g, ctx, log, "http", *httpAddr, lim.LimitInFlight(router, reg), *shutdown, lim); err != nil {
		return err
	}
	{
		ln, err := net.Listen("tcp", *grpcAddr)
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
			case <-time.After(*shutdown):
				srv.Stop()
				<-done
			}
		})
	}
	addSignals(&g, ctx, log)
	err = g.Run()
	log.Info("stopped")
	return err
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
