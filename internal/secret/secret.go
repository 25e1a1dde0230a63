// Package secret makes new webhook credentials for `bridge secret`: a Standard Webhooks signing
// secret, a bearer token and a query token, each printed with the variable it goes in.
package secret

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
)

const (
	// SecretBytes is the size of a signing key. Standard Webhooks allows 24 to 64 random bytes;
	// 32 matches the HMAC-SHA256 block of security.
	SecretBytes = 32
	// TokenBytes is the entropy of a token: 32 bytes are 43 URL-safe characters, above the
	// bridge's minimum of 32 characters.
	TokenBytes = 32
	// SecretPrefix marks a Standard Webhooks symmetric secret.
	SecretPrefix = "whsec_"
)

// The variables each value goes in (contract section 3).
const (
	EnvSecrets     = "BRIDGE_WEBHOOK_SECRETS"
	EnvTokens      = "BRIDGE_WEBHOOK_TOKENS"
	EnvQueryTokens = "BRIDGE_WEBHOOK_QUERY_TOKENS"
)

// Set is one freshly made set of webhook credentials. A sender needs only one of them.
type Set struct {
	// WebhookSecret is "whsec_" + standard base64 of SecretBytes random bytes; the HMAC key is
	// the decoded bytes.
	WebhookSecret string
	// BearerToken goes in "Authorization: Bearer …".
	BearerToken string
	// QueryToken goes in "?token=…"; it is URL-safe, so it needs no escaping.
	QueryToken string
}

// New makes a Set from the operating system's cryptographic random source.
func New() (Set, error) {
	return From(rand.Reader)
}

// From makes a Set from r, which must be a cryptographic random source (tests pass others).
func From(r io.Reader) (Set, error) {
	key := make([]byte, SecretBytes)
	bearer := make([]byte, TokenBytes)
	query := make([]byte, TokenBytes)
	for _, b := range [][]byte{key, bearer, query} {
		if _, err := io.ReadFull(r, b); err != nil {
			return Set{}, fmt.Errorf("read random bytes: %w", err)
		}
	}
	return Set{
		WebhookSecret: SecretPrefix + base64.StdEncoding.EncodeToString(key),
		BearerToken:   base64.RawURLEncoding.EncodeToString(bearer),
		QueryToken:    base64.RawURLEncoding.EncodeToString(query),
	}, nil
}

// Env is the Set as VARIABLE=value pairs, in the order Write prints them.
func (s Set) Env() [][2]string {
	return [][2]string{
		{EnvSecrets, s.WebhookSecret},
		{EnvTokens, s.BearerToken},
		{EnvQueryTokens, s.QueryToken},
	}
}

// Write prints the Set as an environment file: comment lines starting with "#", then one
// VARIABLE=value line per credential, so the output can be read by `docker run --env-file`, a
// shell's `set -a; . file` or a Kubernetes Secret generator as it is.
func (s Set) Write(w io.Writer) error {
	_, err := fmt.Fprintf(w, `# New webhook credentials for Badge Bridge. Keep them secret.
# A sender needs one of them: Standard Webhooks signatures (the secret), a bearer token, or a
# query token (?token=, for senders that can set no header, such as eox-hooks).
# Each variable takes a comma-separated list: during a rotation list the new value with the old.
%s=%s
%s=%s
%s=%s
`, EnvSecrets, s.WebhookSecret, EnvTokens, s.BearerToken, EnvQueryTokens, s.QueryToken)
	return err
}
