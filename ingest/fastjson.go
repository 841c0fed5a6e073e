package ingest

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/flashsale/flashsale/ledger"
)

// The purchase body and reply in their usual shape, without encoding/json's reflection and
// its allocations: a flash sale's requests are nearly all the same small object. Only what is
// certain is decided here; anything unusual (escapes, null, other number forms, unknown or
// repeated keys, trailing bytes, an empty object) goes to the general decoder, so that every
// body is accepted or refused exactly as decodeObject would, with the same result.

// fastPurchase decodes body when it is the plain form of a purchase: one object of the four
// keys, each at most once and in any order, string values without escapes or control
// characters, quantity an integer of at most 18 digits, JSON whitespace anywhere between
// tokens. ok is false for anything else, and then nothing was decided.
func fastPurchase(body []byte) (req ledger.PurchaseRequest, ok bool) {
	if !utf8.Valid(body) {
		return req, false
	}
	var (
		i    = skipSpace(body, 0)
		seen uint8
		// The strings are substrings of one copy of the body.
		text  string
		spans [3][2]int
	)
	if i == len(body) || body[i] != '{' {
		return req, false
	}
	for {
		i = skipSpace(body, i+1)
		start, end, ok := plainString(body, i)
		if !ok {
			return req, false
		}
		field, ok := purchaseField(body[start:end])
		if !ok || seen&(1<<field) != 0 {
			return req, false
		}
		seen |= 1 << field
		i = skipSpace(body, end+1)
		if i == len(body) || body[i] != ':' {
			return req, false
		}
		i = skipSpace(body, i+1)
		if field == 3 {
			n, next, ok := plainInt(body, i)
			if !ok {
				return req, false
			}
			req.Quantity, i = n, next
		} else {
			start, end, ok := plainString(body, i)
			if !ok {
				return req, false
			}
			spans[field] = [2]int{start, end}
			i = end + 1
		}
		i = skipSpace(body, i)
		if i == len(body) {
			return req, false
		}
		if body[i] == '}' {
			break
		}
		if body[i] != ',' {
			return req, false
		}
	}
	if skipSpace(body, i+1) != len(body) {
		return req, false
	}
	text = string(body)
	setStrings(&req, text, spans)
	return req, true
}

// purchaseField numbers a purchase body's keys: request_id 0, user_id 1, item_id 2, quantity
// 3; false for any other key.
func purchaseField(name []byte) (uint8, bool) {
	switch string(name) {
	case "request_id":
		return 0, true
	case "user_id":
		return 1, true
	case "item_id":
		return 2, true
	case "quantity":
		return 3, true
	}
	return 0, false
}

// setStrings sets req's string fields to the substrings of text at spans (by purchaseField's
// numbers); an empty span is a key that was not sent.
func setStrings(req *ledger.PurchaseRequest, text string, spans [3][2]int) {
	for f, s := range spans {
		if s[1] == 0 {
			continue
		}
		v := text[s[0]:s[1]]
		switch f {
		case 0:
			req.RequestID = v
		case 1:
			req.UserID = v
		case 2:
			req.ItemID = v
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString finds the string starting at b[i] ('"'): its content is b[start:end] and b[end]
// is the closing quote. ok is false when there is none, or it holds an escape or a control
// character.
func plainString(b []byte, i int) (start, end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return i + 1, j, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}

// plainInt reads the integer at b[i]: an optional minus, then 0 or a digit 1-9 and at most 17
// more, not followed by a fraction or exponent. next is the index after it.
func plainInt(b []byte, i int) (n int64, next int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	start := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > 18 || (digits > 1 && b[start] == '0') {
		return 0, 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return 0, 0, false
	}
	if neg {
		n = -n
	}
	return n, i, true
}

// replyBuffers hold encoded replies between encoding and writing.
var replyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// jsonContentType is the Content-Type value of every JSON reply, shared: nothing modifies a
// header value in place.
var jsonContentType = []string{"application/json"}

// writeReply writes rep with status as encoding/json's Encoder would, byte for byte (keys in
// field order, order_id left out when empty, HTML characters escaped, a final newline).
func writeReply(w http.ResponseWriter, status int, rep purchaseReply) {
	bp := replyBuffers.Get().(*[]byte)
	b := appendReply((*bp)[:0], rep)
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(b)
	*bp = b
	replyBuffers.Put(bp)
}

func appendReply(b []byte, rep purchaseReply) []byte {
	b = append(b, `{"success":`...)
	b = strconv.AppendBool(b, rep.Success)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, rep.Message)
	if rep.OrderID != "" {
		b = append(b, `,"order_id":`...)
		b = appendJSONString(b, rep.OrderID)
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as encoding/json encodes a string: quoted as it is when it is
// printable ASCII without '"', '\\' or the HTML characters <, > and &, otherwise by
// encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
