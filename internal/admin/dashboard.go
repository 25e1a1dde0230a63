package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
)

// DashboardRoot is where the asynq dashboard is mounted on the admin listener.
const DashboardRoot = "/ui/queues"

// emailLike matches an e-mail address as it may appear in a JSON body: the @ may be written
// as such, JSON-escaped (\u0040, with the backslash itself escaped when the JSON is a string
// inside JSON, as payloads are) or URL-encoded, and either side may hold escaped characters.
// An escape is taken whole with its run of backslashes, and parts stop at quotes, so a
// replacement never leaves a dangling backslash or breaks the JSON around it.
var emailLike = regexp.MustCompile(
	`(?:` + emailChar + `|\\+[nrtbf/])+(?:@|\\+u0040|%40)(?:` + emailChar + `)+`)

const emailChar = `[^\s"'@<>(),;:&?=\\%]|\\+u[0-9a-fA-F]{4}|%[0-9a-fA-F]{2}`

// maskEmails replaces every e-mail address in b.
func maskEmails(b []byte) []byte { return emailLike.ReplaceAll(b, []byte("<email>")) }

// Dashboard serves the asynq dashboard read-only behind HTTP Basic auth: any user name, the admin
// token as password. Anything that looks like an e-mail address is masked in every answer of its
// API, not only in payloads: error messages and task ids can hold one too (reconcile jobs carry
// only a badge class and a user id, but tasks of other producers sharing the Redis might not).
// Without an admin token it is off (404). The caller closes it.
func Dashboard(conn asynq.RedisConnOpt, token string) (http.Handler, func()) {
	if token == "" {
		return http.NotFoundHandler(), func() {}
	}
	h := asynqmon.New(asynqmon.Options{
		RootPath: DashboardRoot, RedisConnOpt: conn, ReadOnly: true,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(func(_ string, payload []byte) string {
			return string(maskEmails(payload))
		}),
		ResultFormatter: asynqmon.ResultFormatterFunc(func(_ string, result []byte) string {
			return string(maskEmails(result))
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
		if !strings.HasPrefix(r.URL.Path, DashboardRoot+"/api/") {
			h.ServeHTTP(w, r) // the UI's own files: no queue data
			return
		}
		masked := &bufferedResponse{header: http.Header{}}
		h.ServeHTTP(masked, r)
		masked.flushTo(w)
	})
	return guarded, func() { _ = h.Close() }
}

// bufferedResponse holds an answer of the dashboard's API so that it can be masked as a whole
// (asynqmon writes JSON in one piece; a page of tasks is bounded by its page size).
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}

// flushTo writes the masked answer to w.
func (b *bufferedResponse) flushTo(w http.ResponseWriter) {
	body := maskEmails(b.body.Bytes())
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(body)
}
