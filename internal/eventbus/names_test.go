package eventbus

import (
	"errors"
	"strings"
	"testing"
)

func TestConsumerName(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	host := func(name string, err error) func() (string, error) {
		return func() (string, error) { return name, err }
	}
	long := strings.Repeat("bridge-web-", 10)
	for _, tc := range []struct {
		name     string
		env      map[string]string
		hostname func() (string, error)
		want     string
	}{
		{"pod name first", map[string]string{"POD_NAME": "bridge-web-7c9d8-x2x4q", "HOSTNAME": "h"}, host("os", nil), "bridge-web-7c9d8-x2x4q"},
		{"then HOSTNAME", map[string]string{"HOSTNAME": "bridge-worker-1"}, host("os", nil), "bridge-worker-1"},
		{"then the host name", nil, host("laptop.local", nil), "laptop.local"},
		{"sanitized", map[string]string{"POD_NAME": " web 1/ä\n"}, host("os", nil), "web-1"},
		{"nothing usable", map[string]string{"POD_NAME": "ü"}, host("", errors.New("no")), "bridge"},
	} {
		if got := consumerName(env(tc.env), tc.hostname); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	a := consumerName(env(map[string]string{"POD_NAME": long + "abcde"}), host("", nil))
	b := consumerName(env(map[string]string{"POD_NAME": long + "fghij"}), host("", nil))
	if len(a) > maxConsumerName || len(b) > maxConsumerName || a == b {
		t.Errorf("long names %q and %q: want distinct, at most %d bytes", a, b, maxConsumerName)
	}
}

// The default name is the pod's, the same for every consumer the process makes: a restart
// resumes under the same name instead of adding one.
func TestDefaultConsumerNameIsStable(t *testing.T) {
	t.Setenv("POD_NAME", "bridge-worker-5f7b9-qwert")
	a := New(nil, nil, nil, Config{Streams: []string{"s"}, Group: "g"}, nil, nil)
	b := New(nil, nil, nil, Config{Streams: []string{"s"}, Group: "g"}, nil, nil)
	if a.cfg.Consumer != "bridge-worker-5f7b9-qwert" || b.cfg.Consumer != a.cfg.Consumer {
		t.Errorf("names %q and %q, want the pod name", a.cfg.Consumer, b.cfg.Consumer)
	}
}

func TestValidBusID(t *testing.T) {
	for id, want := range map[string]bool{
		"":                                     true,
		"3e068212-1c24-11ef-9a57-0242ac120005": true,
		strings.Repeat("a", maxBusID):          true,
		strings.Repeat("a", maxBusID+1):        false,
		"alice@example.com":                    false,
		"a\nb":                                 false,
		"a\x7fb":                               false,
		"a\u0085b":                             false,
		"\xff":                                 false,
	} {
		if got := validBusID(id); got != want {
			t.Errorf("validBusID(%q) = %v, want %v", id, got, want)
		}
	}
	if logID("alice@example.com") == "alice@example.com" {
		t.Error("an e-mail-shaped id would be logged")
	}
}

func TestMaskEmails(t *testing.T) {
	got := maskEmails(`cannot handle "alice@example.com", bob@example.org`)
	if strings.Contains(got, "@") || !strings.HasPrefix(got, "cannot handle") {
		t.Errorf("maskEmails = %q", got)
	}
	if s := truncate("ab€", 3); s != "ab…" {
		t.Errorf("truncate cut inside a rune: %q", s)
	}
}
