package badgr

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AwardRequest describes one award. Email is personal data: it goes to the host and nowhere else.
type AwardRequest struct {
	Email          string
	IssuedOn       time.Time // zero: the host's now
	Narrative      string
	EvidenceURL    string
	Notify         bool
	Expires        *time.Time
	IdempotencyKey string // sent as Idempotency-Key; Badgr ignores it, other hosts may honour it
}

// Assertion is an awarded badge as the host reports it.
type Assertion struct {
	EntityID         string
	OpenBadgeID      string
	BadgeClass       string
	Recipient        string // plaintext identity, lowercased
	CreatedAt        time.Time
	IssuedOn         time.Time
	Expires          *time.Time
	Revoked          bool
	RevocationReason string
}

// wireAssertion is an assertion in Badgr's v2 JSON.
type wireAssertion struct {
	EntityID    string `json:"entityId"`
	OpenBadgeID string `json:"openBadgeId"`
	BadgeClass  string `json:"badgeclass"`
	Recipient   struct {
		Identity          string `json:"identity"`
		PlaintextIdentity string `json:"plaintextIdentity"`
	} `json:"recipient"`
	CreatedAt        string  `json:"createdAt"`
	IssuedOn         string  `json:"issuedOn"`
	Expires          *string `json:"expires"`
	Revoked          bool    `json:"revoked"`
	RevocationReason *string `json:"revocationReason"`
}

func (w *wireAssertion) assertion() Assertion {
	a := Assertion{
		EntityID:    w.EntityID,
		OpenBadgeID: w.OpenBadgeID,
		BadgeClass:  w.BadgeClass,
		Recipient:   strings.ToLower(w.Recipient.PlaintextIdentity),
		CreatedAt:   parseTime(w.CreatedAt),
		IssuedOn:    parseTime(w.IssuedOn),
		Revoked:     w.Revoked,
	}
	if a.Recipient == "" && !strings.Contains(w.Recipient.Identity, "$") {
		// An unhashed identity is the plaintext one.
		a.Recipient = strings.ToLower(w.Recipient.Identity)
	}
	if w.Expires != nil && *w.Expires != "" {
		if t := parseTime(*w.Expires); !t.IsZero() {
			a.Expires = &t
		}
	}
	if w.RevocationReason != nil {
		a.RevocationReason = *w.RevocationReason
	}
	return a
}

// parseTime reads the ISO 8601 forms hosts use: RFC 3339 with Z or an offset (Python's
// isoformat gives +00:00), or no zone at all (taken as UTC). Unparseable → zero.
func parseTime(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// wireAward is the body of an award.
type wireAward struct {
	Recipient struct {
		Identity string `json:"identity"`
		Type     string `json:"type"`
		Hashed   bool   `json:"hashed"`
	} `json:"recipient"`
	IssuedOn             string         `json:"issuedOn,omitempty"`
	Narrative            string         `json:"narrative,omitempty"`
	Evidence             []wireEvidence `json:"evidence,omitempty"`
	Notify               bool           `json:"notify"`
	Expires              *string        `json:"expires"`
	AllowDuplicateAwards bool           `json:"allowDuplicateAwards"`
}

type wireEvidence struct {
	URL string `json:"url"`
}

// duplicateAward is the start of Badgr's refusal under allowDuplicateAwards=false.
const duplicateAward = "A previous award of this badge already exists"

// Award awards badgeClass to r.Email (lowercased: Badgr's duplicate check compares the identity
// as sent, before it lowercases it for storage). It always sends allowDuplicateAwards=false, so
// an unrevoked, unexpired earlier award makes it return ErrAlreadyAwarded. A HostError with
// Timeout or a 5xx leaves the outcome unknown: the host may have created the assertion.
func (c *Client) Award(ctx context.Context, badgeClass string, r AwardRequest) (Assertion, error) {
	const op = "award"
	var body wireAward
	body.Recipient.Identity = normalizeEmail(r.Email)
	body.Recipient.Type = "email"
	body.Recipient.Hashed = true
	if !r.IssuedOn.IsZero() {
		body.IssuedOn = r.IssuedOn.UTC().Format(time.RFC3339)
	}
	body.Narrative = r.Narrative
	if r.EvidenceURL != "" {
		body.Evidence = []wireEvidence{{URL: r.EvidenceURL}}
	}
	body.Notify = r.Notify
	if r.Expires != nil {
		s := r.Expires.UTC().Format(time.RFC3339)
		body.Expires = &s
	}
	req := apiRequest{op: op, method: http.MethodPost, url: c.apiURL("v2", "badgeclasses", badgeClass, "assertions"), body: body}
	if r.IdempotencyKey != "" {
		req.headers = map[string]string{"Idempotency-Key": r.IdempotencyKey}
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return Assertion{}, err
	}
	switch {
	case resp.status/100 == 2:
		var got []wireAssertion
		if err := resp.result(op, &got); err != nil {
			return Assertion{}, err
		}
		if len(got) == 0 || got[0].EntityID == "" {
			return Assertion{}, &HostError{Op: op, Status: resp.status, Message: "unexpected answer: no assertion in the result"}
		}
		a := got[0].assertion()
		if a.BadgeClass == "" {
			a.BadgeClass = badgeClass
		}
		return a, nil
	case resp.status == http.StatusBadRequest && resp.env != nil && resp.env.hasValidationError(duplicateAward):
		return Assertion{}, ErrAlreadyAwarded
	}
	return Assertion{}, resp.hostError(op)
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

// List returns the unrevoked assertions of badgeClass for any of emails (lowercased, as Badgr
// matches the stored lowercased identity exactly), expired ones included, following every page.
// Recipients are asked for in batches (recipientBatches); the answers are merged and an
// assertion reported by more than one look-up is returned once.
func (c *Client) List(ctx context.Context, badgeClass string, emails []string) ([]Assertion, error) {
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
	var out []Assertion
	seenEntity := map[string]bool{}
	for _, batch := range recipientBatches(recipients) {
		got, err := c.listBatch(ctx, badgeClass, batch)
		if err != nil {
			return nil, err
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

// listBatch is List for one batch of distinct, normalised recipients.
func (c *Client) listBatch(ctx context.Context, badgeClass string, recipients []string) ([]Assertion, error) {
	const op = "list"
	q := url.Values{"recipient": recipients}
	q.Set("include_expired", "1")
	q.Set("num", fmt.Sprint(listPageSize))
	next := c.apiURL("v2", "badgeclasses", badgeClass, "assertions") + "?" + q.Encode()

	var out []Assertion
	seenPage := map[string]bool{}
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
		var got []wireAssertion
		if err := resp.result(op, &got); err != nil {
			return nil, err
		}
		for i := range got {
			// The host leaves revoked assertions out unless asked; filter anyway, in case one
			// does not.
			if got[i].Revoked {
				continue
			}
			a := got[i].assertion()
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
	ref := findLink(linkHeaders, "next")
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

// alreadyRevoked is Badgr's refusal to revoke twice.
const alreadyRevoked = "Assertion is already revoked"

// Revoke revokes an assertion. An assertion that is already revoked, or unknown to the host (404,
// which Badgr also answers when the account may not see it), counts as revoked.
func (c *Client) Revoke(ctx context.Context, entityID, reason string) error {
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
	case resp.status == http.StatusBadRequest && resp.env != nil && resp.env.hasValidationError(alreadyRevoked):
		return nil
	}
	return resp.hostError(op)
}

// BadgeClassExists reports whether the account can see badgeClass (Badgr answers 404 both for
// an unknown badge class and for one the account may not use).
func (c *Client) BadgeClassExists(ctx context.Context, badgeClass string) (bool, error) {
	const op = "badge class"
	resp, err := c.do(ctx, apiRequest{op: op, method: http.MethodGet, url: c.apiURL("v2", "badgeclasses", badgeClass)})
	if err != nil {
		return false, err
	}
	switch {
	case resp.status == http.StatusOK:
		var got []json.RawMessage
		if err := resp.result(op, &got); err != nil {
			return false, err
		}
		return len(got) > 0, nil
	case resp.status == http.StatusNotFound:
		return false, nil
	}
	return false, resp.hostError(op)
}

func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }
