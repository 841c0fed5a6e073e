package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeBoard runs the live board's server side in a real `flashsale serve`: the audit
// button runs the same audit as `flashsale audit` on MySQL, the snapshot shows the sale, and
// an open event stream does not hold up a SIGTERM shutdown.
func TestServeBoard(t *testing.T) {
	s := newStack(t)
	const item, stock = "board-item", 20
	s.setStock(t, item, stock)
	p := startProcess(t, "serve", append(s.env(s.dsn), "FLASHSALE_ADMIN_TOKEN=tok"),
		"serve", "-consumer", "b1", "-shutdown-timeout", "8s")
	srv := &server{process: p}
	srv.httpAddr = p.waitLog(t, httpListening, 15*time.Second)[1]
	c := newHTTPClient()
	for i := range stock + 3 {
		if _, _, err := purchaseHTTP(c, srv, fmt.Sprintf("r%d", i), fmt.Sprintf("u%d", i), item, 1); err != nil {
			t.Fatal(err)
		}
	}
	s.waitDrained(t, stock, 30*time.Second)

	admin := func(method, path string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.url(path), nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		bufio.NewReader(resp.Body).WriteTo(&b)
		return resp.StatusCode, []byte(b.String())
	}
	code, body := admin(http.MethodPost, "/admin/audit")
	var audit struct {
		Clean          bool  `json:"clean"`
		Items          int   `json:"items"`
		Pending        int64 `json:"pending"`
		ViolationCount int   `json:"violation_count"`
	}
	if err := json.Unmarshal(body, &audit); err != nil || code != http.StatusOK {
		t.Fatalf("POST /admin/audit: %d %s (%v)", code, body, err)
	}
	if !audit.Clean || audit.Items != 1 || audit.Pending != 0 || audit.ViolationCount != 0 {
		t.Fatalf("audit %s: want clean, one item, nothing pending", body)
	}
	if out := runCmd(t, s.env(s.dsn), "audit"); !strings.Contains(out, "clean") {
		t.Fatalf("flashsale audit: %q, want clean like the board's", out)
	}

	code, body = admin(http.MethodGet, "/admin/board")
	var snap struct {
		Items []struct {
			ItemID    string `json:"item_id"`
			PutOnSale int64  `json:"put_on_sale"`
			Sold      int64  `json:"sold"`
			Left      int64  `json:"left"`
			Status    string `json:"status"`
		} `json:"items"`
		Purchases struct {
			Total map[string]float64 `json:"total"`
		} `json:"purchases"`
		Partitions []struct {
			Lag, Pending int64
			Consumers    []struct {
				Name string `json:"name"`
			} `json:"consumers"`
		} `json:"partitions"`
		Audit *struct {
			Clean bool `json:"clean"`
		} `json:"audit"`
		AuditAvailable bool `json:"audit_available"`
	}
	if err := json.Unmarshal(body, &snap); err != nil || code != http.StatusOK {
		t.Fatalf("GET /admin/board: %d %s (%v)", code, body, err)
	}
	if len(snap.Items) != 1 || snap.Items[0].ItemID != item || snap.Items[0].PutOnSale != stock ||
		snap.Items[0].Sold != stock || snap.Items[0].Left != 0 || snap.Items[0].Status != "sold_out" {
		t.Fatalf("board items %+v, want %s sold out: %d put on sale, %d sold", snap.Items, item, stock, stock)
	}
	if snap.Purchases.Total["ok"] != stock || snap.Purchases.Total["sold_out"] != 3 {
		t.Fatalf("board purchases %v, want %d ok and 3 sold out", snap.Purchases.Total, stock)
	}
	if !snap.AuditAvailable || snap.Audit == nil || !snap.Audit.Clean {
		t.Fatalf("board audit %+v (available %v), want the clean audit just run", snap.Audit, snap.AuditAvailable)
	}
	consumers := 0
	for _, p := range snap.Partitions {
		consumers += len(p.Consumers)
	}
	if consumers == 0 {
		t.Fatalf("board partitions %+v, want the projector's consumer b1", snap.Partitions)
	}

	// An operator keeps the board open while the server is stopped.
	req, _ := http.NewRequest(http.MethodGet, srv.url("/admin/events"), nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream: %v", err)
		}
		if strings.HasPrefix(line, "data: {") {
			break
		}
	}
	start := time.Now()
	p.signal(t, syscall.SIGTERM)
	code, ok := p.wait(5 * time.Second)
	if !ok || code != 0 {
		t.Fatalf("serve with an open board: exit %d (exited %v) after %s, want 0 well within the 8s shutdown timeout", code, ok, time.Since(start))
	}
}
