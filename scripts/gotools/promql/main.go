// Command promql checks the operator's Grafana dashboard and alert rules with Prometheus's
// own PromQL parser and engine (github.com/prometheus/prometheus), for the tests of
// deploy/monitoring (scripts/gotool.sh promql). Test tooling only; never product code.
//
//	promql dashboard DASHBOARD.json SCRAPE...
//	promql rules RULES.yaml
//
// dashboard: lints the dashboard (the rules of Grafana's dashboard-linter that apply to
// one dashboard: a templated Prometheus datasource used by every panel, a title and a
// description on every panel, a unit on every graph and stat, rate-like functions over
// $__rate_interval, every query parsing as PromQL), then loads the scrapes (OpenMetrics
// text of /metrics, one minute apart) into a TSDB and evaluates every panel's query at
// the last scrape (as scraped from one target: job and instance labels added). Prints one
// JSON line per query:
// {"panel": "...", "expr": "...", "metrics": [...], "series": N, "error": "..."}
// and then {"lint": ["problem", ...]}.
//
// rules: parses an alert rules file the way Prometheus loads it and prints one JSON line per
// rule: {"rule": "...", "expr": "...", "metrics": [...]}.
//
// Exit status 1 with the reason on stderr when an input cannot be read or parsed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"
)

var promqlParser = parser.NewParser(parser.Options{})

// Grafana's variables, replaced the way Grafana does before the query reaches Prometheus.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "2m",
	"$__interval", "1m",
	"$__range", "5m",
	"${binding:regex}", ".*",
	"$binding", ".*",
)

type panel struct {
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Type        string          `json:"type"`
	Datasource  json.RawMessage `json:"datasource"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []struct {
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type queryReport struct {
	Panel   string   `json:"panel"`
	Expr    string   `json:"expr"`
	Metrics []string `json:"metrics"`
	Series  int      `json:"series"`
	Error   string   `json:"error,omitempty"`
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "promql: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) >= 3 && args[0] == "dashboard" {
		return checkDashboard(args[1], args[2:], out)
	}
	if len(args) == 2 && args[0] == "rules" {
		return listRules(args[1], out)
	}
	return errors.New("usage: promql dashboard DASHBOARD.json SCRAPE... | promql rules RULES.yaml")
}

// metricNames lists the metric names an expression selects, sorted.
func metricNames(expr parser.Expr) []string {
	seen := map[string]bool{}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		if vs, ok := node.(*parser.VectorSelector); ok && vs.Name != "" {
			seen[vs.Name] = true
		}
		return nil
	})
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func listRules(path string, out io.Writer) error {
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promqlParser, nil)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	enc := json.NewEncoder(out)
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, err := promqlParser.ParseExpr(r.Expr)
			if err != nil {
				return fmt.Errorf("%s: rule %s%s: %w", path, r.Alert, r.Record, err)
			}
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			if err := enc.Encode(map[string]any{"rule": name, "expr": r.Expr, "metrics": metricNames(expr)}); err != nil {
				return err
			}
		}
	}
	return nil
}

var rateLike = regexp.MustCompile(`\b(rate|irate|increase|delta|idelta|deriv)\s*\(`)

// usesDatasourceVariable: the panel's (or target's) datasource is the dashboard's
// datasource variable, so the dashboard works against any Prometheus.
func usesDatasourceVariable(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	var ref struct {
		UID string `json:"uid"`
	}
	if json.Unmarshal(raw, &ref) == nil && ref.UID != "" {
		return ref.UID == "${datasource}" || ref.UID == "$datasource"
	}
	var s string
	return json.Unmarshal(raw, &s) == nil && (s == "${datasource}" || s == "$datasource")
}

func flatten(panels []panel) []panel {
	var all []panel
	for _, p := range panels {
		all = append(all, p)
		all = append(all, flatten(p.Panels)...)
	}
	return all
}

func lint(d *dashboard) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if d.Title == "" || d.UID == "" {
		add("the dashboard needs a title and a uid")
	}
	hasDatasource := false
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			hasDatasource = true
		}
	}
	if !hasDatasource {
		add("template-datasource-rule: no templated Prometheus datasource named 'datasource'")
	}
	for _, p := range flatten(d.Panels) {
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			add("panel-title-description-rule: a %s panel has no title", p.Type)
		}
		if p.Description == "" {
			add("panel-title-description-rule: panel %q has no description", p.Title)
		}
		if !usesDatasourceVariable(p.Datasource) {
			add("panel-datasource-rule: panel %q does not use the ${datasource} variable", p.Title)
		}
		if (p.Type == "timeseries" || p.Type == "stat" || p.Type == "gauge" || p.Type == "bargauge") && p.FieldConfig.Defaults.Unit == "" {
			add("panel-units-rule: panel %q has no unit", p.Title)
		}
		if len(p.Targets) == 0 {
			add("panel %q has no query", p.Title)
		}
		for _, t := range p.Targets {
			if len(t.Datasource) > 0 && !usesDatasourceVariable(t.Datasource) {
				add("panel-datasource-rule: a query of panel %q does not use ${datasource}", p.Title)
			}
			if rateLike.MatchString(t.Expr) && !strings.Contains(t.Expr, "$__rate_interval") {
				add("target-rate-interval-rule: panel %q: %s should range over $__rate_interval", p.Title, t.Expr)
			}
		}
	}
	return problems
}

// load writes the scrapes into a fresh TSDB, one minute apart; it returns the time of the
// last one.
func load(db *tsdb.DB, scrapes []string) (time.Time, error) {
	start := time.Now().Add(-time.Duration(len(scrapes)) * time.Minute).Truncate(time.Minute)
	at := start
	for i, path := range scrapes {
		at = start.Add(time.Duration(i) * time.Minute)
		body, err := os.ReadFile(path)
		if err != nil {
			return at, err
		}
		app := db.Appender(context.Background())
		p := textparse.NewOpenMetricsParser(body, labels.NewSymbolTable())
		for {
			entry, err := p.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return at, fmt.Errorf("%s: %w", path, err)
			}
			if entry != textparse.EntrySeries {
				continue
			}
			_, _, value := p.Series()
			var scraped labels.Labels
			p.Labels(&scraped)
			// The target labels Prometheus adds to every scraped series.
			lset := labels.NewBuilder(scraped).Set("job", "binauthz-operator").Set("instance", "operator:8080").Labels()
			if _, err := app.Append(0, lset, at.UnixMilli(), value); err != nil {
				return at, fmt.Errorf("%s: %s: %w", path, lset, err)
			}
		}
		if err := app.Commit(); err != nil {
			return at, err
		}
	}
	return at, nil
}

func checkDashboard(path string, scrapes []string, out io.Writer) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dir, err := os.MkdirTemp("", "promql-tsdb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		return err
	}
	defer db.Close()
	at, err := load(db, scrapes)
	if err != nil {
		return err
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1_000_000, Timeout: 30 * time.Second, LookbackDelta: 5 * time.Minute, Parser: promqlParser})
	enc := json.NewEncoder(out)
	for _, p := range flatten(d.Panels) {
		for _, t := range p.Targets {
			report := queryReport{Panel: p.Title, Expr: t.Expr, Metrics: []string{}}
			query := grafanaVariables.Replace(t.Expr)
			if expr, err := promqlParser.ParseExpr(query); err != nil {
				report.Error = "target-promql-rule: " + err.Error()
			} else {
				report.Metrics = metricNames(expr)
				report.Series, report.Error = evaluate(engine, db, query, at)
			}
			if err := enc.Encode(report); err != nil {
				return err
			}
		}
	}
	return enc.Encode(map[string][]string{"lint": append([]string{}, lint(&d)...)})
}

func evaluate(engine *promql.Engine, db *tsdb.DB, query string, at time.Time) (int, string) {
	q, err := engine.NewInstantQuery(context.Background(), db, nil, query, at)
	if err != nil {
		return 0, err.Error()
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		return 0, res.Err.Error()
	}
	switch v := res.Value.(type) {
	case promql.Vector:
		return len(v), ""
	case promql.Matrix:
		return len(v), ""
	case promql.Scalar:
		return 1, ""
	default:
		return 0, fmt.Sprintf("unexpected result type %T", res.Value)
	}
}
