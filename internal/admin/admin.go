// Package admin serves the operator's API on the admin listener (contract section 7).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
	"github.com/badgebridge/bridge/internal/unmapped"
)

// API holds what the admin routes read and act on.
type API struct {
	Ledger    *ledger.Ledger
	Token     string
	Mapping   *rules.Mapping                             // for /v1/mapping/preview
	Enqueue   func(context.Context, ledger.RowKey) error // queues a reconcile job
	Inspector *asynq.Inspector                           // queue sizes; erasing a learner's queued jobs
	Queue     string                                     // the asynq queue of reconcile jobs
	BusStatus func(context.Context) (any, error)         // event-bus lag and pending, nil when off
	HostLogin func(context.Context) (time.Time, error)   // until when badge-host login is blocked
	// QueuedJob gives the id of the reconcile job waiting for a row ("" for none), so that an
	// erase deletes it; EraseDeadLetters removes the learner's event-bus dead letters.
	QueuedJob        func(context.Context, ledger.RowKey) (string, error)
	EraseDeadLetters func(ctx context.Context, userID int64) (int, error)
	// Unmapped is the shared list of the course keys whose events were ignored because no rule
	// maps them (the most ignored are shown by /v1/status); nil leaves them out.
	Unmapped *unmapped.Store
}

// Register mounts the routes on g. Without a token the admin API is off: every route answers
// 404 so nothing is reachable by accident.
func (a *API) Register(g *echo.Group) {
	g.Use(a.authorize)
	g.GET("/v1/awards", a.awards)
	g.GET("/v1/events/:id", a.event)
	g.GET("/v1/failures", a.failures)
	g.POST("/v1/failures/retry", a.retryFailures)
	g.POST("/v1/mapping/preview", a.preview)
	g.DELETE("/v1/learners/:user_id", a.eraseLearner)
	g.GET("/v1/status", a.status)
	g.GET("/v1/progress", a.progress)
}

func (a *API) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	want := sha256.Sum256([]byte(a.Token))
	return func(c echo.Context) error {
		if a.Token == "" {
			return c.JSON(http.StatusNotFound, map[string]string{"message": "admin API is off: set BRIDGE_ADMIN_TOKEN"})
		}
		scheme, tok, ok := strings.Cut(c.Request().Header.Get("Authorization"), " ")
		ok = ok && strings.EqualFold(scheme, "Bearer") // RFC 7235: the scheme is case-insensitive
		got := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="badge-bridge admin"`)
			return c.JSON(http.StatusUnauthorized, map[string]string{"message": "missing or wrong admin token"})
		}
		return next(c)
	}
}

// Award is one ledger row as the admin API shows it.
type Award struct {
	BadgeClass  string       `json:"badge_class"`
	UserID      int64        `json:"user_id"`
	Desired     string       `json:"desired"`
	State       string       `json:"state"`
	Reason      string       `json:"reason,omitempty"`
	EntityID    string       `json:"entity_id,omitempty"`
	OpenBadgeID string       `json:"open_badge_id,omitempty"`
	Emails      []string     `json:"emails"`
	Generation  int64        `json:"generation"`
	Retries     int          `json:"retries"`
	Version     int64        `json:"version"`
	NextCheck   *time.Time   `json:"next_check,omitempty"`
	UpdatedAt   time.Time    `json:"updated_at"`
	Facts       []rules.Fact `json:"facts"`
}

// toAward shows a row at now. Desired is what the row's facts make it at now, held or not held:
// the decision the reconcile acts on (rules.Desired). The ledger only stores the answer of the
// last reconcile, which a row no reconcile has looked at yet does not have, and which lags
// behind a newer fact or a revoke_after deadline until the next reconcile.
func toAward(r *ledger.Row, now time.Time) Award {
	a := Award{
		BadgeClass: r.Key.BadgeClass, UserID: r.Key.UserID, Desired: desiredName(r.Facts, now), State: r.State,
		Reason: r.Reason, EntityID: r.EntityID, OpenBadgeID: r.OpenBadgeID, Emails: r.Emails,
		Generation: r.Generation, Retries: r.Retries, Version: r.Version,
		UpdatedAt: r.UpdatedAt.UTC(), Facts: r.Facts,
	}
	if !r.NextCheck.IsZero() {
		t := r.NextCheck.UTC()
		a.NextCheck = &t
	}
	if a.Emails == nil {
		a.Emails = []string{}
	}
	return a
}

// Desired states as the admin API shows them (and the reconcile stores them).
const (
	desiredHeld    = "held"
	desiredNotHeld = "not held"
)

func desiredName(facts []rules.Fact, now time.Time) string {
	if held, _ := rules.Desired(facts, rules.Micros(now)); held {
		return desiredHeld
	}
	return desiredNotHeld
}

func (a *API) awards(c echo.Context) error {
	f, err := pageFilter(c)
	if err != nil {
		return message(c, http.StatusBadRequest, err.Error())
	}
	f.Email, f.Course = c.QueryParam("email"), c.QueryParam("course")
	f.BadgeClass, f.State = c.QueryParam("badge_class"), c.QueryParam("state")
	return a.page(c, f, "awards")
}

// pageFilter reads the query parameters every listing takes: user_id, limit and cursor.
func pageFilter(c echo.Context) (ledger.Filter, error) {
	f := ledger.Filter{Cursor: c.QueryParam("cursor")}
	if s := c.QueryParam("user_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return f, errors.New("user_id: want a positive integer")
		}
		f.UserID = n
	}
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return f, errors.New("limit: want 1 to 1000")
		}
		f.Limit = n
	}
	return f, nil
}

// page answers one page of rows under name, with the cursor of the next page.
func (a *API) page(c echo.Context, f ledger.Filter, name string) error {
	p, err := a.Ledger.Page(c.Request().Context(), f)
	if errors.Is(err, ledger.ErrBadCursor) {
		return message(c, http.StatusBadRequest, err.Error())
	}
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	}
	out := make([]Award, 0, len(p.Rows))
	now := time.Now()
	for _, r := range p.Rows {
		out = append(out, toAward(r, now))
	}
	msg := strconv.Itoa(len(out)) + " row(s)"
	if p.Next != "" {
		msg += "; more with ?cursor=" + p.Next
	}
	return c.JSON(http.StatusOK, map[string]any{name: out, "count": len(out), "next_cursor": p.Next, "message": msg})
}

func (a *API) event(c echo.Context) error {
	rec, err := a.Ledger.FindEvent(c.Request().Context(), c.Param("id"))
	if err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"message": "ledger unavailable: " + err.Error()})
	}
	if rec == nil {
		return c.JSON(http.StatusNotFound, map[string]string{"message": "no record of event " + c.Param("id") + " (unknown, or older than BRIDGE_EVENT_RETENTION)"})
	}
	return c.JSON(http.StatusOK, rec)
}
