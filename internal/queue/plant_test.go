package queue

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/badgebridge/bridge/internal/testutil"
)

// plant creates an assertion on the sandbox directly, as another integration (or Badgr's
// non-atomic duplicate check) would, and returns its entityId.
func plant(t *testing.T, p *pipeline, email string) string {
	t.Helper()
	form := url.Values{"grant_type": {"password"}, "username": {"svc"}, "password": {"pw-0123456789"}, "client_id": {"public"}}
	req := httptest.NewRequest(http.MethodPost, "/o/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	p.sandbox.ServeHTTP(rec, req)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %s", rec.Body.String())
	}
	body := `{"recipient": {"identity": "` + email + `", "type": "email"}}`
	req = httptest.NewRequest(http.MethodPost, "/v2/badgeclasses/"+testutil.ClassCert+"/assertions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	rec = httptest.NewRecorder()
	p.sandbox.ServeHTTP(rec, req)
	var env struct {
		Result []struct {
			EntityID string `json:"entityId"`
		} `json:"result"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil || len(env.Result) != 1 {
		t.Fatalf("plant: %d %s", rec.Code, rec.Body.String())
	}
	return env.Result[0].EntityID
}
