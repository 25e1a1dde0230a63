package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
	"github.com/badgebridge/bridge/internal/rules"
)

func message(c echo.Context, code int, msg string) error {
	return c.JSON(code, map[string]string{"message": msg})
}

func (a *API) failures(c echo.Context) error {
	f, err := pageFilter(c)
	if err != nil {
		return message(c, http.StatusBadRequest, err.Error())
	}
	f.State, f.BadgeClass = ledger.StateFailed, c.QueryParam("badge_class")
	return a.page(c, f, "failures")
}

// retryBatch is how many parked rows one round trip puts back.
const retryBatch = 500

// retryFailures puts parked rows back to work: all of them, or those named by
// ?badge_class= / ?user_id=. It walks the index of parked rows a batch at a time, so any number
// of them costs bounded memory; the sweeper queues each at its next pass.
func (a *API) retryFailures(c echo.Context) error {
	ctx := c.Request().Context()
	f := ledger.Filter{State: ledger.StateFailed, BadgeClass: c.QueryParam("badge_class"), Limit: retryBatch}
	if s := c.QueryParam("user_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return message(c, http.StatusBadRequest, "user_id: want a positive integer")
		}
		f.UserID = n
	}
	total, batches := 0, 0
	var sample []string
	for {
		p, err := a.Ledger.Page(ctx, f)
		if err != nil {
			return message(c, http.StatusServiceUnavailable, fmt.Sprintf("ledger unavailable after %d row(s) were put back: %v", total, err))
		}
		keys := make([]ledger.RowKey, 0, len(p.Rows))
		for _, r := range p.Rows {
			keys = append(keys, r.Key)
			if len(sample) < maxListed {
				sample = append(sample, r.Key.String())
			}
		}
		n, err := a.Ledger.Retry(ctx, keys...)
		total += n
		if err != nil {
			return message(c, http.StatusServiceUnavailable, fmt.Sprintf("%v (%d row(s) were put back before)", err, total))
		}
		if len(keys) > 0 {
			batches++
		}
		if p.Next == "" {
			break
		}
		f.Cursor = p.Next
	}
	return c.JSON(http.StatusOK, map[string]any{
		"message": strconv.Itoa(total) + " parked row(s) put back; the workers reconcile them at their next sweep",
		"count":   total, "batches": batches, "rows": sample,
	})
}

// maxListed caps the row keys an answer lists by name; counts cover the rest.
const maxListed = 100

// Preview is one rule's verdict on a previewed event.
type Preview struct {
	Rule       string           `json:"rule"`
	BadgeClass string           `json:"badge_class"`
	Effect     string           `json:"effect"` // held, not held, not held after <revoke_after>
	Award      *rules.AwardText `json:"award,omitempty"`
	Courses    []string         `json:"courses,omitempty"` // a milestone: the courses that count
}

// preview answers which badges an event would make held or not held, without recording it.
func (a *API) preview(c echo.Context) error {
	req := c.Request()
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20+1))
	if err != nil || len(body) > 1<<20 {
		return message(c, http.StatusRequestEntityTooLarge, "body over 1 MiB")
	}
	ev, err := edx.ParseWebhook(edx.WebhookRequest{ContentType: req.Header.Get("Content-Type"), Header: req.Header, Body: body, Received: time.Now()})
	var unsupported *edx.UnsupportedTypeError
	switch {
	case errors.Is(err, edx.ErrUnsupportedMediaType):
		return message(c, http.StatusUnsupportedMediaType, err.Error())
	case errors.As(err, &unsupported):
		return c.JSON(http.StatusOK, map[string]any{"message": "ignored: " + err.Error(), "badges": []Preview{}})
	case err != nil:
		return message(c, http.StatusBadRequest, "malformed event: "+err.Error())
	}
	sig := ev.Signal()
	change, _ := a.Mapping.Change(ev, true)
	out := []Preview{}
	for _, u := range change.Updates {
		p := Preview{Rule: u.Rule, BadgeClass: u.BadgeClass}
		switch {
		case u.Signal == edx.SignalSupports:
			p.Effect = "held"
			aw := u.Award
			p.Award = &aw
		case u.Signal == edx.SignalFailing && u.RevokeAfter > 0:
			p.Effect = "not held after " + u.RevokeAfter.String() + " without passing"
		default:
			p.Effect = "not held"
		}
		out = append(out, p)
	}
	milestones, err := a.previewMilestones(c.Request().Context(), ev, change)
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	}
	out = append(out, milestones...)
	msg := strconv.Itoa(len(out)) + " badge(s) affected; nothing was recorded"
	if sig == edx.SignalNone {
		msg = "certificate status " + ev.Status + " neither awards nor revokes"
	}
	return c.JSON(http.StatusOK, map[string]any{"message": msg, "badges": out})
}

// eraseLearner removes the learner's queued jobs, rows, facts, event records and dead letters.
// It collects the ids of everything first, then deletes, so nothing is skipped by deleting
// while paging. Assertions on the badge host stay.
func (a *API) eraseLearner(c echo.Context) error {
	ctx := c.Request().Context()
	uid, err := strconv.ParseInt(c.Param("user_id"), 10, 64)
	if err != nil || uid <= 0 {
		return message(c, http.StatusBadRequest, "user_id: want a positive integer")
	}
	rows, err := a.Ledger.LearnerRows(ctx, uid)
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	}
	var jobs []string
	if a.QueuedJob != nil {
		for _, k := range rows {
			id, err := a.QueuedJob(ctx, k)
			if err != nil {
				return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
			}
			if id != "" {
				jobs = append(jobs, id)
			}
		}
	}
	erased, err := a.Ledger.Erase(ctx, uid)
	if err != nil {
		return message(c, http.StatusServiceUnavailable, err.Error())
	}
	deleted := 0
	if a.Inspector != nil {
		for _, id := range jobs {
			// A job that is running cannot be deleted; it finds its row gone and writes nothing.
			if a.Inspector.DeleteTask(a.Queue, id) == nil {
				deleted++
			}
		}
	}
	dead := 0
	if a.EraseDeadLetters != nil {
		if dead, err = a.EraseDeadLetters(ctx, uid); err != nil {
			return message(c, http.StatusServiceUnavailable, "ledger erased, but dead letters could not be erased (retry the erase): "+err.Error())
		}
	}
	return c.JSON(http.StatusOK, map[string]any{
		"message": "learner erased; events from before now are refused for this learner; assertions on the badge host stay",
		"rows":    len(erased.Rows), "jobs": deleted, "events": erased.Events, "dead_letters": dead,
	})
}

// queueInfo reads the reconcile queue's sizes. A queue nobody has used yet (a fresh install) is
// an empty one: asynq's GetQueueInfo reports it with an internal NOT_FOUND error that
// asynq.ErrQueueNotFound does not match, so the list of queues asynq knows decides. When the
// queue came into use between the two calls, it is read once more.
func (a *API) queueInfo() (*asynq.QueueInfo, error) {
	for attempt := 0; ; attempt++ {
		q, err := a.Inspector.GetQueueInfo(a.Queue)
		switch {
		case err == nil:
			return q, nil
		case errors.Is(err, asynq.ErrQueueNotFound):
			return &asynq.QueueInfo{}, nil
		}
		known, lerr := a.Inspector.Queues()
		if lerr != nil {
			return nil, err
		}
		if !slices.Contains(known, a.Queue) {
			return &asynq.QueueInfo{}, nil
		}
		if attempt > 0 {
			return nil, err
		}
	}
}

// ignoredShown is how many of the most ignored course keys /v1/status shows.
const ignoredShown = 10

func (a *API) status(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	out := map[string]any{}
	total, due, err := a.Ledger.Owed(ctx, time.Now())
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	}
	out["owed_rows"], out["owed_due"] = total, due
	if a.Inspector != nil {
		if q, err := a.queueInfo(); err != nil {
			out["queue_error"] = err.Error()
		} else {
			out["queue"] = map[string]int{"pending": q.Pending, "active": q.Active, "scheduled": q.Scheduled,
				"retry": q.Retry, "archived": q.Archived, "completed": q.Completed}
		}
	}
	login := map[string]any{"blocked": false}
	if a.HostLogin != nil {
		until, err := a.HostLogin(ctx)
		switch {
		case err != nil:
			login["error"] = err.Error()
		case !until.IsZero():
			login["blocked"], login["until"] = true, until.UTC()
		}
	} else {
		login["state"] = "unknown: BRIDGE_BADGR_URL not set in this process"
	}
	out["host_login"] = login
	if a.Unmapped != nil {
		top, tracked, err := a.Unmapped.Top(ctx, ignoredShown)
		if err != nil {
			out["ignored_courses_error"] = err.Error()
		} else {
			out["ignored_courses"] = map[string]any{"tracked": tracked, "top": top}
		}
	}
	if a.BusStatus != nil {
		st, err := a.BusStatus(ctx)
		if err != nil {
			out["eventbus_error"] = err.Error()
		} else {
			out["eventbus"] = st
		}
	}
	out["message"] = "ok"
	return c.JSON(http.StatusOK, out)
}
