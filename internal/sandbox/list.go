package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

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
	// Newest first (-created_at).
	var matched []*sbAssertion
	all := s.assertions[classID]
	for i := len(all) - 1; i >= 0; i-- {
		a := all[i]
		switch {
		case len(recipients) > 0 && !slices.Contains(recipients, a.identity):
		case a.revoked && !includeRevoked:
		case a.expires != nil && !a.expires.After(now) && !includeExpired:
		default:
			matched = append(matched, a)
		}
	}
	numParam, paged := q["num"]
	if !paged {
		out := make([]wire.Assertion, 0, len(matched))
		for _, a := range matched {
			out = append(out, s.assertionJSON(a))
		}
		s.mu.Unlock()
		s.writeResult(w, r, http.StatusOK, "ok", out)
		return
	}

	num, err := strconv.Atoi(numParam[0])
	if err != nil || num < 1 {
		num = sbDefaultPage
	}
	num = min(num, sbMaxPage)
	var cur sbCursor
	hasCursor := q.Get("cursor") != ""
	if hasCursor {
		var ok bool
		if cur, ok = decodeCursor(q.Get("cursor")); !ok {
			s.mu.Unlock()
			s.writeError(w, r, http.StatusNotFound, descNotFound, nil, []string{"Invalid cursor"})
			return
		}
	}
	var start, end int
	if hasCursor {
		// matched is ordered newest first; find the edge.
		edge := sort0(matched, cur.Pos) // first index with createdAt older than Pos
		if cur.Reverse {
			// The num entries newer than Pos, i.e. just before the edge (excluding Pos itself).
			stop := edge
			if stop > 0 && matched[stop-1].createdAt.UnixMicro() == cur.Pos {
				stop--
			}
			start, end = max(0, stop-num), stop
		} else {
			start, end = edge, min(edge+num, len(matched))
		}
	} else {
		end = min(num, len(matched))
	}
	page := matched[start:end]
	out := make([]wire.Assertion, 0, len(page))
	for _, a := range page {
		out = append(out, s.assertionJSON(a))
	}
	var links []string
	self := requestBase(r) + r.URL.Path
	if end < len(matched) && len(page) > 0 {
		links = append(links, fmt.Sprintf(`<%s>; rel="next"`, pageURL(self, q, sbCursor{Pos: page[len(page)-1].createdAt.UnixMicro()})))
	}
	if start > 0 && len(page) > 0 {
		links = append(links, fmt.Sprintf(`<%s>; rel="prev"`, pageURL(self, q, sbCursor{Pos: page[0].createdAt.UnixMicro(), Reverse: true})))
	}
	s.mu.Unlock()
	if len(links) > 0 {
		w.Header().Set("Link", strings.Join(links, ", "))
	}
	s.writeResult(w, r, http.StatusOK, "ok", out)
}

// sort0 returns the index of the first assertion (newest-first order) created strictly before
// pos (µs).
func sort0(newestFirst []*sbAssertion, pos int64) int {
	i, _ := slices.BinarySearchFunc(newestFirst, pos, func(a *sbAssertion, p int64) int {
		// Ascending in "age": entries newer than or at p come first.
		if a.createdAt.UnixMicro() >= p {
			return -1
		}
		return 1
	})
	return i
}

func pageURL(self string, q url.Values, c sbCursor) string {
	q2 := url.Values{}
	for k, v := range q {
		q2[k] = slices.Clone(v)
	}
	q2.Set("cursor", c.encode())
	return self + "?" + q2.Encode()
}
