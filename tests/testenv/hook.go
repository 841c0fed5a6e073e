package testenv

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Hook is a go-redis hook that shows every command a client sends, alone or in a pipeline, to
// its function before sending it: rdb.AddHook(testenv.Hook(count)).
type Hook func(cmd redis.Cmder)

// DialHook leaves dialing alone.
func (h Hook) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook shows cmd to h, then sends it.
func (h Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h(cmd)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook shows each command of the pipeline to h, then sends them.
func (h Hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h(cmd)
		}
		return next(ctx, cmds)
	}
}
