package metrics

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// heraldMetric finds Herald's metric names in a PromQL expression.
var heraldMetric = regexp.MustCompile(`herald_[a-z_]+`)

// known returns the metric names this package defines (in its source).
func known(t *testing.T) string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	return src.String()
}

// checkNames fails for every Herald metric expr names that this package
// does not define (histograms are named with _bucket, _sum and _count).
func checkNames(t *testing.T, where, expr, src string) {
	t.Helper()
	names := heraldMetric.FindAllString(expr, -1)
	if len(names) == 0 {
		t.Errorf("%s: %q names no Herald metric", where, expr)
	}
	for _, n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !strings.Contains(src, `"`+base+`"`) {
			t.Errorf("%s: %s is not a metric Herald exports", where, n)
		}
	}
}

// TestMonitoring_TheDashboardAndAlertsParseAndNameRealMetrics reads
// docs/monitoring's Grafana dashboard and Prometheus rules: both parse,
// and every metric they use is one Herald exports.
func TestMonitoring_TheDashboardAndAlertsParseAndNameRealMetrics(t *testing.T) {
	src := known(t)
	b, err := os.ReadFile("../../docs/monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) < 5 {
		t.Fatalf("the dashboard has %d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkNames(t, "panel "+p.Title, q.Expr, src)
		}
	}

	b, err = os.ReadFile("../../docs/monitoring/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string
			Rules []struct {
				Alert, Expr string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("the alerts: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			if r.Alert == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v has no name or summary", r)
			}
			checkNames(t, "alert "+r.Alert, r.Expr, src)
		}
	}
	if n < 5 {
		t.Errorf("%d alerting rules", n)
	}
}
