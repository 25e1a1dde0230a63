package charttest

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The ports of the bridge's two listeners, as the chart names them on the containers.
const (
	httpPort  = "http"  // public: webhooks, /healthz, /readyz (web pods only)
	adminPort = "admin" // admin API, dashboard, /metrics, /healthz, /readyz
)

// helm lint --strict passes (warnings count) for the default values and every ci/*.yaml file.
func TestLint(t *testing.T) {
	for _, vc := range ciCases(t) {
		t.Run(vc.name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict, lint.Namespace, lint.KubeVersion = true, namespace, kubeVersion
			res := lint.Run([]string{chartDir}, vc.vals)
			for _, m := range res.Messages {
				t.Logf("lint: %s", m)
			}
			if len(res.Errors) > 0 || res.TotalChartsLinted != 1 {
				t.Fatalf("helm lint --strict: %d chart(s) linted, errors %v", res.TotalChartsLinted, res.Errors)
			}
		})
	}
}

// Both Deployments render, with selectors that match their own pods and no other Deployment's.
func TestDeploymentSelectors(t *testing.T) {
	forEachCase(t, func(t *testing.T, o *objects, _ map[string]any) {
		if names(o.deployments) != "["+fullname+"-web "+fullname+"-worker]" {
			t.Fatalf("deployments %s, want web and worker", names(o.deployments))
		}
		for name, d := range o.deployments {
			sel := selector(t, d.Spec.Selector)
			if sel.Empty() {
				t.Errorf("%s: empty selector", name)
			}
			if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s: selector %v does not match its pod labels %v", name, sel, d.Spec.Template.Labels)
			}
			for other, d2 := range o.deployments {
				if other != name && sel.Matches(labels.Set(d2.Spec.Template.Labels)) {
					t.Errorf("%s: selector %v also matches the pods of %s", name, sel, other)
				}
			}
		}
	})
}

// Every Service selects the pods of exactly one Deployment and targets ports those pods have;
// PDBs select their Deployment's pods; HPAs scale a rendered Deployment, which then omits replicas.
func TestServicesPDBsAndHPAs(t *testing.T) {
	forEachCase(t, func(t *testing.T, o *objects, _ map[string]any) {
		want := map[string]string{fullname: "web", fullname + "-admin": "web", fullname + "-worker-metrics": "worker"}
		if len(o.services) != len(want) {
			t.Errorf("services %s, want %d", names(o.services), len(want))
		}
		for name, s := range o.services {
			if len(s.Spec.Selector) == 0 {
				t.Errorf("service %s selects nothing", name)
				continue
			}
			d := selected(t, o, labels.SelectorFromSet(s.Spec.Selector))
			if len(d) != 1 {
				t.Errorf("service %s selects the pods of %v, want exactly one Deployment", name, d)
				continue
			}
			if c := want[name]; d[0] != fullname+"-"+c {
				t.Errorf("service %s selects %s, want the %s pods", name, d[0], c)
			}
			pod := o.deployments[d[0]].Spec.Template
			for _, p := range s.Spec.Ports {
				if _, ok := containerPort(pod, p.TargetPort); !ok {
					t.Errorf("service %s port %s targets %s, which the pods of %s do not have", name, p.Name, p.TargetPort.String(), d[0])
				}
			}
		}
		for name, p := range o.pdbs {
			d := selected(t, o, selector(t, p.Spec.Selector))
			if len(d) != 1 || d[0] != name {
				t.Errorf("PDB %s selects the pods of %v, want %s", name, d, name)
			}
		}
		for name, h := range o.hpas {
			ref := h.Spec.ScaleTargetRef
			d, ok := o.deployments[ref.Name]
			if !ok || ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" {
				t.Errorf("HPA %s scales %s %s, which is not rendered", name, ref.Kind, ref.Name)
				continue
			}
			if d.Spec.Replicas != nil {
				t.Errorf("HPA %s scales %s, which still sets replicas: they would fight", name, ref.Name)
			}
		}
	})
}

// Liveness probes GET /healthz and readiness probes GET /readyz, on ports the container has.
func TestProbes(t *testing.T) {
	forEachCase(t, func(t *testing.T, o *objects, _ map[string]any) {
		for name, d := range o.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				for _, p := range []struct {
					kind  string
					probe *corev1.Probe
					path  string
				}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
					if p.probe == nil || p.probe.HTTPGet == nil {
						t.Errorf("%s/%s: no HTTP %s probe", name, c.Name, p.kind)
						continue
					}
					if p.probe.HTTPGet.Path != p.path {
						t.Errorf("%s/%s: %s probe GET %s, want %s", name, c.Name, p.kind, p.probe.HTTPGet.Path, p.path)
					}
					if _, ok := containerPort(d.Spec.Template, p.probe.HTTPGet.Port); !ok {
						t.Errorf("%s/%s: %s probe on port %s, which the container does not have", name, c.Name, p.kind, p.probe.HTTPGet.Port.String())
					}
				}
			}
		}
	})
}

// Pods run as non-root (65532) with a read-only root filesystem, no privilege escalation, every
// capability dropped, and no service-account token.
func TestSecurityContexts(t *testing.T) {
	forEachCase(t, func(t *testing.T, o *objects, _ map[string]any) {
		for name, d := range o.deployments {
			spec := d.Spec.Template.Spec
			psc := spec.SecurityContext
			if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
				t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
			}
			if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
				t.Errorf("%s: pod securityContext.runAsUser is not 65532 (the distroless nonroot user)", name)
			}
			if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod seccompProfile is not RuntimeDefault", name)
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("%s: the service-account token is mounted", name)
			}
			if spec.HostNetwork || spec.HostPID || spec.HostIPC {
				t.Errorf("%s: uses a host namespace", name)
			}
			for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
				sc := c.SecurityContext
				switch {
				case sc == nil:
					t.Errorf("%s/%s: no container securityContext", name, c.Name)
					continue
				case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
					t.Errorf("%s/%s: runAsNonRoot is not true", name, c.Name)
				case sc.RunAsUser != nil && *sc.RunAsUser == 0:
					t.Errorf("%s/%s: runs as root", name, c.Name)
				}
				if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s/%s: allowPrivilegeEscalation is not false", name, c.Name)
				}
				if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
					t.Errorf("%s/%s: readOnlyRootFilesystem is not true", name, c.Name)
				}
				if sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s/%s: privileged", name, c.Name)
				}
				if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s/%s: capabilities %+v, want drop ALL and nothing added", name, c.Name, sc.Capabilities)
				}
			}
		}
	})
}

// The admin port (admin API, dashboard, /metrics) is never behind the public Service or the
// Ingress, and the admin Services stay inside the cluster.
func TestAdminPortNotPublic(t *testing.T) {
	forEachCase(t, func(t *testing.T, o *objects, _ map[string]any) {
		public, ok := o.services[fullname]
		if !ok {
			t.Fatalf("no public Service %s", fullname)
		}
		web := o.deployments[fullname+"-web"].Spec.Template
		admin, ok := containerPort(web, intstr.FromString(adminPort))
		if !ok {
			t.Fatal("the web pods have no admin port")
		}
		for _, p := range public.Spec.Ports {
			cp, _ := containerPort(web, p.TargetPort)
			if cp.Name != httpPort || cp.ContainerPort == admin.ContainerPort {
				t.Errorf("public Service port %s targets %s (%s/%d), want only the public listener", p.Name, p.TargetPort.String(), cp.Name, cp.ContainerPort)
			}
		}
		for _, name := range []string{fullname + "-admin", fullname + "-worker-metrics"} {
			if s := o.services[name]; s.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("%s is %s, want ClusterIP", name, s.Spec.Type)
			}
		}
		for name, ing := range o.ingresses {
			if ing.Spec.DefaultBackend != nil {
				t.Errorf("ingress %s has a default backend", name)
			}
			for _, r := range ing.Spec.Rules {
				if r.HTTP == nil {
					continue
				}
				for _, p := range r.HTTP.Paths {
					b := p.Backend.Service
					if b == nil || b.Name != fullname {
						t.Errorf("ingress %s path %s goes to %+v, want only the public Service", name, p.Path, p.Backend)
						continue
					}
					sp := servicePort(public, b.Port.Name, b.Port.Number)
					if sp == nil {
						t.Errorf("ingress %s path %s: the public Service has no port %+v", name, p.Path, b.Port)
						continue
					}
					if cp, _ := containerPort(web, sp.TargetPort); cp.Name != httpPort {
						t.Errorf("ingress %s path %s reaches container port %s, want %s", name, p.Path, cp.Name, httpPort)
					}
					if !slices.Contains([]string{"/v1/webhooks/openedx", "/healthz"}, p.Path) {
						t.Errorf("ingress %s routes %s; only the webhook and /healthz are public", name, p.Path)
					}
				}
			}
		}
	})
}

// The ServiceMonitor scrapes /metrics on the admin port of the web and worker pods, and copies
// the labels the alert rules and the dashboard group by.
func TestServiceMonitor(t *testing.T) {
	forEachCase(t, func(t *testing.T, o *objects, vals map[string]any) {
		sm, ok := o.serviceMonitors[fullname]
		if enabled(vals, "serviceMonitor") != ok {
			t.Fatalf("ServiceMonitor rendered: %v, serviceMonitor.enabled: %v", ok, enabled(vals, "serviceMonitor"))
		}
		if !ok {
			return
		}
		sel := selector(t, &sm.Spec.Selector)
		var scraped []string
		for name, s := range o.services {
			if !sel.Matches(labels.Set(s.Labels)) {
				continue
			}
			scraped = append(scraped, selected(t, o, labels.SelectorFromSet(s.Spec.Selector))...)
			for _, ep := range sm.Spec.Endpoints {
				p := servicePort(s, ep.Port, 0)
				if p == nil {
					t.Errorf("ServiceMonitor endpoint port %q is not a port of Service %s", ep.Port, name)
					continue
				}
				pod := o.deployments[selected(t, o, labels.SelectorFromSet(s.Spec.Selector))[0]].Spec.Template
				if cp, _ := containerPort(pod, p.TargetPort); cp.Name != adminPort || ep.Path != "/metrics" {
					t.Errorf("ServiceMonitor scrapes %s on container port %s of Service %s, want /metrics on %s", ep.Path, cp.Name, name, adminPort)
				}
			}
		}
		slices.Sort(scraped)
		if want := []string{fullname + "-web", fullname + "-worker"}; !slices.Equal(scraped, want) {
			t.Errorf("ServiceMonitor scrapes the pods of %v, want %v", scraped, want)
		}
		for _, l := range []string{"app.kubernetes.io/part-of", "app.kubernetes.io/instance", "app.kubernetes.io/component"} {
			if !slices.Contains(sm.Spec.PodTargetLabels, l) {
				t.Errorf("ServiceMonitor podTargetLabels %v lack %s, which the alerts and dashboard use", sm.Spec.PodTargetLabels, l)
			}
			for name, d := range o.deployments {
				if d.Spec.Template.Labels[l] == "" {
					t.Errorf("the pods of %s lack the label %s", name, l)
				}
			}
		}
	})
}

// The PrometheusRule is files/alerts.yaml as it is (the file promtool tests), and a valid
// PrometheusRule spec.
func TestPrometheusRule(t *testing.T) {
	var file monitoringv1.PrometheusRuleSpec
	if err := decodeStrict(string(readFile(t, chartDir+"/files/alerts.yaml")), &file); err != nil {
		t.Fatalf("files/alerts.yaml is not a PrometheusRule spec: %v", err)
	}
	if len(file.Groups) == 0 || len(file.Groups[0].Rules) == 0 {
		t.Fatal("files/alerts.yaml has no rules")
	}
	forEachCase(t, func(t *testing.T, o *objects, vals map[string]any) {
		pr, ok := o.prometheusRules[fullname]
		if enabled(vals, "prometheusRule") != ok || len(o.prometheusRules) > 1 {
			t.Fatalf("PrometheusRules %s, prometheusRule.enabled: %v", names(o.prometheusRules), enabled(vals, "prometheusRule"))
		}
		if ok && !reflect.DeepEqual(pr.Spec, file) {
			t.Errorf("the PrometheusRule's spec differs from files/alerts.yaml")
		}
	})
}

// The dashboard ConfigMap carries files/dashboard.json unchanged, with the sidecar's label.
func TestGrafanaDashboard(t *testing.T) {
	file := strings.TrimRight(string(readFile(t, chartDir+"/files/dashboard.json")), "\n")
	var dash struct {
		UID, Title string
		Panels     []json.RawMessage
	}
	if err := json.Unmarshal([]byte(file), &dash); err != nil || dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("files/dashboard.json: %v (uid %q, title %q, %d panels)", err, dash.UID, dash.Title, len(dash.Panels))
	}
	forEachCase(t, func(t *testing.T, o *objects, vals map[string]any) {
		cm, ok := o.configMaps[fullname+"-dashboard"]
		if enabled(vals, "grafanaDashboard") != ok {
			t.Fatalf("dashboard ConfigMap rendered: %v, grafanaDashboard.enabled: %v", ok, enabled(vals, "grafanaDashboard"))
		}
		if !ok {
			return
		}
		if cm.Labels["grafana_dashboard"] != "1" {
			t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard: \"1\"", cm.Labels)
		}
		if len(cm.Data) != 1 || cm.Data["badge-bridge.json"] != file {
			t.Errorf("dashboard ConfigMap data differs from files/dashboard.json (keys %v)", keysOf(cm.Data))
		}
	})
}

// eox-hooks can send only a query token: the chart's NOTES tell how to give it one, and a
// query token reaches the web pods (and only them) as BRIDGE_WEBHOOK_QUERY_TOKENS_FILE.
func TestQueryTokenForEoxHooks(t *testing.T) {
	c := loadChart(t)
	o := renderObjects(t, c, values(t, `
redis: {url: "redis://redis:6379/0"}
badgr: {url: "https://api.badgr.io"}
webhook: {queryTokens: ["0123456789abcdef0123456789abcdef0123"]}
`))
	if !strings.Contains(o.notes, "?token=") || !strings.Contains(o.notes, "eox-hooks") {
		t.Errorf("NOTES do not tell how eox-hooks sends its query token:\n%s", o.notes)
	}
	for name, d := range o.deployments {
		var has bool
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "BRIDGE_WEBHOOK_QUERY_TOKENS" {
				t.Errorf("%s: the query token is a plain environment variable", name)
			}
			has = has || e.Name == "BRIDGE_WEBHOOK_QUERY_TOKENS_FILE"
		}
		if want := strings.HasSuffix(name, "-web"); has != want {
			t.Errorf("%s: BRIDGE_WEBHOOK_QUERY_TOKENS_FILE set: %v, want %v", name, has, want)
		}
	}
	if s := o.secrets[fullname+"-secrets"]; s == nil || len(s.Data["webhook-query-tokens"]) == 0 {
		t.Error("the chart's Secret lacks webhook-query-tokens")
	}
	// Without any webhook credential the NOTES say so.
	if o := renderObjects(t, c, map[string]any{}); !strings.Contains(o.notes, "webhook.queryTokens") {
		t.Errorf("NOTES without credentials do not name webhook.queryTokens:\n%s", o.notes)
	}
}

// selector converts a label selector, failing the test on an invalid one.
func selector(t *testing.T, s *metav1.LabelSelector) labels.Selector {
	t.Helper()
	if s == nil {
		return labels.Nothing()
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	if err != nil {
		t.Fatalf("selector %+v: %v", s, err)
	}
	return sel
}

// selected names the Deployments whose pods sel matches.
func selected(t *testing.T, o *objects, sel labels.Selector) []string {
	t.Helper()
	var out []string
	for name, d := range o.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// containerPort resolves a port reference (a name or a number) against the pod's containers.
func containerPort(pod corev1.PodTemplateSpec, ref intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if (ref.Type == intstr.String && p.Name == ref.StrVal) || (ref.Type == intstr.Int && p.ContainerPort == ref.IntVal) {
				return p, true
			}
		}
	}
	return corev1.ContainerPort{}, false
}

// servicePort finds a Service port by name or, when name is empty, by number.
func servicePort(s *corev1.Service, name string, number int32) *corev1.ServicePort {
	for i, p := range s.Spec.Ports {
		if (name != "" && p.Name == name) || (name == "" && p.Port == number) {
			return &s.Spec.Ports[i]
		}
	}
	return nil
}

// enabled reads <key>.enabled from the values a case sets, with the chart's default.
func enabled(vals map[string]any, key string) bool {
	defaults := map[string]bool{"serviceMonitor": false, "prometheusRule": false, "grafanaDashboard": false, "networkPolicy": true}
	if m, ok := vals[key].(map[string]any); ok {
		if v, ok := m["enabled"].(bool); ok {
			return v
		}
	}
	return defaults[key]
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
