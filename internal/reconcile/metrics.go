package reconcile

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/badgebridge/bridge/internal/badgehost"
)

// Metrics are the reconcile's Prometheus series; a nil *Metrics records nothing.
type Metrics struct {
	reconciles *prometheus.CounterVec
	duplicates prometheus.Counter
	batches    *prometheus.CounterVec
	batchItems prometheus.Counter
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
	m.batches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_batch_awards_total", Help: "Batch awards sent to the badge host, by outcome (ok, unsupported, error).",
	}, []string{"outcome"})
	m.batchItems = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bridge_batch_award_items_total", Help: "Awards sent in batch awards.",
	})
	reg.MustRegister(m.reconciles, m.duplicates, m.batches, m.batchItems)
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

func (m *Metrics) batch(items int, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	switch {
	case errors.Is(err, badgehost.ErrBatchUnsupported):
		outcome = "unsupported"
	case err != nil:
		outcome = "error"
	}
	m.batches.WithLabelValues(outcome).Inc()
	m.batchItems.Add(float64(items))
}
