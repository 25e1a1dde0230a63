package wire

import "strings"

// FindLink returns the target of the first link whose rel includes want, from one or more Link
// header values (RFC 8288): several links per header, each "<uri>" followed by ";"-separated
// parameters whose values may be quoted (and contain commas or semicolons), rel holding several
// space-separated relation types. Returns "" when there is none.
func FindLink(headers []string, want string) string {
	for _, h := range headers {
		for _, l := range parseLinks(h) {
			for _, rel := range strings.Fields(l.params["rel"]) {
				if strings.EqualFold(rel, want) {
					return l.target
				}
			}
		}
	}
	return ""
}

type link struct {
	target string
	params map[string]string
}

// parseLinks parses one Link header value leniently: malformed parts are skipped, not fatal.
func parseLinks(h string) []link {
	var out []link
	s := h
	for {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			return out
		}
		if s[0] != '<' {
			// Not a link: skip to the next comma outside quotes.
			s = skipPast(s, ',')
			continue
		}
		end := strings.IndexByte(s, '>')
		if end < 0 {
			return out
		}
		l := link{target: strings.TrimSpace(s[1:end]), params: map[string]string{}}
		s = s[end+1:]
		// Parameters until a comma that ends this link.
		for {
			s = strings.TrimLeft(s, " \t")
			if s == "" || s[0] == ',' {
				break
			}
			if s[0] != ';' {
				s = skipPast(s, ',')
				break
			}
			s = strings.TrimLeft(s[1:], " \t")
			name, rest := splitToken(s)
			s = strings.TrimLeft(rest, " \t")
			value := ""
			if strings.HasPrefix(s, "=") {
				s = strings.TrimLeft(s[1:], " \t")
				value, s = parseValue(s)
			}
			name = strings.ToLower(name)
			if _, dup := l.params[name]; !dup && name != "" {
				l.params[name] = value // RFC 8288: only the first rel counts
			}
		}
		out = append(out, l)
	}
}

// splitToken splits off a parameter name.
func splitToken(s string) (string, string) {
	i := strings.IndexAny(s, "=;, \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// parseValue reads a token or a quoted string (with backslash escapes).
func parseValue(s string) (string, string) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			switch s[i] {
			case '\\':
				if i+1 < len(s) {
					i++
					b.WriteByte(s[i])
				}
			case '"':
				return b.String(), s[i+1:]
			default:
				b.WriteByte(s[i])
			}
		}
		return b.String(), ""
	}
	i := strings.IndexAny(s, ";,")
	if i < 0 {
		return strings.TrimSpace(s), ""
	}
	return strings.TrimSpace(s[:i]), s[i:]
}

// skipPast drops s up to and including the next sep outside double quotes.
func skipPast(s string, sep byte) string {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			return s[i+1:]
		}
	}
	return ""
}
