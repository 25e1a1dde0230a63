package queue

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the queue's Prometheus series; a nil *Metrics records nothing.
type Metrics struct {
	swept  prometheus.Counter
	routed prometheus.Counter
}

// NewMetrics registers the queue's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{swept: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bridge_sweeper_requeued_total", Help: "Reconcile jobs queued by the sweeper for owed rows.",
	})}
	m.routed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bridge_sweeper_bulk_rows_total", Help: "Due rows the sweeper handed to bulk runs of their badge class.",
	})
	reg.MustRegister(m.swept, m.routed)
	return m
}

func (m *Metrics) requeued(n int) {
	if m != nil {
		m.swept.Add(float64(n))
	}
}

func (m *Metrics) routedBulk(n int) {
	if m != nil {
		m.routed.Add(float64(n))
	}
}
