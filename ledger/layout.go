package ledger

import (
	"context"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/lua"
)

var layoutScript = redis.NewScript(lua.Layout)

// layoutVersion is the key layout this code reads, kept in the ledger's meta hash (field
// layout). Version 2 keeps an item's request_ids and per-user counts in one hash each
// (Keys.Requests, Keys.Users); before it, each was a string key of its own.
const layoutVersion = 2

// upgradeLayout moves the keys of an older layout into the hashes purchase.lua reads
// (lua/layout.lua), then records the layout in the meta hash: one SCAN of each kind over every
// partition (on each master of a cluster), and one script call per page and partition.
// Serving processes of an older version must be stopped first: one would go on writing keys
// that nothing reads any more.
func (l *Ledger) upgradeLayout(ctx context.Context, meta string) error {
	v, err := l.rdb.HGet(ctx, meta, "layout").Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return redisErr("read ledger layout", err)
	}
	if v >= layoutVersion {
		return nil
	}
	for kind, hash := range map[string]func(string) string{"req": l.keys.Requests, "user": l.keys.Users} {
		// <prefix>:{p<N>}:<kind>:<item>:<id>; item IDs hold no ':', '{' nor '}'.
		err := l.scan(ctx, l.keys.prefix+":{p*}:"+kind+":*", func(keys []string) error {
			byTag := map[string][]string{}
			for _, key := range keys {
				tag := key[:strings.Index(key, "}:")+2]
				byTag[tag] = append(byTag[tag], key)
			}
			for tag, keys := range byTag {
				args := make([]any, 1, 1+2*len(keys))
				args[0] = kind
				for _, key := range keys {
					item, id, _ := strings.Cut(key[len(tag)+len(kind)+1:], ":")
					args = append(args, hash(item), id)
				}
				if err := layoutScript.Run(ctx, l.rdb, keys, args...).Err(); err != nil {
					return redisErr("move "+kind+" keys", err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := l.rdb.HSet(ctx, meta, "layout", layoutVersion).Err(); err != nil {
		return redisErr("record ledger layout", err)
	}
	return nil
}
