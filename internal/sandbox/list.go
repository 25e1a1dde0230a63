package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/badgr/wire"
)

// sbCursor is the opaque pagination position: the createdAt (µs) of the page edge, and whether
// the page lies before it (newer, rel="prev") rather than after it.
type sbCursor struct {
	Pos     int64 `json:"p"`
	Reverse bool  `json:"r,omitempty"`
}

func (c sbCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (sbCursor, bool) {
	var c sbCursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil {
		return c, false
	}
	return c, true
}

func truthy(v string) bool { return v == "1" || strings.EqualFold(v, "true") }

func (s *Host) handleList(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	classID := r.PathValue("id")
	q := r.URL.Query()
	recipients := q["recipient"]
	includeExpired, includeRevoked := truthy(q.Get("include_expired")), truthy(q.Get("include_revoked"))

	s.mu.Lock()
	if _, ok := s.classes[classID]; !ok {
		s.mu.Unlock()
		s.writeNotFound(w, r)
		return
	}
	now := s.now()
	lq := listQuery{recipients: recipients, includeExpired: includeExpired, includeRevoked: includeRevoked}
	if numParam, paged := q["num"]; paged {
		num, err := strconv.Atoi(numParam[0])
		if err != nil || num < 1 {
			num = sbDefaultPage
		}
		lq.num = min(num, sbMaxPage)
		if c := q.Get("cursor"); c != "" {
			cur, ok := decodeCursor(c)
			if !ok {
				s.mu.Unlock()
				s.writeError(w, r, http.StatusNotFound, descNotFound, nil, []string{"Invalid cursor"})
				return
			}
			lq.cursor = &cur
		}
	}
	page, next, prev := s.listPage(classID, lq, now)
	out := make([]wire.Assertion, 0, len(page))
	for _, a := range page {
		out = append(out, s.assertionJSON(a))
	}
	var links []string
	self := requestBase(r) + r.URL.Path
	if next != nil {
		links = append(links, fmt.Sprintf(`<%s>; rel="next"`, pageURL(self, q, *next)))
	}
	if prev != nil {
		links = append(links, fmt.Sprintf(`<%s>; rel="prev"`, pageURL(self, q, *prev)))
	}
	s.mu.Unlock()
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	s.writeResult(w, r, http.StatusOK, "ok", out)
}

// listQuery is what a list request asks for.
type listQuery struct {
	recipients                     []string // exact stored identifiers; none: the whole class
	includeExpired, includeRevoked bool
	num                            int       // page size; 0: unpaged, everything at once
	cursor                         *sbCursor // with num
}

// listPage selects the assertions of a list answer, newest first (-created_at), and the cursors
// of its next and prev links (nil: no link). The class is kept oldest first with strictly
// increasing createdAt, so the page is found by binary search on the cursor and a walk
// backwards from there, filtering as it goes: a page costs about its own size (plus filtered
// entries skipped), not the size of the class. Called with s.mu held.
func (s *Host) listPage(classID string, q listQuery, now time.Time) (page []*sbAssertion, next, prev *sbCursor) {
	src := s.assertions[classID]
	if len(q.recipients) > 0 {
		src = s.recipientAssertions(classID, q.recipients)
	}
	keep := func(a *sbAssertion) bool {
		return (q.includeRevoked || !a.revoked) && (q.includeExpired || a.expires == nil || a.expires.After(now))
	}
	if q.num == 0 {
		page, _ = walkOlder(src, len(src), len(src), keep)
		return page, nil, nil
	}
	var hasNext, hasPrev bool
	switch {
	case q.cursor == nil:
		page, hasNext = walkOlder(src, len(src), q.num, keep)
	case !q.cursor.Reverse:
		// The entries older than the previous page's last one, at Pos.
		edge := firstFrom(src, q.cursor.Pos, false)
		page, hasNext = walkOlder(src, edge, q.num, keep)
		hasPrev = len(page) > 0 && slices.ContainsFunc(src[edge:], keep)
	default:
		// The entries just newer than the next page's first one, at Pos.
		edge := firstFrom(src, q.cursor.Pos, true)
		page, hasPrev = walkNewer(src, edge, q.num, keep)
		hasNext = len(page) > 0 && slices.ContainsFunc(src[:edge], keep)
	}
	if hasNext {
		next = &sbCursor{Pos: page[len(page)-1].createdAt.UnixMicro()}
	}
	if hasPrev {
		prev = &sbCursor{Pos: page[0].createdAt.UnixMicro(), Reverse: true}
	}
	return page, next, prev
}

// recipientAssertions returns the assertions of classID stored for any of recipients (exact
// match on the stored identifier), oldest first. Called with s.mu held.
func (s *Host) recipientAssertions(classID string, recipients []string) []*sbAssertion {
	ids := s.byIdentity[classID]
	var out []*sbAssertion
	seen := map[string]bool{}
	for _, rc := range recipients {
		if seen[rc] {
			continue
		}
		seen[rc] = true
		out = append(out, ids[rc]...)
	}
	if len(seen) > 1 {
		slices.SortFunc(out, func(a, b *sbAssertion) int { return a.createdAt.Compare(b.createdAt) })
	}
	return out
}

// firstFrom returns the index of the first entry of oldestFirst created at or after pos (µs),
// or strictly after it with after.
func firstFrom(oldestFirst []*sbAssertion, pos int64, after bool) int {
	return sort.Search(len(oldestFirst), func(i int) bool {
		t := oldestFirst[i].createdAt.UnixMicro()
		return t > pos || (!after && t == pos)
	})
}

// walkOlder collects, newest first, up to num kept entries of oldestFirst[:from], and reports
// whether a kept entry remains beyond them.
func walkOlder(oldestFirst []*sbAssertion, from, num int, keep func(*sbAssertion) bool) (page []*sbAssertion, more bool) {
	for i := from - 1; i >= 0; i-- {
		if !keep(oldestFirst[i]) {
			continue
		}
		if len(page) == num {
			return page, true
		}
		page = append(page, oldestFirst[i])
	}
	return page, false
}

// walkNewer collects the up to num kept entries of oldestFirst[from:] closest to from, newest
// first, and reports whether a kept entry remains beyond them.
func walkNewer(oldestFirst []*sbAssertion, from, num int, keep func(*sbAssertion) bool) (page []*sbAssertion, more bool) {
	for i := from; i < len(oldestFirst); i++ {
		if !keep(oldestFirst[i]) {
			continue
		}
		if len(page) == num {
			more = true
			break
		}
		page = append(page, oldestFirst[i])
	}
	slices.Reverse(page)
	return page, more
}

func pageURL(self string, q url.Values, c sbCursor) string {
	q2 := url.Values{}
	for k, v := range q {
		q2[k] = slices.Clone(v)
	}
	q2.Set("cursor", c.encode())
	return self + "?" + q2.Encode()
}
