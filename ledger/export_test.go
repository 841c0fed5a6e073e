package ledger

// SetBeforeTailRead makes the winner tail of l call f before each of its reads (f may block
// to hold the tail behind). Call it before TailWinners.
func SetBeforeTailRead(l *Ledger, f func()) { l.winners.beforeRead = f }
