package ledger

import (
	"context"
	"time"
)

// Board sessions live in Redis, so that every serving process sees a sign-in and a sign-out,
// also after a restart. The session cookie is signed by the serving process; the key only
// says that the session has not ended.

// StartSession records the admin session id as live for ttl.
func (l *Ledger) StartSession(ctx context.Context, id string, ttl time.Duration) error {
	if err := l.rdb.Set(ctx, l.keys.AdminSession(id), "1", ttl).Err(); err != nil {
		return redisErr("start session", err)
	}
	return nil
}

// SessionLive reports whether the admin session id was started and has neither ended nor
// expired.
func (l *Ledger) SessionLive(ctx context.Context, id string) (bool, error) {
	n, err := l.rdb.Exists(ctx, l.keys.AdminSession(id)).Result()
	if err != nil {
		return false, redisErr("read session", err)
	}
	return n == 1, nil
}

// EndSession ends the admin session id on every process.
func (l *Ledger) EndSession(ctx context.Context, id string) error {
	if err := l.rdb.Del(ctx, l.keys.AdminSession(id)).Err(); err != nil {
		return redisErr("end session", err)
	}
	return nil
}
