package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"regexp"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// DashboardRoot is where the asynq dashboard is mounted on the admin listener.
const DashboardRoot = "/ui/queues"

var emailLike = regexp.MustCompile(`[^\s"'@<>(),;:]+@[^\s"'@<>(),;:]+`)

// Dashboard serves the asynq dashboard read-only behind HTTP Basic auth: any user name, the admin
// token as password. Payloads are shown with anything that looks like an e-mail address masked
// (reconcile jobs carry only a badge class and a user id, but archived tasks of other producers
// sharing the Redis might not). Without an admin token it is off (404). The caller closes it.
func Dashboard(conn asynq.RedisConnOpt, token string) (http.Handler, func()) {
	if token == "" {
		return http.NotFoundHandler(), func() {}
	}
	h := asynqmon.New(asynqmon.Options{
		RootPath: DashboardRoot, RedisConnOpt: conn, ReadOnly: true,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(func(_ string, payload []byte) string {
			return emailLike.ReplaceAllString(string(payload), "<email>")
		}),
		ResultFormatter: asynqmon.ResultFormatterFunc(func(_ string, result []byte) string {
			return emailLike.ReplaceAllString(string(result), "<email>")
		}),
	})
	want := sha256.Sum256([]byte(token))
	guarded := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, ok := r.BasicAuth()
		got := sha256.Sum256([]byte(pass))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="badge-bridge queues"`)
			http.Error(w, `{"message": "the admin token is the password"}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
	return guarded, func() { _ = h.Close() }
}
