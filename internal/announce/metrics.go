package announce

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/badgebridge/bridge/internal/ledger"
)

// Metrics are the publisher's Prometheus series; a nil *Metrics records nothing.
type Metrics struct {
	sent        *prometheus.CounterVec
	fails       *prometheus.CounterVec
	unreadable  prometheus.Counter
	outboxLen   prometheus.Gauge
	outboxAge   prometheus.Gauge
	outboxDrops prometheus.Gauge
}

// NewMetrics registers the publisher's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_announcements_published_total", Help: "Awards and revocations announced on the event bus, by kind (at least once: a resend counts again).",
		}, []string{"kind"}),
		fails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_announce_failures_total", Help: "Publisher cycles that failed, by what failed (bus, ledger, host).",
		}, []string{"op"}),
		unreadable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_announce_unreadable_total", Help: "Outbox entries that could not be read and were dropped.",
		}),
		outboxLen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_announce_outbox_entries", Help: "Announcements waiting in the outbox.",
		}),
		outboxAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_announce_outbox_oldest_seconds", Help: "Age of the oldest waiting announcement (0: none).",
		}),
		outboxDrops: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "bridge_announce_outbox_dropped", Help: "Announcements the outbox cap pushed out, as the bridge's Redis counts them.",
		}),
	}
	reg.MustRegister(m.sent, m.fails, m.unreadable, m.outboxLen, m.outboxAge, m.outboxDrops)
	return m
}

func (m *Metrics) published(kind string) {
	if m != nil {
		m.sent.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) failed(op string) {
	if m != nil {
		m.fails.WithLabelValues(op).Inc()
	}
}

func (m *Metrics) dropped(n int) {
	if m != nil && n > 0 {
		m.unreadable.Add(float64(n))
	}
}

func (m *Metrics) outbox(s ledger.OutboxStats) {
	if m == nil {
		return
	}
	m.outboxLen.Set(float64(s.Len))
	age := 0.0
	if !s.Oldest.IsZero() {
		age = time.Since(s.Oldest).Seconds()
	}
	m.outboxAge.Set(age)
	m.outboxDrops.Set(float64(s.Dropped))
}
