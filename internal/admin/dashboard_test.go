package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestMaskEmails(t *testing.T) {
	cases := map[string]string{
		`{"id":"reconcile:jane.doe@example.org:1"}`:               `{"id":"reconcile:<email>:1"}`,
		`{"payload":"{\"email\":\"jane\\u0040example.org\"}"}`:    `{"payload":"{\"email\":\"<email>\"}"}`,
		`{"error_message":"award for jane\u0040example.org"}`:     `{"error_message":"award for <email>"}`,
		`{"m":"to:jane%40example.org&x=1"}`:                       `{"m":"to:<email>&x=1"}`,
		`{"m":"line\njane@example.org\tnext"}`:                    `{"m":"<email>\tnext"}`,
		`{"m":"\\jane@example.org"}`:                              `{"m":"\\<email>"}`,
		`{"m":"\"jane@example.org\""}`:                            `{"m":"\"<email>\""}`,
		`{"m":"j\u0061ne@ex\u0061mple.org"}`:                      `{"m":"<email>"}`,
		`{"queue":"reconcile","size":3,"at":"2024-05-01T12:00Z"}`: `{"queue":"reconcile","size":3,"at":"2024-05-01T12:00Z"}`,
	}
	for in, want := range cases {
		got := string(maskEmails([]byte(in)))
		if got != want {
			t.Errorf("mask(%s)\n = %s\nwant %s", in, got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("mask(%s) is not JSON: %s", in, got)
		}
		if strings.Contains(got, "jane") {
			t.Errorf("mask(%s) leaves the address: %s", in, got)
		}
	}
}
