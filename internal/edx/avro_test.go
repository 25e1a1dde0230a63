package edx

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
)

// Byte fixtures of openedx-events.md section 6.2.
const (
	userDataHex    = "f601010c666f6f626f621e626f6240666f6f2e6578616d706c650e426f6220466f6f"
	certCreatedHex = "54010a616c69636522616c696365406578616d706c652e636f6d1a416c696365204c696464656c6c46636f757273652d76313a4f70656e6564582b44656d6f582b44656d6f5f436f757273650000000a686f6e6f7208302e3837001a416c696365204c696464656c6c18646f776e6c6f616461626c6500"
	passingHex     = "0146636f757273652d76313a4f70656e6564582b44656d6f582b44656d6f5f436f7572736500000054010a616c69636522616c696365406578616d706c652e636f6d1a416c696365204c696464656c6c"
)

// userDataSchema is the schema of the event-bus-redis test fixture (a login event, payload key
// user), which is not among the embedded schemas.
const userDataSchema = `{"name": "CloudEvent", "type": "record",
	"namespace": "org.openedx.learning.auth.session.login.completed.v1",
	"fields": [{"name": "user", "type": {"name": "UserData", "type": "record", "fields": [
		{"name": "id", "type": "long"}, {"name": "is_active", "type": "boolean"},
		{"name": "pii", "type": {"name": "UserPersonalData", "type": "record", "fields": [
			{"name": "username", "type": "string"}, {"name": "email", "type": "string"},
			{"name": "name", "type": "string"}]}}]}}]}`

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// avroLength is the start of a certificate whose username declares n bytes and has none.
func avroLength(n int64) []byte {
	return binary.AppendUvarint([]byte{0x54, 0x01}, uint64(n)<<1)
}

func alice() map[string]any {
	return map[string]any{
		"id": int64(42), "is_active": true,
		"pii": map[string]any{"username": "alice", "email": "alice@example.com", "name": "Alice Liddell"},
	}
}

func demoCourseData() map[string]any {
	return map[string]any{"course_key": demoCourse, "display_name": "", "start": nil, "end": nil}
}

func TestDecodeAvroUserDataFixture(t *testing.T) {
	s, err := parseAvroSchema([]byte(userDataSchema))
	if err != nil {
		t.Fatal(err)
	}
	data := mustHex(t, userDataHex)
	api := newAvroAPI()
	got, err := decodeAvro(api, s, data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := map[string]any{"user": map[string]any{
		"id": int64(123), "is_active": true,
		"pii": map[string]any{"username": "foobob", "email": "bob@foo.example", "name": "Bob Foo"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %#v\nwant %#v", got, want)
	}
	again, err := encodeAvro(api, s, got)
	if err != nil || !bytes.Equal(again, data) {
		t.Errorf("re-encoded %x, %v; want %x", again, err, data)
	}
}

func TestDecodeAvroFixtures(t *testing.T) {
	tests := []struct {
		eventType, hex string
		want           map[string]any
	}{
		{TypeCertificateCreated, certCreatedHex, map[string]any{"certificate": map[string]any{
			"user": alice(), "course": demoCourseData(), "mode": "honor", "grade": "0.87", "download_url": "",
			"name": "Alice Liddell", "current_status": "downloadable", "previous_status": "",
		}}},
		{TypePassingStatus, passingHex, map[string]any{"course_passing_status": map[string]any{
			"is_passing": true, "course": demoCourseData(), "user": alice(),
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.eventType, func(t *testing.T) {
			data := mustHex(t, tt.hex)
			got, err := DecodeAvro(tt.eventType, data)
			if err != nil {
				t.Fatalf("DecodeAvro: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %#v\nwant %#v", got, tt.want)
			}
			again, err := EncodeAvro(tt.eventType, got)
			if err != nil || !bytes.Equal(again, data) {
				t.Errorf("re-encoded %x, %v; want %x", again, err, data)
			}
		})
	}
}

// The JSON examples encode to exactly the documented bytes, whether their numbers are read as
// float64 or json.Number.
func TestEncodeAvroExamples(t *testing.T) {
	tests := []struct{ file, eventType, hex string }{
		{"certificate-created.json", TypeCertificateCreated, certCreatedHex},
		{"passing-status.json", TypePassingStatus, passingHex},
	}
	for _, tt := range tests {
		for _, useNumber := range []bool{false, true} {
			t.Run(tt.file, func(t *testing.T) {
				dec := json.NewDecoder(bytes.NewReader(readTestdata(t, tt.file)))
				if useNumber {
					dec.UseNumber()
				}
				var body map[string]any
				if err := dec.Decode(&body); err != nil {
					t.Fatal(err)
				}
				got, err := EncodeAvro(tt.eventType, body) // event_metadata is ignored
				if err != nil {
					t.Fatalf("EncodeAvro: %v", err)
				}
				if hex.EncodeToString(got) != tt.hex {
					t.Errorf("got  %x\nwant %s", got, tt.hex)
				}
			})
		}
	}
}

func TestAvroRoundTripCCX(t *testing.T) {
	payload := map[string]any{"course_passing_status": map[string]any{
		"is_passing": false, "user": alice(),
		"course": map[string]any{
			"ccx_course_key": "ccx-v1:OpenedX+DemoX+Demo_Course+ccx@3", "master_course_key": demoCourse,
			"display_name": "Demo CCX", "coach_email": "coach@example.com", "start": "2024-01-01T00:00:00+00:00",
			"max_students_allowed": 200, // int in, int64 out; "end" missing takes its null default
		},
	}}
	data, err := EncodeAvro(TypeCCXPassingStatus, payload)
	if err != nil {
		t.Fatalf("EncodeAvro: %v", err)
	}
	got, err := DecodeAvro(TypeCCXPassingStatus, data)
	if err != nil {
		t.Fatalf("DecodeAvro: %v", err)
	}
	course := got["course_passing_status"].(map[string]any)["course"].(map[string]any)
	if course["max_students_allowed"] != int64(200) || course["end"] != nil || course["start"] != "2024-01-01T00:00:00+00:00" {
		t.Errorf("course = %#v", course)
	}
	// Field order matters: is_passing, user, course in the CCX variant.
	if data[0] != 0 || !bytes.HasPrefix(data[1:], []byte{0x54, 0x01}) {
		t.Errorf("unexpected layout %x", data)
	}
}

// Every embedded schema round-trips, its unions both null and set, in the shape DecodeAvro
// promises (a union gives its branch's value, a record a map): adding an .avsc file is all a
// new event type needs.
func TestAvroRoundTripEveryEmbeddedSchema(t *testing.T) {
	all, err := eventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for typ, s := range all {
		for _, nulls := range []bool{false, true} {
			want := sampleAvroValue(t, s, nulls).(map[string]any)
			data, err := EncodeAvro(typ, want)
			if err != nil {
				t.Fatalf("%s: EncodeAvro: %v", typ, err)
			}
			got, err := DecodeAvro(typ, data)
			if err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("%s: got %#v, %v\nwant %#v", typ, got, err, want)
			}
		}
	}
}

// sampleAvroValue gives a value for every field of s; a union is null when nulls is set,
// otherwise its first other branch.
func sampleAvroValue(t *testing.T, s avro.Schema, nulls bool) any {
	t.Helper()
	switch s := s.(type) {
	case *avro.RefSchema:
		return sampleAvroValue(t, s.Schema(), nulls)
	case *avro.RecordSchema:
		m := map[string]any{}
		for _, f := range s.Fields() {
			m[f.Name()] = sampleAvroValue(t, f.Type(), nulls)
		}
		return m
	case *avro.UnionSchema:
		for _, b := range s.Types() {
			if nulls == (b.Type() == avro.Null) {
				return sampleAvroValue(t, b, nulls)
			}
		}
	case *avro.NullSchema:
		return nil
	case *avro.PrimitiveSchema:
		switch s.Type() {
		case avro.String:
			return "x"
		case avro.Long:
			return int64(7)
		case avro.Boolean:
			return true
		case avro.Double:
			return 0.5
		}
	}
	t.Fatalf("no sample value for %s", s.Type())
	return nil
}

func TestEmbeddedSchemas(t *testing.T) {
	all, err := eventSchemas()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{TypeCertificateCreated, TypeCertificateChanged, TypeCertificateRevoked, TypePassingStatus, TypeCCXPassingStatus,
		TypeEnrollmentCreated, TypeEnrollmentChanged} {
		k, _ := KindOf(typ)
		if key, ok := payloadKeyOf(typ); !ok || key != payloadKey(k) {
			t.Errorf("%s: payload key %q, want %q", typ, key, payloadKey(k))
		}
		// No two field paths may flatten to one key.
		seen := map[string]string{}
		for _, p := range fieldPaths(typ) {
			if other, dup := seen[flatKey(p)]; dup {
				t.Errorf("%s: %s and %s flatten alike", typ, p, other)
			}
			seen[flatKey(p)] = p
		}
	}
	if len(all) != 10 {
		t.Errorf("%d schemas, want 10", len(all))
	}
	// created_by refers to UserData by name.
	if _, err := EncodeAvro(TypeEnrollmentCreated, map[string]any{"enrollment": map[string]any{
		"user": alice(), "course": demoCourseData(), "mode": "audit", "is_active": true, "creation_date": "x",
		"created_by": alice(),
	}}); err != nil {
		t.Errorf("enrollment: %v", err)
	}
	paths := strings.Join(fieldPaths(TypeCCXPassingStatus), " ")
	for _, p := range []string{"course_passing_status.course.ccx_course_key", "course_passing_status.user.pii.email", "event_metadata.sourcelib"} {
		if !strings.Contains(paths, p) {
			t.Errorf("field paths lack %s: %s", p, paths)
		}
	}
}

func TestDecodeAvroErrors(t *testing.T) {
	cert := mustHex(t, certCreatedHex)
	pass := mustHex(t, passingHex)
	tests := []struct {
		name, eventType string
		data            []byte
		want            string
	}{
		{"empty", TypeCertificateCreated, nil, "certificate.user.id: truncated"},
		{"truncated", TypeCertificateCreated, cert[:len(cert)-1], "certificate.previous_status: truncated"},
		{"left over", TypeCertificateCreated, append(append([]byte{}, cert...), 0), "event_data: 1 bytes left over"},
		// hamba/avro stops an over-long varint at 10 bytes and reports it as data ending there.
		{"varint overflow", TypeCertificateCreated, bytes.Repeat([]byte{0xff}, 11), "certificate.user.id: truncated"},
		{"negative length", TypeCertificateCreated, append([]byte{0x54, 0x01}, 0x01), "certificate.user.pii.username: avro: ReadSTRING: invalid string length"},
		{"length past end", TypeCertificateCreated, append([]byte{0x54, 0x01}, 0x7e, 'a'), "certificate.user.pii.username: truncated"},
		{"huge length", TypeCertificateCreated, append([]byte{0x54, 0x01}, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), "certificate.user.pii.username: avro: ReadSTRING: size is greater than `Config.MaxByteSliceSize`"},
		{"length over the limit", TypeCertificateCreated, avroLength(maxAvroBytes + 1), "size is greater than `Config.MaxByteSliceSize`"},
		{"length at the limit, past the end", TypeCertificateCreated, avroLength(maxAvroBytes), "certificate.user.pii.username: truncated"},
		{"bad boolean", TypePassingStatus, append([]byte{0x02}, pass[1:]...), "course_passing_status.is_passing: avro: ReadBool: invalid bool"},
		{"bad union branch", TypePassingStatus, append(append([]byte{}, pass[:38]...), 0x04), "course_passing_status.course.start: union branch 2 out of range"},
		{"negative union branch", TypePassingStatus, append(append([]byte{}, pass[:38]...), 0x01), "union branch -1 out of range"},
		{"invalid UTF-8", TypeCertificateCreated, append([]byte{0x54, 0x01}, 0x02, 0xff), "certificate.user.pii.username: string is not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeAvro(tt.eventType, tt.data)
			if err == nil {
				t.Fatalf("DecodeAvro = %v, want an error", got)
			}
			if !errors.Is(err, ErrUndecodable) {
				t.Errorf("error %v does not wrap ErrUndecodable", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nwant it to contain %q", err, tt.want)
			}
		})
	}

	var ute *UnsupportedTypeError
	if _, err := DecodeAvro("org.example.unknown.v1", cert); !errors.As(err, &ute) {
		t.Errorf("unknown type: error %v, want *UnsupportedTypeError", err)
	}
}

// Schemas beyond the event ones: recursion, collections, the rarer primitives.
func TestAvroGenericSchemas(t *testing.T) {
	tests := []struct {
		name, schema string
		data         []byte
		want         any
		wantErr      string
	}{
		{"recursion too deep", `{"type": "record", "name": "N", "fields": [{"name": "next", "type": ["null", "N"]}]}`,
			append(bytes.Repeat([]byte{0x02}, 40), 0x00), nil, "nested deeper than 32 levels"},
		{"recursion", `{"type": "record", "name": "N", "fields": [{"name": "next", "type": ["null", "N"]}]}`,
			[]byte{0x02, 0x00}, map[string]any{"next": map[string]any{"next": nil}}, ""},
		{"array of null, huge count", `{"type": "array", "items": "null"}`,
			[]byte{0xfe, 0xff, 0xff, 0xff, 0x0f}, nil, "more than 65536 array items"},
		{"array of null, count at the limit", `{"type": "array", "items": "null"}`,
			[]byte{0x80, 0x80, 0x08, 0x00}, nil, ""},
		{"array, negative count with size", `{"type": "array", "items": "long"}`,
			[]byte{0x03, 0x04, 0x02, 0x04, 0x00}, []any{int64(1), int64(2)}, ""},
		{"array, negative count, bad size", `{"type": "array", "items": "long"}`,
			[]byte{0x03, 0x41, 0x02, 0x04, 0x00}, nil, "block size -33 out of range"},
		{"array, min count", `{"type": "array", "items": "long"}`,
			[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, nil, "block count out of range"},
		{"map", `{"type": "map", "values": "string"}`,
			[]byte{0x02, 0x02, 'k', 0x02, 'v', 0x00}, map[string]any{"k": "v"}, ""},
		{"enum", `{"type": "enum", "name": "E", "symbols": ["A", "B"]}`, []byte{0x02}, "B", ""},
		{"enum out of range", `{"type": "enum", "name": "E", "symbols": ["A", "B"]}`, []byte{0x04}, nil, "enum index 2 out of range"},
		{"fixed", `{"type": "fixed", "name": "F", "size": 2}`, []byte{0x01, 0x02}, []byte{1, 2}, ""},
		{"int out of range", `"int"`, []byte{0x80, 0x80, 0x80, 0x80, 0x10}, nil, "int 2147483648 out of range"},
		{"double", `"double"`, []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}, 1.0, ""},
		{"float", `"float"`, []byte{0, 0, 0xc0, 0x3f}, 1.5, ""},
		{"bytes", `"bytes"`, []byte{0x04, 0xff, 0x00}, []byte{0xff, 0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := parseAvroSchema([]byte(tt.schema))
			if err != nil {
				t.Fatal(err)
			}
			api := newAvroAPI()
			got, err := decodeAvro(api, s, tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
			again, err := encodeAvro(api, s, got)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if len(again) > len(tt.data) {
				t.Errorf("re-encoded %x is longer than the input %x", again, tt.data)
			}
			back, err := decodeAvro(api, s, again)
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Errorf("round trip gave %#v, %v", back, err)
			}
		})
	}
}

func TestParseAvroSchemaErrors(t *testing.T) {
	for _, schema := range []string{
		`{`, `5`, `"Unknown"`, `{"type": "record", "fields": []}`,
		`{"type": "record", "name": "A", "fields": [{"name": "x", "type": "B"}]}`,
		`{"type": "record", "name": "A", "fields": [{"name": "a", "type": {"type": "record", "name": "A", "fields": []}}]}`,
		`{"type": "fixed", "name": "F", "size": -1}`,
		`{"type": "enum", "name": "E", "symbols": [1]}`,
		strings.Repeat(`[`, 100) + `"null"` + strings.Repeat(`]`, 100),
	} {
		if _, err := parseAvroSchema([]byte(schema)); err == nil {
			t.Errorf("parseAvroSchema(%.40s) succeeded, want an error", schema)
		}
	}
}

func TestEncodeAvroErrors(t *testing.T) {
	tests := []struct {
		name    string
		payload map[string]any
		want    string
	}{
		{"missing field", map[string]any{"course_passing_status": map[string]any{"is_passing": true}}, "course_passing_status.course: missing"},
		{"wrong kind", map[string]any{"course_passing_status": map[string]any{"is_passing": "yes"}}, "course_passing_status.is_passing: want bool, got string"},
		{"fraction for long", map[string]any{"course_passing_status": map[string]any{
			"is_passing": true, "course": demoCourseData(),
			"user": map[string]any{"id": 4.5, "is_active": true, "pii": alice()["pii"]}}}, "course_passing_status.user.id: want an integer"},
		{"union without branch", map[string]any{"course_passing_status": map[string]any{
			"is_passing": true, "course": map[string]any{"course_key": "k", "display_name": "", "start": 5}}}, "course_passing_status.course.start: no branch of the union accepts int"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := EncodeAvro(TypePassingStatus, tt.payload)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}
