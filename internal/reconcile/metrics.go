package reconcile

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the reconcile's Prometheus series; a nil *Metrics records nothing.
type Metrics struct {
	reconciles *prometheus.CounterVec
	duplicates prometheus.Counter
}

// NewMetrics registers the reconcile's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bridge_reconciles_total", Help: "Reconcile jobs by outcome.",
		}, []string{"outcome"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "bridge_duplicate_assertions_revoked_total", Help: "Extra unrevoked assertions found on the host and revoked.",
		}),
	}
	reg.MustRegister(m.reconciles, m.duplicates)
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
