package wire

import (
	"encoding/json"
	"sort"
	"strings"
)

// Envelope is Badgr's v2 answer shape. FieldErrors and ValidationErrors are kept raw because
// their shapes vary: fieldErrors is an object (values lists, strings or nested objects), a list
// (batch award) or a bare string (DRF throttling detail).
type Envelope struct {
	Status           *Status         `json:"status"`
	Result           json.RawMessage `json:"result"`
	FieldErrors      json.RawMessage `json:"fieldErrors,omitempty"`
	ValidationErrors json.RawMessage `json:"validationErrors,omitempty"`
}

// Status is the envelope's status.
type Status struct {
	Success     bool   `json:"success"`
	Description string `json:"description"`
}

// ParseEnvelope returns the envelope in body, or nil when body does not have its shape (error
// pages of proxies and Django come as HTML or other JSON).
func ParseEnvelope(body []byte) *Envelope {
	var env Envelope
	if json.Unmarshal(body, &env) != nil || (env.Status == nil && env.Result == nil) {
		return nil
	}
	return &env
}

// Validation returns the envelope's validationErrors flattened to strings.
func (e *Envelope) Validation() []string { return flattenRaw(e.ValidationErrors) }

// HasValidationError reports whether any validation error contains substr.
func (e *Envelope) HasValidationError(substr string) bool {
	for _, m := range e.Validation() {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

// Details lists the envelope's error texts: field errors first, then validation errors.
func (e *Envelope) Details() []string {
	return append(flattenRaw(e.FieldErrors), e.Validation()...)
}

// ItemErrors reads the fieldErrors of a refused batch award: a list aligned with the n items
// sent, each entry flattened to its messages (none for an item that was valid). ok is false when
// e is nil or fieldErrors is not such a list.
func (e *Envelope) ItemErrors(n int) (perItem [][]string, ok bool) {
	if e == nil || len(e.FieldErrors) == 0 {
		return nil, false
	}
	var list []json.RawMessage
	if json.Unmarshal(e.FieldErrors, &list) != nil || len(list) != n {
		return nil, false
	}
	perItem = make([][]string, n)
	for i, raw := range list {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return nil, false
		}
		perItem[i] = Flatten(v)
	}
	return perItem, true
}

func flattenRaw(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil
	}
	return Flatten(v)
}

// Flatten turns a decoded DRF error structure into "field: message" strings. The field is left
// out when the message already names it ("Only issuedOn dates in the past are acceptable.") and
// for non_field_errors, so messages read the way Badgr wrote them.
func Flatten(v any) []string {
	var out []string
	flatten(&out, "", v)
	return out
}

func flatten(out *[]string, field string, v any) {
	switch x := v.(type) {
	case nil:
	case string:
		if x == "" {
			return
		}
		if field != "" && !strings.Contains(x, lastSegment(field)) {
			x = field + ": " + x
		}
		*out = append(*out, x)
	case []any:
		for _, item := range x {
			flatten(out, field, item)
		}
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			sub := field
			if k != "non_field_errors" && k != "detail" {
				if sub != "" {
					sub += "."
				}
				sub += k
			}
			flatten(out, sub, x[k])
		}
	default:
		b, _ := json.Marshal(x)
		flatten(out, field, string(b))
	}
}

func lastSegment(field string) string {
	if i := strings.LastIndexByte(field, '.'); i >= 0 {
		return field[i+1:]
	}
	return field
}
