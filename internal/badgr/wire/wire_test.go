package wire

import (
	"encoding/json"
	"testing"
	"time"
)

func TestFindLink(t *testing.T) {
	cases := []struct {
		header []string
		want   string
	}{
		{[]string{`<https://h/a?cursor=1&num=100>; rel="next", <https://h/a?cursor=0>; rel="prev"`}, "https://h/a?cursor=1&num=100"},
		{[]string{`<https://h/p>; rel="prev"`, `<https://h/n>; rel="next"`}, "https://h/n"},
		{[]string{`<https://h/p>; rel=prev, </rel/n?x=1,2>;title="a, b; rel=next";rel=next`}, "/rel/n?x=1,2"},
		{[]string{`<https://h/x>; rel="last next"`}, "https://h/x"},
		{[]string{`<https://h/x>; REL="Next"`}, "https://h/x"},
		{[]string{`<https://h/x>; rel="prev"; rel="next"`}, ""}, // only the first rel counts
		{[]string{`garbage, <https://h/y>; rel="next"`}, "https://h/y"},
		{[]string{`<https://h/unterminated; rel="next"`}, ""},
		{nil, ""},
	}
	for _, tc := range cases {
		if got := FindLink(tc.header, "next"); got != tc.want {
			t.Errorf("FindLink(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

func TestFlag(t *testing.T) {
	for in, want := range map[string]bool{`true`: true, `false`: false, `"on"`: true, `"off"`: false, `"True"`: true, `null`: false} {
		var a Award
		if err := json.Unmarshal([]byte(`{"notify":`+in+`}`), &a); err != nil || bool(a.Notify) != want {
			t.Errorf("notify %s: %v, %v", in, a.Notify, err)
		}
	}
	var a Award
	if err := json.Unmarshal([]byte(`{"notify":3}`), &a); err == nil {
		t.Error("notify 3 accepted")
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00", "2024-05-01T12:00:00", "2024-05-01 12:00:00+00:00"} {
		if got := ParseTime(s); !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) = %v", s, got)
		}
	}
	if !ParseTime("soon").IsZero() {
		t.Error("unparseable time not zero")
	}
	if got := FormatISO(want); got != "2024-05-01T12:00:00Z" {
		t.Errorf("FormatISO = %s", got)
	}
	if got := FormatISO(want.Add(1500 * time.Microsecond)); got != "2024-05-01T12:00:00.001500Z" {
		t.Errorf("FormatISO fraction = %s", got)
	}
}
