// Package wire is the Badgr v2 wire format: the JSON shapes of assertions, badge classes and
// awards, the {status, result} envelope, media types, timestamps and identifiers. The client
// (internal/badgr) reads it and the sandbox host (internal/sandbox) writes it; keeping it here
// lets the two agree without either importing the other.
package wire

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Media types of the issuing API. Badgr answers JSON-LD unless the client asks for plain JSON.
const (
	MediaJSON   = "application/json"
	MediaJSONLD = "application/ld+json"
)

// Texts of Badgr's refusals that callers must recognise (badgr-api.md sections 6 and 8).
const (
	// DuplicateAward starts the refusal of an award under allowDuplicateAwards=false.
	DuplicateAward = "A previous award of this badge already exists"
	// AlreadyRevoked is the refusal to revoke an assertion twice.
	AlreadyRevoked = "Assertion is already revoked"
)

// Assertion is an assertion as BadgeInstanceSerializerV2 renders it. Nullable fields are
// pointers or raw values so that a host can send null where Badgr does.
type Assertion struct {
	EntityType            string         `json:"entityType,omitempty"`
	EntityID              string         `json:"entityId"`
	OpenBadgeID           string         `json:"openBadgeId"`
	CreatedAt             string         `json:"createdAt"`
	CreatedBy             string         `json:"createdBy,omitempty"`
	BadgeClass            string         `json:"badgeclass"`
	BadgeClassOpenBadgeID string         `json:"badgeclassOpenBadgeId,omitempty"`
	Issuer                string         `json:"issuer,omitempty"`
	IssuerOpenBadgeID     string         `json:"issuerOpenBadgeId,omitempty"`
	Image                 string         `json:"image,omitempty"`
	Recipient             Recipient      `json:"recipient"`
	IssuedOn              string         `json:"issuedOn"`
	Narrative             *string        `json:"narrative"`
	Evidence              []Evidence     `json:"evidence"`
	Revoked               bool           `json:"revoked"`
	RevocationReason      *string        `json:"revocationReason"`
	Acceptance            string         `json:"acceptance,omitempty"`
	Expires               *string        `json:"expires"`
	Extensions            map[string]any `json:"extensions"`
}

// Recipient is an assertion's recipient. Identity is the salted hash when Hashed; hosts add
// the plaintext identity for the issuer's own use.
type Recipient struct {
	Identity          string `json:"identity"`
	Hashed            bool   `json:"hashed"`
	Type              string `json:"type"`
	PlaintextIdentity string `json:"plaintextIdentity,omitempty"`
	Salt              string `json:"salt,omitempty"`
}

// Evidence is one evidence item; Badgr requires a URL or a narrative.
type Evidence struct {
	URL       string `json:"url,omitempty"`
	Narrative string `json:"narrative,omitempty"`
}

// Award is the body of an award (and one item of a batch award). Pointers tell an absent field
// from an empty one, as the host's validation must.
type Award struct {
	Recipient            *AwardRecipient `json:"recipient,omitempty"`
	IssuedOn             *string         `json:"issuedOn,omitempty"`
	Narrative            *string         `json:"narrative,omitempty"`
	Evidence             []Evidence      `json:"evidence,omitempty"`
	Notify               Flag            `json:"notify"`
	Expires              *string         `json:"expires"`
	AllowDuplicateAwards *bool           `json:"allowDuplicateAwards,omitempty"`
}

// BatchAward is the body of a batch award (POST /v2/badgeclasses/{id}/issue). Badgr wants an
// object: a bare array of awards, although its API description says "array", is refused.
// Its top-level create_notification is ignored by the v2 serializer, so it is not sent; each
// item's notify counts.
type BatchAward struct {
	Assertions []Award `json:"assertions"`
}

// AwardRecipient is the recipient of an award as sent.
type AwardRecipient struct {
	Identity *string `json:"identity"`
	Type     string  `json:"type,omitempty"`
	Hashed   *bool   `json:"hashed,omitempty"`
}

// Flag is a boolean that Badgr also accepts as "on"/"off" or "true"/"false" (HTML forms), so
// a host decoding it must not refuse those.
type Flag bool

// UnmarshalJSON reads true/false, "on"/"off", "true"/"false" and null.
func (f *Flag) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
		*f = false
	case bool:
		*f = Flag(x)
	case string:
		*f = Flag(strings.EqualFold(x, "on") || strings.EqualFold(x, "true"))
	default:
		return fmt.Errorf("wire: %s is not a boolean", b)
	}
	return nil
}

// BadgeClass is a badge class as BadgeClassSerializerV2 renders it.
type BadgeClass struct {
	EntityType        string          `json:"entityType,omitempty"`
	EntityID          string          `json:"entityId"`
	OpenBadgeID       string          `json:"openBadgeId"`
	CreatedAt         string          `json:"createdAt,omitempty"`
	CreatedBy         string          `json:"createdBy,omitempty"`
	Issuer            string          `json:"issuer,omitempty"`
	IssuerOpenBadgeID string          `json:"issuerOpenBadgeId,omitempty"`
	Name              string          `json:"name"`
	Image             string          `json:"image"`
	Description       string          `json:"description"`
	CriteriaURL       *string         `json:"criteriaUrl"`
	CriteriaNarrative string          `json:"criteriaNarrative"`
	Alignments        []any           `json:"alignments"`
	Tags              []string        `json:"tags"`
	Expires           json.RawMessage `json:"expires"`
	Extensions        map[string]any  `json:"extensions"`
}

// Issuer is an issuer as IssuerSerializerV2 renders it (the fields the sandbox serves).
type Issuer struct {
	EntityType  string `json:"entityType"`
	EntityID    string `json:"entityId"`
	OpenBadgeID string `json:"openBadgeId"`
	Name        string `json:"name"`
	Email       string `json:"email"`
	URL         string `json:"url"`
	Description string `json:"description"`
}

// ParseTime reads the ISO 8601 forms hosts use: RFC 3339 with Z or an offset (Python's
// isoformat gives +00:00), or no zone at all (taken as UTC). Unparseable → zero.
func ParseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// FormatMicros is Django REST framework's datetime rendering with microseconds, in UTC with Z.
func FormatMicros(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// FormatISO is FormatMicros without a zero fraction, as DRF renders whole seconds.
func FormatISO(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05Z")
	}
	return FormatMicros(t)
}

// NewEntityID returns a Badgr identifier: a random 128-bit value, URL-safe base64 without
// padding (22 characters).
func NewEntityID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

// RandomHex returns n random bytes, hex-encoded.
func RandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// MediaType is the lowercased media type of a Content-Type or Accept entry, parameters dropped.
func MediaType(contentType string) string {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.TrimSpace(strings.ToLower(mt))
}
