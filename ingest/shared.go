package ingest

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// The purchase path's reply and body helpers, for the operator routes (ingest/admin), so that
// both answer alike: the same error shape, the same status for each ledger error, the same
// strict JSON bodies.

// ItemReply is the JSON reply of GET /api/items/{item_id}.
type ItemReply = itemReply

// NewItemReply is the reply that shows it.
func NewItemReply(it ledger.Item) ItemReply { return newItemReply(it) }

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// WriteError answers an error: {"success":false,"message":msg} with status.
func WriteError(w http.ResponseWriter, status int, msg string) { writeError(w, status, msg, "") }

// WriteLedgerError answers err through the HTTP error table; internal errors are logged to
// log, once, and answered without their text.
func WriteLedgerError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	writeLedgerError(w, r, log, err)
}

// ReadBody reads a request body of at most MaxBodyBytes, answering 413 or 400 itself when it
// cannot; ok is false then.
func ReadBody(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) { return readBody(w, r) }

// DecodeObject reads a body that is exactly one JSON object, calling field for each key (see
// decodeObject); any failure is ErrBody.
func DecodeObject(body []byte, field func(key string, dec *json.Decoder) error) error {
	return decodeObject(body, field)
}

// ErrBody is the error of a body that is not what the route takes.
var ErrBody = errBody

// DrawReply describes an item's draw, as GET /api/items/{item_id} shows it.
type DrawReply = drawReply

// NewDrawReply is the draw of it at now; nil for an item not sold by a draw.
func NewDrawReply(it ledger.Item, now time.Time) *DrawReply { return newDrawReply(it, now) }
