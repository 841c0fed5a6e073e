package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Input bounds. Item IDs are part of key names, so they are restricted to a safe alphabet (no
// ':' that could make two keys collide); request and user IDs may be any printable UTF-8 (see
// validID for what printable means).
const (
	maxItemID   = 64
	maxClientID = 128
	// MaxQuantity is the most units one purchase may ask for.
	MaxQuantity = 100
)

// PurchaseRequest asks for Quantity units of ItemID for UserID. RequestID makes it
// idempotent per item: it places at most one order of the item, which only its user gets back
// on a retry.
type PurchaseRequest struct {
	RequestID string
	UserID    string
	ItemID    string
	Quantity  int64
}

// Validate checks the request without touching Redis; errors match ErrInvalid.
func (r PurchaseRequest) Validate() error {
	if r.RequestID == "" || r.UserID == "" || r.ItemID == "" || r.Quantity == 0 {
		return ErrMissingFields
	}
	if r.Quantity < 0 || r.Quantity > MaxQuantity {
		return invalid("quantity must be between 1 and %d", MaxQuantity)
	}
	if err := ValidateItemID(r.ItemID); err != nil {
		return err
	}
	if err := ValidateRequestID(r.RequestID); err != nil {
		return err
	}
	return ValidateUserID(r.UserID)
}

// ValidateRequestID checks a request ID: 1..128 bytes of printable UTF-8 (validID). Errors
// match ErrInvalid.
func ValidateRequestID(id string) error {
	if !validID(id, maxClientID, true) {
		return invalid("request_id must be 1..%d bytes of printable UTF-8 %s", maxClientID, printableRule)
	}
	return nil
}

// ValidateUserID checks a user ID: 1..128 bytes of printable UTF-8 (validID). Errors match
// ErrInvalid.
func ValidateUserID(id string) error {
	if !validID(id, maxClientID, true) {
		return invalid("user_id must be 1..%d bytes of printable UTF-8 %s", maxClientID, printableRule)
	}
	return nil
}

// printableRule is what the refusals of validID's printable text say it excludes.
const printableRule = "(no control, format or line and paragraph separator characters)"

// ValidateItemID checks an item ID: 1..64 of [A-Za-z0-9._-]. Errors match ErrInvalid.
func ValidateItemID(id string) error {
	if !validID(id, maxItemID, false) {
		return invalid("item_id must be 1..%d characters of [A-Za-z0-9._-]", maxItemID)
	}
	return nil
}

// validID reports whether s is 1..max bytes; with printable, valid UTF-8 that shows what it
// holds, otherwise only [A-Za-z0-9._-]. Printable text has no character of the Unicode
// categories Cc (controls: C0, DEL, C1), Cf (format: bidi overrides and isolates, zero-width
// space and joiners, the BOM, soft hyphen), Zl and Zp (U+2028, U+2029), and no U+FFFD (what
// decoders put in place of broken bytes): text that could render as something else or break a
// line in a log. It is the one rule for request_id, user_id and payment_ref, HTTP and gRPC.
func validID(s string, max int, printable bool) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	if printable {
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c >= utf8.RuneSelf {
				return printableText(s[i:])
			}
			if c < 0x20 || c == 0x7f {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// printableText is validID's printable rule for text past its ASCII prefix.
func printableText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r == utf8.RuneError || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			return false
		}
	}
	return true
}

// RequestOwner splits the value of an idempotency key, "<order_id>|<user_id>", into the order
// and the user who placed it (order IDs never hold '|'; user IDs may). ok is false for a value
// without '|', written before the owner was stored: its owner is unknown, and the request_id
// is then refused to every user as taken (ErrRequestIDTaken) until the key expires.
func RequestOwner(value string) (orderID, userID string, ok bool) {
	orderID, userID, ok = strings.Cut(value, "|")
	if !ok {
		return "", "", false
	}
	return orderID, userID, true
}

// Receipt is what a successful purchase returns.
type Receipt struct {
	// OrderID names the order: its partition and its place in the ledger stream, e.g.
	// "2-1732761600123-0" (see ParseOrderID).
	OrderID string
	// Stock is the number of units left after this purchase.
	Stock int64
	// Registered is set for an entry in a draw (no units taken yet; see RunDraw).
	Registered bool
}

// Purchase decides req in one script call: on success the stock is decremented and the order
// event is in the ledger stream before Purchase returns. Refusals are ErrInvalid,
// ErrUnknownItem, *DuplicateError (the request_id placed an order of this user),
// ErrRequestIDTaken (of another user), ErrNotStarted, ErrEnded, ErrLimit and ErrSoldOut, and
// they change nothing; ErrUnavailable means Redis could not be asked. A purchase of an item
// the script found sold out, once this process's winner tail has read past that point and
// while its sold-out lease holds, sends no command: the winner index answers it as the script
// would (see TailWinners).
func (l *Ledger) Purchase(ctx context.Context, req PurchaseRequest) (Receipt, error) {
	if err := req.Validate(); err != nil {
		return Receipt{}, err
	}
	if _, ok := l.drawItems.Load(req.ItemID); ok {
		if rc, err := l.enter(ctx, req); !errors.Is(err, errNoDraw) {
			return rc, err
		}
		l.drawItems.Delete(req.ItemID) // no longer a draw: purchase.lua decides
	}
	k := l.keys
	p := k.Partition(req.ItemID)
	if err, ok := l.winners.answer(p, req); ok {
		if err == ErrSoldOut {
			l.soldOutLocal.Add(1)
		}
		return Receipt{}, err
	}
	keys, args := l.purchaseCall(req, p)
	v, err := l.calls.script(ctx, keys, args...)
	if err != nil {
		return Receipt{}, redisErr("purchase", err)
	}
	a, code, err := scriptReply(v, 3)
	if err != nil {
		return Receipt{}, err
	}
	text, _ := a[1].(string) // the order_id, or the sold-out position
	stock, _ := a[2].(int64)
	switch code {
	case 0:
		return Receipt{OrderID: text, Stock: stock}, nil
	case 1:
		return Receipt{}, ErrUnknownItem
	case 2, 3, 4, 5, 7:
		return Receipt{}, refusal(code, text)
	case 6:
		l.soldOutRedis.Add(1)
		if stock == 0 && text != "" {
			l.winners.soldOut(p, req.ItemID, text)
		}
		return Receipt{}, ErrSoldOut
	case 8:
		return Receipt{}, ErrItemClosed
	case 9:
		l.drawItems.Store(req.ItemID, struct{}{})
		rc, err := l.enter(ctx, req)
		if errors.Is(err, errNoDraw) {
			return Receipt{}, fmt.Errorf("enter draw: %w", ErrNotDraw) // changed between the calls
		}
		return rc, err
	}
	return Receipt{}, fmt.Errorf("purchase script: unknown code %d", code)
}

// refusal is the error of a refusal that purchase.lua and draw_enter.lua answer alike: 2
// duplicate (of orderID), 3 not started, 4 ended, 5 over the limit, 7 request_id taken.
func refusal(code int64, orderID string) error {
	switch code {
	case 2:
		return &DuplicateError{OrderID: orderID}
	case 3:
		return ErrNotStarted
	case 4:
		return ErrEnded
	case 5:
		return ErrLimit
	case 7:
		return ErrRequestIDTaken
	}
	return fmt.Errorf("purchase script: unknown code %d", code)
}

// callHead is what every purchase.lua call of one partition starts with: the keys of its
// stream and due set, and its order state key prefix.
type callHead struct{ events, due, orderPrefix string }

// purchaseCall is the KEYS and ARGV of purchase.lua deciding req alone, of partition p. The
// batcher joins the calls of one partition into one: the first two keys and three arguments
// are the partition's, the rest the purchase's.
func (l *Ledger) purchaseCall(req PurchaseRequest, p int) ([]string, []any) {
	k, h := l.keys, l.heads[p]
	keys := []string{
		h.events,
		h.due,
		k.Stock(req.ItemID),
		k.Rules(req.ItemID),
		k.Requests(req.ItemID),
		k.Users(req.ItemID),
	}
	return keys, []any{l.idemTTL, p, h.orderPrefix, req.ItemID, req.UserID, req.RequestID, req.Quantity}
}
