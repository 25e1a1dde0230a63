package secret_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/badgebridge/bridge/internal/config"
	"github.com/badgebridge/bridge/internal/secret"
	"github.com/badgebridge/bridge/internal/webhook"
)

// printed runs Write and reads its output back as a shell or --env-file would: comment lines
// skipped, VARIABLE=value lines kept.
func printed(t *testing.T, s secret.Set) map[string]string {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Write(&buf); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("line %q is neither a comment nor VARIABLE=value", line)
		}
		if _, dup := vars[k]; dup {
			t.Fatalf("%s printed twice", k)
		}
		vars[k] = v
	}
	for _, k := range []string{secret.EnvSecrets, secret.EnvTokens, secret.EnvQueryTokens} {
		if vars[k] == "" {
			t.Fatalf("%s not printed:\n%s", k, buf.String())
		}
	}
	if len(vars) != 3 {
		t.Fatalf("want exactly three variables, got %v", vars)
	}
	return vars
}

func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// The printed values must be accepted by the bridge's own configuration validation, alone and as
// the comma-separated lists of a rotation.
func TestPrintedValuesPassConfigValidation(t *testing.T) {
	for i := 0; i < 50; i++ {
		s, err := secret.New()
		if err != nil {
			t.Fatal(err)
		}
		vars := printed(t, s)
		c, err := config.LoadFrom(context.Background(), lookup(vars))
		if err != nil {
			t.Fatalf("configuration refused the printed values: %v\n%v", err, vars)
		}
		if len(c.WebhookSecrets) != 1 || c.WebhookSecrets[0] != s.WebhookSecret ||
			len(c.WebhookTokens) != 1 || c.WebhookTokens[0] != s.BearerToken ||
			len(c.WebhookQueryTokens) != 1 || c.WebhookQueryTokens[0] != s.QueryToken {
			t.Fatalf("configuration read %q %q %q, printed %+v", c.WebhookSecrets, c.WebhookTokens, c.WebhookQueryTokens, s)
		}
	}
	a, _ := secret.New()
	b, _ := secret.New()
	va, vb := printed(t, a), printed(t, b)
	rotation := map[string]string{}
	for k := range va {
		rotation[k] = va[k] + "," + vb[k]
	}
	c, err := config.LoadFrom(context.Background(), lookup(rotation))
	if err != nil {
		t.Fatalf("configuration refused two printed sets as a rotation: %v", err)
	}
	if len(c.WebhookSecrets) != 2 || len(c.WebhookTokens) != 2 || len(c.WebhookQueryTokens) != 2 {
		t.Fatalf("rotation lists not split in two: %+v", c)
	}
}

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestFormat(t *testing.T) {
	s, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := strings.CutPrefix(s.WebhookSecret, "whsec_")
	if !ok {
		t.Fatalf("secret %q lacks whsec_", s.WebhookSecret)
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 24 || len(key) > 64 {
		t.Fatalf("secret decodes to %d bytes (%v); Standard Webhooks wants 24 to 64", len(key), err)
	}
	for name, tok := range map[string]string{"bearer": s.BearerToken, "query": s.QueryToken} {
		if len(tok) < 32 || !urlSafe.MatchString(tok) {
			t.Fatalf("%s token %q: want at least 32 URL-safe characters", name, tok)
		}
	}
	if s.BearerToken == s.QueryToken {
		t.Fatal("bearer and query token are equal; the configuration refuses a token in both lists")
	}
	again, _ := secret.New()
	if again == s {
		t.Fatal("two runs made the same credentials")
	}
}

func TestFromIsDeterministicAndFailsShort(t *testing.T) {
	src := make([]byte, 96)
	for i := range src {
		src[i] = byte(i)
	}
	s, err := secret.From(bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if want := "whsec_" + base64.StdEncoding.EncodeToString(src[:32]); s.WebhookSecret != want {
		t.Fatalf("secret %q, want %q", s.WebhookSecret, want)
	}
	if want := base64.RawURLEncoding.EncodeToString(src[64:96]); s.QueryToken != want {
		t.Fatalf("query token %q, want %q", s.QueryToken, want)
	}
	if _, err := secret.From(bytes.NewReader(src[:95])); err == nil {
		t.Fatal("a short random source must be an error, not a weak credential")
	}
}

// The credentials work end to end with the bridge's webhook authentication: a Standard Webhooks
// signature made with the decoded secret, the bearer token in its header, the query token in
// ?token= (and not the other way round).
func TestCredentialsAuthenticate(t *testing.T) {
	s, err := secret.New()
	if err != nil {
		t.Fatal(err)
	}
	auth, err := webhook.NewAuth([]string{s.WebhookSecret}, []string{s.BearerToken}, []string{s.QueryToken})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(s.WebhookSecret, "whsec_"))
	body := []byte(`{"hello":"world"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", ts)
	h.Set("webhook-signature", "v1,"+webhook.Sign(key, "msg_1", ts, body))
	if err := auth.Verify(h, "", body); err != nil {
		t.Fatalf("signature: %v", err)
	}
	bearer := http.Header{}
	bearer.Set("Authorization", "Bearer "+s.BearerToken)
	if err := auth.Verify(bearer, "", body); err != nil {
		t.Fatalf("bearer token: %v", err)
	}
	if err := auth.Verify(http.Header{}, "token="+s.QueryToken, body); err != nil {
		t.Fatalf("query token: %v", err)
	}
	if err := auth.Verify(http.Header{}, "token="+s.BearerToken, body); err == nil {
		t.Fatal("a bearer token was accepted in the query")
	}
}
