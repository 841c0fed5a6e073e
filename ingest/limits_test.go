package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/flashsale/flashsale/ingest"
	pb "github.com/flashsale/flashsale/proto"
)

// startGRPCWith serves the gRPC server with lim on a 127.0.0.1 port and returns its address;
// it is stopped by t.Cleanup.
func (e *env) startGRPCWith(t *testing.T, lim ingest.Limits) string {
	t.Helper()
	srv, _ := ingest.NewGRPCServer(e.svc, lim.GRPCOptions()...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return lis.Addr().String()
}

// waitGoroutines waits up to d for the goroutine count to fall to at most n and returns it.
func waitGoroutines(n int, d time.Duration) int {
	deadline := time.Now().Add(d)
	for {
		got := runtime.NumGoroutine()
		if got <= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGRPCStreamsThatNeverSend plays the client that opens streams and never sends a request,
// ignoring the server's stream cap: one raw HTTP/2 connection opens 500 Purchase streams. The
// server must run at most the cap of them (refusing the rest), so its goroutines do not grow
// with the streams, and must end every stream it took once the receive timeout passes.
// Not parallel: it counts the process's goroutines.
func TestGRPCStreamsThatNeverSend(t *testing.T) {
	e := newEnv(t)
	const maxStreams, streams = 16, 500
	const recvTimeout = 500 * time.Millisecond
	addr := e.startGRPCWith(t, ingest.Limits{GRPCMaxStreams: maxStreams, GRPCRecvTimeout: recvTimeout})
	time.Sleep(100 * time.Millisecond) // let the goroutines of earlier tests end
	base := runtime.NumGoroutine()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	w := bufio.NewWriter(conn)
	fr := http2.NewFramer(w, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	w.WriteString(http2.ClientPreface)
	if err := fr.WriteSettings(); err != nil {
		t.Fatalf("settings: %v", err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	opened := time.Now()
	for i := range streams {
		block.Reset()
		for _, f := range [][2]string{
			{":method", "POST"}, {":scheme", "http"}, {":path", "/flashsale.OrderService/Purchase"},
			{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"},
		} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block.Bytes(), EndHeaders: true})
		if err != nil {
			t.Fatalf("headers of stream %d: %v", i, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}

	// Every stream ends with a reply: refused at once beyond the cap, or a status (trailers
	// with END_STREAM) once the receive timeout passed.
	refused, statuses := 0, map[string]int{}
	ended := map[uint32]bool{}
	var peak int
	conn.SetReadDeadline(time.Now().Add(recvTimeout + 5*time.Second))
	for len(ended) < streams {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d refused and %v ended streams, with %d goroutines more than before: read: %v",
				refused, statuses, runtime.NumGoroutine()-base, err)
		}
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			if ended[f.StreamID] {
				continue
			}
			ended[f.StreamID] = true
			if f.ErrCode == http2.ErrCodeRefusedStream {
				refused++
				if refused == streams-maxStreams {
					// Every HEADERS frame has been handled: the streams taken are running now.
					peak = runtime.NumGoroutine()
				}
			} else {
				statuses["rst "+f.ErrCode.String()]++
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				ended[f.StreamID] = true
				statuses[f.PseudoValue("status")+" grpc-status "+headerValue(f, "grpc-status")]++
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
				w.Flush()
			}
		}
	}
	took := time.Since(opened)

	if refused != streams-maxStreams {
		t.Errorf("refused streams: got %d, want %d", refused, streams-maxStreams)
	}
	// grpc-status 4 is DEADLINE_EXCEEDED.
	if want := map[string]int{"200 grpc-status 4": maxStreams}; !mapsEqual(statuses, want) {
		t.Errorf("statuses of the streams taken: got %v, want %v", statuses, want)
	}
	if took < recvTimeout {
		t.Errorf("streams ended after %v, before the receive timeout %v", took, recvTimeout)
	}
	if grew := peak - base; grew > maxStreams+20 {
		t.Errorf("goroutines with %d streams open: got %d more than before, want at most %d (the stream cap and a few)", streams, grew, maxStreams+20)
	}
	// The connection stays open, with its reader, writer and keepalive goroutines.
	if got := waitGoroutines(base+8, 2*time.Second); got > base+8 {
		t.Errorf("goroutines after the streams ended: got %d, want at most %d", got, base+8)
	}
	t.Logf("goroutines: %d before, %d with %d streams open (cap %d), all ended after %v", base, peak, streams, maxStreams, took.Round(time.Millisecond))
}

func headerValue(f *http2.MetaHeadersFrame, name string) string {
	for _, hf := range f.RegularFields() {
		if hf.Name == name {
			return hf.Value
		}
	}
	return ""
}

// counterValue returns the value of the counter name gathered from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s: not registered", name)
	return 0
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestGRPCRecvTimeoutSparesSlowWork checks that the receive timeout bounds only the wait for
// the request: a call whose request arrived runs on past it.
func TestGRPCRecvTimeoutSparesSlowWork(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	addr := e.startGRPCWith(t, ingest.Limits{GRPCRecvTimeout: 50 * time.Millisecond})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	// A purchase whose request arrived in time is not cancelled by the receive deadline when
	// its work takes longer than it: pause Redis past the timeout while the call runs.
	setStock(t, e.l, "a", stockSet(1))
	if err := e.rdb.Do(context.Background(), "CLIENT", "PAUSE", "300", "ALL").Err(); err != nil {
		t.Fatalf("pause redis: %v", err)
	}
	start := time.Now()
	_, err = pb.NewOrderServiceClient(conn).Purchase(context.Background(), &pb.PurchaseRequest{RequestId: "slow-1", UserId: "u", ItemId: "a", Quantity: 1})
	if err != nil {
		t.Fatalf("purchase while Redis pauses 300ms: got %v after %v, want an order", err, time.Since(start))
	}
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("purchase took %v, want it to have waited for the paused Redis", took)
	}
}

// TestHTTPInFlightCap fills the in-flight cap with requests that do not finish: one more is
// answered 503 with Retry-After at once and counted; /health still answers; once a slot is
// free, requests are served again.
func TestHTTPInFlightCap(t *testing.T) {
	t.Parallel()
	const limit = 4
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/slow" {
			entered <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusOK)
	})
	reg := prometheus.NewRegistry()
	ts := httptest.NewServer(ingest.Limits{MaxInFlight: limit}.LimitInFlight(slow, reg))
	t.Cleanup(ts.Close)
	c := ts.Client()

	done := make(chan int, limit)
	for range limit {
		go func() {
			r, err := send(c, http.MethodGet, ts.URL+"/api/slow", nil)
			if err != nil {
				t.Errorf("slow request: %v", err)
			}
			done <- r.status
		}()
		<-entered
	}

	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/purchase", bytes.NewReader(purchaseJSON("r", "u", "a", 1)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("request beyond the cap: %v", err)
	}
	var rep reply
	json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || rep.Success || rep.Message == "" {
		t.Errorf("request beyond the cap: got %d Retry-After %q %+v, want 503 with Retry-After 1 and a message",
			resp.StatusCode, resp.Header.Get("Retry-After"), rep)
	}
	if took > 500*time.Millisecond {
		t.Errorf("request beyond the cap: answered after %v, want at once", took)
	}
	if r := mustSend(t, c, http.MethodGet, ts.URL+"/health", nil); r.status != http.StatusOK {
		t.Errorf("GET /health at the cap: got %d, want 200", r.status)
	}
	if got := counterValue(t, reg, "flashsale_shed_total"); got != 1 {
		t.Errorf("flashsale_shed_total: got %v, want 1", got)
	}

	close(release)
	for range limit {
		if s := <-done; s != http.StatusOK {
			t.Errorf("slow request: got %d, want 200", s)
		}
	}
	if r := mustSend(t, c, http.MethodGet, ts.URL+"/api/other", nil); r.status != http.StatusOK {
		t.Errorf("request after the slots freed: got %d, want 200", r.status)
	}
}

// TestConnectionCap holds the cap of connections open: one more is not served until one of
// them closes.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	const limit = 2
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {})}
	go srv.Serve(ingest.Limits{MaxConns: limit}.LimitListener(ln))
	t.Cleanup(func() { srv.Close() })

	get := func(conn net.Conn) error {
		conn.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	var held []net.Conn
	for i := range limit + 1 {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		held = append(held, conn)
	}
	for i, conn := range held[:limit] {
		if err := get(conn); err != nil {
			t.Fatalf("request on connection %d of %d: %v", i+1, limit, err)
		}
	}
	extra := held[limit]
	if err := get(extra); err == nil {
		t.Fatalf("request on connection %d: served, want it to wait while %d are open", limit+1, limit)
	}
	held[0].Close()
	// The timed-out request above was written; its reply comes once the connection is taken.
	extra.SetDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("request on connection %d after one closed: %v", limit+1, err)
	}
	resp.Body.Close()
}
