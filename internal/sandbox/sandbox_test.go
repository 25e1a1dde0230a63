package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/badgr/wire"
)

// raw is one direct exchange with the sandbox.
type raw struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func (e *env) raw(method, path, token, body string, hdr ...string) raw {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := raw{status: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &out.json)
	return out
}

func (e *env) token() string {
	e.t.Helper()
	status, body := e.postToken(url.Values{"username": {testUser}, "password": {testPassword}, "scope": {"rw:issuer"}})
	if status != http.StatusOK {
		e.t.Fatalf("token: %d %v", status, body)
	}
	return body["access_token"].(string)
}

// result0 returns result[0] of an envelope.
func (r raw) result0(t *testing.T) map[string]any {
	t.Helper()
	res, _ := r.json["result"].([]any)
	if len(res) == 0 {
		t.Fatalf("no result in %d %s", r.status, r.body)
	}
	return res[0].(map[string]any)
}

func (r raw) description() string {
	st, _ := r.json["status"].(map[string]any)
	d, _ := st["description"].(string)
	return d
}

func TestSandboxTokenEndpoint(t *testing.T) {
	e := newEnv(t)

	// Query string: refused even with correct credentials in the body.
	resp, err := http.Post(e.srv.URL+"/o/token?username=x", "application/x-www-form-urlencoded",
		strings.NewReader(url.Values{"username": {testUser}, "password": {testPassword}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("query string: %d", resp.StatusCode)
	}

	// Password is the default grant; the answer has Badgr's fields.
	status, body := e.postToken(url.Values{"username": {testUser}, "password": {testPassword}})
	if status != 200 || body["token_type"] != "Bearer" || body["expires_in"] != float64(86400) ||
		body["refresh_token"] == nil || body["scope"] != "rw:profile rw:issuer rw:backpack" {
		t.Fatalf("password grant: %d %v", status, body)
	}
	// Client credentials: no refresh token.
	if status, cc := e.postToken(url.Values{"grant_type": {"client_credentials"}, "client_id": {"public"}, "scope": {"rw:issuer"}}); status != 200 || cc["refresh_token"] != nil || cc["access_token"] == nil {
		t.Errorf("client_credentials: %d %v", status, cc)
	}
	// Refresh rotation: the new pair works once, the old refresh token does not.
	refresh := body["refresh_token"].(string)
	status, body2 := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"public"}})
	if status != 200 || body2["refresh_token"] == refresh {
		t.Fatalf("refresh: %d %v", status, body2)
	}
	if r := e.raw("GET", "/v2/badgeclasses/"+testClass, body["access_token"].(string), ""); r.status != 401 {
		t.Errorf("access token of a refreshed pair: %d", r.status)
	}
	if r := e.raw("GET", "/v2/badgeclasses/"+testClass, body2["access_token"].(string), ""); r.status != 200 {
		t.Errorf("new access token: %d", r.status)
	}
	status, body3 := e.postToken(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"public"}})
	if status != 400 || body3["error"] != "invalid_grant" {
		t.Errorf("reused refresh token: %d %v", status, body3)
	}
	// That failure counts against the client id (no username): the next grant of that key waits.
	if status, _ := e.postToken(url.Values{"grant_type": {"client_credentials"}, "client_id": {"public"}}); status != 429 {
		t.Errorf("client_credentials after a failed refresh: %d", status)
	}

	// Scope outside the application, unknown client.
	if status, body = e.postToken(url.Values{"username": {testUser}, "password": {testPassword}, "scope": {"rw:serverAdmin"}}); status != 400 || body["error"] != "invalid scope requested" {
		t.Errorf("bad scope: %d %v", status, body)
	}
	if status, body = e.postToken(url.Values{"username": {"x"}, "password": {"y"}, "client_id": {"nope"}}); status != 400 || body["error"] != "invalid client_id" {
		t.Errorf("unknown client: %d %v", status, body)
	}
}

func TestSandboxLoginBackoff(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.sb.SetClock(func() time.Time { return now }) // read under e.sb.mu
	advance := func(d time.Duration) {
		e.sb.mu.Lock()
		defer e.sb.mu.Unlock()
		now = now.Add(d)
	}
	good := url.Values{"username": {testUser}, "password": {testPassword}}
	bad := url.Values{"username": {testUser}, "password": {"nope"}}

	if status, body := e.postToken(bad); status != 400 || body["error"] != "invalid_grant" || body["error_description"] != "Invalid credentials given." {
		t.Fatalf("wrong password: %d %v", status, body)
	}
	// The right password is refused during the backoff: 429, text/html, expires, no Retry-After.
	resp, err := http.PostForm(e.srv.URL+"/o/token", good)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("during backoff: %d %v", resp.StatusCode, resp.Header)
	}
	var th map[string]any
	if err := json.Unmarshal(b, &th); err != nil || th["error"] != "login attempts throttled" || th["expires"] != float64(2) {
		t.Fatalf("throttled body %s", b)
	}
	// Second failure doubles the period.
	advance(3 * time.Second)
	e.postToken(bad)
	if _, body := e.postToken(good); body["expires"] != float64(4) {
		t.Errorf("second backoff: %v", body)
	}
	advance(5 * time.Second)
	if status, _ := e.postToken(good); status != 200 {
		t.Errorf("after the backoff: %d", status)
	}
	// A success clears the counter: the next failure starts again at 2 s.
	e.postToken(bad)
	if _, body := e.postToken(good); body["expires"] != float64(2) {
		t.Errorf("after reset: %v", body)
	}

	// ThrottleLogins: 429 with the given period.
	e.sb.ThrottleLogins(7 * time.Second)
	advance(3 * time.Second)
	if status, body := e.postToken(good); status != 429 || body["expires"] != float64(7) {
		t.Errorf("ThrottleLogins: %d %v", status, body)
	}
}

func TestSandboxAuthAndNegotiation(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	for _, tc := range []struct{ name, token string }{{"none", ""}, {"unknown", "abc"}} {
		r := e.raw("GET", "/v2/badgeclasses/"+testClass, tc.token, "")
		if r.status != 401 || r.description() != "no valid auth token found" || r.header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s token: %d %s", tc.name, r.status, r.body)
		}
	}
	e.sb.ExpireTokens()
	if r := e.raw("GET", "/v2/badgeclasses/"+testClass, tok, ""); r.status != 401 {
		t.Errorf("expired token: %d", r.status)
	}
	// A token without an issuing scope sees nothing: 404, never 403.
	_, body := e.postToken(url.Values{"username": {testUser}, "password": {testPassword}, "scope": {"r:profile"}})
	r := e.raw("GET", "/v2/badgeclasses/"+testClass, body["access_token"].(string), "")
	if r.status != 404 || r.description() != "entity not found or insufficient privileges" {
		t.Errorf("profile-only token: %d %s", r.status, r.body)
	}

	tok = e.token()
	if r := e.raw("GET", "/v2/badgeclasses/"+testClass, tok, ""); r.header.Get("Content-Type") != "application/ld+json" || r.description() != "ok" {
		t.Errorf("default content type %q", r.header.Get("Content-Type"))
	}
	if r := e.raw("GET", "/v2/badgeclasses/"+testClass, tok, "", "Accept", "application/json"); r.header.Get("Content-Type") != "application/json" {
		t.Errorf("JSON content type %q", r.header.Get("Content-Type"))
	}
	r = e.raw("GET", "/v2/nothing/here", tok, "")
	if r.status != 404 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || r.json != nil {
		t.Errorf("unrouted: %d %s", r.status, r.body)
	}
	if n := e.sb.Requests()["GET (unrouted)"]; n != 1 {
		t.Errorf("unrouted count %d", n)
	}
	if r := e.raw("GET", "/v2/badgeclasses/nope", tok, ""); r.status != 404 || r.json == nil {
		t.Errorf("unknown class: %d", r.status)
	}
}

func TestSandboxAward(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	path := "/v2/badgeclasses/" + testClass + "/assertions"
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	cases := []struct {
		name, body string
		check      func(r raw) bool
	}{
		{"no recipient", `{"issuedOn":"2024-05-01T12:00:00Z"}`, func(r raw) bool {
			return fmt.Sprint(r.json["fieldErrors"]) == "map[recipient:[This field is required.]]"
		}},
		{"bad e-mail", `{"recipient":{"identity":"not-an-address"}}`, func(r raw) bool {
			return fmt.Sprint(r.json["fieldErrors"]) == "map[recipient:map[non_field_errors:[Enter a valid email address.]]]"
		}},
		{"future issuedOn", `{"recipient":{"identity":"a@example.org"},"issuedOn":"` + future + `"}`, func(r raw) bool {
			return fmt.Sprint(r.json["fieldErrors"]) == "map[issuedOn:[Only issuedOn dates in the past are acceptable.]]"
		}},
		{"several badge class identifiers", `{"recipient":{"identity":"a@example.org"},"badgeclass":"` + testClass + `"}`, func(r raw) bool {
			return strings.HasPrefix(fmt.Sprint(r.json["validationErrors"]), "[Multiple badge class identifiers.")
		}},
		{"malformed JSON", `{"recipient":`, func(r raw) bool { return r.description() == "bad request" }},
	}
	for _, tc := range cases {
		r := e.raw("POST", path, tok, tc.body)
		if r.status != 400 || r.json["result"] == nil || !tc.check(r) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.body)
		}
	}
	if n := len(e.sb.Assertions(testClass)); n != 0 {
		t.Fatalf("%d assertions after refused awards", n)
	}

	// A valid award, twice with the same Idempotency-Key: Badgr ignores it and allows
	// duplicates by default.
	body := `{"recipient":{"identity":"Learner@Example.org","type":"email"},"issuedOn":"2024-05-01T12:00:00Z","narrative":"n","evidence":[{"url":"https://lms.example.org/c/1"}]}`
	r1 := e.raw("POST", path, tok, body, "Idempotency-Key", "k1")
	r2 := e.raw("POST", path, tok, body, "Idempotency-Key", "k1")
	if r1.status != 201 || r2.status != 201 {
		t.Fatalf("awards: %d %d %s", r1.status, r2.status, r2.body)
	}
	a := r1.result0(t)
	id := a["entityId"].(string)
	if !regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`).MatchString(id) || id == r2.result0(t)["entityId"] {
		t.Errorf("entityId %q", id)
	}
	rec := a["recipient"].(map[string]any)
	salt := rec["salt"].(string)
	if rec["plaintextIdentity"] != testEmail || rec["hashed"] != true || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(salt) ||
		rec["identity"] != hashIdentity(testEmail, salt) {
		t.Errorf("recipient %v", rec)
	}
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`).MatchString(a["createdAt"].(string)) {
		t.Errorf("createdAt %v", a["createdAt"])
	}
	if a["openBadgeId"] != e.srv.URL+"/public/assertions/"+id || a["issuedOn"] != "2024-05-01T12:00:00Z" ||
		a["revoked"] != false || a["revocationReason"] != nil || a["entityType"] != "Assertion" || a["badgeclass"] != testClass {
		t.Errorf("assertion %v", a)
	}
	if n := len(e.sb.Assertions(testClass)); n != 2 {
		t.Errorf("%d assertions, want 2", n)
	}

	// The duplicate check ignores expired and revoked awards.
	e.sb.mu.Lock()
	past := time.Now().Add(-time.Minute)
	for _, a := range e.sb.assertions[testClass] {
		a.expires = &past
	}
	e.sb.mu.Unlock()
	nodup := `{"recipient":{"identity":"learner@example.org"},"allowDuplicateAwards":false}`
	r3 := e.raw("POST", path, tok, nodup)
	if r3.status != 201 {
		t.Fatalf("award after expired ones: %d %s", r3.status, r3.body)
	}
	r4 := e.raw("POST", path, tok, nodup)
	if r4.status != 400 || fmt.Sprint(r4.json["validationErrors"]) != "["+msgDuplicate+"]" {
		t.Errorf("duplicate: %d %s", r4.status, r4.body)
	}
	e.raw("DELETE", "/v2/assertions/"+r3.result0(t)["entityId"].(string), tok, `{"revocation_reason":"x"}`)
	if r := e.raw("POST", path, tok, nodup); r.status != 201 {
		t.Errorf("award after a revoked one: %d %s", r.status, r.body)
	}

	// Hosted assertion.
	pub := e.raw("GET", "/public/assertions/"+id, "", "")
	if pub.status != 200 || pub.json["id"] != e.srv.URL+"/public/assertions/"+id || pub.json["type"] != "Assertion" {
		t.Errorf("public assertion: %d %s", pub.status, pub.body)
	}
}

func TestSandboxHash(t *testing.T) {
	// The example of badgr-api.md section 5.2.
	if got := hashIdentity("learner@example.org", "c7d0b4a1e9f24b3c8a5d6e7f8091a2b3"); got != "sha256$ea2025110df03564c7e32274d3c891b57a7e31b1b72faa809acd3f59ae0e16df" {
		t.Errorf("hash %s", got)
	}
}

func TestSandboxListPaging(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	path := "/v2/badgeclasses/" + testClass + "/assertions"
	var ids []string
	for range 5 {
		r := e.raw("POST", path, tok, `{"recipient":{"identity":"learner@example.org"}}`)
		ids = append(ids, r.result0(t)["entityId"].(string))
	}
	e.raw("POST", path, tok, `{"recipient":{"identity":"other@example.org"}}`)
	e.raw("DELETE", "/v2/assertions/"+ids[0], tok, `{"revocation_reason":"x"}`)

	// Without num: everything in one answer, no Link; revoked left out unless asked.
	r := e.raw("GET", path+"?recipient=learner%40example.org", tok, "")
	if n := len(r.json["result"].([]any)); n != 4 || r.header.Get("Link") != "" {
		t.Errorf("unpaged: %d results, Link %q", n, r.header.Get("Link"))
	}
	r = e.raw("GET", path+"?recipient=learner%40example.org&include_revoked=1", tok, "")
	if n := len(r.json["result"].([]any)); n != 5 {
		t.Errorf("include_revoked: %d", n)
	}
	// The match is exact: an upper-case query finds nothing.
	r = e.raw("GET", path+"?recipient=Learner%40example.org", tok, "")
	if n := len(r.json["result"].([]any)); n != 0 {
		t.Errorf("upper-case recipient: %d", n)
	}
	// Several recipients.
	r = e.raw("GET", path+"?recipient=learner%40example.org&recipient=other%40example.org", tok, "")
	if n := len(r.json["result"].([]any)); n != 5 {
		t.Errorf("two recipients: %d", n)
	}

	// num=2 over 4: pages of 2, newest first, next then prev.
	r = e.raw("GET", path+"?recipient=learner%40example.org&num=2", tok, "")
	page1 := r.json["result"].([]any)
	next := wire.FindLink(r.header.Values("Link"), "next")
	if len(page1) != 2 || page1[0].(map[string]any)["entityId"] != ids[4] || next == "" || wire.FindLink(r.header.Values("Link"), "prev") != "" {
		t.Fatalf("page 1: %v, Link %q", page1, r.header.Get("Link"))
	}
	if r.json["pagination"] != nil {
		t.Error("pagination key in the body")
	}
	u, _ := url.Parse(next)
	r = e.raw("GET", u.RequestURI(), tok, "")
	page2 := r.json["result"].([]any)
	if len(page2) != 2 || page2[1].(map[string]any)["entityId"] != ids[1] || wire.FindLink(r.header.Values("Link"), "next") != "" {
		t.Fatalf("page 2: %v, Link %q", page2, r.header.Get("Link"))
	}
	prev := wire.FindLink(r.header.Values("Link"), "prev")
	u, _ = url.Parse(prev)
	r = e.raw("GET", u.RequestURI(), tok, "")
	back := r.json["result"].([]any)
	if len(back) != 2 || back[0].(map[string]any)["entityId"] != ids[4] {
		t.Errorf("prev page: %v", back)
	}
}

func TestSandboxRevoke(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	r := e.raw("POST", "/v2/badgeclasses/"+testClass+"/assertions", tok, `{"recipient":{"identity":"learner@example.org"}}`)
	id := r.result0(t)["entityId"].(string)

	r = e.raw("DELETE", "/v2/assertions/"+id, tok, `{}`)
	if r.status != 400 || fmt.Sprint(r.json["fieldErrors"]) != "map[revocation_reason:This field is required]" {
		t.Errorf("no reason: %d %s", r.status, r.body)
	}
	r = e.raw("DELETE", "/v2/assertions/"+id, tok, `{"revocation_reason":"Certificate revoked"}`)
	if a := r.result0(t); r.status != 200 || a["revoked"] != true || a["revocationReason"] != "Certificate revoked" {
		t.Errorf("revoke: %d %s", r.status, r.body)
	}
	r = e.raw("DELETE", "/v2/assertions/"+id, tok, `{"revocation_reason":"again"}`)
	if r.status != 400 || fmt.Sprint(r.json["validationErrors"]) != "[Assertion is already revoked]" {
		t.Errorf("again: %d %s", r.status, r.body)
	}
	if r = e.raw("DELETE", "/v2/assertions/unknown", tok, `{"revocation_reason":"x"}`); r.status != 404 {
		t.Errorf("unknown: %d", r.status)
	}
	pub := e.raw("GET", "/public/assertions/"+id, "", "")
	if pub.status != 200 || pub.json["revoked"] != true {
		t.Errorf("public revoked: %d %s", pub.status, pub.body)
	}
}

func TestSandboxBatch(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	issue := "/v2/badgeclasses/" + testClass + "/issue"
	if r := e.raw("POST", issue, tok, `[{"recipient":{"identity":"a@example.org"}}]`); r.status != 400 || r.body != "" {
		t.Errorf("bare array: %d %q", r.status, r.body)
	}
	r := e.raw("POST", issue, tok, `{"assertions":[{"recipient":{"identity":"a@example.org"}},{"notify":false}]}`)
	if r.status != 400 || fmt.Sprint(r.json["fieldErrors"]) != "[map[] map[recipient:[This field is required.]]]" {
		t.Errorf("invalid item: %d %s", r.status, r.body)
	}
	r = e.raw("POST", issue, tok, `{"assertions":[{"recipient":{"identity":"a@example.org"}},{"recipient":{"identity":"b@example.org"}}],"create_notification":false}`)
	if r.status != 201 || len(r.json["result"].([]any)) != 2 {
		t.Fatalf("batch award: %d %s", r.status, r.body)
	}
	id := r.result0(t)["entityId"].(string)
	r = e.raw("POST", "/v2/assertions/revoke", tok, `[{"entityId":"`+id+`","revocationReason":"r"},{"entityId":"x","revocationReason":"y"},{"entityId":"`+id+`","revocationReason":"r"},{"entityId":"`+id+`"}]`)
	if r.status != 200 || r.description() != "revoked badges" {
		t.Fatalf("batch revoke: %d %s", r.status, r.body)
	}
	var reasons []string
	for _, it := range r.json["result"].([]any) {
		m := it.(map[string]any)
		reasons = append(reasons, fmt.Sprint(m["revoked"], "/", m["reason"]))
	}
	if got := strings.Join(reasons, ","); got != "true/<nil>,false/permission denied or object not found,false/Assertion is already revoked,false/revocationReason is required" {
		t.Errorf("batch revoke results: %s", got)
	}
}

func TestSandboxFaults(t *testing.T) {
	e := newEnv(t)
	tok := e.token()
	e.sb.FailNext(2, http.StatusBadGateway)
	for i := range 2 {
		if r := e.raw("GET", "/v2/badgeclasses/"+testClass, tok, ""); r.status != 502 || r.json != nil {
			t.Errorf("fault %d: %d", i, r.status)
		}
	}
	// Faults hit the issuing API only, and are used up.
	e.sb.FailNext(1, http.StatusServiceUnavailable)
	if status, _ := e.postToken(url.Values{"username": {testUser}, "password": {testPassword}}); status != 200 {
		t.Errorf("token during API fault: %d", status)
	}
	e.raw("GET", "/v2/badgeclasses/"+testClass, tok, "")
	if r := e.raw("GET", "/v2/badgeclasses/"+testClass, tok, ""); r.status != 200 {
		t.Errorf("after faults: %d", r.status)
	}
	e.sb.FailNextWithRetryAfter(1, http.StatusTooManyRequests, 1500*time.Millisecond)
	if r := e.raw("GET", "/v2/badgeclasses/"+testClass, tok, ""); r.status != 429 || r.header.Get("Retry-After") != "2" || r.description() != "miscellaneous error" {
		t.Errorf("429: %d %v %s", r.status, r.header, r.body)
	}
	e.sb.SetOutage(true)
	if status, _ := e.postToken(url.Values{"username": {testUser}, "password": {testPassword}}); status != 503 {
		t.Errorf("token during outage: %d", status)
	}
	e.sb.SetOutage(false)
	req := e.sb.Requests()
	if req["GET /v2/badgeclasses/{id}"] != 5 || req["POST /o/token"] != 3 {
		t.Errorf("requests %v", req)
	}
}
