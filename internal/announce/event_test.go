package announce

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hamba/avro/v2"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
)

// BadgeData as the published schema describes it, for decoding with hamba/avro directly.
type wireBadge struct {
	Badge struct {
		UUID string `avro:"uuid"`
		User struct {
			ID       int64 `avro:"id"`
			IsActive bool  `avro:"is_active"`
			PII      struct {
				Username string `avro:"username"`
				Email    string `avro:"email"`
				Name     string `avro:"name"`
			} `avro:"pii"`
		} `avro:"user"`
		Template struct {
			UUID        string  `avro:"uuid"`
			Origin      string  `avro:"origin"`
			Name        *string `avro:"name"`
			Description *string `avro:"description"`
			ImageURL    *string `avro:"image_url"`
		} `avro:"template"`
	} `avro:"badge"`
}

// decodePublished decodes event_data with the .avsc file openedx-events publishes for the type,
// parsed here on its own, not through the bridge's codec.
func decodePublished(t *testing.T, eventType, data string) wireBadge {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "edx", "schemas", eventType+".avsc"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := avro.ParseBytesWithCache(doc, "", &avro.SchemaCache{})
	if err != nil {
		t.Fatal(err)
	}
	var out wireBadge
	if err := avro.Unmarshal(s, []byte(data), &out); err != nil {
		t.Fatalf("decode %s with the published schema: %v", eventType, err)
	}
	return out
}

func fieldsOf(t *testing.T, v []any) map[string]string {
	t.Helper()
	m := map[string]string{}
	for i := 0; i+1 < len(v); i += 2 {
		m[v[i].(string)] = v[i+1].(string)
	}
	return m
}

func TestEntryDecodesWithThePublishedSchema(t *testing.T) {
	const obi = "https://badgr.example/public/assertions/A1"
	at := time.Date(2024, 5, 27, 12, 25, 45, 678901000, time.UTC)
	a := ledger.Announcement{Kind: ledger.AnnounceAwarded, Row: ledger.RowKey{BadgeClass: "CLS", UserID: 42}, EntityID: "A1", OpenBadgeID: obi, At: at}
	who := ledger.AnnouncedLearner{Email: "alice@example.com", Username: "alice", Name: "Alice Liddell", Known: true}
	class := badgehost.BadgeClass{EntityID: "CLS", OpenBadgeID: "https://badgr.example/public/badges/CLS", Name: "Data science", Description: "Finished it", Image: "https://badgr.example/img.png"}
	meta := Meta{Source: "badge-bridge", SourceHost: "worker-1", SourceLib: "1.4.0"}

	v, err := Entry(a, who, class, meta)
	if err != nil {
		t.Fatal(err)
	}
	// The producer's field order, event_data last.
	var order []string
	for i := 0; i < len(v); i += 2 {
		order = append(order, v[i].(string))
	}
	if got := strings.Join(order, ","); got != "type,id,source,time,minorversion,sourcehost,sourcelib,event_data" {
		t.Fatalf("field order %s", got)
	}
	f := fieldsOf(t, v)
	wantID := uuid.NewSHA1(uuid.NameSpaceURL, []byte(obi+"#awarded")).String()
	if f["type"] != TypeAwarded || f["id"] != wantID || f["time"] != "2024-05-27T12:25:45.678901+00:00" ||
		f["minorversion"] != "0" || f["sourcehost"] != "worker-1" || f["sourcelib"] != "1.4.0" || f["source"] != "badge-bridge" {
		t.Fatalf("metadata %v", f)
	}
	b := decodePublished(t, TypeAwarded, f["event_data"]).Badge
	if b.UUID != uuid.NewSHA1(uuid.NameSpaceURL, []byte(obi)).String() {
		t.Fatalf("badge uuid %s", b.UUID)
	}
	if b.User.ID != 42 || !b.User.IsActive || b.User.PII.Email != "alice@example.com" || b.User.PII.Username != "alice" || b.User.PII.Name != "Alice Liddell" {
		t.Fatalf("user %+v", b.User)
	}
	tp := b.Template
	if tp.UUID != uuid.NewSHA1(uuid.NameSpaceURL, []byte(class.OpenBadgeID)).String() || tp.Origin != "badgr" ||
		tp.Name == nil || *tp.Name != "Data science" || tp.Description == nil || *tp.Description != "Finished it" ||
		tp.ImageURL == nil || *tp.ImageURL != class.Image {
		t.Fatalf("template %+v", tp)
	}

	// The same award announced again is the same event; its revocation is another one.
	again, err := Entry(a, who, class, meta)
	if err != nil {
		t.Fatal(err)
	}
	if fieldsOf(t, again)["id"] != f["id"] {
		t.Fatal("the same award got a different event id")
	}
	a.Kind = ledger.AnnounceRevoked
	rv, err := Entry(a, who, class, meta)
	if err != nil {
		t.Fatal(err)
	}
	rf := fieldsOf(t, rv)
	if rf["type"] != TypeRevoked || rf["id"] == f["id"] || rf["id"] != EventID(ledger.AnnounceRevoked, obi) {
		t.Fatalf("revocation metadata %v", rf)
	}
	if decodePublished(t, TypeRevoked, rf["event_data"]).Badge.UUID != b.UUID {
		t.Fatal("the revocation names another badge")
	}
}

// A badge class the host no longer has still gets its announcement, with the optional template
// fields null; an erased learner's is sent with the user id only.
func TestEntryWithoutClassOrLearner(t *testing.T) {
	a := ledger.Announcement{Kind: ledger.AnnounceRevoked, Row: ledger.RowKey{BadgeClass: "CLS", UserID: 7}, EntityID: "A9"}
	v, err := Entry(a, ledger.AnnouncedLearner{}, badgehost.BadgeClass{}, Meta{SourceLib: "0.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	b := decodePublished(t, TypeRevoked, fieldsOf(t, v)["event_data"]).Badge
	if b.UUID != BadgeUUID("A9") || b.User.ID != 7 || b.User.PII.Email != "" || b.Template.Name != nil || b.Template.ImageURL != nil || b.Template.UUID != BadgeUUID("CLS") {
		t.Fatalf("degraded entry %+v", b)
	}
}

// The bridge's own consumer acknowledges its announcements without acting on them: they decode
// as an unsupported type, never as an event.
func TestOwnAnnouncementsAreNotEvents(t *testing.T) {
	for _, kind := range []string{ledger.AnnounceAwarded, ledger.AnnounceRevoked} {
		a := ledger.Announcement{Kind: kind, Row: ledger.RowKey{BadgeClass: "CLS", UserID: 7}, EntityID: "A1", OpenBadgeID: "https://x/A1", At: time.Now()}
		v, err := Entry(a, ledger.AnnouncedLearner{Email: "a@example.org"}, badgehost.BadgeClass{Name: "n"}, Meta{SourceLib: "0.0.0"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = edx.DecodeBusEntry(fieldsOf(t, v), time.Now())
		var ute *edx.UnsupportedTypeError
		if !errors.As(err, &ute) {
			t.Fatalf("%s: the consumer would act on it: %v", kind, err)
		}
	}
}

func TestSourceLibIsDottedIntegers(t *testing.T) {
	for in, want := range map[string]string{"v1.4.0": "1.4.0", "v1.4.0-rc.1": "1.4.0", "(devel)": "", "v2.0.0+incompatible": "2.0.0", "": ""} {
		if got := numericVersion(in); got != want {
			t.Errorf("numericVersion(%q) = %q, want %q", in, got, want)
		}
	}
	// A release image knows its version only from main's ldflags.
	if got := SourceLib("1.4.2"); got != "1.4.2" {
		t.Errorf("SourceLib(1.4.2) = %q", got)
	}
	if got := SourceLib("dev"); got != DefaultSourceLib() {
		t.Errorf("SourceLib(dev) = %q, want the build's %q", got, DefaultSourceLib())
	}
	for _, p := range strings.Split(DefaultSourceLib(), ".") {
		if p == "" || strings.Trim(p, "0123456789") != "" {
			t.Fatalf("DefaultSourceLib %q: the reference consumer parses it with int()", DefaultSourceLib())
		}
	}
}
