// Package redislock releases a Redis lock only for its holder: the one compare-and-delete that
// the row locks (ledger) and the token-refresh lock (badgr) share, so that a holder whose lease
// ran out never deletes the lock a newer holder took since.
package redislock

import (
	"context"

	"github.com/redis/go-redis/v9"
)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// Release deletes key if it still holds value, and reports whether it did.
func Release(ctx context.Context, rdb redis.Scripter, key, value string) (bool, error) {
	n, err := releaseScript.Run(ctx, rdb, []string{key}, value).Int()
	return n == 1, err
}
