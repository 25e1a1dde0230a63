package webhook

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The Standard Webhooks reference test vector (asynq-notes.md 16.3).
const (
	vecSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vecID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vecTS     = "1614265330"
	vecBody   = `{"test": 2432232314}`
	vecSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func signedHeader(id, ts, sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", sig)
	return h
}

func vectorAuth(t *testing.T, secrets ...string) *Auth {
	t.Helper()
	a, err := NewAuth(secrets, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.now = func() time.Time { return time.Unix(1614265330, 0).Add(90 * time.Second) }
	return a
}

func TestSignatureVector(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString(vecSecret[len("whsec_"):])
	if got := "v1," + Sign(key, vecID, vecTS, []byte(vecBody)); got != vecSig {
		t.Fatalf("Sign = %s, want %s", got, vecSig)
	}
}

func TestSignatureChecks(t *testing.T) {
	other := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another-secret-of-24-bytes!!"))
	cases := []struct {
		name    string
		secrets []string
		h       http.Header
		body    string
		ok      bool
	}{
		{"valid", []string{vecSecret}, signedHeader(vecID, vecTS, vecSig), vecBody, true},
		{"rotated: second secret matches", []string{other, vecSecret}, signedHeader(vecID, vecTS, vecSig), vecBody, true},
		{"several signatures, one valid", []string{vecSecret}, signedHeader(vecID, vecTS, "v1,AAAA v1a,xyz "+vecSig), vecBody, true},
		{"tampered body", []string{vecSecret}, signedHeader(vecID, vecTS, vecSig), `{"test": 2432232315}`, false},
		{"tampered id", []string{vecSecret}, signedHeader("msg_other", vecTS, vecSig), vecBody, false},
		{"wrong secret", []string{other}, signedHeader(vecID, vecTS, vecSig), vecBody, false},
		{"stale timestamp", []string{vecSecret}, signedHeader(vecID, strconv.Itoa(1614265330-400), vecSig), vecBody, false},
		{"future timestamp", []string{vecSecret}, signedHeader(vecID, strconv.Itoa(1614265330+400), vecSig), vecBody, false},
		{"missing signature", []string{vecSecret}, signedHeader(vecID, vecTS, ""), vecBody, false},
		{"only v1a", []string{vecSecret}, signedHeader(vecID, vecTS, "v1a,"+vecSig[3:]), vecBody, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := vectorAuth(t, c.secrets...).Verify(c.h, "", []byte(c.body))
			if (err == nil) != c.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("error %v does not wrap ErrUnauthorized", err)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	bearer := "b-0123456789abcdef0123456789abcdef"
	query := "q-0123456789abcdef0123456789abcdef"
	a, err := NewAuth(nil, []string{bearer}, []string{query})
	if err != nil {
		t.Fatal(err)
	}
	hdr := func(v string) http.Header { h := http.Header{}; h.Set("Authorization", v); return h }
	cases := []struct {
		name  string
		h     http.Header
		query string
		ok    bool
	}{
		{"bearer", hdr("Bearer " + bearer), "", true},
		{"wrong bearer", hdr("Bearer " + query), "", false},
		{"basic scheme", hdr("Basic " + bearer), "", false},
		{"scheme is case-insensitive (RFC 7235)", hdr("bearer " + bearer), "", true},
		{"upper-case scheme, two spaces", hdr("BEARER  " + bearer), "", true},
		{"scheme without a token", hdr("Bearer "), "", false},
		{"scheme glued to the token", hdr("Bearer" + bearer), "", false},
		{"query token", http.Header{}, "token=" + query, true},
		{"bearer token in the query is refused", http.Header{}, "token=" + bearer, false},
		{"bad header not rescued by query", hdr("Bearer nope"), "token=" + query, false},
		{"nothing", http.Header{}, "", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := a.Verify(c.h, c.query, nil); (err == nil) != c.ok {
				t.Fatalf("Verify = %v, want ok=%v", err, c.ok)
			}
		})
	}
}
