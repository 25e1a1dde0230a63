package ledger

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Erase removes everything the ledger holds about a learner: rows, facts, owed marks, addresses,
// the e-mail index and event records. Assertions on the badge host stay. It returns the erased
// row keys. A job working on one of the rows finds it gone and writes nothing.
func (l *Ledger) Erase(ctx context.Context, uid int64) ([]RowKey, error) {
	classes, err := l.rdb.SMembers(ctx, l.userRowsKey(uid)).Result()
	if err != nil {
		return nil, fmt.Errorf("erase user %d: %w", uid, err)
	}
	emails, err := l.rdb.SMembers(ctx, l.userEmailsKey(uid)).Result()
	if err != nil {
		return nil, fmt.Errorf("erase user %d: %w", uid, err)
	}
	events, err := l.rdb.SMembers(ctx, l.userKey(uid)+":events").Result()
	if err != nil {
		return nil, fmt.Errorf("erase user %d: %w", uid, err)
	}
	var keys []RowKey
	_, err = l.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, c := range classes {
			k := RowKey{c, uid}
			keys = append(keys, k)
			p.Del(ctx, l.rowKey(k), l.factsKey(k))
			p.ZRem(ctx, l.owedKey(), k.String())
			p.SRem(ctx, l.rowsKey(), k.String())
		}
		for _, e := range emails {
			p.SRem(ctx, l.emailKey(e), strconv.FormatInt(uid, 10))
		}
		for _, id := range events {
			p.Del(ctx, l.eventKey(id))
		}
		p.Del(ctx, l.userKey(uid), l.userRowsKey(uid), l.userEmailsKey(uid), l.userKey(uid)+":events")
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("erase user %d: %w", uid, err)
	}
	return keys, nil
}
