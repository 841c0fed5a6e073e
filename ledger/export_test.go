package ledger

// SetBeforeTailRead makes the winner tail of l call f before each of its reads (f may block
// to hold the tail behind). Call it before TailWinners.
func SetBeforeTailRead(l *Ledger, f func()) { l.winners.beforeRead = f }

// PurchaseCall is the KEYS and ARGV of purchase.lua for req on l.
func PurchaseCall(l *Ledger, req PurchaseRequest) ([]string, []any) {
	return l.purchaseCall(req, l.keys.Partition(req.ItemID))
}

// JoinedCall is the KEYS and ARGV of the one purchase.lua call in which the batcher decides
// reqs, all of one partition of l.
func JoinedCall(l *Ledger, reqs []PurchaseRequest) ([]string, []any) {
	calls := make([]*call, len(reqs))
	for i, r := range reqs {
		keys, args := PurchaseCall(l, r)
		calls[i] = &call{keys: keys, args: args}
	}
	return joinCalls(calls)
}

// CallReplies is each purchase's reply in v, the reply of a purchase.lua call deciding n: its
// []any{code, text, stock}, or its redis.Error.
func CallReplies(v any, n int) ([]any, error) { return callReplies(v, n) }

// BatchGroups is how one pipeline of the batcher sends calls, given the keys of each (nil for
// a GET): the indexes of the calls each of its commands carries.
func BatchGroups(keys [][]string) [][]int {
	live := make([]*call, len(keys))
	index := map[*call]int{}
	for i, k := range keys {
		live[i] = &call{keys: k, args: make([]any, len(k))}
		index[live[i]] = i
	}
	var out [][]int
	for _, b := range group(live) {
		var ids []int
		for _, c := range b.calls {
			ids = append(ids, index[c])
		}
		out = append(out, ids)
	}
	return out
}
