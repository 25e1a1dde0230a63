package queue

import (
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the queue's Prometheus series; a nil *Metrics records nothing.
type Metrics struct {
	reconciles *prometheus.CounterVec
	duplicates prometheus.Counter
	swept      prometheus.Counter
}

// NewMetrics registers the queue's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_reconciles_total", Help: "Reconcile jobs by outcome.",
		}, []string{"outcome"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_duplicate_assertions_revoked_total", Help: "Extra unrevoked assertions found on the host and revoked.",
		}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_sweeper_requeued_total", Help: "Reconcile jobs queued by the sweeper for owed rows.",
		}),
	}
	reg.MustRegister(m.reconciles, m.duplicates, m.swept)
	return m
}

func (m *Metrics) reconciled(outcome string) {
	if m != nil {
		m.reconciles.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) duplicateRevoked() {
	if m != nil {
		m.duplicates.Inc()
	}
}

func (m *Metrics) requeued(n int) {
	if m != nil {
		m.swept.Add(float64(n))
	}
}

func jitter(max time.Duration) time.Duration { return time.Duration(rand.Int64N(int64(max) + 1)) }
