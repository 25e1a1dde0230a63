package announce

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
)

// The event types the bridge announces (contract 9.4): the ones openedx/credentials emits for
// its own badges, so that Open edX consumers treat Badgr badges the same way.
const (
	TypeAwarded = "org.openedx.learning.badge.awarded.v1"
	TypeRevoked = "org.openedx.learning.badge.revoked.v1"
)

// Origin is BadgeTemplateData.origin: the kind of host that holds the badge class.
const Origin = "badgr"

// Meta is the event metadata that says who produced the event.
type Meta struct {
	Source     string // EventsMetadata.source; default "badge-bridge"
	SourceHost string // the host name
	// SourceLib must be dot-joined integers: the reference consumer (openedx/event-bus-redis)
	// parses it with int() and would fail on anything else. Default: DefaultSourceLib().
	SourceLib string
}

// DefaultSourceLib is the bridge's module version as dot-joined integers ("1.4.0" for a build
// of v1.4.0), or "0.0.0" for a development build.
func DefaultSourceLib() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := numericVersion(bi.Main.Version); v != "" {
			return v
		}
	}
	return "0.0.0"
}

// SourceLib is version (a release's, "1.4.0" or "v1.4.0-rc.1") as dot-joined integers, or
// DefaultSourceLib() when it is not a release version ("dev", empty).
func SourceLib(version string) string {
	if v := numericVersion(version); v != "" {
		return v
	}
	return DefaultSourceLib()
}

// numericVersion turns "v1.4.0" (or "v1.4.0-rc.1+dirty") into "1.4.0"; "" when it is not one.
func numericVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return ""
		}
	}
	return v
}

// BadgeUUID is BadgeData.uuid of an assertion: UUIDv5 in the URL namespace of its openBadgeId
// (the entity id when the host gave no openBadgeId).
func BadgeUUID(openBadgeID string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(openBadgeID)).String()
}

// EventID is the event id of an announcement: UUIDv5 in the URL namespace of the assertion's
// openBadgeId + "#awarded" or "#revoked". The same change announced again (at least once) has
// the same id, so consumers can de-duplicate.
func EventID(kind, openBadgeID string) string {
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(openBadgeID+"#"+kind)).String()
}

// eventType is the Open edX event type of an announcement kind.
func eventType(kind string) (string, error) {
	switch kind {
	case ledger.AnnounceAwarded:
		return TypeAwarded, nil
	case ledger.AnnounceRevoked:
		return TypeRevoked, nil
	}
	return "", fmt.Errorf("unknown announcement kind %q", kind)
}

// Entry builds the event-bus entry of an announcement in the wire format of contract 4.2: the
// fields openedx/event-bus-redis writes, in its order, with event_data the schemaless Avro of
// BadgeData. class is the host's description of the badge class; a zero one (the host no longer
// has the class) gives a template with no name, description or image, and a uuid from the badge
// class entity id.
func Entry(a ledger.Announcement, who ledger.AnnouncedLearner, class badgehost.BadgeClass, m Meta) ([]any, error) {
	typ, err := eventType(a.Kind)
	if err != nil {
		return nil, err
	}
	obi := a.OpenBadgeID
	if obi == "" {
		obi = a.EntityID
	}
	classID := class.OpenBadgeID
	if classID == "" {
		classID = a.Row.BadgeClass
	}
	payload := map[string]any{"badge": map[string]any{
		"uuid": BadgeUUID(obi),
		"user": map[string]any{
			"id": a.Row.UserID, "is_active": true,
			"pii": map[string]any{"username": who.Username, "email": who.Email, "name": who.Name},
		},
		"template": map[string]any{
			"uuid": BadgeUUID(classID), "origin": Origin,
			"name": orNull(class.Name), "description": orNull(class.Description), "image_url": orNull(class.Image),
		},
	}}
	data, err := edx.EncodeAvro(typ, payload)
	if err != nil {
		return nil, fmt.Errorf("announcement of %s: %w", a.Row, err)
	}
	at := a.At
	if at.IsZero() {
		at = time.Now()
	}
	return []any{
		"type", typ,
		"id", EventID(a.Kind, obi),
		"source", m.Source,
		// isoformat() of an aware UTC datetime, as the Python producer writes it.
		"time", at.UTC().Format("2006-01-02T15:04:05.000000-07:00"),
		"minorversion", "0",
		"sourcehost", m.SourceHost,
		"sourcelib", m.SourceLib,
		"event_data", string(data),
	}, nil
}

// orNull is an optional template field: null when the host said nothing.
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}
