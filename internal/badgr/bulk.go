package badgr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

// classPageSize is the page size of a whole-class listing: Badgr's maximum, as a class may hold
// many thousands of assertions and every page is a rate-limited request.
const classPageSize = 500

// ListClass lists every unrevoked assertion of badgeClass, expired ones included, following
// every page.
func (c *Client) ListClass(ctx context.Context, badgeClass string) ([]badgehost.Assertion, error) {
	q := url.Values{}
	q.Set("include_expired", "1")
	q.Set("num", strconv.Itoa(classPageSize))
	list, err := c.listPages(ctx, "list class", badgeClass, c.apiURL("v2", "badgeclasses", badgeClass, "assertions")+"?"+q.Encode())
	return list, neutral(err)
}

const opBatch = "batch award"

// maxBatch is the most awards sent in one batch request. Badgr sets no limit, but each item is a
// full award (hash, image bake, maybe an e-mail) done within one HTTP call, and the sandbox and
// the test fakes accept no more.
const maxBatch = 100

// batchTimeout is how many single-request timeouts a batch award may take: Badgr saves and bakes
// an image for every item, so a batch of 100 takes far longer than one award, and a batch that
// times out leaves every item's outcome unknown (each row is then looked up on its own). It stays
// within a row lease (reconcile.Lease: 4 timeouts and 30 s), which the rows of a batch hold.
const batchTimeout = 3

// maxBatchRequests bounds the requests spent on one chunk of maxBatch: Badgr refuses a whole
// batch for any invalid item, so the valid ones are sent again without the refused ones, and a
// host that keeps refusing must not keep us sending.
const maxBatchRequests = 3

// errBatchRefused is the result of a valid item that was never saved because the host kept
// refusing the batches it was in.
var errBatchRefused = errors.New("badgr " + opBatch + ": the host refused every batch this item was sent in, for other items; it was not saved")

// batchItem is one award of a batch, keyed by the lowercased e-mail its result is reported under.
type batchItem struct {
	email string
	body  wire.Award
}

// AwardBatch awards every request in batches of at most maxBatch (POST
// /v2/badgeclasses/{id}/issue), each through the shared rate limit as one request. Results are
// matched to requests by recipient, never by position, and keyed by lowercased e-mail.
//
// When the first request fails, the whole call fails as badgehost.Bulk says (404 and 405 are
// badgehost.ErrBatchUnsupported). Once a request has been answered, earlier results stand, so a
// later failure is reported per item instead: the items of a request whose outcome is unknown
// (timeout, 5xx) get no result, those of a refused one get the refusal, and those never sent get
// a retryable error that keeps any *badgehost.WaitError the failure carried.
func (c *Client) AwardBatch(ctx context.Context, badgeClass string, reqs []badgehost.AwardRequest) (map[string]badgehost.BatchResult, error) {
	items := make([]batchItem, 0, len(reqs))
	seen := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		email := normalizeEmail(r.Email)
		if seen[email] {
			// Badgr checks duplicates against saved assertions only: two items for one
			// recipient in one batch would both be created.
			continue
		}
		seen[email] = true
		items = append(items, batchItem{email: email, body: awardItem(r)})
	}
	out := make(map[string]badgehost.BatchResult, len(items))
	sent := 0
	for start := 0; start < len(items); start += maxBatch {
		end := min(start+maxBatch, len(items))
		pending := items[start:end]
		for tries := 0; len(pending) > 0; tries++ {
			if tries == maxBatchRequests {
				for _, it := range pending {
					out[it.email] = badgehost.BatchResult{Err: errBatchRefused}
				}
				break
			}
			if tries > 0 {
				c.log.Info("badgr: the host refused a batch award for some of its items; sending the valid ones again", "items", len(pending))
			}
			resend, err := c.awardBatch(ctx, badgeClass, pending, out)
			sent++
			if err != nil {
				if sent == 1 {
					return nil, neutral(err)
				}
				err = neutral(err)
				c.log.Warn("badgr: a batch award request failed after earlier ones were answered; reporting its items one by one",
					"items", len(pending), "unsent", len(items)-end, "err", err)
				settleFailed(out, pending, items[end:], err)
				return out, nil
			}
			pending = resend
		}
	}
	return out, nil
}

// awardBatch sends one batch request of at most maxBatch items and records in out what the host
// said of each. It returns the items to send again: valid ones left unsaved because the host
// refused others (Badgr validates the whole batch before saving any).
func (c *Client) awardBatch(ctx context.Context, badgeClass string, items []batchItem, out map[string]badgehost.BatchResult) ([]batchItem, error) {
	body := wire.BatchAward{Assertions: make([]wire.Award, len(items))}
	for i, it := range items {
		body.Assertions[i] = it.body
	}
	// No Idempotency-Key: Badgr reads none, and the items' duplicate check is what protects a
	// repeated batch.
	resp, err := c.do(ctx, apiRequest{op: opBatch, method: http.MethodPost, url: c.apiURL("v2", "badgeclasses", badgeClass, "issue"), body: body,
		timeout: batchTimeout * c.cfg.Timeout})
	if err != nil {
		return nil, err
	}
	switch {
	case resp.status/100 == 2:
		var got []wire.Assertion
		if err := resp.result(opBatch, &got); err != nil {
			return nil, err
		}
		// By recipient, never by position: an item refused while saving is missing from the
		// result, which shifts every later one.
		open := make(map[string]bool, len(items))
		for _, it := range items {
			open[it.email] = true
		}
		for i := range got {
			a := assertion(&got[i])
			if a.EntityID == "" || !open[a.Recipient] {
				continue
			}
			delete(open, a.Recipient)
			if a.BadgeClass == "" {
				a.BadgeClass = badgeClass
			}
			out[a.Recipient] = badgehost.BatchResult{Assertion: a}
		}
		return nil, nil
	case resp.status == http.StatusBadRequest:
		perItem, ok := resp.env.ItemErrors(len(items))
		if !ok {
			return nil, resp.hostError(opBatch)
		}
		desc := "bad request"
		if resp.env.Status != nil && resp.env.Status.Description != "" {
			desc = resp.env.Status.Description
		}
		var resend []batchItem
		for i, it := range items {
			switch msgs := perItem[i]; {
			case len(msgs) == 0:
				resend = append(resend, it)
			case hasDuplicate(msgs):
				out[it.email] = badgehost.BatchResult{Err: badgehost.ErrAlreadyAwarded}
			default:
				he := &HostError{Op: opBatch, Status: resp.status, Message: cleanMessage(desc + ": " + strings.Join(msgs, "; "))}
				out[it.email] = badgehost.BatchResult{Err: neutral(he)}
			}
		}
		return resend, nil
	case resp.status == http.StatusNotFound, resp.status == http.StatusMethodNotAllowed:
		// Not a HostError in the chain: neutral would make the 404 a *PermanentError, and the
		// caller is to fall back to single awards, not park. Badgr also answers 404 for an
		// unknown class; the single awards then report that.
		return nil, fmt.Errorf("badgr %s: %d: %w", opBatch, resp.status, badgehost.ErrBatchUnsupported)
	}
	return nil, resp.hostError(opBatch)
}

func hasDuplicate(msgs []string) bool {
	for _, m := range msgs {
		if strings.Contains(m, wire.DuplicateAward) {
			return true
		}
	}
	return false
}

// settleFailed records in out a failed batch request that was not the call's first (err as
// neutral made it): failed are the items it carried, unsent those of later chunks.
func settleFailed(out map[string]badgehost.BatchResult, failed, unsent []batchItem, err error) {
	if !outcomeUnknown(err) {
		for _, it := range failed {
			out[it.email] = badgehost.BatchResult{Err: err}
		}
	}
	ns := notSent(err)
	for _, it := range unsent {
		out[it.email] = badgehost.BatchResult{Err: ns}
	}
}

// outcomeUnknown reports whether a failed batch request may have created assertions: it timed
// out or lost its connection, the host failed (Badgr saves the items one by one, so a 5xx may
// come after some were saved), the caller gave up while it was in flight, or a 2xx answer could
// not be read.
func outcomeUnknown(err error) bool {
	var he *HostError
	if errors.As(err, &he) && he.Op == opBatch {
		return he.Timeout || he.Status == 0 || he.Status/100 == 2 || he.Status >= 500
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// notSent is the result of an item never sent because an earlier request of its batch failed. It
// keeps a wait the failure asks for, but not a *badgehost.PermanentError: the host refused other
// items, and this one must stay retryable.
func notSent(cause error) error {
	const msg = "badgr " + opBatch + ": not sent, as an earlier request of the batch failed"
	var perm *badgehost.PermanentError
	if errors.As(cause, &perm) {
		return fmt.Errorf("%s: %s", msg, cause.Error())
	}
	return fmt.Errorf("%s: %w", msg, cause)
}

var _ badgehost.Bulk = (*Client)(nil)
