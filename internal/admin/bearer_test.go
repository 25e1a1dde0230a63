package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// RFC 7235: the auth scheme name is case-insensitive; some clients send "bearer".
func TestAdminBearerSchemeCaseInsensitive(t *testing.T) {
	e, _ := setup(t, token)
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		req := httptest.NewRequest(http.MethodGet, "/v1/awards", nil)
		req.Header.Set("Authorization", scheme+" "+token)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			t.Errorf("scheme %q: %d %s", scheme, rec.Code, rec.Body.String())
		}
	}
}
