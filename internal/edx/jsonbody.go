package edx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// maxBodyDepth bounds the nesting of a body. The deepest real field is four levels down
// (certificate.user.pii.email); the bound keeps hostile bodies cheap.
const maxBodyDepth = 32

var utf8BOM = []byte("\xef\xbb\xbf")

// parseJSONObject reads a body that must be one JSON object. It walks the tokens itself rather
// than calling json.Unmarshal, because encoding/json silently replaces invalid UTF-8 and lets
// a duplicate key win, and a badge must not go to whichever of two e-mail addresses came last.
// Numbers stay json.Number, so ids are never rounded through float64.
func parseJSONObject(body []byte) (map[string]any, error) {
	body = bytes.TrimPrefix(body, utf8BOM)
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, &FieldError{Path: "body", Problem: "empty"}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	p := jsonParser{dec: dec, body: body}
	tok, err := p.next("")
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('{') {
		return nil, &FieldError{Path: "body", Problem: "expected a JSON object"}
	}
	obj, err := p.object("", 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &FieldError{Path: "body", Problem: fmt.Sprintf("unexpected data after the JSON object at offset %d", p.off)}
	}
	return obj, nil
}

type jsonParser struct {
	dec  *json.Decoder
	body []byte
	off  int64 // end of the last token
}

// next reads one token and checks that a string token was valid UTF-8 in the raw body.
func (p *jsonParser) next(path string) (json.Token, error) {
	start := p.off
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.syntaxError(err)
	}
	p.off = p.dec.InputOffset()
	if _, ok := tok.(string); ok && start <= p.off && p.off <= int64(len(p.body)) && !utf8.Valid(p.body[start:p.off]) {
		return nil, &FieldError{Path: pathOrBody(path), Problem: "not valid UTF-8"}
	}
	return tok, nil
}

func (p *jsonParser) syntaxError(err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &FieldError{Path: "body", Problem: fmt.Sprintf("invalid JSON at offset %d: %v", se.Offset, se)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Path: "body", Problem: fmt.Sprintf("invalid JSON: unexpected end at offset %d", len(p.body))}
	}
	return &FieldError{Path: "body", Problem: fmt.Sprintf("invalid JSON after offset %d: %v", p.off, err)}
}

// object reads the members of an object whose '{' has been read.
func (p *jsonParser) object(path string, depth int) (map[string]any, error) {
	if depth > maxBodyDepth {
		return nil, &FieldError{Path: "body", Problem: fmt.Sprintf("nested deeper than %d levels", maxBodyDepth)}
	}
	obj := map[string]any{}
	for {
		tok, err := p.next(joinPath(path, "(a key)"))
		if err != nil {
			return nil, err
		}
		if tok == json.Delim('}') {
			return obj, nil
		}
		key, ok := tok.(string)
		if !ok {
			return nil, &FieldError{Path: "body", Problem: fmt.Sprintf("invalid JSON at offset %d: expected a key", p.off)}
		}
		child := joinPath(path, key)
		if _, dup := obj[key]; dup {
			return nil, &FieldError{Path: child, Problem: "given more than once"}
		}
		v, err := p.value(child, depth)
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
}

func (p *jsonParser) array(path string, depth int) ([]any, error) {
	if depth > maxBodyDepth {
		return nil, &FieldError{Path: "body", Problem: fmt.Sprintf("nested deeper than %d levels", maxBodyDepth)}
	}
	arr := []any{}
	for {
		if !p.dec.More() {
			if _, err := p.next(path); err != nil { // the closing ']'
				return nil, err
			}
			return arr, nil
		}
		v, err := p.value(path+"["+strconv.Itoa(len(arr))+"]", depth)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
}

// value reads the value of a member or element at the given depth of its container.
func (p *jsonParser) value(path string, depth int) (any, error) {
	tok, err := p.next(path)
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		return p.object(path, depth+1)
	case json.Delim('['):
		return p.array(path, depth+1)
	case json.Delim('}'), json.Delim(']'):
		return nil, &FieldError{Path: "body", Problem: fmt.Sprintf("invalid JSON at offset %d: unexpected %v", p.off, tok)}
	}
	return tok, nil
}

func pathOrBody(path string) string {
	if path == "" {
		return "body"
	}
	return path
}
