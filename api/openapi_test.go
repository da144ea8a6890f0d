package api

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestOpenAPIMatchesRoutes: every route is documented with exactly the
// statuses its handler can answer, and nothing else is documented.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi = %q, want 3.1", doc.OpenAPI)
	}
	documented := map[string][]int{}
	for path, ops := range doc.Paths {
		for method, node := range ops {
			if method == "parameters" {
				continue
			}
			var op struct {
				Responses map[string]any `yaml:"responses"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			var statuses []int
			for code := range op.Responses {
				n, err := strconv.Atoi(code)
				if err != nil {
					t.Errorf("%s %s: response %q is not a status code", method, path, code)
				}
				statuses = append(statuses, n)
			}
			slices.Sort(statuses)
			documented[strings.ToUpper(method)+" "+path] = statuses
		}
	}
	s := New(Config{})
	for _, rt := range s.routes() {
		key := rt.method + " " + rt.path
		want := slices.Sorted(slices.Values(rt.statuses))
		got, ok := documented[key]
		if !ok {
			t.Errorf("%s is served but not documented", key)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s documents statuses %v, the handler answers %v", key, got, want)
		}
		delete(documented, key)
	}
	for key := range documented {
		t.Errorf("%s is documented but not served", key)
	}
}
