package ledger

import "time"

// Order is an order with its status, as the projector finds it (MySQL, else the stream) and as
// clients see it.
type Order struct {
	OrderID   string
	RequestID string
	UserID    string
	ItemID    string
	Quantity  int64
	// Status is StatusPending (in the ledger, not yet in MySQL), StatusConfirmed or
	// StatusCancelled; for an order placed under a pay-within rule StatusReserved, StatusPaid,
	// StatusExpired or StatusCancelled.
	Status    string
	CreatedAt time.Time
	// PayBy is the payment deadline of an order placed under a pay-within rule, else zero.
	PayBy time.Time
}

// Order statuses. An order placed without a pay-within rule is confirmed; one placed with it
// is reserved, then paid, cancelled (by its buyer) or expired. A restock makes any cancelled.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
	StatusCancelled = "cancelled"
	StatusReserved  = "reserved"
	StatusPaid      = "paid"
	StatusExpired   = "expired"
)

// The statuses of draw entries. An entry is registered; at the draw it is won (status
// reserved, then paid, cancelled or expired like any reservation) or waitlisted; a waitlisted
// entry is promoted (reserved) or, once every unit is paid, lost.
const (
	StatusRegistered = "registered"
	StatusWaitlisted = "waitlisted"
	StatusLost       = "lost"
)
