package edx

import (
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"sync"
)

// The Avro schemas of openedx/openedx-events (see schemas/README.md), one per event type, named
// <event type>.avsc. The event bus carries no schema, so the reader must bring the writer's.
//
//go:embed schemas/*.avsc
var schemaFiles embed.FS

type avroKind uint8

const (
	avroNull avroKind = iota
	avroBoolean
	avroInt
	avroLong
	avroFloat
	avroDouble
	avroBytes
	avroString
	avroRecord
	avroEnum
	avroArray
	avroMap
	avroUnion
	avroFixed
)

var avroPrimitives = map[string]avroKind{
	"null": avroNull, "boolean": avroBoolean, "int": avroInt, "long": avroLong,
	"float": avroFloat, "double": avroDouble, "bytes": avroBytes, "string": avroString,
}

// avroSchema is one parsed Avro type. Named types are shared by pointer, so a recursive
// schema is a cyclic graph; the codec bounds its own depth.
type avroSchema struct {
	kind     avroKind
	name     string        // full name of a record, enum or fixed
	fields   []avroField   // record
	symbols  []string      // enum
	items    *avroSchema   // array
	values   *avroSchema   // map
	branches []*avroSchema // union
	size     int           // fixed
}

type avroField struct {
	name       string
	typ        *avroSchema
	def        any // the JSON default, used by the encoder for a missing field
	hasDefault bool
}

// maxSchemaDepth bounds the nesting of a schema document (they are embedded, so this only
// guards against a broken file).
const maxSchemaDepth = 64

// parseAvroSchema parses an .avsc document.
func parseAvroSchema(doc []byte) (*avroSchema, error) {
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	p := schemaParser{names: map[string]*avroSchema{}}
	return p.parse(v, "", 0)
}

type schemaParser struct {
	names map[string]*avroSchema
}

func (p *schemaParser) parse(v any, namespace string, depth int) (*avroSchema, error) {
	if depth > maxSchemaDepth {
		return nil, fmt.Errorf("avro schema: nested deeper than %d levels", maxSchemaDepth)
	}
	switch t := v.(type) {
	case string:
		return p.named(t, namespace)
	case []any:
		u := &avroSchema{kind: avroUnion}
		for _, b := range t {
			s, err := p.parse(b, namespace, depth+1)
			if err != nil {
				return nil, err
			}
			u.branches = append(u.branches, s)
		}
		if len(u.branches) == 0 {
			return nil, fmt.Errorf("avro schema: empty union")
		}
		return u, nil
	case map[string]any:
		return p.complex(t, namespace, depth)
	}
	return nil, fmt.Errorf("avro schema: unexpected %T", v)
}

// named resolves a primitive type name or a reference to a named type defined earlier.
func (p *schemaParser) named(name, namespace string) (*avroSchema, error) {
	if k, ok := avroPrimitives[name]; ok {
		return &avroSchema{kind: k}, nil
	}
	if s, ok := p.names[fullName(name, namespace)]; ok {
		return s, nil
	}
	if s, ok := p.names[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("avro schema: unknown type %q", name)
}

func (p *schemaParser) complex(m map[string]any, namespace string, depth int) (*avroSchema, error) {
	typ, ok := m["type"].(string)
	if !ok {
		// {"type": {...}} or {"type": [...]}: a wrapped type.
		if inner, present := m["type"]; present {
			return p.parse(inner, namespace, depth+1)
		}
		return nil, fmt.Errorf("avro schema: type missing")
	}
	if ns, ok := m["namespace"].(string); ok && ns != "" {
		namespace = ns
	}
	name, _ := m["name"].(string)
	switch typ {
	case "record", "error":
		s := &avroSchema{kind: avroRecord}
		if err := p.define(s, name, namespace); err != nil {
			return nil, err
		}
		// A nested definition inherits the namespace of its enclosing named type.
		namespace = namespaceOf(s.name)
		fields, _ := m["fields"].([]any)
		for _, f := range fields {
			fm, ok := f.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("avro schema: record %s: field is not an object", s.name)
			}
			fname, _ := fm["name"].(string)
			if fname == "" {
				return nil, fmt.Errorf("avro schema: record %s: field without a name", s.name)
			}
			ft, err := p.parse(fm["type"], namespace, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%w (field %s.%s)", err, s.name, fname)
			}
			def, hasDefault := fm["default"]
			s.fields = append(s.fields, avroField{name: fname, typ: ft, def: def, hasDefault: hasDefault})
		}
		return s, nil
	case "enum":
		s := &avroSchema{kind: avroEnum}
		if err := p.define(s, name, namespace); err != nil {
			return nil, err
		}
		symbols, _ := m["symbols"].([]any)
		for _, sym := range symbols {
			str, ok := sym.(string)
			if !ok {
				return nil, fmt.Errorf("avro schema: enum %s: symbol is not a string", s.name)
			}
			s.symbols = append(s.symbols, str)
		}
		return s, nil
	case "fixed":
		s := &avroSchema{kind: avroFixed}
		size, ok := m["size"].(float64)
		if !ok || size < 0 || size != float64(int(size)) || size > 1<<20 {
			return nil, fmt.Errorf("avro schema: fixed %s: bad size", name)
		}
		s.size = int(size)
		return s, p.define(s, name, namespace)
	case "array":
		items, err := p.parse(m["items"], namespace, depth+1)
		if err != nil {
			return nil, err
		}
		return &avroSchema{kind: avroArray, items: items}, nil
	case "map":
		values, err := p.parse(m["values"], namespace, depth+1)
		if err != nil {
			return nil, err
		}
		return &avroSchema{kind: avroMap, values: values}, nil
	}
	if k, ok := avroPrimitives[typ]; ok {
		return &avroSchema{kind: k}, nil // {"type": "string"}, possibly with a logicalType we ignore
	}
	return p.named(typ, namespace)
}

// define registers a named type before its body is parsed, so it may refer to itself.
func (p *schemaParser) define(s *avroSchema, name, namespace string) error {
	if name == "" {
		return fmt.Errorf("avro schema: named type without a name")
	}
	s.name = fullName(name, namespace)
	if _, dup := p.names[s.name]; dup {
		return fmt.Errorf("avro schema: type %s defined twice", s.name)
	}
	p.names[s.name] = s
	return nil
}

func fullName(name, namespace string) string {
	if strings.Contains(name, ".") || namespace == "" {
		return name
	}
	return namespace + "." + name
}

func namespaceOf(fullName string) string {
	if i := strings.LastIndexByte(fullName, '.'); i >= 0 {
		return fullName[:i]
	}
	return ""
}

// eventSchemas parses the embedded schemas once, keyed by event type.
var eventSchemas = sync.OnceValues(func() (map[string]*avroSchema, error) {
	entries, err := schemaFiles.ReadDir("schemas")
	if err != nil {
		return nil, fmt.Errorf("read embedded schemas: %w", err)
	}
	out := make(map[string]*avroSchema, len(entries))
	for _, e := range entries {
		eventType, ok := strings.CutSuffix(e.Name(), ".avsc")
		if !ok {
			continue
		}
		doc, err := schemaFiles.ReadFile(path.Join("schemas", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read schema %s: %w", e.Name(), err)
		}
		s, err := parseAvroSchema(doc)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", e.Name(), err)
		}
		if s.kind != avroRecord || len(s.fields) != 1 {
			return nil, fmt.Errorf("schema %s: want a record with one payload field", e.Name())
		}
		out[eventType] = s
	}
	return out, nil
})

// schemaFor gives the embedded schema of an event type.
func schemaFor(eventType string) (*avroSchema, error) {
	all, err := eventSchemas()
	if err != nil {
		return nil, err
	}
	s, ok := all[eventType]
	if !ok {
		return nil, &UnsupportedTypeError{Type: eventType}
	}
	return s, nil
}

// payloadKeyOf gives the payload key of an event type with an embedded schema ("certificate",
// "course_passing_status", …): the one field of its top-level record.
func payloadKeyOf(eventType string) (string, bool) {
	s, err := schemaFor(eventType)
	if err != nil {
		return "", false
	}
	return s.fields[0].name, true
}
