package queue

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the queue's Prometheus series; a nil *Metrics records nothing.
type Metrics struct {
	swept prometheus.Counter
}

// NewMetrics registers the queue's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{swept: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "bridge_sweeper_requeued_total", Help: "Reconcile jobs queued by the sweeper for owed rows.",
	})}
	reg.MustRegister(m.swept)
	return m
}

func (m *Metrics) requeued(n int) {
	if m != nil {
		m.swept.Add(float64(n))
	}
}
