package testutil

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// Host is a badge host served in process (sandbox.Host): it builds its links from its base URL.
type Host interface {
	http.Handler
	SetBaseURL(string)
}

// ServeHost serves h on a loopback HTTP server closed at the end of the test, tells it its base
// URL and returns it.
func ServeHost(t testing.TB, h Host) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	h.SetBaseURL(srv.URL)
	return srv.URL
}

// WriteFile writes content to a file named name in a directory of the test's own and returns
// its path.
func WriteFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
