package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/sandbox"
	"github.com/badgebridge/bridge/internal/testutil"
	"github.com/badgebridge/bridge/internal/webhook"
)

// These tests build the real binary and drive it over HTTP, as an operator would.

func start(t *testing.T, env []string, args ...string) *testutil.Proc {
	return testutil.StartBridge(t, env, args...)
}

func getJSON(t *testing.T, url, token string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if out != nil {
		_ = json.NewDecoder(r.Body).Decode(out)
	}
	return r.StatusCode
}

type awards struct {
	Awards []struct {
		UserID   int64  `json:"user_id"`
		State    string `json:"state"`
		Desired  string `json:"desired"`
		EntityID string `json:"entity_id"`
	} `json:"awards"`
}

func waitState(t *testing.T, admin, token, state string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var a awards
		getJSON(t, "http://"+admin+"/v1/awards?user_id=42", token, &a)
		if len(a.Awards) == 1 && a.Awards[0].State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("award never reached %s: %+v", state, a)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDevelopmentModeFirstRun is the newcomer's path: nothing configured, paste the printed
// command, see the award issued.
func TestDevelopmentModeFirstRun(t *testing.T) {
	p := start(t, nil)
	var hook, admin, curl string
	deadline := time.Now().Add(5 * time.Second)
	for hook == "" || curl == "" {
		out := p.Stdout.String()
		if m := regexp.MustCompile(`Throwaway webhook token: (\S+)`).FindStringSubmatch(out); m != nil {
			hook = m[1]
		}
		if m := regexp.MustCompile(`Throwaway admin token:\s+(\S+)`).FindStringSubmatch(out); m != nil {
			admin = m[1]
		}
		if i := strings.Index(out, "curl -sS -X POST"); i >= 0 && strings.Contains(out[i:], "}}'") {
			curl = out[i : i+strings.Index(out[i:], "}}'")+3]
		}
		if time.Now().After(deadline) {
			t.Fatalf("banner incomplete:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.Stdout.String(), "NOTHING IS DURABLE") {
		t.Fatal("no loud development-mode warning")
	}
	// Run the printed command exactly as a newcomer pastes it.
	out, err := exec.Command("bash", "-c", curl).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"status":"accepted"`) {
		t.Fatalf("pasted command: %v %s", err, out)
	}
	waitState(t, p.Admin, admin, "issued")
	assertJSONLogs(t, p.Stderr.String(), hook, admin)
	p.Stop(t, 30*time.Second)
}

// TestProductionPath runs serve and work against a real Redis and an HTTP badge host, with
// signed webhooks, a query token, the admin API, a revocation and SIGTERM.
func TestProductionPath(t *testing.T) {
	redisSrv := testutil.StartRedis(t)
	sb := sandbox.New(sandbox.Options{Username: "svc@example.org", Password: "badgr-password-123", BadgeClasses: []string{"E2eClass00000000000001"}})
	host := httptest.NewServer(sb)
	defer host.Close()
	sb.SetBaseURL(host.URL)

	dir := t.TempDir()
	mapping := filepath.Join(dir, "mapping.yaml")
	os.WriteFile(mapping, []byte(`badges:
  - name: Demo
    badge_class: E2eClass00000000000001
    when:
      courses: ["course-v1:OpenedX+DemoX+*"]
    narrative: "Completed {{.CourseKey}} with grade {{.Grade}}"
`), 0o600)
	secretKey := []byte("0123456789abcdef01234567")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(secretKey)
	queryTok := "query-token-0123456789abcdef0123456789"
	adminTok := "admin-token-0123456789abcdef0123456789"
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("badgr-password-123\n"), 0o600)
	env := []string{
		"BRIDGE_REDIS_URL=" + redisSrv.URL, "BRIDGE_BADGR_URL=" + host.URL,
		"BRIDGE_BADGR_USERNAME=svc@example.org", "BRIDGE_BADGR_PASSWORD_FILE=" + pwFile,
		"BRIDGE_MAPPING_FILE=" + mapping, "BRIDGE_WEBHOOK_SECRETS=" + secret,
		"BRIDGE_WEBHOOK_QUERY_TOKENS=" + queryTok, "BRIDGE_ADMIN_TOKEN=" + adminTok,
		"BRIDGE_BADGR_TIMEOUT=2s", "BRIDGE_SETTLE=2s", "BRIDGE_SHUTDOWN_GRACE=5s",
	}
	web := start(t, env, "serve")
	worker := start(t, env, "work")

	body, _ := os.ReadFile("../../internal/edx/testdata/certificate-created.json")
	id, ts := "msg_e2e_1", strconv.FormatInt(time.Now().Unix(), 10)
	req, _ := http.NewRequest(http.MethodPost, "http://"+web.HTTP+"/v1/webhooks/openedx", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", "v1,"+webhook.Sign(secretKey, id, ts, body))
	mustAnswer(t, req, 200, "accepted")
	waitState(t, web.Admin, adminTok, "issued")

	// A tampered signature is refused; the same event again (a sender's retry) is a duplicate.
	req2, _ := http.NewRequest(http.MethodPost, req.URL.String(), bytes.NewReader(append(body, ' ')))
	req2.Header = req.Header.Clone()
	mustAnswer(t, req2, 401, "")
	replay, _ := http.NewRequest(http.MethodPost, req.URL.String(), bytes.NewReader(body))
	replay.Header = req.Header.Clone()
	mustAnswer(t, replay, 200, "duplicate")
	huge, _ := http.NewRequest(http.MethodPost, req.URL.String(), bytes.NewReader(body))
	huge.Header = req.Header.Clone()
	huge.Header.Set("X-Padding", strings.Repeat("a", 256<<10))
	if r, err := http.DefaultClient.Do(huge); err != nil || r.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("256 KiB of headers: %v %v, want 431", r, err)
	}

	// The eox-hooks shape (form, query token): the same event, different id → unchanged.
	form, _ := os.ReadFile("../../internal/edx/testdata/certificate-created.flattened.form")
	formBody := strings.Replace(string(form), "event_metadata_id=3e068212", "event_metadata_id=4e068212", 1)
	req3, _ := http.NewRequest(http.MethodPost, "http://"+web.HTTP+"/v1/webhooks/openedx?token="+queryTok, strings.NewReader(formBody))
	req3.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mustAnswer(t, req3, 200, "unchanged")

	// Revocation through the query-token path.
	rev, _ := os.ReadFile("../../internal/edx/testdata/certificate-revoked.json")
	req4, _ := http.NewRequest(http.MethodPost, "http://"+web.HTTP+"/v1/webhooks/openedx?token="+queryTok, bytes.NewReader(rev))
	req4.Header.Set("Content-Type", "application/json")
	mustAnswer(t, req4, 200, "accepted")
	waitState(t, web.Admin, adminTok, "revoked")
	for _, a := range sb.Assertions("E2eClass00000000000001") {
		if !a.Revoked {
			t.Fatalf("assertion %s still unrevoked on the host", a.EntityID)
		}
	}
	if n := len(sb.Assertions("E2eClass00000000000001")); n != 1 {
		t.Fatalf("%d assertions made, want 1", n)
	}
	// The event record, and the admin API refusing a wrong token.
	var rec map[string]any
	if code := getJSON(t, "http://"+web.Admin+"/v1/events/"+"3e068212-1c24-11ef-9a57-0242ac120005", adminTok, &rec); code != 200 || rec["status"] != "accepted" {
		t.Fatalf("event record: %d %v", code, rec)
	}
	var st map[string]any
	if code := getJSON(t, "http://"+web.Admin+"/v1/status", adminTok, &st); code != 200 || st["queue"] == nil || st["host_login"] == nil {
		t.Fatalf("status: %d %v", code, st)
	}
	prev, _ := http.NewRequest(http.MethodPost, "http://"+web.Admin+"/v1/mapping/preview", bytes.NewReader(body))
	prev.Header.Set("Authorization", "Bearer "+adminTok)
	prev.Header.Set("Content-Type", "application/json")
	if r, err := http.DefaultClient.Do(prev); err != nil || r.StatusCode != 200 {
		t.Fatalf("preview: %v %v", r, err)
	} else {
		var pv struct {
			Badges []struct{ Effect, BadgeClass string }
		}
		json.NewDecoder(r.Body).Decode(&pv)
		r.Body.Close()
		if len(pv.Badges) != 1 || pv.Badges[0].Effect != "held" {
			t.Fatalf("preview: %+v", pv)
		}
	}
	dash, _ := http.NewRequest(http.MethodGet, "http://"+web.Admin+"/ui/queues/api/queues", nil)
	if r, err := http.DefaultClient.Do(dash); err != nil || r.StatusCode != 401 {
		t.Fatalf("dashboard without the password: %v %v", r, err)
	}
	dash.SetBasicAuth("anyone", adminTok)
	if r, err := http.DefaultClient.Do(dash); err != nil || r.StatusCode != 200 {
		t.Fatalf("dashboard with the admin token: %v %v", r, err)
	}
	if code := getJSON(t, "http://"+web.Admin+"/v1/awards", "wrong", nil); code != 401 {
		t.Fatalf("admin API with a wrong token: %d", code)
	}
	web.Stop(t, 30*time.Second)
	worker.Stop(t, 30*time.Second)
	secrets := []string{secret, queryTok, adminTok, "badgr-password-123"}
	assertJSONLogs(t, web.Stderr.String(), secrets...)
	assertJSONLogs(t, worker.Stderr.String(), secrets...)
}

func mustAnswer(t *testing.T, req *http.Request, code int, status string) {
	t.Helper()
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	var a struct{ Status, Message string }
	if err := json.Unmarshal(b, &a); err != nil || a.Message == "" {
		t.Fatalf("answer without a JSON message: %s", b)
	}
	if r.StatusCode != code || a.Status != status {
		t.Fatalf("got %d %s (%s), want %d %s", r.StatusCode, a.Status, a.Message, code, status)
	}
}

// assertJSONLogs: every log line is JSON, and none carries an e-mail address or a secret.
func assertJSONLogs(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		n++
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %s", line)
		}
		if strings.Contains(line, "@") {
			t.Errorf("log line holds an e-mail address: %s", line)
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(line, s) {
				t.Errorf("log line holds a secret: %s", line)
			}
		}
	}
	if n == 0 {
		t.Error("no log lines at all")
	}
}

// TestGracefulShutdown: SIGTERM while an award is in flight lets it finish within the grace
// period, and the worker exits 0.
func TestGracefulShutdown(t *testing.T) {
	redisSrv := testutil.StartRedis(t)
	sb := sandbox.New(sandbox.Options{Username: "svc", Password: "pw-0123456789", BadgeClasses: []string{"E2eClass00000000000001"}})
	host := httptest.NewServer(sb)
	defer host.Close()
	dir := t.TempDir()
	mapping := filepath.Join(dir, "mapping.yaml")
	os.WriteFile(mapping, []byte("badges:\n  - name: Demo\n    badge_class: E2eClass00000000000001\n    when:\n      courses: [\"course-v1:OpenedX+DemoX+*\"]\n"), 0o600)
	tok := "bearer-token-0123456789abcdef0123456789"
	adminTok := "admin-token-0123456789abcdef0123456789"
	env := []string{
		"BRIDGE_REDIS_URL=" + redisSrv.URL, "BRIDGE_BADGR_URL=" + host.URL, "BRIDGE_BADGR_USERNAME=svc",
		"BRIDGE_BADGR_PASSWORD=pw-0123456789", "BRIDGE_MAPPING_FILE=" + mapping, "BRIDGE_WEBHOOK_TOKENS=" + tok,
		"BRIDGE_ADMIN_TOKEN=" + adminTok, "BRIDGE_BADGR_TIMEOUT=5s", "BRIDGE_SETTLE=5s", "BRIDGE_SHUTDOWN_GRACE=10s",
	}
	web := start(t, env, "serve")
	worker := start(t, env, "work")
	sb.SetAwardDelay(2 * time.Second) // the POST is in flight for 2 s
	body, _ := os.ReadFile("../../internal/edx/testdata/certificate-created.json")
	req, _ := http.NewRequest(http.MethodPost, "http://"+web.HTTP+"/v1/webhooks/openedx", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	mustAnswer(t, req, 200, "accepted")
	deadline := time.Now().Add(15 * time.Second)
	for len(sb.Assertions("E2eClass00000000000001")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the award never reached the host")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The host has created the assertion and is still answering: stop the worker now.
	stopped := time.Now()
	worker.Stop(t, 30*time.Second)
	if d := time.Since(stopped); d > 10*time.Second {
		t.Fatalf("exit took %s, beyond the grace period", d)
	}
	var a awards
	getJSON(t, "http://"+web.Admin+"/v1/awards?user_id=42", adminTok, &a)
	if len(a.Awards) != 1 || a.Awards[0].State != "issued" || a.Awards[0].EntityID == "" {
		t.Fatalf("the in-flight award did not finish before exit: %+v", a)
	}
	if !strings.Contains(worker.Stderr.String(), "shutting down") {
		t.Fatal("no shutdown log line")
	}
	web.Stop(t, 30*time.Second)
}

// TestRedisDownAnswers503: with the queue Redis unreachable a webhook is refused with 503 and
// Retry-After (the sender retries), /readyz says unready, and all recovers with Redis.
func TestRedisDownAnswers503(t *testing.T) {
	db := testutil.StartRedis(t)
	mapping := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(mapping, []byte("badges:\n  - name: Demo\n    badge_class: DownClass000000000001\n    when:\n      courses: [\"course-v1:OpenedX+DemoX+*\"]\n"), 0o600)
	tok := "bearer-token-0123456789abcdef0123456789"
	web := start(t, []string{"BRIDGE_REDIS_URL=" + db.URL, "BRIDGE_MAPPING_FILE=" + mapping, "BRIDGE_WEBHOOK_TOKENS=" + tok}, "serve")
	body, _ := os.ReadFile("../../internal/edx/testdata/certificate-created.json")
	send := func() *http.Request {
		req, _ := http.NewRequest(http.MethodPost, "http://"+web.HTTP+"/v1/webhooks/openedx", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		return req
	}
	db.Stop()
	began := time.Now()
	r, err := http.DefaultClient.Do(send())
	if err != nil {
		t.Fatal(err)
	}
	var a struct{ Message string }
	json.NewDecoder(r.Body).Decode(&a)
	r.Body.Close()
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || a.Message == "" {
		t.Fatalf("with Redis down: %d Retry-After=%q message=%q", r.StatusCode, r.Header.Get("Retry-After"), a.Message)
	}
	if d := time.Since(began); d > 15*time.Second {
		t.Fatalf("the 503 took %s", d)
	}
	if r, err := http.Get("http://" + web.HTTP + "/readyz"); err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with Redis down: %v %v", r, err)
	}
	db.Restart(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := http.DefaultClient.Do(send())
		if err == nil && r.StatusCode == 200 {
			r.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis came back: %v %v", r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	web.Stop(t, 30*time.Second)
}
