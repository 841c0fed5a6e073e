package ingest

import (
	"time"

	"github.com/flashsale/flashsale/ledger"
)

// msgRegistered is the message of a purchase that registered an entry in a draw (HTTP 202).
const msgRegistered = "entry registered for the draw"

// drawReply describes an item's draw in GET /api/items/{item_id}.
type drawReply struct {
	// State is registering until the draw time, drawing from then until the seed is
	// revealed, then drawn.
	State      string    `json:"state"`
	At         time.Time `json:"draw_at"`
	Commitment string    `json:"commitment"`
	// Seed is the revealed seed (hex), once drawn: anyone can recompute the ranks with it.
	Seed string `json:"seed,omitempty"`
}

func newDrawReply(it ledger.Item, now time.Time) *drawReply {
	if it.DrawAt.IsZero() {
		return nil
	}
	d := &drawReply{State: "registering", At: it.DrawAt.UTC(), Commitment: it.DrawCommit, Seed: it.DrawSeed}
	switch {
	case it.DrawSeed != "":
		d.State = "drawn"
	case !now.Before(it.DrawAt):
		d.State = "drawing"
	}
	return d
}
