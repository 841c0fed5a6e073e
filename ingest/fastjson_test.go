package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/flashsale/flashsale/ledger"
)

// purchaseSeeds are bodies on both sides of what fastPurchase decides itself.
var purchaseSeeds = []string{
	`{"request_id":"r-1","user_id":"alice","item_id":"demo","quantity":1}`,
	` { "quantity" : 100 ,"item_id":"demo",	"user_id":"bob","request_id":"r-2" } ` + "\r\n",
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":-0}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":-12}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":01}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":1.0}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":1e2}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":999999999999999999}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":9223372036854775807}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":9223372036854775808}`,
	`{"request_id":"r","user_id":"u","item_id":"a","quantity":null}`,
	`{"request_id":"r","user_id":"u","item_id":"a"}`,
	`{"request_id":"","user_id":"u"}`,
	`{}`,
	`{"request_id":"r","request_id":"s"}`,
	`{"request_id":"r",}`,
	`{"request_id":"r"}}`,
	`{"request_id":"r"}{}`,
	`{"request_id":"r"} x`,
	`{"Request_id":"r"}`,
	`{"request_\u0069d":"r"}`,
	`{"request_id":"r\"q"}`,
	`{"request_id":"r\u00e9"}`,
	`{"request_id":"r` + "\x01" + `"}`,
	`{"request_id":"r` + "\xff" + `"}`,
	`{"request_id":"é€😀"}`,
	`{"request_id":1}`,
	`{"quantity":"1"}`,
	`{"quantity":true}`,
	`{"quantity":-}`,
	`{"quantity":1`,
	`{"request_id":"r`,
	`[{"request_id":"r"}]`,
	`null`,
	``,
}

// TestFastPurchaseAgreesWithEncodingJSON: whatever fastPurchase decides is what the general
// decoder decides.
func TestFastPurchaseAgreesWithEncodingJSON(t *testing.T) {
	decided := 0
	for _, body := range purchaseSeeds {
		if checkFastPurchase(t, []byte(body)) {
			decided++
		}
	}
	if decided < 6 {
		t.Errorf("fastPurchase decided %d of the seeds, want the plain ones (at least 6)", decided)
	}
}

func FuzzFastPurchase(f *testing.F) {
	for _, body := range purchaseSeeds {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkFastPurchase(t, body) })
}

func checkFastPurchase(t *testing.T, body []byte) bool {
	t.Helper()
	fast, ok := fastPurchase(body)
	if !ok {
		return false
	}
	slow, err := decodePurchaseJSON(body)
	if err != nil || slow != fast {
		t.Fatalf("%q: fastPurchase decoded %+v, encoding/json %+v (%v)", body, fast, slow, err)
	}
	return true
}

// replySeeds are messages and order IDs of every kind of character.
var replySeeds = []string{
	"", "sold out", "order placed successfully", "3-1732761600123-0", `say "hi"`, `back\slash`,
	"<script>&amp;</script>", "tab\there\nnew line\r\b\f\x00\x1f\x7f", "é€😀", "bad \xff\xfe utf-8",
	"separators \u2028 \u2029", "invalid request: request_id must be 1..128 bytes of printable UTF-8",
}

// TestWriteReplyMatchesEncoder: the hand-written reply is byte for byte what
// json.Encoder wrote for it, headers included.
func TestWriteReplyMatchesEncoder(t *testing.T) {
	for _, msg := range replySeeds {
		for _, orderID := range replySeeds {
			checkReply(t, purchaseReply{Success: msg == "", Message: msg, OrderID: orderID})
		}
	}
}

func FuzzWriteReply(f *testing.F) {
	for _, s := range replySeeds {
		f.Add(s, s, false)
	}
	f.Fuzz(func(t *testing.T, msg, orderID string, success bool) {
		checkReply(t, purchaseReply{Success: success, Message: msg, OrderID: orderID})
	})
}

func checkReply(t *testing.T, rep purchaseReply) {
	t.Helper()
	var want bytes.Buffer
	if err := json.NewEncoder(&want).Encode(rep); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	writeReply(w, 418, rep)
	if got := w.Body.String(); got != want.String() {
		t.Fatalf("%+v: got %q, want %q", rep, got, want.String())
	}
	if w.Code != 418 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%+v: got status %d Content-Type %q", rep, w.Code, w.Header().Get("Content-Type"))
	}
	if strings.Count(w.Body.String(), "\n") != 1 {
		t.Fatalf("%+v: reply %q is not one line", rep, w.Body.String())
	}
}

// TestHTTPErrorSentinelsAgreeWithTable: the sentinel shortcut answers every table error, and
// wrapped ones, as the errors.Is walk down the table does.
func TestHTTPErrorSentinelsAgreeWithTable(t *testing.T) {
	walk := func(err error) (int, string, bool) {
		for _, e := range httpErrors {
			if errors.Is(err, e.err) {
				return e.status, e.text(err), true
			}
		}
		return http.StatusInternalServerError, internalMessage, false
	}
	var errs []error
	for _, e := range httpErrors {
		errs = append(errs, e.err, fmt.Errorf("context: %w", e.err))
	}
	errs = append(errs, &ledger.DuplicateError{OrderID: "1-2-3"}, &TokenError{Reason: "token expired"}, errors.New("boom"))
	for _, err := range errs {
		s1, m1, ok1 := httpError(err)
		s2, m2, ok2 := walk(err)
		if s1 != s2 || m1 != m2 || ok1 != ok2 {
			t.Errorf("%v: got %d %q %t, want %d %q %t", err, s1, m1, ok1, s2, m2, ok2)
		}
	}
	if len(httpSentinels) < len(httpErrors)-2 {
		t.Errorf("%d sentinels of %d table entries", len(httpSentinels), len(httpErrors))
	}
}
