package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/flashsale/flashsale/ingest"
	"github.com/flashsale/flashsale/ingest/barehttp"
)

// bare serves the bare handler (ingest/barehttp) on -addr until ctx ends (SIGINT or SIGTERM in main). It prints the
// address it listens on, so that -addr 127.0.0.1:0 can be used.
func bare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadtest bare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: loadtest bare [-addr host:port]\n\nServes POST /api/purchase with flashsale's body limit and decoding and a constant\n410 sold-out reply (no Redis), and GET /health. The HTTP ceiling of the machine.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return usageError{fmt.Sprintf("listen: %v", err)}
	}
	// The same server settings (timeouts, header limit) as flashsale's HTTP server.
	srv := ingest.NewHTTPServer(*addr, barehttp.Handler())
	fmt.Fprintf(stdout, "bare handler listening on %s\n", ln.Addr())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-served
	return nil
}
