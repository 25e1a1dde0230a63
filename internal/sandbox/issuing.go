package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/badgebridge/bridge/internal/badgehost"
	"github.com/badgebridge/bridge/internal/badgr/wire"
)

const (
	msgDuplicate      = wire.DuplicateAward + " for this recipient."
	msgMultipleClass  = "Multiple badge class identifiers. Exactly one of the following badge class identifiers are allowed: badgeclass, badgeclassName, or badgeclassOpenBadgeId"
	msgRequired       = "This field is required."
	msgFutureIssuedOn = "Only issuedOn dates in the past are acceptable."
	msgBadEmail       = "Enter a valid email address."
	msgBadURL         = "Enter a valid URL."
	msgEvidence       = "Either url or narrative is required"
	msgAlreadyRevoked = wire.AlreadyRevoked
	sbMaxPage         = 500
	sbDefaultPage     = 100
	// sbMaxBatch is the sandbox's own limit on one batch award (badgr-api.md 6.5: Badgr
	// documents none). Each item is a full award made within one request, so a client must keep
	// batches moderate; refusing more here makes one that does not split its batches fail in
	// development rather than time out against a production host.
	sbMaxBatch = 100
)

// sbEmail is close to Django's EmailValidator: a local part, "@", a dotted domain.
var sbEmail = regexp.MustCompile(`^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$`)

// --- badge classes and issuers ---

func (s *Host) handleIssuers(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.mu.Lock()
	base := s.linkBase(r)
	s.mu.Unlock()
	s.writeResult(w, r, http.StatusOK, "ok", []wire.Issuer{{
		EntityType: "Issuer", EntityID: s.issuerID, OpenBadgeID: base + "/public/issuers/" + s.issuerID,
		Name: "Badge Bridge Sandbox", Email: "issuer@sandbox.invalid", URL: base, Description: "In-process fake badge host",
	}})
}

func (s *Host) handleBadgeClass(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.mu.Lock()
	c, ok := s.classes[r.PathValue("id")]
	base := s.linkBase(r)
	s.mu.Unlock()
	if !ok {
		s.writeNotFound(w, r)
		return
	}
	s.writeResult(w, r, http.StatusOK, "ok", []wire.BadgeClass{{
		EntityType: "BadgeClass", EntityID: c.id, OpenBadgeID: base + "/public/badges/" + c.id,
		CreatedAt: wire.FormatMicros(c.createdAt), CreatedBy: s.userID,
		Issuer: s.issuerID, IssuerOpenBadgeID: base + "/public/issuers/" + s.issuerID,
		Name: "Sandbox badge " + c.id, Image: base + "/public/badges/" + c.id + "/image",
		Description: "A badge class of the sandbox badge host",
		Alignments:  []any{}, Tags: []string{}, Extensions: map[string]any{},
	}})
}

// --- award ---

// sbValidated is an award that passed field validation.
type sbValidated struct {
	identity      string // as sent
	recipientType string
	hashed        bool
	issuedOn      time.Time
	narrative     *string
	evidence      []wire.Evidence
	expires       *time.Time
	allowDup      bool
}

func (s *Host) handleAward(w http.ResponseWriter, r *http.Request) {
	classID, raw, ok := s.classBody(w, r, 1<<20)
	if !ok {
		return
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{"JSON parse error - " + err.Error()})
		return
	}
	for _, k := range []string{"badgeclass", "badgeclassOpenBadgeId", "badgeclassName"} {
		if _, ok := keys[k]; ok {
			s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{msgMultipleClass})
			return
		}
	}
	var in wire.Award
	if err := json.Unmarshal(raw, &in); err != nil {
		s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{"JSON parse error - " + err.Error()})
		return
	}

	s.mu.Lock()
	now := s.now()
	v, fieldErrs := validateAward(&in, now)
	if fieldErrs == nil && !v.allowDup && s.hasActiveAward(classID, v.identity, now) {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{msgDuplicate})
		return
	}
	if fieldErrs != nil {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusBadRequest, descBad, fieldErrs, nil)
		return
	}
	a := s.create(classID, v, now, s.linkBase(r))
	out := s.assertionJSON(a)
	delay := s.awardDelay
	s.mu.Unlock()

	if delay > 0 {
		// The assertion is committed; the answer is late (a slow image bake, a slow proxy).
		t := time.NewTimer(delay)
		select {
		case <-r.Context().Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	s.writeResult(w, r, http.StatusCreated, "ok", []wire.Assertion{out})
}

// validateAward checks fields the way BadgeInstanceSerializerV2 does; fieldErrors is nil when
// the award is valid.
// Badgr also reads notify and extensions; the sandbox sends no e-mail and ignores both.
func validateAward(in *wire.Award, now time.Time) (sbValidated, map[string]any) {
	v := sbValidated{allowDup: true, narrative: in.Narrative, evidence: in.Evidence}
	errs := map[string]any{}
	if in.AllowDuplicateAwards != nil {
		v.allowDup = *in.AllowDuplicateAwards
	}
	switch {
	case in.Recipient == nil:
		errs["recipient"] = []string{msgRequired}
	case in.Recipient.Identity == nil || *in.Recipient.Identity == "":
		errs["recipient"] = map[string]any{"identity": []string{msgRequired}}
	default:
		v.identity = *in.Recipient.Identity
		v.recipientType = in.Recipient.Type
		if v.recipientType == "" {
			v.recipientType = "email"
		}
		switch v.recipientType {
		case "email":
			if !sbEmail.MatchString(v.identity) {
				errs["recipient"] = map[string]any{"non_field_errors": []string{msgBadEmail}}
			}
			v.hashed = true
		case "telephone":
			v.hashed = true
		case "url", "openBadgeId":
			if u, err := url.Parse(v.identity); err != nil || u.Scheme == "" || u.Host == "" {
				errs["recipient"] = map[string]any{"non_field_errors": []string{msgBadURL}}
			}
		default:
			errs["recipient"] = map[string]any{"type": []string{fmt.Sprintf("%q is not a valid choice.", v.recipientType)}}
		}
		if in.Recipient.Hashed != nil {
			v.hashed = *in.Recipient.Hashed
		}
	}
	v.issuedOn = now
	if in.IssuedOn != nil && *in.IssuedOn != "" {
		t := wire.ParseTime(*in.IssuedOn)
		switch {
		case t.IsZero():
			errs["issuedOn"] = []string{"Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."}
		case t.After(now):
			errs["issuedOn"] = []string{msgFutureIssuedOn}
		case t.Year() < 1583:
			errs["issuedOn"] = []string{"Only issuedOn dates after 1583 are accepted."}
		default:
			v.issuedOn = t
		}
	}
	if in.Expires != nil && *in.Expires != "" {
		t := wire.ParseTime(*in.Expires)
		if t.IsZero() {
			errs["expires"] = []string{"Datetime has wrong format."}
		} else {
			v.expires = &t
		}
	}
	var evErrs []any
	bad := false
	for _, e := range in.Evidence {
		if e.URL == "" && e.Narrative == "" {
			evErrs = append(evErrs, map[string]any{"non_field_errors": []string{msgEvidence}})
			bad = true
		} else {
			evErrs = append(evErrs, map[string]any{})
		}
	}
	if bad {
		errs["evidence"] = evErrs
	}
	if len(errs) > 0 {
		return v, errs
	}
	return v, nil
}

// hasActiveAward is Badgr's duplicate check: an unrevoked, unexpired assertion of the class whose
// stored identifier equals the identity as sent, before lowercasing. That is the case caveat: an
// upper-case e-mail never matches. Called with s.mu held.
func (s *Host) hasActiveAward(classID, identitySent string, now time.Time) bool {
	for _, a := range s.byIdentity[classID][identitySent] {
		if !a.revoked && (a.expires == nil || a.expires.After(now)) {
			return true
		}
	}
	return false
}

// create stores a new assertion. Called with s.mu held.
func (s *Host) create(classID string, v sbValidated, now time.Time, base string) *sbAssertion {
	identity := v.identity
	if v.recipientType == "email" {
		identity = strings.ToLower(identity)
	}
	// createdAt orders lists and is the cursor position: keep it strictly increasing.
	created := now.UTC().Truncate(time.Microsecond)
	if !created.After(s.lastCreated) {
		created = s.lastCreated.Add(time.Microsecond)
	}
	s.lastCreated = created
	a := &sbAssertion{
		entityID:      wire.NewEntityID(),
		badgeClass:    classID,
		identity:      identity,
		recipientType: v.recipientType,
		hashed:        v.hashed,
		createdAt:     created,
		issuedOn:      v.issuedOn.UTC(),
		expires:       v.expires,
		narrative:     v.narrative,
		evidence:      v.evidence,
	}
	a.openBadgeID = base + "/public/assertions/" + a.entityID
	if a.hashed {
		a.salt = wire.RandomHex(16)
	}
	s.assertions[classID] = append(s.assertions[classID], a)
	ids := s.byIdentity[classID]
	if ids == nil {
		ids = map[string][]*sbAssertion{}
		s.byIdentity[classID] = ids
	}
	ids[identity] = append(ids[identity], a)
	s.byID[a.entityID] = a
	return a
}

// hashIdentity is Badgr's generate_sha256_hashstring.
func hashIdentity(identity, salt string) string {
	sum := sha256.Sum256([]byte(identity + salt))
	return "sha256$" + hex.EncodeToString(sum[:])
}

// assertionJSON renders an assertion as BadgeInstanceSerializerV2 does. Called with s.mu held.
func (s *Host) assertionJSON(a *sbAssertion) wire.Assertion {
	base, _, _ := strings.Cut(a.openBadgeID, "/public/assertions/")
	recipient := wire.Recipient{Identity: a.identity, Hashed: a.hashed, Type: a.recipientType, PlaintextIdentity: a.identity}
	if a.hashed {
		recipient.Identity = hashIdentity(a.identity, a.salt)
		recipient.Salt = a.salt
	}
	out := wire.Assertion{
		EntityType:            "Assertion",
		EntityID:              a.entityID,
		OpenBadgeID:           a.openBadgeID,
		CreatedAt:             wire.FormatMicros(a.createdAt),
		CreatedBy:             s.userID,
		BadgeClass:            a.badgeClass,
		BadgeClassOpenBadgeID: base + "/public/badges/" + a.badgeClass,
		Issuer:                s.issuerID,
		IssuerOpenBadgeID:     base + "/public/issuers/" + s.issuerID,
		Image:                 a.openBadgeID + "/image",
		Recipient:             recipient,
		IssuedOn:              wire.FormatISO(a.issuedOn),
		Narrative:             a.narrative,
		Evidence:              append([]wire.Evidence{}, a.evidence...),
		Revoked:               a.revoked,
		Acceptance:            "Unaccepted",
		Extensions:            map[string]any{},
	}
	if a.expires != nil {
		e := wire.FormatISO(*a.expires)
		out.Expires = &e
	}
	if a.revoked {
		reason := a.revocationReason
		out.RevocationReason = &reason
	}
	return out
}

// assertion is the neutral view of a stored assertion. Called with s.mu held.
func (a *sbAssertion) assertion() badgehost.Assertion {
	out := badgehost.Assertion{
		EntityID: a.entityID, OpenBadgeID: a.openBadgeID, BadgeClass: a.badgeClass, Recipient: a.identity,
		CreatedAt: a.createdAt, IssuedOn: a.issuedOn, Revoked: a.revoked, RevocationReason: a.revocationReason,
	}
	if a.expires != nil {
		t := *a.expires
		out.Expires = &t
	}
	return out
}

// classBody is the common start of the issuing routes on one badge class: a valid token, a
// known class, the body read up to limit. ok is false once an answer was written.
func (s *Host) classBody(w http.ResponseWriter, r *http.Request, limit int64) (classID string, raw []byte, ok bool) {
	if !s.authorize(w, r) {
		return "", nil, false
	}
	classID = r.PathValue("id")
	if !s.classExists(classID) {
		s.writeNotFound(w, r)
		return "", nil, false
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, limit))
	if err != nil {
		return "", nil, false
	}
	return classID, raw, true
}

func (s *Host) classExists(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.classes[id]
	return ok
}

// --- batch award ---

func (s *Host) handleBatchAward(w http.ResponseWriter, r *http.Request) {
	classID, raw, ok := s.classBody(w, r, 8<<20)
	if !ok {
		return
	}
	var body struct {
		Assertions []json.RawMessage `json:"assertions"`
	}
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' || json.Unmarshal(raw, &body) != nil {
		// A bare array (what the API docs suggest) gets a 400 with an empty body.
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if len(body.Assertions) > sbMaxBatch {
		// Refused before any item is looked at, as a list length check is; the message is DRF's,
		// and Badgr's error handler moves it into validationErrors.
		s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{fmt.Sprintf("Ensure this field has no more than %d elements.", sbMaxBatch)})
		return
	}
	s.mu.Lock()
	now := s.now()
	items := make([]sbValidated, len(body.Assertions))
	perItem := make([]any, len(body.Assertions))
	invalid := false
	for i, rawItem := range body.Assertions {
		var in wire.Award
		var errs map[string]any
		if err := json.Unmarshal(rawItem, &in); err != nil {
			errs = map[string]any{"non_field_errors": []string{"Invalid data."}}
		} else {
			items[i], errs = validateAward(&in, now)
			// Against saved assertions only: Badgr validates the whole batch before saving any
			// item, so two items for one recipient both pass and are both created.
			if errs == nil && !items[i].allowDup && s.hasActiveAward(classID, items[i].identity, now) {
				errs = map[string]any{"non_field_errors": []string{msgDuplicate}}
			}
		}
		if errs == nil {
			perItem[i] = map[string]any{}
		} else {
			perItem[i] = errs
			invalid = true
		}
	}
	if invalid {
		s.mu.Unlock()
		s.writeError(w, r, http.StatusBadRequest, descBad, perItem, nil)
		return
	}
	out := make([]wire.Assertion, 0, len(items))
	base := s.linkBase(r)
	for _, v := range items {
		out = append(out, s.assertionJSON(s.create(classID, v, now, base)))
	}
	s.mu.Unlock()
	s.writeResult(w, r, http.StatusCreated, "ok", out)
}

// --- single assertion, revoke ---

func (s *Host) handleAssertion(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	s.mu.Lock()
	a, ok := s.byID[r.PathValue("id")]
	var out wire.Assertion
	if ok {
		out = s.assertionJSON(a)
	}
	s.mu.Unlock()
	if !ok {
		s.writeNotFound(w, r)
		return
	}
	s.writeResult(w, r, http.StatusOK, "ok", []wire.Assertion{out})
}

func (s *Host) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	var body struct {
		Reason *string `json:"revocation_reason"`
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{"JSON parse error - " + err.Error()})
			return
		}
	}
	s.mu.Lock()
	a, ok := s.byID[r.PathValue("id")]
	switch {
	case !ok:
		s.mu.Unlock()
		s.writeNotFound(w, r)
	case body.Reason == nil || *body.Reason == "":
		s.mu.Unlock()
		// A bare string, not a list (BadgeInstanceDetail.delete).
		s.writeError(w, r, http.StatusBadRequest, descBad, map[string]any{"revocation_reason": "This field is required"}, nil)
	case a.revoked:
		s.mu.Unlock()
		s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{msgAlreadyRevoked})
	default:
		a.revoked, a.revocationReason = true, *body.Reason
		out := s.assertionJSON(a)
		s.mu.Unlock()
		s.writeResult(w, r, http.StatusOK, "ok", []wire.Assertion{out})
	}
}

func (s *Host) handleBatchRevoke(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return
	}
	var items []struct {
		EntityID         string `json:"entityId"`
		RevocationReason string `json:"revocationReason"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		s.writeError(w, r, http.StatusBadRequest, descBad, nil, []string{"JSON parse error - " + err.Error()})
		return
	}
	s.mu.Lock()
	out := make([]any, 0, len(items))
	for _, it := range items {
		res := map[string]any{"revoked": false, "entityId": it.EntityID, "revocationReason": it.RevocationReason}
		a, ok := s.byID[it.EntityID]
		switch {
		case it.EntityID == "":
			res["reason"] = "entityId is required"
		case it.RevocationReason == "":
			res["reason"] = "revocationReason is required"
		case !ok:
			res["reason"] = "permission denied or object not found"
		case a.revoked:
			res["reason"] = msgAlreadyRevoked
		default:
			a.revoked, a.revocationReason = true, it.RevocationReason
			res["revoked"] = true
		}
		out = append(out, res)
	}
	s.mu.Unlock()
	s.writeResult(w, r, http.StatusOK, "revoked badges", out)
}

// handlePublicAssertion serves the hosted Open Badges 2.0 assertion (no authentication), so the
// openBadgeId links the sandbox hands out resolve in development mode.
func (s *Host) handlePublicAssertion(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSuffix(r.PathValue("id"), ".json")
	s.mu.Lock()
	a, ok := s.byID[id]
	var out map[string]any
	if ok {
		base, _, _ := strings.Cut(a.openBadgeID, "/public/assertions/")
		out = map[string]any{
			"@context": "https://w3id.org/openbadges/v2", "type": "Assertion", "id": a.openBadgeID,
		}
		if a.revoked {
			// Badgr answers 200 (not the 410 the specification recommends).
			out["revoked"] = true
			out["revocationReason"] = a.revocationReason
		} else {
			out["badge"] = base + "/public/badges/" + a.badgeClass
			out["image"] = a.openBadgeID + "/image"
			out["verification"] = map[string]any{"type": "HostedBadge"}
			out["issuedOn"] = a.issuedOn.Format("2006-01-02T15:04:05.999999-07:00")
			out["recipient"] = map[string]any{"type": a.recipientType, "hashed": a.hashed, "identity": a.identity}
			if a.hashed {
				out["recipient"] = map[string]any{"type": a.recipientType, "hashed": true, "salt": a.salt, "identity": hashIdentity(a.identity, a.salt)}
			}
			if a.narrative != nil {
				out["narrative"] = *a.narrative
			}
			if a.expires != nil {
				out["expires"] = a.expires.Format("2006-01-02T15:04:05.999999-07:00")
			}
		}
	}
	s.mu.Unlock()
	if !ok {
		writeHTML(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, contentType(r), http.StatusOK, out)
}
