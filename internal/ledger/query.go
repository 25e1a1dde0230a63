package ledger

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Filter selects rows for the admin API. Empty fields match everything.
type Filter struct {
	UserID     int64
	Email      string // any address the ledger holds for the learner
	Course     string // a course run with a fact on the row
	BadgeClass string
	State      string
	Limit      int    // rows per page, default 100
	Cursor     string // from the previous Page's Next; empty for the first page
}

// Page is one page of rows in key order. Next is empty on the last page; a page may hold fewer
// rows than the limit (even none) and still have a Next when the filter skipped many rows.
type Page struct {
	Rows []*Row
	Next string
}

// ErrBadCursor means a cursor that no Page handed out.
var ErrBadCursor = errors.New("cursor: not one this API handed out")

// scanBudget bounds the index entries one page may examine, so a filter that matches few rows
// costs a bounded amount per request instead of reading every row.
func scanBudget(limit int) int { return max(10*limit, 1000) }

// List returns the first page of rows that match f.
func (l *Ledger) List(ctx context.Context, f Filter) ([]*Row, error) {
	p, err := l.Page(ctx, f)
	return p.Rows, err
}

// Page returns the rows that match f after f.Cursor, in key order. A learner's rows (UserID,
// Email) are read directly; otherwise it walks the index of all rows (or, for state=failed,
// the smaller index of parked rows) from the cursor.
func (l *Ledger) Page(ctx context.Context, f Filter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	after := ""
	if f.Cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(f.Cursor)
		if err != nil || len(b) == 0 {
			return Page{}, ErrBadCursor
		}
		after = string(b)
	}
	next, err := l.keySource(ctx, f)
	if err != nil {
		return Page{}, err
	}
	var out Page
	examined, budget := 0, scanBudget(f.Limit)
	for {
		if examined >= budget {
			out.Next = base64.RawURLEncoding.EncodeToString([]byte(after))
			return out, nil
		}
		chunk := min(max(f.Limit-len(out.Rows), 50), 500)
		keys, done, err := next(after, chunk)
		if err != nil {
			return Page{}, fmt.Errorf("list rows: %w", err)
		}
		rk := make([]RowKey, len(keys))
		for i, s := range keys {
			rk[i], _ = ParseRowKey(s) // a malformed member reads as no row
		}
		rows, err := l.ReadMany(ctx, rk)
		if err != nil {
			return Page{}, err
		}
		for i, r := range rows {
			after = keys[i]
			examined++
			// Index entries can be stale (the index is repaired, not written in one
			// transaction with every row), so the row itself decides.
			if r == nil || (f.State != "" && r.State != f.State) || !hasCourse(r, f.Course) {
				continue
			}
			out.Rows = append(out.Rows, r)
			if len(out.Rows) == f.Limit {
				if i < len(keys)-1 || !done {
					out.Next = base64.RawURLEncoding.EncodeToString([]byte(after))
				}
				return out, nil
			}
		}
		if done {
			return out, nil
		}
	}
}

// keySource gives the row keys that f can match, in order, up to n at a time after a key, and
// whether none follow them. A learner's
// rows (UserID, Email) are read directly; otherwise it walks the index of all rows (or, for
// state=failed, the smaller index of parked rows) by lexical range.
func (l *Ledger) keySource(ctx context.Context, f Filter) (func(after string, n int) (keys []string, done bool, err error), error) {
	if f.UserID != 0 || f.Email != "" {
		keys, err := l.learnerCandidates(ctx, f)
		if err != nil {
			return nil, err
		}
		return func(after string, n int) ([]string, bool, error) {
			i := sort.SearchStrings(keys, after)
			if i < len(keys) && keys[i] == after {
				i++
			}
			var out []string
			for ; i < len(keys) && len(out) < n; i++ {
				if f.BadgeClass == "" || strings.HasPrefix(keys[i], f.BadgeClass+":") {
					out = append(out, keys[i])
				}
			}
			return out, len(out) < n, nil
		}, nil
	}
	index := l.rowIndexKey
	if f.State == StateFailed {
		index = l.failedIndexKey
	}
	lo, hi := "-", "+"
	if f.BadgeClass != "" {
		// Members are "<class>:<uid>" and ';' follows ':', so this is exactly one class.
		lo, hi = "["+f.BadgeClass+":", "("+f.BadgeClass+";"
	}
	return func(after string, n int) ([]string, bool, error) {
		from := lo
		if after != "" && (lo == "-" || after >= lo[1:]) {
			from = "(" + after
		}
		if !l.Sharded() {
			keys, err := l.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{
				Key: index(""), Start: from, Stop: hi, ByLex: true, Count: int64(n),
			}).Result()
			return keys, len(keys) < n, err
		}
		// Each bucket's index is in key order. Take m from each: every key up to the smallest
		// last key of a bucket that gave all m is in order and complete; later ones wait for
		// the next call.
		m := max(2*n/len(l.tags), 8)
		cmds := make([]*redis.StringSliceCmd, len(l.tags))
		_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, tag := range l.tags {
				cmds[i] = p.ZRangeArgs(ctx, redis.ZRangeArgs{
					Key: index(tag), Start: from, Stop: hi, ByLex: true, Count: int64(m),
				})
			}
			return nil
		})
		if err != nil {
			return nil, false, err
		}
		var keys []string
		bound, full := "", false
		for _, c := range cmds {
			got := c.Val()
			keys = append(keys, got...)
			if len(got) == m && (!full || got[m-1] < bound) {
				bound, full = got[m-1], true
			}
		}
		sort.Strings(keys)
		if full {
			keys = keys[:sort.SearchStrings(keys, bound)+1]
		}
		if len(keys) > n {
			return keys[:n], false, nil
		}
		return keys, !full, nil
	}, nil
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

// learnerCandidates lists, sorted, the row keys of the learner named by f.UserID or f.Email.
func (l *Ledger) learnerCandidates(ctx context.Context, f Filter) ([]string, error) {
	users := []int64{f.UserID}
	if f.UserID == 0 {
		ids, err := l.rdb.SMembers(ctx, l.emailKey(strings.ToLower(f.Email))).Result()
		if err != nil {
			return nil, fmt.Errorf("list rows: %w", err)
		}
		users = users[:0]
		for _, s := range ids {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil {
				users = append(users, n)
			}
		}
	}
	var keys []string
	for _, u := range users {
		rows, err := l.LearnerRows(ctx, u)
		if err != nil {
			return nil, fmt.Errorf("list rows: %w", err)
		}
		for _, k := range rows {
			keys = append(keys, k.String())
		}
	}
	sort.Strings(keys)
	return keys, nil
}
