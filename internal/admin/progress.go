package admin

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/badgebridge/bridge/internal/edx"
	"github.com/badgebridge/bridge/internal/rules"
)

// previewMilestones decides every milestone rule over the learner's record before and after the
// event, and reports those whose state the event would change.
func (a *API) previewMilestones(ctx context.Context, ev edx.Event, change rules.Change) ([]Preview, error) {
	if change.Outcome == nil || len(change.Milestones) == 0 {
		return nil, nil
	}
	lr, err := a.Ledger.Learner(ctx, ev.UserID)
	if err != nil {
		return nil, err
	}
	after, changed := lr.Record.With(change.Course, change.Outcome)
	if !changed {
		return nil, nil
	}
	now := rules.Micros(time.Now())
	var out []Preview
	for _, r := range change.Milestones {
		was, will := r.Milestone.Evaluate(lr.Record, now), r.Milestone.Evaluate(after, now)
		switch {
		case will.Met && (!was.Met || was.At != will.At):
			aw, _ := r.RenderMilestone(change.Learner, will.Courses, time.UnixMicro(will.At).UTC())
			out = append(out, Preview{Rule: r.Name, BadgeClass: r.BadgeClass, Effect: "held", Award: &aw, Courses: will.Courses})
		case was.Met && !will.Met && r.Revoke:
			out = append(out, Preview{Rule: r.Name, BadgeClass: r.BadgeClass, Effect: "not held", Courses: will.Courses})
		}
	}
	return out, nil
}

// MilestoneProgress is where a learner stands on one milestone rule.
type MilestoneProgress struct {
	Rule       string     `json:"rule"`
	BadgeClass string     `json:"badge_class"`
	Met        bool       `json:"met"`
	Since      *time.Time `json:"since,omitempty"` // when it became met: the award's issuedOn
	Until      *time.Time `json:"until,omitempty"` // when it stops being met by itself
	Courses    []string   `json:"courses"`         // the courses that count
	Missing    []string   `json:"missing"`         // course patterns of the groups not met yet
}

// progress answers the learner's record and, for every milestone rule, met or not, which
// courses count and which are missing (contract 7, 9.5).
func (a *API) progress(c echo.Context) error {
	uid, err := strconv.ParseInt(c.QueryParam("user_id"), 10, 64)
	if err != nil || uid <= 0 {
		return message(c, http.StatusBadRequest, "user_id: want a positive integer")
	}
	lr, err := a.Ledger.Learner(c.Request().Context(), uid)
	if err != nil {
		return message(c, http.StatusServiceUnavailable, "ledger unavailable: "+err.Error())
	}
	now := rules.Micros(time.Now())
	out := []MilestoneProgress{}
	if a.Mapping != nil {
		for _, r := range a.Mapping.Rules {
			if r.Milestone == nil {
				continue
			}
			ev := r.Milestone.Evaluate(lr.Record, now)
			p := MilestoneProgress{Rule: r.Name, BadgeClass: r.BadgeClass, Met: ev.Met, Courses: ev.Courses, Missing: ev.Missing}
			if ev.Met {
				p.Since = timeOf(ev.At)
				p.Until = timeOf(ev.Until)
			}
			if p.Courses == nil {
				p.Courses = []string{}
			}
			if p.Missing == nil {
				p.Missing = []string{}
			}
			out = append(out, p)
		}
	}
	runs := make([]string, 0, len(lr.Record))
	for run := range lr.Record {
		runs = append(runs, run)
	}
	sort.Strings(runs)
	record := make([]map[string]any, 0, len(runs))
	for _, run := range runs {
		record = append(record, map[string]any{"course": run, "outcomes": lr.Record[run]})
	}
	return c.JSON(http.StatusOK, map[string]any{
		"message": strconv.Itoa(len(out)) + " milestone rule(s); " + strconv.Itoa(len(runs)) + " course run(s) on record",
		"user_id": uid, "username": lr.Username, "name": lr.Name, "record": record, "milestones": out,
	})
}

func timeOf(us int64) *time.Time {
	if us == 0 {
		return nil
	}
	t := time.UnixMicro(us).UTC()
	return &t
}
