package eventbus

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/badgebridge/bridge/internal/edx"
)

// Outcomes of an entry, the outcome label of bridge_eventbus_entries_total.
const (
	outcomeProcessed   = "processed"   // recorded by the intake and acknowledged
	outcomeUnsupported = "unsupported" // a type the bridge does not handle, acknowledged
	outcomeDead        = "dead"        // undecodable, copied to <stream>.dead and acknowledged
	outcomeTrimmed     = "trimmed"     // trimmed from the stream before it was processed
	outcomeFailed      = "failed"      // the intake failed; the entry stays pending (counts attempts)
)

// metrics are the consumer's Prometheus series; without a registerer they are kept but not
// exported.
type metrics struct {
	entries      *prometheus.CounterVec
	trimmedTotal *prometheus.CounterVec
	byType       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		entries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_eventbus_entries_total",
			Help: "Event-bus entries by stream and outcome (processed, unsupported, dead, trimmed, failed).",
		}, []string{"stream", "outcome"}),
		trimmedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_eventbus_trimmed_total",
			Help: "Event-bus entries trimmed from the stream before the bridge processed them (lost to the bridge; recover with bridge backfill).",
		}, []string{"stream"}),
		byType: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_eventbus_unsupported_total",
			Help: "Event-bus entries of types the bridge does not handle, acknowledged without decoding, by type.",
		}, []string{"type"}),
	}
	if reg != nil {
		reg.MustRegister(m.entries, m.trimmedTotal, m.byType)
	}
	return m
}

func (m *metrics) outcome(stream, outcome string) {
	m.entries.WithLabelValues(stream, outcome).Inc()
}

func (m *metrics) trimmed(stream string, n int) {
	m.entries.WithLabelValues(stream, outcomeTrimmed).Add(float64(n))
	m.trimmedTotal.WithLabelValues(stream).Add(float64(n))
}

func (m *metrics) unsupported(stream, eventType string) {
	m.entries.WithLabelValues(stream, outcomeUnsupported).Inc()
	m.byType.WithLabelValues(typeLabel(eventType)).Inc()
}

// typeLabel bounds the type label to the Open edX event types the bridge handles and those
// known to share its streams; any other type is "other", so a producer cannot grow the number
// of series by writing new type strings.
func typeLabel(t string) string {
	switch t {
	case edx.TypeCertificateCreated, edx.TypeCertificateChanged, edx.TypeCertificateRevoked,
		edx.TypePassingStatus, edx.TypeCCXPassingStatus,
		"org.openedx.learning.course.enrollment.created.v1",
		"org.openedx.learning.course.enrollment.changed.v1",
		"org.openedx.learning.course.unenrollment.completed.v1",
		"org.openedx.learning.course.persistent_grade_summary.changed.v1",
		"org.openedx.learning.badge.awarded.v1",
		"org.openedx.learning.badge.revoked.v1":
		return t
	}
	return "other"
}
