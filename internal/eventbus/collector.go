package eventbus

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	pendingDesc = prometheus.NewDesc("bridge_eventbus_pending", "Entries delivered to the bridge's group and not yet acknowledged.", []string{"stream"}, nil)
	lagDesc     = prometheus.NewDesc("bridge_eventbus_lag", "Entries in the stream the bridge's group has not read yet (-1 when Redis cannot tell).", []string{"stream"}, nil)
	deadDesc    = prometheus.NewDesc("bridge_eventbus_dead_entries", "Length of the stream's dead-letter stream in the bridge's Redis.", []string{"stream"}, nil)
)

// Collector exposes per-stream pending, lag and dead-letter counts, read from Redis at scrape
// time (three XINFO calls per stream: cheap next to a scrape interval).
func (c *Consumer) Collector() prometheus.Collector { return statusCollector{c} }

type statusCollector struct{ c *Consumer }

func (s statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- lagDesc
	ch <- deadDesc
}

func (s statusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := s.c.Status(ctx)
	if err != nil {
		return // an unreachable bus shows as missing series; the consumer logs the outage
	}
	for _, x := range st {
		ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(x.Pending), x.Stream)
		ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(x.Lag), x.Stream)
		ch <- prometheus.MustNewConstMetric(deadDesc, prometheus.GaugeValue, float64(x.Dead), x.Stream)
	}
}
