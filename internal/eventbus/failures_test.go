package eventbus

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/badgebridge/bridge/internal/durable"
)

func TestIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New("row script refused"), false},
		{redis.ErrClosed, true},
		{context.DeadlineExceeded, true},
		{errorReply("OOM command not allowed when used memory > 'maxmemory'."), true},
		{errorReply("READONLY You can't write against a read only replica."), true},
		{errorReply("LOADING Redis is loading the dataset in memory"), true},
		{errorReply("ERR max number of clients reached"), true},
		{errorReply("ERR Error running script: bad argument"), false},
		// As the intake returns a failed durability wait: the Redis is up, the write unconfirmed.
		{fmt.Errorf("event %q: %w", "e-1", fmt.Errorf("%w: 0 of 1 replicas acknowledged the write within 1s", durable.ErrNotConfirmed)), true},
	} {
		if got := isUnavailable(tc.err); got != tc.want {
			t.Errorf("isUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// errorReply makes a Redis error reply as go-redis returns it.
func errorReply(msg string) error {
	return redisError(msg)
}

type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}
