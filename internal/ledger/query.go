package ledger

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Filter selects rows for the admin API. Empty fields match everything.
type Filter struct {
	UserID     int64
	Email      string // any address the ledger holds for the learner
	Course     string // a course run with a fact on the row
	BadgeClass string
	State      string
	Limit      int
}

// List returns the rows that match f, ordered by key, at most f.Limit (default 100).
func (l *Ledger) List(ctx context.Context, f Filter) ([]*Row, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	keys, err := l.candidates(ctx, f)
	if err != nil {
		return nil, err
	}
	sort.Strings(keys)
	var out []*Row
	for _, s := range keys {
		k, err := ParseRowKey(s)
		if err != nil {
			continue
		}
		if f.BadgeClass != "" && k.BadgeClass != f.BadgeClass {
			continue
		}
		r, err := l.Read(ctx, k)
		if err != nil {
			return nil, err
		}
		if r == nil || (f.State != "" && r.State != f.State) || !hasCourse(r, f.Course) {
			continue
		}
		out = append(out, r)
		if len(out) >= f.Limit {
			break
		}
	}
	return out, nil
}

func hasCourse(r *Row, course string) bool {
	if course == "" {
		return true
	}
	for _, f := range r.Facts {
		if f.Course == course {
			return true
		}
	}
	return false
}

func (l *Ledger) candidates(ctx context.Context, f Filter) ([]string, error) {
	var users []int64
	switch {
	case f.UserID != 0:
		users = []int64{f.UserID}
	case f.Email != "":
		ids, err := l.rdb.SMembers(ctx, l.emailKey(strings.ToLower(f.Email))).Result()
		if err != nil {
			return nil, fmt.Errorf("list rows: %w", err)
		}
		for _, s := range ids {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				users = append(users, n)
			}
		}
	default:
		keys, err := l.rdb.SMembers(ctx, l.rowsKey()).Result()
		if err != nil {
			return nil, fmt.Errorf("list rows: %w", err)
		}
		return keys, nil
	}
	var keys []string
	for _, u := range users {
		classes, err := l.rdb.SMembers(ctx, l.userRowsKey(u)).Result()
		if err != nil {
			return nil, fmt.Errorf("list rows: %w", err)
		}
		for _, c := range classes {
			keys = append(keys, RowKey{c, u}.String())
		}
	}
	return keys, nil
}
