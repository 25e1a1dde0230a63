package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/ledger"
)

func message(c echo.Context, code int, msg string) error {
	return c.JSON(code, map[string]string{"message": msg})
}

func (a *API) failures(c echo.Context) error {
	rows, err := a.Ledger.List(c.Request().Context(), ledger.Filter{State: ledger.StateFailed, Limit: 1000})
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	}
	out := make([]Award, 0, len(rows))
	for _, r := range rows {
		out = append(out, toAward(r))
	}
	return c.JSON(http.StatusOK, map[string]any{"failures": out, "count": len(out)})
}

// retryFailures puts parked rows back to work: all of them, or those named by
// ?badge_class= / ?user_id=.
func (a *API) retryFailures(c echo.Context) error {
	ctx := c.Request().Context()
	f := ledger.Filter{State: ledger.StateFailed, BadgeClass: c.QueryParam("badge_class"), Limit: 100000}
	if s := c.QueryParam("user_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return message(c, http.StatusBadRequest, "user_id: want a positive integer")
		}
		f.UserID = n
	}
	rows, err := a.Ledger.List(ctx, f)
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	}
	var queued []string
	for _, r := range rows {
		if err := a.Ledger.Retry(ctx, r.Key); err != nil {
			return message(c, http.StatusServiceUnavailable, err.Error())
		}
		// The owed mark already guarantees the retry; the job only makes it prompt.
		if a.Enqueue != nil {
			_ = a.Enqueue(ctx, r.Key)
		}
		queued = append(queued, r.Key.String())
	}
	return c.JSON(http.StatusOK, map[string]any{
		"message": strconv.Itoa(len(queued)) + " parked row(s) queued for another reconcile", "rows": queued,
	})
}

// Preview is one rule's verdict on a previewed event.
type Preview struct {
	Rule       string            `json:"rule"`
	BadgeClass string            `json:"badge_class"`
	Effect     string            `json:"effect"` // held, not held, not held after <revoke_after>
	Award      *ledger.AwardText `json:"award,omitempty"`
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
	out := []Preview{}
	for _, r := range a.Mapping.Match(ev) {
		p := Preview{Rule: r.Name, BadgeClass: r.BadgeClass}
		switch {
		case sig == edx.SignalSupports:
			p.Effect = "held"
			aw, _ := r.Render(ev)
			p.Award = &ledger.AwardText{Narrative: aw.Narrative, EvidenceURL: aw.EvidenceURL, Notify: aw.Notify, ExpiresAfter: aw.ExpiresAfter}
		case !r.Revoke || sig == edx.SignalNone:
			continue
		case sig == edx.SignalFailing && r.RevokeAfter > 0:
			p.Effect = "not held after " + r.RevokeAfter.String() + " without passing"
		default:
			p.Effect = "not held"
		}
		out = append(out, p)
	}
	msg := strconv.Itoa(len(out)) + " badge(s) affected; nothing was recorded"
	if sig == edx.SignalNone {
		msg = "certificate status " + ev.Status + " neither awards nor revokes"
	}
	return c.JSON(http.StatusOK, map[string]any{"message": msg, "badges": out})
}

// eraseLearner removes the learner's rows, event records and queued jobs.
func (a *API) eraseLearner(c echo.Context) error {
	ctx := c.Request().Context()
	uid, err := strconv.ParseInt(c.Param("user_id"), 10, 64)
	if err != nil || uid <= 0 {
		return message(c, http.StatusBadRequest, "user_id: want a positive integer")
	}
	keys, err := a.Ledger.Erase(ctx, uid)
	if err != nil {
		return message(c, http.StatusServiceUnavailable, err.Error())
	}
	jobs, err := a.deleteJobs(uid)
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger erased, but queued jobs could not be listed: "+err.Error())
	}
	return c.JSON(http.StatusOK, map[string]any{
		"message": "learner erased from the ledger; assertions on the badge host stay",
		"rows":    len(keys), "jobs": jobs,
	})
}

// deleteJobs removes the learner's pending and archived reconcile jobs. Jobs that find the row
// gone do nothing anyway; this keeps the learner's id out of the queue too.
func (a *API) deleteJobs(uid int64) (int, error) {
	if a.Inspector == nil {
		return 0, nil
	}
	deleted := 0
	suffix := ":" + strconv.FormatInt(uid, 10)
	list := []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){a.Inspector.ListPendingTasks, a.Inspector.ListArchivedTasks}
	for _, ls := range list {
		for page := 1; ; page++ {
			tasks, err := ls(a.Queue, asynq.PageSize(500), asynq.Page(page))
			if err != nil {
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				return deleted, err
			}
			for _, t := range tasks {
				var p struct {
					UserID int64 `json:"user_id"`
				}
				if json.Unmarshal(t.Payload, &p) == nil && p.UserID == uid && strings.Contains(t.ID, suffix+":") {
					if a.Inspector.DeleteTask(a.Queue, t.ID) == nil {
						deleted++
					}
				}
			}
			if len(tasks) < 500 {
				break
			}
		}
	}
	return deleted, nil
}

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
		q, err := a.Inspector.GetQueueInfo(a.Queue)
		switch {
		case err == nil:
			out["queue"] = map[string]int{"pending": q.Pending, "active": q.Active, "scheduled": q.Scheduled,
				"retry": q.Retry, "archived": q.Archived, "completed": q.Completed}
		case errors.Is(err, asynq.ErrQueueNotFound):
			out["queue"] = map[string]int{}
		default:
			out["queue_error"] = err.Error()
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
