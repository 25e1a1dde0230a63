package charttest

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// access is who may open connections to one port of one pod under the rendered NetworkPolicies,
// evaluated as Kubernetes does: a pod selected by a policy with Ingress in its policyTypes is
// isolated, and then only what some rule of some selecting policy allows gets in.
type access struct {
	isolated bool
	anyone   bool                             // a rule with no `from`: any source
	peers    []networkingv1.NetworkPolicyPeer // the sources of the rules that allow the port
}

func allowed(o *objects, pod corev1.PodTemplateSpec, port corev1.ContainerPort) access {
	var a access
	for _, np := range o.networkPolicies {
		if np.Namespace != namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		ingress := len(np.Spec.PolicyTypes) == 0 // the API's default: Ingress
		for _, pt := range np.Spec.PolicyTypes {
			ingress = ingress || pt == networkingv1.PolicyTypeIngress
		}
		if !ingress {
			continue
		}
		a.isolated = true
		for _, r := range np.Spec.Ingress {
			if !rulePortMatches(r.Ports, port) {
				continue
			}
			if len(r.From) == 0 {
				a.anyone = true
			}
			a.peers = append(a.peers, r.From...)
		}
	}
	return a
}

// rulePortMatches reports whether a rule's ports include the container port (no ports: all).
func rulePortMatches(ports []networkingv1.NetworkPolicyPort, cp corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		cproto := cp.Protocol
		if cproto == "" {
			cproto = corev1.ProtocolTCP
		}
		if proto != cproto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String && p.Port.StrVal == cp.Name:
			return true
		case p.Port.Type == intstr.Int && p.EndPort == nil && p.Port.IntVal == cp.ContainerPort:
			return true
		case p.Port.Type == intstr.Int && p.EndPort != nil && p.Port.IntVal <= cp.ContainerPort && cp.ContainerPort <= *p.EndPort:
			return true
		}
	}
	return false
}

// checkPolicy checks every container port of the web and worker pods: the admin port only from
// adminFrom (nobody when empty), the public port from httpFrom (anyone when empty).
func checkPolicy(t *testing.T, o *objects, adminFrom, httpFrom []networkingv1.NetworkPolicyPeer) {
	t.Helper()
	if len(o.networkPolicies) == 0 {
		t.Fatal("no NetworkPolicy rendered")
	}
	for name, d := range o.deployments {
		pod := d.Spec.Template
		for _, c := range pod.Spec.Containers {
			for _, port := range c.Ports {
				a := allowed(o, pod, port)
				if !a.isolated {
					t.Errorf("%s port %s: no NetworkPolicy isolates the pods; any pod in the cluster reaches it", name, port.Name)
					continue
				}
				switch port.Name {
				case adminPort:
					if a.anyone {
						t.Errorf("%s port %s is open to any source", name, port.Name)
					}
					if !samePeers(a.peers, adminFrom) {
						t.Errorf("%s port %s reachable from %+v, want exactly %+v", name, port.Name, a.peers, adminFrom)
					}
					for _, p := range a.peers {
						if p.NamespaceSelector == nil || p.IPBlock != nil {
							t.Errorf("%s port %s: peer %+v is not a namespace selector", name, port.Name, p)
						}
					}
				case httpPort:
					if len(httpFrom) == 0 {
						if !a.anyone {
							t.Errorf("%s port %s (webhooks) is not reachable from any source; peers %+v", name, port.Name, a.peers)
						}
					} else if a.anyone || !samePeers(a.peers, httpFrom) {
						t.Errorf("%s port %s reachable from %+v (anyone: %v), want exactly %+v", name, port.Name, a.peers, a.anyone, httpFrom)
					}
				default:
					t.Errorf("%s has a port %s these tests do not know", name, port.Name)
				}
			}
		}
	}
}

func samePeers(got, want []networkingv1.NetworkPolicyPeer) bool {
	if len(got) == 0 && len(want) == 0 {
		return true
	}
	return reflect.DeepEqual(got, want)
}

// The chart's NetworkPolicy is on by default: the admin port (admin API, dashboard, /metrics)
// is closed to every pod, the webhook port stays open to any source.
func TestNetworkPolicyDefault(t *testing.T) {
	forEachCase(t, func(t *testing.T, o *objects, vals map[string]any) {
		if !enabled(vals, "networkPolicy") {
			t.Skip("networkPolicy disabled in this case")
		}
		var adminFrom, httpFrom []networkingv1.NetworkPolicyPeer
		if np, ok := vals["networkPolicy"].(map[string]any); ok {
			adminFrom, httpFrom = peersOf(t, np["adminFrom"]), peersOf(t, np["httpFrom"])
		}
		checkPolicy(t, o, adminFrom, httpFrom)
	})
}

// The namespaces the operator names reach the admin port, and only they; httpFrom narrows the
// webhook port; disabled renders no policy.
func TestNetworkPolicyValues(t *testing.T) {
	c := loadChart(t)
	t.Run("adminFrom and httpFrom", func(t *testing.T) {
		vals := values(t, `
networkPolicy:
  adminFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
      podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}
    - namespaceSelector:
        matchExpressions: [{key: team, operator: In, values: [badge-ops]}]
  httpFrom:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
`)
		np := vals["networkPolicy"].(map[string]any)
		checkPolicy(t, renderObjects(t, c, vals), peersOf(t, np["adminFrom"]), peersOf(t, np["httpFrom"]))
	})
	t.Run("disabled", func(t *testing.T) {
		o := renderObjects(t, c, values(t, "networkPolicy: {enabled: false}"))
		if len(o.networkPolicies) != 0 {
			t.Errorf("networkPolicy.enabled=false still renders %s", names(o.networkPolicies))
		}
	})
	// A peer without a namespaceSelector would mean every pod of the release's namespace, an
	// ipBlock any address: the schema refuses both.
	for _, bad := range []string{
		"networkPolicy: {adminFrom: [{podSelector: {}}]}",
		"networkPolicy: {adminFrom: [{ipBlock: {cidr: 0.0.0.0/0}}]}",
		"networkPolicy: {adminFrom: [{namespaceSelector: {}, ipBlock: {cidr: 0.0.0.0/0}}]}",
		"networkPolicy: {httpFrom: [{podSelector: {}}]}",
		"networkPolicy: {adminFrom: [{namespaceSelector: {matchLabel: {a: b}}}]}",
	} {
		if _, _, err := render(t, c, values(t, bad)); err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("%s: rendered (err %v), want a schema error", bad, err)
		}
	}
	// With a ServiceMonitor but nobody allowed on the admin port, Prometheus cannot scrape: the
	// NOTES say so.
	o := renderObjects(t, c, values(t, "serviceMonitor: {enabled: true}"))
	if !strings.Contains(o.notes, "networkPolicy.adminFrom") {
		t.Errorf("NOTES do not warn that Prometheus cannot scrape without networkPolicy.adminFrom:\n%s", o.notes)
	}
}

// peersOf converts the values' peer list into the Kubernetes type.
func peersOf(t *testing.T, v any) []networkingv1.NetworkPolicyPeer {
	t.Helper()
	if v == nil {
		return nil
	}
	b, err := yamlMarshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out []networkingv1.NetworkPolicyPeer
	if err := decodeStrict(string(b), &out); err != nil {
		t.Fatalf("peers %v: %v", v, err)
	}
	return out
}
