package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/flashsale/flashsale/ingest"
)

// bare serves bareHandler on -addr until ctx ends (SIGINT or SIGTERM in main). It prints the
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
	srv := ingest.NewHTTPServer(*addr, bareHandler())
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

// bareReply is flashsale's purchase reply shape.
type bareReply struct {
	Success bool   `json:"success"`
	Message string `json:"message"`
}

// bareHandler does what flashsale's purchase handler does before it asks Redis (read the body
// under the same size limit, decode it with ingest.DecodePurchase, validate it) and answers
// 410 sold out, encoding the reply the same way.
func bareHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/purchase", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, ingest.MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeBare(w, http.StatusRequestEntityTooLarge, "request body too large")
				return
			}
			writeBare(w, http.StatusBadRequest, "invalid request body")
			return
		}
		req, err := ingest.DecodePurchase(body)
		if err != nil {
			writeBare(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := req.Validate(); err != nil {
			writeBare(w, http.StatusBadRequest, err.Error())
			return
		}
		writeBare(w, http.StatusGone, "sold out")
	})
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeBare(w, http.StatusOK, "ok")
	})
	return mux
}

func writeBare(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(bareReply{Success: status == http.StatusOK, Message: msg})
}
