package main

import (
	"context"
	"errors"
	"fmt"
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
)

func serve(ctx context.Context, e *env, args []string) error {
	return serveWith(ctx, e, args, "serve", true)
}

func ingestOnly(ctx context.Context, e *env, args []string) error {
	return serveWith(ctx, e, args, "ingest", false)
}

// serveWith runs the purchase API, and with withMySQL also the MySQL side, until SIGINT or
// SIGTERM (or ctx) stops it: the listeners close, in-flight requests finish within the
// shutdown timeout, and it returns nil.
func serveWith(ctx context.Context, e *env, args []string, name string, withMySQL bool) error {
	about := "Sells over HTTP and gRPC."
	if withMySQL {
		about = "Sells over HTTP and gRPC and checks MySQL for readiness."
	}
	f := e.flags(name, "", about)
	rf := f.redis()
	httpAddr := f.str("http", "FLASHSALE_HTTP_ADDR", ":8080", "HTTP listen address")
	grpcAddr := f.str("grpc", "FLASHSALE_GRPC_ADDR", ":50051", "gRPC listen address")
	shutdown := f.duration("shutdown-timeout", "FLASHSALE_SHUTDOWN_TIMEOUT", 10*time.Second, "how long in-flight requests may take to finish at shutdown")
	var dsn *string
	if withMySQL {
		dsn = f.mysqlDSN()
	}
	logger := f.logger()
	if err := f.parse(args); err != nil {
		return err
	}
	if f.NArg() > 0 {
		return usageError{"unexpected arguments: " + fmt.Sprint(f.Args())}
	}
	log := logger()

	l, rdb, err := rf.open(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if on, err := l.AOFEnabled(ctx); err != nil {
		log.Warn("cannot tell whether Redis has AOF on", "err", err)
	} else if !on {
		log.Warn("Redis runs without AOF (appendonly no): acknowledged orders are lost if Redis restarts; run it with --appendonly yes")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	checks := map[string]ingest.Check{"redis": l.Ping}
	if withMySQL {
		db, err := openMySQL(*dsn)
		if err != nil {
			return err
		}
		defer db.Close()
		checks["mysql"] = db.PingContext
	}
	svc := ingest.NewService(l, nil, checks, ingest.NewMetrics(reg), log)

	var g oklog.Group
	{
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("http listen: %w", err)
		}
		srv := ingest.NewHTTPServer(*httpAddr, svc.Router(reg))
		g.Add(func() error {
			log.Info("http listening", "addr", ln.Addr().String())
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("http: %w", err)
			}
			return nil
		}, func(error) {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *shutdown)
			defer cancel()
			if err := srv.Shutdown(sctx); err != nil {
				log.Warn("http shutdown", "err", err)
				srv.Close()
			}
		})
	}
	{
		ln, err := net.Listen("tcp", *grpcAddr)
		if err != nil {
			return fmt.Errorf("grpc listen: %w", err)
		}
		srv, health := ingest.NewGRPCServer(svc)
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
	{
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
	err = g.Run()
	log.Info("stopped")
	return err
}
