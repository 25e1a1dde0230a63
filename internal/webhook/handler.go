package webhook

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/badgebridge/bridge/internal/durable"
	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/intake"
)

// MaxBody is the largest body accepted (contract 4.1: 413 above it).
const MaxBody = 1 << 20

// IntakeTimeout bounds the ledger write and enqueue of one webhook.
const IntakeTimeout = 10 * time.Second

// DefaultMaxInflight is the default of BRIDGE_WEBHOOK_MAX_INFLIGHT.
const DefaultMaxInflight = 256

// MaxSignedReads bounds the bodies read at once before their sender is known: a Standard Webhooks
// signature covers the body, so it must be read (up to MaxBody each) to authenticate. Anyone can
// send signature headers, so this, not MaxInflight, is what bounds the memory strangers can hold.
const MaxSignedReads = 32

// signedReadWait is how long a signed request waits for a body-read slot before it gets a 503:
// long enough to ride out a burst of real senders, whose small bodies are read in milliseconds.
const signedReadWait = 5 * time.Second

// maxWebhookIDLen bounds the webhook-id header, which becomes the event id (a ledger key) when the
// body has none.
const maxWebhookIDLen = 200

// Intake is what the handler hands events to (intake.Intake).
type Intake interface {
	Handle(ctx context.Context, ev edx.Event, via string) (intake.Result, error)
}

// Handler serves POST /v1/webhooks/openedx.
type Handler struct {
	Auth    *Auth
	Intake  Intake
	Log     *slog.Logger
	Metrics *Metrics
	Now     func() time.Time
	// MaxInflight caps requests handled at once (BRIDGE_WEBHOOK_MAX_INFLIGHT); the rest are
	// answered 503 at once. 0 means DefaultMaxInflight.
	MaxInflight int

	initOnce     sync.Once
	inflight     chan struct{} // one token per request being handled
	signedReads  chan struct{} // one token per body being read before authentication
	readWaitTime time.Duration // signedReadWait; shorter in tests
}

func (h *Handler) init() {
	h.initOnce.Do(func() {
		n := h.MaxInflight
		if n <= 0 {
			n = DefaultMaxInflight
		}
		h.inflight = make(chan struct{}, n)
		h.signedReads = make(chan struct{}, min(n, MaxSignedReads))
		if h.readWaitTime == 0 {
			h.readWaitTime = signedReadWait
		}
	})
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
	code, ans, unread := h.handle(req)
	h.Metrics.answered(code, ans.Status)
	if code == http.StatusServiceUnavailable {
		c.Response().Header().Set("Retry-After", "5")
	}
	if unread {
		// Refused before its body was read: close the connection instead of letting the server
		// wait for the rest of a body nobody will read, which a slow sender could make last until
		// the read timeout.
		c.Response().Header().Set("Connection", "close")
		_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now())
	}
	return c.JSON(code, ans)
}

// handle answers one request; unread is true when it was refused without its body being read.
func (h *Handler) handle(req *http.Request) (code int, ans Answer, unread bool) {
	h.init()
	select {
	case h.inflight <- struct{}{}:
		defer func() { <-h.inflight }()
	default:
		return http.StatusServiceUnavailable, Answer{Message: "too many webhook requests in flight; retry later"}, true
	}
	code, ans, body := h.authenticate(req)
	if code != 0 {
		return code, ans, body == nil
	}
	code, ans = h.process(req, body)
	return code, ans, false
}

// process parses an authenticated body and hands the event to intake.
func (h *Handler) process(req *http.Request, body []byte) (int, Answer) {
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
		return http.StatusOK, Answer{Status: intake.StatusIgnored, Reason: err.Error(), Message: "ignored: " + err.Error()}
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
		msg := "the queue is unavailable; retry later (resending is safe)"
		if errors.Is(err, durable.ErrNotConfirmed) {
			msg = "the event was written but not confirmed by enough Redis replicas (or by the AOF fsync) in time; retry later (resending is safe)"
		}
		return http.StatusServiceUnavailable, Answer{Message: msg, EventID: ev.ID}
	}
	code := http.StatusOK
	if res.Status == intake.StatusConflict {
		code = http.StatusConflict // contract 4.1: this id was already handled with another body
	}
	return code, Answer{Status: res.Status, Message: res.Message, Reason: res.Reason, EventID: ev.ID, Jobs: res.Jobs}
}

// authenticate checks the credential and reads the body, in the order that makes a stranger cost
// the least: a token is checked before the body is read; only a signature, which covers the body,
// needs the body first, and those reads are bounded by MaxSignedReads. A zero code means
// authenticated; body is nil when the answer was decided without reading it to the end.
func (h *Handler) authenticate(req *http.Request) (int, Answer, []byte) {
	signed := Signed(req.Header)
	if signed {
		// Checked before anything can log or store it.
		if problem := checkWebhookID(req.Header.Get("webhook-id")); problem != "" {
			return http.StatusBadRequest, Answer{Message: "malformed request: header webhook-id: " + problem}, nil
		}
	} else if err := h.Auth.VerifyToken(req.Header, req.URL.RawQuery); err != nil {
		return http.StatusUnauthorized, Answer{Message: err.Error()}, nil
	}
	if req.ContentLength > MaxBody {
		return http.StatusRequestEntityTooLarge, Answer{Message: "body over 1 MiB"}, nil
	}
	if signed {
		wait := time.NewTimer(h.readWaitTime)
		defer wait.Stop()
		select {
		case h.signedReads <- struct{}{}:
			defer func() { <-h.signedReads }()
		case <-wait.C:
			return http.StatusServiceUnavailable, Answer{Message: "too many signed webhooks being read; retry later"}, nil
		case <-req.Context().Done():
			return http.StatusServiceUnavailable, Answer{Message: "request cancelled while waiting; retry later"}, nil
		}
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxBody+1))
	if err != nil {
		return http.StatusBadRequest, Answer{Message: "could not read the request body"}, nil
	}
	if len(body) > MaxBody {
		return http.StatusRequestEntityTooLarge, Answer{Message: "body over 1 MiB"}, nil
	}
	if signed {
		if err := h.Auth.VerifySignature(req.Header, body); err != nil {
			return http.StatusUnauthorized, Answer{Message: err.Error()}, body
		}
	}
	return 0, Answer{}, body
}

// checkWebhookID says what is wrong with a webhook-id header, "" when nothing is. An empty id is
// left to the signature check, which refuses it.
func checkWebhookID(id string) string {
	if len(id) > maxWebhookIDLen {
		return "longer than 200 bytes"
	}
	if strings.ContainsFunc(id, unicode.IsControl) || !utf8.ValidString(id) {
		return "contains control characters or invalid UTF-8"
	}
	return ""
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
