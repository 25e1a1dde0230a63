package intake

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/testutil"
)

// One id, two bodies: a revocation sent under the id of an earlier award must not pass as a
// duplicate (the badge would stay issued); it is refused as a conflict, counted, and recorded
// nowhere. The same content again is a duplicate, whatever shape it came in.
func TestIntakeRefusesAnIDReusedForOtherContent(t *testing.T) {
	in, _ := newBoundsIntake(t)
	reg := prometheus.NewRegistry()
	in.Metrics = NewMetrics(reg)
	ctx := context.Background()
	at := time.Date(2024, 5, 27, 12, 0, 0, 0, time.UTC)
	award := testutil.CertEvent("same-id", 42, "ada@example.org", edx.TypeCertificateCreated, "downloadable", at)
	if res, err := in.Handle(ctx, award, "webhook"); err != nil || res.Status != StatusAccepted {
		t.Fatalf("award: %+v %v", res, err)
	}
	again := award
	again.Email = "ADA@example.org" // the same event, address in another case
	if res, _ := in.Handle(ctx, again, "webhook"); res.Status != StatusDuplicate {
		t.Fatalf("the same event again: %+v, want duplicate", res)
	}
	revoke := testutil.CertEvent("same-id", 42, "ada@example.org", edx.TypeCertificateRevoked, "unavailable", at)
	res, err := in.Handle(ctx, revoke, "webhook")
	if err != nil || res.Status != StatusConflict || res.Message == "" {
		t.Fatalf("other content under the same id: %+v %v, want conflict", res, err)
	}
	if n := promtest.ToFloat64(in.Metrics.conflicts.WithLabelValues("webhook")); n != 1 {
		t.Fatalf("conflicts counted %v, want 1", n)
	}
	row, _ := in.Ledger.Read(ctx, ledger.RowKey{BadgeClass: testutil.ClassCert, UserID: 42})
	if row == nil || row.Version != 1 {
		t.Fatalf("the refused revocation changed the row: %+v", row)
	}
}
