package server

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics implements transport.Metrics with Prometheus collectors.
type metrics struct {
	reg      *prometheus.Registry
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	stored   prometheus.Counter
	dedup    prometheus.Counter
	conns    prometheus.Gauge
	latency  *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	gcRuns   *prometheus.CounterVec
	gcFreed  prometheus.Counter
	refused  *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg:      prometheus.NewRegistry(),
		bytesIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_bytes_in_total", Help: "Blob frame bytes received from clients."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_bytes_out_total", Help: "Blob frame bytes sent to clients."}),
		stored:   prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_blobs_stored_total", Help: "Blobs whose bytes were new to the namespace that sent them."}),
		dedup:    prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_dedup_hits_total", Help: "Blobs received that the namespace already held."}),
		conns:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "ferry_active_connections", Help: "Authenticated client connections."}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "ferry_request_duration_seconds", Help: "Control request latency by op.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"op"}),
		errors:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_request_errors_total", Help: "Control requests that failed, by op."}, []string{"op"}),
		gcRuns:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_gc_runs_total", Help: "Garbage collections, by result."}, []string{"result"}),
		gcFreed: prometheus.NewCounter(prometheus.CounterOpts{Name: "ferry_gc_freed_bytes_total", Help: "Disk bytes garbage collection returned."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_connections_refused_total",
			Help: "Connections refused or failed before they were served, by reason: handshake, auth, auth-rate, conns-ip, conns-token, retry (a Retry asked for), hello-panics."}, []string{"reason"}),
	}
	m.reg.MustRegister(m.bytesIn, m.bytesOut, m.stored, m.dedup, m.conns, m.latency, m.errors, m.gcRuns, m.gcFreed, m.refused,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) Conn(delta int) { m.conns.Add(float64(delta)) }
func (m *metrics) BytesIn(n int)  { m.bytesIn.Add(float64(n)) }
func (m *metrics) BytesOut(n int) { m.bytesOut.Add(float64(n)) }
func (m *metrics) Blob(stored bool) {
	if stored {
		m.stored.Inc()
	} else {
		m.dedup.Inc()
	}
}

func (m *metrics) Request(op string, d time.Duration, err error) {
	m.latency.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.errors.WithLabelValues(op).Inc()
	}
}

func (m *metrics) Refused(reason string) { m.refused.WithLabelValues(reason).Inc() }

func (m *metrics) gc(freed int64, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.gcRuns.WithLabelValues(result).Inc()
	m.gcFreed.Add(float64(freed))
}

// handler serves /metrics and /healthz (no authentication: neither tells
// anything about any namespace's data).
func (m *metrics) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}
