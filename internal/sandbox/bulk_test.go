package sandbox

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgr/wire"
)

// --- batch award ---

func TestSandboxBatchAllOrNothing(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	issue := "/v2/badgeclasses/" + testClass + "/issue"
	if r := e.raw("POST", "/v2/badgeclasses/"+testClass+"/assertions", tok, `{"recipient":{"identity":"held@example.org"}}`); r.status != 201 {
		t.Fatalf("award: %d %s", r.status, r.body)
	}

	// One item already held (allowDuplicateAwards false): 400, one fieldErrors entry per item in
	// input order, and nothing created, not even the valid items.
	r := e.raw("POST", issue, tok, `{"assertions":[
		{"recipient":{"identity":"a@example.org"},"allowDuplicateAwards":false},
		{"recipient":{"identity":"held@example.org"},"allowDuplicateAwards":false},
		{"recipient":{"identity":"b@example.org"},"allowDuplicateAwards":false},
		{"recipient":{"identity":"not-an-address"},"allowDuplicateAwards":false}]}`)
	want := "[map[] map[non_field_errors:[A previous award of this badge already exists for this recipient.]] map[] map[recipient:map[non_field_errors:[Enter a valid email address.]]]]"
	if r.status != 400 || fmt.Sprint(r.json["fieldErrors"]) != want || r.description() != "bad request" {
		t.Errorf("batch with a held recipient: %d %s", r.status, r.body)
	}
	if n := len(e.sb.Assertions(testClass)); n != 1 {
		t.Errorf("%d assertions after a refused batch, want 1", n)
	}

	// More than the sandbox's limit: refused as a whole, before any item is looked at.
	items := make([]string, sbMaxBatch+1)
	for i := range items {
		items[i] = fmt.Sprintf(`{"recipient":{"identity":"l%03d@example.org"}}`, i)
	}
	r = e.raw("POST", issue, tok, `{"assertions":[`+strings.Join(items, ",")+`]}`)
	if r.status != 400 || fmt.Sprint(r.json["validationErrors"]) != "[Ensure this field has no more than 100 elements.]" ||
		fmt.Sprint(r.json["fieldErrors"]) != "map[]" {
		t.Errorf("101 items: %d %s", r.status, r.body)
	}
	if n := len(e.sb.Assertions(testClass)); n != 1 {
		t.Errorf("%d assertions after an oversized batch, want 1", n)
	}

	// Exactly the limit: 201 with every assertion, in input order.
	r = e.raw("POST", issue, tok, `{"assertions":[`+strings.Join(items[:sbMaxBatch], ",")+`]}`)
	res, _ := r.json["result"].([]any)
	if r.status != 201 || len(res) != sbMaxBatch {
		t.Fatalf("100 items: %d, %d results", r.status, len(res))
	}
	for i, it := range res {
		rc := it.(map[string]any)["recipient"].(map[string]any)
		if rc["plaintextIdentity"] != fmt.Sprintf("l%03d@example.org", i) || rc["hashed"] != true {
			t.Fatalf("result %d: %v", i, rc)
		}
	}

	// Badgr checks duplicates against saved assertions only: one recipient twice in one batch is
	// awarded twice.
	r = e.raw("POST", issue, tok, `{"assertions":[{"recipient":{"identity":"twice@example.org"},"allowDuplicateAwards":false},{"recipient":{"identity":"twice@example.org"},"allowDuplicateAwards":false}]}`)
	if res, _ := r.json["result"].([]any); r.status != 201 || len(res) != 2 {
		t.Errorf("repeat within a batch: %d %s", r.status, r.body)
	}
}

// --- listing: the indexed walk answers exactly what filtering the whole class did ---

// naiveList is the list route as it first was: filter the whole class into a newest-first copy,
// then cut the page around the cursor. It is the reference the indexed walk must match. num 0
// means unpaged. Called with s.mu held.
func naiveList(all []*sbAssertion, recipients []string, includeExpired, includeRevoked bool, now time.Time, num int, cur *sbCursor) (page []*sbAssertion, next, prev *sbCursor) {
	var matched []*sbAssertion
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
	if num == 0 {
		return matched, nil, nil
	}
	var start, end int
	if cur != nil {
		edge := len(matched)
		for i, a := range matched {
			if a.createdAt.UnixMicro() < cur.Pos {
				edge = i
				break
			}
		}
		if cur.Reverse {
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
	page = matched[start:end]
	if end < len(matched) && len(page) > 0 {
		next = &sbCursor{Pos: page[len(page)-1].createdAt.UnixMicro()}
	}
	if start > 0 && len(page) > 0 {
		prev = &sbCursor{Pos: page[0].createdAt.UnixMicro(), Reverse: true}
	}
	return page, next, prev
}

// directToken issues an access token without going through the token route.
func directToken(s *Host) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issue(s.now(), []string{"rw:issuer"}, false)["access_token"].(string)
}

// fill creates n assertions of class through the award path's create, identities from ident.
func fill(s *Host, class string, n int, ident func(i int) string) []*sbAssertion {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	out := make([]*sbAssertion, n)
	for i := range n {
		out[i] = s.create(class, sbValidated{identity: ident(i), recipientType: "email", hashed: true, issuedOn: now}, now, "http://sandbox.invalid")
	}
	return out
}

// listed is a list answer read back: entity ids in order, and its links.
type listed struct {
	status     int
	ids        []string
	next, prev *sbCursor
	nextURL    string
}

func get(tb testing.TB, s *Host, token, target string) listed {
	tb.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", wire.MediaJSON)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	out := listed{status: rec.Code}
	var env struct {
		Result []wire.Assertion `json:"result"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		tb.Fatalf("GET %s: %d %v", target, rec.Code, err)
	}
	for _, a := range env.Result {
		out.ids = append(out.ids, a.EntityID)
	}
	cursorOf := func(link string) *sbCursor {
		if link == "" {
			return nil
		}
		u, err := url.Parse(link)
		if err != nil {
			tb.Fatalf("link %q: %v", link, err)
		}
		c, ok := decodeCursor(u.Query().Get("cursor"))
		if !ok {
			tb.Fatalf("link %q: bad cursor", link)
		}
		return &c
	}
	out.nextURL = wire.FindLink(rec.Header().Values("Link"), "next")
	out.next = cursorOf(out.nextURL)
	out.prev = cursorOf(wire.FindLink(rec.Header().Values("Link"), "prev"))
	return out
}

func ids(list []*sbAssertion) []string {
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, a.entityID)
	}
	return out
}

func sameCursor(a, b *sbCursor) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func TestSandboxListMatchesFullScan(t *testing.T) {
	s := New(Options{Username: testUser, Password: testPassword, BadgeClasses: []string{testClass, "OtherClass"}})
	now := time.Now()
	s.SetClock(func() time.Time { return now })
	rng := rand.New(rand.NewPCG(1, 2))
	people := make([]string, 25)
	for i := range people {
		people[i] = fmt.Sprintf("p%02d@example.org", i)
	}
	made := fill(s, testClass, 1500, func(int) string { return people[rng.IntN(len(people))] })
	fill(s, "OtherClass", 200, func(int) string { return people[rng.IntN(len(people))] })
	past, future := now.Add(-time.Hour), now.Add(time.Hour)
	for _, a := range made {
		switch x := rng.IntN(10); {
		case x < 2:
			a.revoked, a.revocationReason = true, "r"
		case x < 4:
			a.expires = &past
		case x < 5:
			a.expires = &future
		}
	}
	// A long run of filtered entries, for pages that must skip it.
	for _, a := range made[600:900] {
		a.revoked = true
	}

	query := func() (listQuery, url.Values) {
		var q listQuery
		v := url.Values{}
		switch rng.IntN(4) {
		case 1:
			q.recipients = []string{people[rng.IntN(len(people))]}
		case 2:
			q.recipients = []string{people[rng.IntN(len(people))], people[rng.IntN(len(people))], "nobody@example.org"}
		}
		v["recipient"] = q.recipients
		q.includeExpired, q.includeRevoked = rng.IntN(2) == 0, rng.IntN(2) == 0
		if q.includeExpired {
			v.Set("include_expired", "1")
		}
		if q.includeRevoked {
			v.Set("include_revoked", "true")
		}
		if rng.IntN(8) == 0 {
			return q, v // unpaged
		}
		q.num = []int{1, 2, 7, 50, 120, 500}[rng.IntN(6)]
		v.Set("num", strconv.Itoa(q.num))
		if rng.IntN(4) > 0 {
			pos := made[rng.IntN(len(made))].createdAt.UnixMicro() + int64(rng.IntN(3)-1)
			switch rng.IntN(12) {
			case 0:
				pos = 0
			case 1:
				pos = now.Add(time.Hour).UnixMicro()
			case 2:
				pos = math.MinInt64
			case 3:
				pos = math.MaxInt64
			}
			q.cursor = &sbCursor{Pos: pos, Reverse: rng.IntN(2) == 0}
			v.Set("cursor", q.cursor.encode())
		}
		return q, v
	}
	check := func(what string, q listQuery, page []*sbAssertion, next, prev *sbCursor) {
		t.Helper()
		want, wantNext, wantPrev := naiveList(s.assertions[testClass], q.recipients, q.includeExpired, q.includeRevoked, now, q.num, q.cursor)
		if !slices.Equal(ids(page), ids(want)) || !sameCursor(next, wantNext) || !sameCursor(prev, wantPrev) {
			t.Fatalf("%s %+v: %d entries, next %v, prev %v; want %d, next %v, prev %v",
				what, q, len(page), next, prev, len(want), wantNext, wantPrev)
		}
	}

	s.mu.Lock()
	for range 8000 {
		q, _ := query()
		page, next, prev := s.listPage(testClass, q, now)
		check("listPage", q, page, next, prev)
	}
	s.mu.Unlock()

	// The route: parameters read, pages rendered and linked as selected.
	tok := directToken(s)
	for range 100 {
		q, v := query()
		got := get(t, s, tok, "/v2/badgeclasses/"+testClass+"/assertions?"+v.Encode())
		s.mu.Lock()
		var page []*sbAssertion
		for _, id := range got.ids {
			page = append(page, s.byID[id])
		}
		check("GET", q, page, got.next, got.prev)
		s.mu.Unlock()
	}
}

// --- 100,000 assertions in one class ---

// at100k is a host with 100,000 assertions of testClass, one recipient each: every 10th revoked,
// every 7th (not revoked) expired.
func at100k(tb testing.TB) (*Host, []*sbAssertion, time.Time) {
	tb.Helper()
	s := New(Options{Username: testUser, Password: testPassword, BadgeClasses: []string{testClass}})
	now := time.Now()
	s.SetClock(func() time.Time { return now })
	made := fill(s, testClass, 100_000, func(i int) string { return fmt.Sprintf("l%06d@example.org", i) })
	past := now.Add(-time.Hour)
	for i, a := range made {
		switch {
		case i%10 == 0:
			a.revoked = true
		case i%7 == 0:
			a.expires = &past
		}
	}
	return s, made, now
}

// Not timed: with 100,000 assertions the duplicate check, awards and a walk through every page
// of the class still answer exactly as Badgr would. BenchmarkListPageAt100k and
// BenchmarkAwardAt100k show what they cost.
func TestSandboxAt100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 assertions")
	}
	s, made, now := at100k(t)
	tok := directToken(s)

	s.mu.Lock()
	for _, i := range []int{0, 1, 7, 49_999, 99_999} {
		// Revoked, held, expired, held, held.
		want := i%10 != 0 && i%7 != 0
		if got := s.hasActiveAward(testClass, made[i].identity, now); got != want {
			t.Errorf("hasActiveAward(#%d) = %v, want %v", i, got, want)
		}
	}
	if s.hasActiveAward(testClass, strings.ToUpper(made[1].identity), now) {
		t.Error("an upper-case identity matched: Badgr compares it as sent")
	}
	s.mu.Unlock()

	award := func(identity string) int {
		req := httptest.NewRequest(http.MethodPost, "/v2/badgeclasses/"+testClass+"/assertions",
			strings.NewReader(`{"recipient":{"identity":"`+identity+`"},"allowDuplicateAwards":false}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := award(made[1].identity); c != 400 {
		t.Errorf("award to a holder: %d, want 400", c)
	}
	if c := award(made[10].identity); c != 201 {
		t.Errorf("award after a revoked one: %d, want 201", c)
	}
	if c := award(made[7].identity); c != 201 {
		t.Errorf("award after an expired one: %d, want 201", c)
	}
	if c := award(made[10].identity); c != 400 {
		t.Errorf("second award after a revoked one: %d, want 400", c)
	}

	// Every page of the class, as ListClass reads it: unrevoked, expired included, newest first.
	s.mu.Lock()
	want := 0
	for _, a := range s.assertions[testClass] {
		if !a.revoked {
			want++
		}
	}
	seen := map[string]bool{}
	pages := 0
	var lastPos int64 = 1 << 62
	q := listQuery{includeExpired: true, num: 500}
	for {
		page, next, _ := s.listPage(testClass, q, now)
		if len(page) == 0 || len(page) > 500 || (next != nil && len(page) != 500) {
			t.Fatalf("page %d: %d entries, next %v", pages, len(page), next)
		}
		for _, a := range page {
			if seen[a.entityID] || a.revoked || a.createdAt.UnixMicro() >= lastPos {
				t.Fatalf("page %d: %s repeated, revoked or out of order", pages, a.entityID)
			}
			seen[a.entityID] = true
			lastPos = a.createdAt.UnixMicro()
		}
		pages++
		if next == nil {
			break
		}
		q.cursor = next
	}
	s.mu.Unlock()
	if len(seen) != want || pages != (want+499)/500 {
		t.Errorf("%d assertions on %d pages, want %d on %d", len(seen), pages, want, (want+499)/500)
	}

	// The route follows the same walk: the first page, its next link, and back.
	first := get(t, s, tok, "/v2/badgeclasses/"+testClass+"/assertions?include_expired=1&num=500")
	u, _ := url.Parse(first.nextURL)
	second := get(t, s, tok, u.RequestURI())
	if len(first.ids) != 500 || len(second.ids) != 500 || first.prev != nil || second.prev == nil || second.next == nil {
		t.Fatalf("pages over HTTP: %d, %d ids; links %v %v %v", len(first.ids), len(second.ids), first.prev, second.prev, second.next)
	}
	back := get(t, s, tok, "/v2/badgeclasses/"+testClass+"/assertions?include_expired=1&num=500&cursor="+second.prev.encode())
	if !slices.Equal(back.ids, first.ids) || slices.Contains(first.ids, second.ids[0]) {
		t.Error("prev of the second page is not the first page")
	}
}

// BenchmarkListPageAt100k is one page of 500 from the middle of a 100,000-assertion class:
// "route" is the whole request (JSON rendering dominates), "select" the choice of the page and
// its links, "full-scan" that choice as it was made before the class was walked from the cursor
// (filtering a copy of the whole class), the cost "select" avoids.
func BenchmarkListPageAt100k(b *testing.B) {
	s, made, now := at100k(b)
	tok := directToken(s)
	cur := sbCursor{Pos: made[50_000].createdAt.UnixMicro()}
	b.Run("route", func(b *testing.B) {
		target := "/v2/badgeclasses/" + testClass + "/assertions?include_expired=1&num=500&cursor=" + cur.encode()
		for b.Loop() {
			req := httptest.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != 200 || rec.Header().Get("Link") == "" {
				b.Fatalf("list: %d", rec.Code)
			}
		}
	})
	b.Run("select", func(b *testing.B) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for b.Loop() {
			if page, _, _ := s.listPage(testClass, listQuery{includeExpired: true, num: 500, cursor: &cur}, now); len(page) != 500 {
				b.Fatalf("%d", len(page))
			}
		}
	})
	b.Run("full-scan", func(b *testing.B) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for b.Loop() {
			if page, _, _ := naiveList(s.assertions[testClass], nil, true, false, now, 500, &cur); len(page) != 500 {
				b.Fatalf("%d", len(page))
			}
		}
	})
}

// BenchmarkAwardAt100k is one award with the duplicate check in a 100,000-assertion class.
func BenchmarkAwardAt100k(b *testing.B) {
	s, _, _ := at100k(b)
	tok := directToken(s)
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest(http.MethodPost, "/v2/badgeclasses/"+testClass+"/assertions",
			strings.NewReader(fmt.Sprintf(`{"recipient":{"identity":"new%07d@example.org"},"allowDuplicateAwards":false}`, i)))
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != 201 {
			b.Fatalf("award: %d", rec.Code)
		}
	}
}
