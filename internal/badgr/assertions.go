package badgr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

// assertion reads an assertion of the host's answer. A plaintext identity is preferred; an
// unhashed identity is one too.
func assertion(w *wire.Assertion) badgehost.Assertion {
	a := badgehost.Assertion{
		EntityID:    w.EntityID,
		OpenBadgeID: w.OpenBadgeID,
		BadgeClass:  w.BadgeClass,
		Recipient:   strings.ToLower(w.Recipient.PlaintextIdentity),
		CreatedAt:   wire.ParseTime(w.CreatedAt),
		IssuedOn:    wire.ParseTime(w.IssuedOn),
		Revoked:     w.Revoked,
	}
	if a.Recipient == "" && !strings.Contains(w.Recipient.Identity, "$") {
		a.Recipient = strings.ToLower(w.Recipient.Identity)
	}
	if w.Expires != nil && *w.Expires != "" {
		if t := wire.ParseTime(*w.Expires); !t.IsZero() {
			a.Expires = &t
		}
	}
	if w.RevocationReason != nil {
		a.RevocationReason = *w.RevocationReason
	}
	return a
}

// Award awards badgeClass to r.Email (lowercased: Badgr's duplicate check compares the identity
// as sent, before it lowercases it for storage). It always sends allowDuplicateAwards=false, so
// an unrevoked, unexpired earlier award makes it return badgehost.ErrAlreadyAwarded. A HostError with
// Timeout or a 5xx leaves the outcome unknown: the host may have created the assertion.
func (c *Client) Award(ctx context.Context, badgeClass string, r badgehost.AwardRequest) (badgehost.Assertion, error) {
	a, err := c.award(ctx, badgeClass, r)
	return a, neutral(err)
}

// awardItem is what an award sends: the body of a single award and one item of a batch award,
// so that both make the same assertion and meet the same duplicate check.
func awardItem(r badgehost.AwardRequest) wire.Award {
	identity, hashed, noDuplicates := normalizeEmail(r.Email), true, false
	body := wire.Award{
		Recipient:            &wire.AwardRecipient{Identity: &identity, Type: "email", Hashed: &hashed},
		Notify:               wire.Flag(r.Notify),
		AllowDuplicateAwards: &noDuplicates,
	}
	if !r.IssuedOn.IsZero() {
		// To the microsecond: issuedOn is the event's time, and events are compared to the µs.
		s := wire.FormatISO(r.IssuedOn)
		body.IssuedOn = &s
	}
	if r.Narrative != "" {
		body.Narrative = &r.Narrative
	}
	if r.EvidenceURL != "" {
		body.Evidence = []wire.Evidence{{URL: r.EvidenceURL}}
	}
	if r.Expires != nil {
		s := wire.FormatISO(*r.Expires)
		body.Expires = &s
	}
	return body
}

func (c *Client) award(ctx context.Context, badgeClass string, r badgehost.AwardRequest) (badgehost.Assertion, error) {
	const op = "award"
	req := apiRequest{op: op, method: http.MethodPost, url: c.apiURL("v2", "badgeclasses", badgeClass, "assertions"), body: awardItem(r)}
	if r.IdempotencyKey != "" {
		req.headers = map[string]string{"Idempotency-Key": r.IdempotencyKey}
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return badgehost.Assertion{}, err
	}
	switch {
	case resp.status/100 == 2:
		var got []wire.Assertion
		if err := resp.result(op, &got); err != nil {
			return badgehost.Assertion{}, err
		}
		if len(got) == 0 || got[0].EntityID == "" {
			return badgehost.Assertion{}, &HostError{Op: op, Status: resp.status, Message: "unexpected answer: no assertion in the result"}
		}
		a := assertion(&got[0])
		if a.BadgeClass == "" {
			a.BadgeClass = badgeClass
		}
		return a, nil
	case resp.status == http.StatusBadRequest && resp.env != nil && resp.env.HasValidationError(wire.DuplicateAward):
		return badgehost.Assertion{}, badgehost.ErrAlreadyAwarded
	}
	return badgehost.Assertion{}, resp.hostError(op)
}

// listPageSize is the page size asked for; Badgr allows up to 500, a smaller page keeps each
// call well inside the timeout.
const listPageSize = 100

// maxListPages stops a host whose cursors loop.
const maxListPages = 10000

// A look-up puts every recipient in the query string, and a learner with many (or long)
// addresses would otherwise make a URL the host refuses (414; gunicorn's default request line
// limit is 4094 bytes). Recipients are therefore asked for in batches bounded in number and in
// escaped length.
const (
	maxRecipientsPerList = 20
	maxRecipientQuery    = 3000 // bytes of escaped recipients in one look-up
)

// recipientBatches splits recipients into look-up batches; an address too long for any batch
// still goes alone.
func recipientBatches(recipients []string) [][]string {
	var out [][]string
	var cur []string
	size := 0
	for _, r := range recipients {
		n := len("&recipient=") + len(url.QueryEscape(r))
		if len(cur) > 0 && (len(cur) == maxRecipientsPerList || size+n > maxRecipientQuery) {
			out, cur, size = append(out, cur), nil, 0
		}
		cur = append(cur, r)
		size += n
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Lookup returns the unrevoked assertions of badgeClass for any of emails (lowercased, as Badgr
// matches the stored lowercased identity exactly), expired ones included, following every page.
// Recipients are asked for in batches (recipientBatches); the answers are merged and an
// assertion reported by more than one look-up is returned once.
func (c *Client) Lookup(ctx context.Context, badgeClass string, emails []string) ([]badgehost.Assertion, error) {
	var recipients []string
	seenEmail := map[string]bool{}
	for _, e := range emails {
		e = normalizeEmail(e)
		if e == "" || seenEmail[e] {
			continue
		}
		seenEmail[e] = true
		recipients = append(recipients, e)
	}
	var out []badgehost.Assertion
	seenEntity := map[string]bool{}
	for _, batch := range recipientBatches(recipients) {
		got, err := c.listBatch(ctx, badgeClass, batch)
		if err != nil {
			return nil, neutral(err)
		}
		for _, a := range got {
			if a.EntityID != "" && seenEntity[a.EntityID] {
				continue
			}
			seenEntity[a.EntityID] = true
			out = append(out, a)
		}
	}
	return out, nil
}

// listBatch is Lookup for one batch of distinct, normalised recipients.
func (c *Client) listBatch(ctx context.Context, badgeClass string, recipients []string) ([]badgehost.Assertion, error) {
	q := url.Values{"recipient": recipients}
	q.Set("include_expired", "1")
	q.Set("num", fmt.Sprint(listPageSize))
	return c.listPages(ctx, "list", badgeClass, c.apiURL("v2", "badgeclasses", badgeClass, "assertions")+"?"+q.Encode())
}

// listPages fetches the assertion list at first and every page its rel="next" links lead to,
// leaving revoked assertions out and naming badgeClass where the host leaves the class out.
func (c *Client) listPages(ctx context.Context, op, badgeClass, first string) ([]badgehost.Assertion, error) {
	var out []badgehost.Assertion
	seenPage := map[string]bool{}
	// An assertion the host repeats (on two pages of a cursor that moved) must not look like a
	// second award of the same badge: the caller would revoke one of them as a duplicate.
	seenEntity := map[string]bool{}
	next := first
	for page := 0; next != ""; page++ {
		if page >= maxListPages || seenPage[next] {
			return nil, fmt.Errorf("badgr %s: the host's pagination does not end", op)
		}
		seenPage[next] = true
		resp, err := c.do(ctx, apiRequest{op: op, method: http.MethodGet, url: next})
		if err != nil {
			return nil, err
		}
		if resp.status != http.StatusOK {
			return nil, resp.hostError(op)
		}
		var got []wire.Assertion
		if err := resp.result(op, &got); err != nil {
			return nil, err
		}
		for i := range got {
			// The host leaves revoked assertions out unless asked; filter anyway, in case one
			// does not.
			if got[i].Revoked {
				continue
			}
			a := assertion(&got[i])
			if a.EntityID != "" {
				if seenEntity[a.EntityID] {
					continue
				}
				seenEntity[a.EntityID] = true
			}
			if a.BadgeClass == "" {
				a.BadgeClass = badgeClass
			}
			out = append(out, a)
		}
		if next, err = c.nextPage(next, resp.header.Values("Link")); err != nil {
			return nil, fmt.Errorf("badgr %s: %w", op, err)
		}
	}
	return out, nil
}

// nextPage returns the absolute URL of the rel="next" link, or "" on the last page. A link is
// followed only on the configured host, and always with the configured scheme and port: a proxy
// that makes Badgr build http:// links must not make us send the token in clear text.
func (c *Client) nextPage(current string, linkHeaders []string) (string, error) {
	ref := wire.FindLink(linkHeaders, "next")
	if ref == "" {
		return "", nil
	}
	cur, err := url.Parse(current)
	if err != nil {
		return "", fmt.Errorf("pagination: invalid current URL")
	}
	u, err := cur.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("pagination: invalid next link")
	}
	if !strings.EqualFold(u.Hostname(), c.base.Hostname()) {
		return "", fmt.Errorf("pagination: refusing to follow a link to another host (%s)", u.Hostname())
	}
	u.Scheme, u.Host, u.User = c.base.Scheme, c.base.Host, nil
	return u.String(), nil
}

// revocationDefault is sent when the caller gives no reason: Badgr requires one.
const revocationDefault = "Revoked"

// Revoke revokes an assertion. An assertion that is already revoked, or unknown to the host (404,
// which Badgr also answers when the account may not see it), counts as revoked.
func (c *Client) Revoke(ctx context.Context, entityID, reason string) error {
	return neutral(c.revoke(ctx, entityID, reason))
}

func (c *Client) revoke(ctx context.Context, entityID, reason string) error {
	const op = "revoke"
	if strings.TrimSpace(reason) == "" {
		reason = revocationDefault
	}
	resp, err := c.do(ctx, apiRequest{
		op: op, method: http.MethodDelete,
		url:  c.apiURL("v2", "assertions", entityID),
		body: map[string]string{"revocation_reason": reason},
	})
	if err != nil {
		return err
	}
	switch {
	case resp.status/100 == 2, resp.status == http.StatusNotFound:
		return nil
	case resp.status == http.StatusBadRequest && resp.env != nil && resp.env.HasValidationError(wire.AlreadyRevoked):
		return nil
	}
	return resp.hostError(op)
}

// errNoBadgeClass is a 200 answer without the badge class, which is as good as a 404.
var errNoBadgeClass = errors.New("badgr badge class: no badge class in the host's answer")

// BadgeClass describes a badge class. Badgr answers 404 both for an unknown badge class and for
// one the account may not use; either is a *badgehost.PermanentError.
func (c *Client) BadgeClass(ctx context.Context, entityID string) (badgehost.BadgeClass, error) {
	bc, err := c.badgeClass(ctx, entityID)
	return bc, neutral(err)
}

func (c *Client) badgeClass(ctx context.Context, entityID string) (badgehost.BadgeClass, error) {
	const op = "badge class"
	resp, err := c.do(ctx, apiRequest{op: op, method: http.MethodGet, url: c.apiURL("v2", "badgeclasses", entityID)})
	if err != nil {
		return badgehost.BadgeClass{}, err
	}
	if resp.status != http.StatusOK {
		return badgehost.BadgeClass{}, resp.hostError(op)
	}
	var got []wire.BadgeClass
	if err := resp.result(op, &got); err != nil {
		return badgehost.BadgeClass{}, err
	}
	if len(got) == 0 {
		return badgehost.BadgeClass{}, &badgehost.PermanentError{Reason: op + ": not found", Err: errNoBadgeClass}
	}
	w := got[0]
	return badgehost.BadgeClass{EntityID: w.EntityID, OpenBadgeID: w.OpenBadgeID, Name: w.Name, Description: w.Description, Image: w.Image}, nil
}

// BadgeClassExists reports whether the account can see badgeClass; any other failure is an error.
func (c *Client) BadgeClassExists(ctx context.Context, badgeClass string) (bool, error) {
	_, err := c.BadgeClass(ctx, badgeClass)
	var he *HostError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errNoBadgeClass), errors.As(err, &he) && he.Status == http.StatusNotFound:
		return false, nil
	}
	return false, err
}

func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }
