package edx

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Digest identifies what the event says, whatever body shape carried it: the same event re-sent
// (a retry, or the same event as CloudEvents instead of JSON) has the same digest, and an event id
// reused for different content has another. A time the sender left out is the receive time,
// which differs between retries, so it is left out of the digest too.
func (e Event) Digest() string {
	fields := []string{
		e.Type, strconv.FormatInt(e.UserID, 10), e.Username, strings.ToLower(e.Email), e.Name,
		e.Course.Raw, e.Mode, e.Grade, e.CertificateURL, e.Status, strconv.FormatBool(e.IsPassing),
	}
	if e.Kind == KindEnrollment {
		// Only for enrollments (whose type is in the digest, so this cannot be confused with its
		// absence): the digests of the other kinds are stored with the event ids already
		// handled, and must not change under them.
		fields = append(fields, strconv.FormatBool(e.IsActive))
	}
	var b strings.Builder
	for _, s := range fields {
		// Length-prefixed, so that no two field lists run together into the same text.
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	if !e.TimeMissing {
		b.WriteString(e.Time.UTC().Format(time.RFC3339Nano))
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:16])
}
