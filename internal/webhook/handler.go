package webhook

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/queue"
)

// MaxBody is the largest body accepted (contract 4.1: 413 above it).
const MaxBody = 1 << 20

// IntakeTimeout bounds the ledger write and enqueue of one webhook.
const IntakeTimeout = 10 * time.Second

// Intake is what the handler hands events to (queue.Intake).
type Intake interface {
	Handle(ctx context.Context, ev edx.Event, via string) (queue.Result, error)
}

// Handler serves POST /v1/webhooks/openedx.
type Handler struct {
	Auth    *Auth
	Intake  Intake
	Log     *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
}

// Answer is the JSON body of every webhook answer.
type Answer struct {
	Status  string   `json:"status,omitempty"`
	Message string   `json:"message"`
	Reason  string   `json:"reason,omitempty"`
	EventID string   `json:"event_id,omitempty"`
	Jobs    []string `json:"jobs,omitempty"`
}

// ServeWebhook is the echo handler.
func (h *Handler) ServeWebhook(c echo.Context) error {
	req := c.Request()
	code, ans := h.handle(req)
	h.Metrics.answered(code, ans.Status)
	if code == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "5")
	}
	return c.JSON(code, ans)
}

func (h *Handler) handle(req *http.Request) (int, Answer) {
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxBody+1))
	if err != nil {
		return http.StatusBadRequest, Answer{Message: "could not read the request body"}
	}
	if len(body) > MaxBody {
		return http.StatusRequestEntityTooLarge, Answer{Message: "body over 1 MiB"}
	}
	if err := h.Auth.Verify(req.Header, req.URL.RawQuery, body); err != nil {
		return http.StatusUnauthorized, Answer{Message: err.Error()}
	}
	now := time.Now()
	if h.Now != nil {
		now = h.Now()
	}
	ev, err := edx.ParseWebhook(edx.WebhookRequest{
		ContentType: req.Header.Get("Content-Type"), Header: req.Header, Body: body, Received: now,
	})
	var unsupported *edx.UnsupportedTypeError
	var field *edx.FieldError
	switch {
	case errors.Is(err, edx.ErrUnsupportedMediaType):
		return http.StatusUnsupportedMediaType, Answer{Message: err.Error()}
	case errors.As(err, &unsupported):
		return http.StatusOK, Answer{Status: queue.StatusIgnored, Reason: err.Error(), Message: "ignored: " + err.Error()}
	case errors.As(err, &field):
		return http.StatusBadRequest, Answer{Message: "malformed event: " + err.Error()}
	case err != nil:
		return http.StatusBadRequest, Answer{Message: "malformed event: " + err.Error()}
	}
	if ev.ID == "" {
		// Standard Webhooks senders keep webhook-id across retries: the next best event id.
		ev.ID = req.Header.Get("webhook-id")
	}
	// Bounded: a Redis that hangs must turn into a 503 the sender retries, not a stuck request.
	ctx, cancel := context.WithTimeout(req.Context(), IntakeTimeout)
	defer cancel()
	res, err := h.Intake.Handle(ctx, ev, "webhook")
	if err != nil {
		h.Log.Error("webhook intake failed; the sender should retry", "event_id", ev.ID, "user_id", ev.UserID, "err", err)
		return http.StatusServiceUnavailable, Answer{Message: "the queue is unavailable; retry later (resending is safe)", EventID: ev.ID}
	}
	return http.StatusOK, Answer{Status: res.Status, Message: res.Message, Reason: res.Reason, EventID: ev.ID, Jobs: res.Jobs}
}

// Metrics count webhook answers; nil records nothing.
type Metrics struct{ answers *prometheus.CounterVec }

// NewMetrics registers the webhook series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{answers: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "bridge_webhook_requests_total", Help: "Webhook requests by HTTP code and intake status.",
	}, []string{"code", "status"})}
	reg.MustRegister(m.answers)
	return m
}

func (m *Metrics) answered(code int, status string) {
	if m != nil {
		m.answers.WithLabelValues(http.StatusText(code), status).Inc()
	}
}
