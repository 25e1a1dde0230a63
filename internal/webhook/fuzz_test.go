package webhook

import (
	"net/http"
	"testing"
	"time"
)

// FuzzVerify: any headers, query and body are judged without panicking, and nothing but the
// exact signed message is accepted.
func FuzzVerify(f *testing.F) {
	f.Add(vecID, vecTS, vecSig, vecBody, "")
	f.Add(vecID, vecTS, "v1,"+vecSig[3:]+" v1,AAAA", vecBody, "token=x")
	f.Add("", "", "", "", "token=")
	f.Add("a.b", "99999999999999999999", "v1,", "{}", "%zz")
	f.Fuzz(func(t *testing.T, id, ts, sig, body, query string) {
		a, err := NewAuth([]string{vecSecret}, []string{"bearer-0123456789abcdef0123456789abcdef"}, []string{"query-0123456789abcdef0123456789abcdef"})
		if err != nil {
			t.Fatal(err)
		}
		a.now = func() time.Time { return time.Unix(1614265330, 0) }
		h := http.Header{}
		h.Set("webhook-id", id)
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
		err = a.Verify(h, query, []byte(body))
		exact := id == vecID && ts == vecTS && body == vecBody
		if err == nil && !exact {
			t.Fatalf("accepted a message that is not the signed one: id=%q ts=%q body=%q", id, ts, body)
		}
	})
}
