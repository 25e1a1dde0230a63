package testutil

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// PostForm posts a form and decodes the JSON answer (nil when it is not JSON).
func PostForm(t testing.TB, target string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(target, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}
