package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// readmeBlock returns the first fenced sh block of the README after the
// line that contains after.
func readmeBlock(t *testing.T, after string) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), after)
	if !ok {
		t.Fatalf("the README no longer says %q", after)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatalf("no sh block after %q", after)
	}
	return block
}

// TestReadmeWalkthrough runs the README's "Try it" booking and its curl
// walk-through, as written, against the service: with bash and curl, the
// command as "go run ./cmd/aftercare" would run it, and the service's
// address for localhost:8080. An example that ages or drifts from the API
// fails here.
func TestReadmeWalkthrough(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "date"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOutsideCI(t, "no %s: %v", tool, err)
		}
	}
	tb := setup(t)
	tryIt := readmeBlock(t, "as `booking.json`:")
	walk := readmeBlock(t, `With the service from "Two commands" running`)
	commands := readmeBlock(t, "answer); errors list each bad field:")
	script := "set -euo pipefail\n" +
		"aftercare() { " + cliEnv + "=1 \"$TESTBIN\" \"$@\"; }\n" +
		// An HTTP error fails the script, and each answer ends its line.
		"curl() { command curl --fail-with-body -sS \"$@\"; echo; }\n" +
		"T='Authorization: Bearer " + testToken + "'\n" +
		tryIt + walk + commands
	script = strings.ReplaceAll(script, "go run ./cmd/aftercare", "aftercare")
	script = strings.ReplaceAll(script, "localhost:8080", strings.TrimPrefix(tb.url, "http://"))
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TESTBIN="+os.Args[0], "AFTERCARE_URL="+tb.url, "AFTERCARE_TOKEN="+testToken)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README's walk-through failed: %v\n%s\n--- script:\n%s", err, out.String(), script)
	}
	text := out.String()
	for _, want := range []string{`"id": "bk_1001"`, `"status": "cancelled"`, `"id": "bk_1002"`, `"warnings": [`, "will not go"} {
		if !strings.Contains(text, want) {
			t.Errorf("the walk-through's answers lack %s:\n%s", want, text)
		}
	}
	if tl := tb.timeline(t, "bk_1002"); tl.Version != 2 {
		t.Errorf("bk_1002 is at version %d after the report of treatment, want 2", tl.Version)
	}
}
