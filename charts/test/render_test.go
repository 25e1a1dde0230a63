package charttest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/releaseutil"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// chartDir is the chart under test.
const chartDir = "../badge-bridge"

// The release every case is rendered as.
const (
	releaseName = "badges"
	namespace   = "badges"
	fullname    = "badges-badge-bridge"
)

// kubeVersion is the cluster the chart is rendered for: the newest the chart's features need
// (web.preStopSleepSeconds uses the sleep action of 1.30).
var kubeVersion = &chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}

// valuesCase is one set of values the chart is linted and rendered with.
type valuesCase struct {
	name string
	vals map[string]any
}

// loadChart loads the chart from its directory, as helm install ./charts/badge-bridge does.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	return c
}

// ciCases are the default values and every ci/*.yaml values file (chart-testing's cases).
func ciCases(t *testing.T) []valuesCase {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no ci/*.yaml values files")
	}
	cases := []valuesCase{{name: "default values", vals: map[string]any{}}}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		cases = append(cases, valuesCase{name: "ci/" + filepath.Base(f), vals: v.AsMap()})
	}
	return cases
}

// values parses YAML values given inline.
func values(t *testing.T, y string) map[string]any {
	t.Helper()
	v, err := chartutil.ReadValues([]byte(y))
	if err != nil {
		t.Fatalf("values %q: %v", y, err)
	}
	return v.AsMap()
}

// render renders the chart as `helm install --dry-run` with no cluster does (client only), and
// returns the manifests and NOTES.txt.
func render(t *testing.T, c *chart.Chart, vals map[string]any) (map[string]string, string, error) {
	t.Helper()
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun, install.ClientOnly, install.Replace = true, true, true
	install.ReleaseName, install.Namespace = releaseName, namespace
	install.KubeVersion = kubeVersion
	rel, err := install.Run(c, vals)
	if err != nil {
		return nil, "", err
	}
	if len(rel.Hooks) > 0 {
		t.Errorf("the chart renders %d hooks; these tests only check plain manifests", len(rel.Hooks))
	}
	return releaseutil.SplitManifests(rel.Manifest), rel.Info.Notes, nil
}

// objects is a rendered release, decoded into Kubernetes types.
type objects struct {
	deployments     map[string]*appsv1.Deployment
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	ingresses       map[string]*networkingv1.Ingress
	networkPolicies map[string]*networkingv1.NetworkPolicy
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	serviceMonitors map[string]*monitoringv1.ServiceMonitor
	prometheusRules map[string]*monitoringv1.PrometheusRule
	notes           string
}

// decodeStrict decodes one manifest into obj, refusing unknown and duplicate fields: a field the
// Kubernetes API does not know (a typo, a wrong indentation) fails the test here instead of
// being dropped by the API server.
func decodeStrict(doc string, obj any) error {
	return yaml.UnmarshalStrict([]byte(doc), obj)
}

// renderObjects renders vals and decodes every manifest; a kind the tests do not know fails.
func renderObjects(t *testing.T, c *chart.Chart, vals map[string]any) *objects {
	t.Helper()
	docs, notes, err := render(t, c, vals)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	o := &objects{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{}, ingresses: map[string]*networkingv1.Ingress{},
		networkPolicies: map[string]*networkingv1.NetworkPolicy{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, serviceMonitors: map[string]*monitoringv1.ServiceMonitor{},
		prometheusRules: map[string]*monitoringv1.PrometheusRule{}, notes: notes,
	}
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		doc := docs[k]
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s: %v\n%s", k, err, doc)
		}
		gvk := tm.APIVersion + "/" + tm.Kind
		var (
			obj   metav1.Object
			store func() bool // files the decoded object; false if its name is taken
		)
		switch gvk {
		case "apps/v1/Deployment":
			x := &appsv1.Deployment{}
			obj, store = x, func() bool { return put(o.deployments, x.Name, x) }
		case "v1/Service":
			x := &corev1.Service{}
			obj, store = x, func() bool { return put(o.services, x.Name, x) }
		case "v1/ConfigMap":
			x := &corev1.ConfigMap{}
			obj, store = x, func() bool { return put(o.configMaps, x.Name, x) }
		case "v1/Secret":
			x := &corev1.Secret{}
			obj, store = x, func() bool { return put(o.secrets, x.Name, x) }
		case "v1/ServiceAccount":
			x := &corev1.ServiceAccount{}
			obj, store = x, func() bool { return put(o.serviceAccounts, x.Name, x) }
		case "networking.k8s.io/v1/Ingress":
			x := &networkingv1.Ingress{}
			obj, store = x, func() bool { return put(o.ingresses, x.Name, x) }
		case "networking.k8s.io/v1/NetworkPolicy":
			x := &networkingv1.NetworkPolicy{}
			obj, store = x, func() bool { return put(o.networkPolicies, x.Name, x) }
		case "policy/v1/PodDisruptionBudget":
			x := &policyv1.PodDisruptionBudget{}
			obj, store = x, func() bool { return put(o.pdbs, x.Name, x) }
		case "autoscaling/v2/HorizontalPodAutoscaler":
			x := &autoscalingv2.HorizontalPodAutoscaler{}
			obj, store = x, func() bool { return put(o.hpas, x.Name, x) }
		case "monitoring.coreos.com/v1/ServiceMonitor":
			x := &monitoringv1.ServiceMonitor{}
			obj, store = x, func() bool { return put(o.serviceMonitors, x.Name, x) }
		case "monitoring.coreos.com/v1/PrometheusRule":
			x := &monitoringv1.PrometheusRule{}
			obj, store = x, func() bool { return put(o.prometheusRules, x.Name, x) }
		default:
			t.Fatalf("%s: kind %s that the chart tests do not know: add it to renderObjects", k, gvk)
		}
		if err := decodeStrict(doc, obj); err != nil {
			t.Fatalf("%s (%s) does not decode strictly: %v\n%s", k, gvk, err, doc)
		}
		name := obj.GetName()
		if !store() {
			t.Errorf("%s: two %s named %s", k, gvk, name)
		}
		if name == "" {
			t.Errorf("%s: %s without a name", k, gvk)
		}
		if ns := obj.GetNamespace(); ns == "" {
			t.Errorf("%s: %s %s without a namespace", k, gvk, name)
		}
		if obj.GetLabels()["app.kubernetes.io/part-of"] != "badge-bridge" || obj.GetLabels()["app.kubernetes.io/instance"] != releaseName {
			t.Errorf("%s: %s %s lacks the chart's labels: %v", k, gvk, name, obj.GetLabels())
		}
	}
	return o
}

// forEachCase runs f for the default values and every ci/*.yaml file.
func forEachCase(t *testing.T, f func(t *testing.T, o *objects, vals map[string]any)) {
	c := loadChart(t)
	for _, vc := range ciCases(t) {
		t.Run(vc.name, func(t *testing.T) {
			f(t, renderObjects(t, c, vc.vals), vc.vals)
		})
	}
}

// readFile reads a file of the repository relative to this directory.
func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// put adds v to m under name unless the name is taken.
func put[V any](m map[string]V, name string, v V) bool {
	if _, ok := m[name]; ok {
		return false
	}
	m[name] = v
	return true
}

func names[V any](m map[string]V) string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return fmt.Sprint(out)
}

// yamlMarshal writes v as YAML.
func yamlMarshal(v any) ([]byte, error) { return yaml.Marshal(v) }
