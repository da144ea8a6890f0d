// Package webhook tells the clinic's own systems what happens, as signed
// HTTP calls in the Standard Webhooks format (https://www.standardwebhooks.com):
// a relay hands each new event to the task queue, one task per event and
// endpoint, and a Sender delivers each, signed, retrying on the
// specification's schedule.
package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/aftercare/aftercare"
)

// Endpoint is one receiver of events.
type Endpoint struct {
	// Name identifies the endpoint in tasks, metrics and commands.
	Name string
	URL  string
	// Secrets sign every delivery, each giving one signature: more than one
	// while a secret is rotated. Each is "whsec_" and base64.
	Secrets []string
	// Types are the event types it wants; none means all.
	Types []aftercare.EventType
}

// Wants reports whether the endpoint takes events of type t.
func (e Endpoint) Wants(t aftercare.EventType) bool {
	return len(e.Types) == 0 || slices.Contains(e.Types, t)
}

var endpointName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// check reports what is wrong with e, each problem naming its field. With
// production set, only https URLs are taken, except to this machine.
func (e Endpoint) check(production bool) []string {
	var errs []string
	if !endpointName.MatchString(e.Name) {
		errs = append(errs, fmt.Sprintf("name %q: use lower-case letters, digits, - and _ (at most 40)", e.Name))
	}
	u, err := url.Parse(e.URL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		errs = append(errs, fmt.Sprintf("url %q: must be an absolute http(s) URL such as https://crm.clinic.example/hooks/aftercare", e.URL))
	case u.User != nil:
		errs = append(errs, "url: must not carry a user or password; the signature proves who is calling")
	case production && u.Scheme != "https" && !loopback(u.Hostname()):
		errs = append(errs, fmt.Sprintf("url %q: must be https:// in production (http only to this machine)", e.URL))
	}
	if len(e.Secrets) == 0 {
		errs = append(errs, "secret: required; make one with: echo whsec_$(openssl rand -base64 32)")
	}
	for i, s := range e.Secrets {
		if _, err := decodeSecret(s); err != nil {
			errs = append(errs, fmt.Sprintf("secret %d: %v", i+1, err))
		}
	}
	for _, t := range e.Types {
		if !slices.Contains(aftercare.EventTypes(), t) {
			errs = append(errs, fmt.Sprintf("types: %q is not an event type (see the README's event list)", t))
		}
	}
	return errs
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// decodeSecret reads a "whsec_" secret: 24 to 64 bytes, base64.
func decodeSecret(s string) ([]byte, error) {
	b64, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return nil, errors.New(`must start with "whsec_"; make one with: echo whsec_$(openssl rand -base64 32)`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New(`must be "whsec_" and standard base64 after it`)
	}
	if len(key) < 24 || len(key) > 64 {
		return nil, fmt.Errorf("is %d bytes after base64; use 24 to 64 (openssl rand -base64 32)", len(key))
	}
	return key, nil
}

// Sign returns the webhook-signature header of a delivery: "v1," and the
// base64 HMAC-SHA256 of "id.timestamp.body" under each secret, separated
// by spaces. Secrets must have passed decodeSecret.
func Sign(secrets []string, id string, at time.Time, body []byte) string {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, _ := decodeSecret(s)
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id + "." + strconv.FormatInt(at.Unix(), 10) + "."))
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// Settings are where endpoints come from: one URL and its secrets (comma-
// separated), or a file of several; not both.
type Settings struct {
	URL     string
	Secrets []string
	File    string
	// Production refuses plain http to other machines.
	Production bool
}

// fileEndpoints is the endpoints file.
type fileEndpoints struct {
	Endpoints []struct {
		Name    string   `yaml:"name"`
		URL     string   `yaml:"url"`
		Secret  string   `yaml:"secret"`
		Secrets []string `yaml:"secrets"`
		Types   []string `yaml:"types"`
	} `yaml:"endpoints"`
}

// Load returns the endpoints s names (none if it names none), or every
// problem with them, each naming the endpoint and field.
func Load(s Settings) ([]Endpoint, error) {
	var eps []Endpoint
	switch {
	case s.File != "" && s.URL != "":
		return nil, errors.New("set the endpoint's URL or a file of endpoints, not both")
	case s.File != "":
		data, err := os.ReadFile(s.File)
		if err != nil {
			return nil, err
		}
		var f fileEndpoints
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("%s: %w (expected endpoints: a list of name, url, secret or secrets, and types)", s.File, err)
		}
		for _, fe := range f.Endpoints {
			e := Endpoint{Name: fe.Name, URL: fe.URL, Secrets: fe.Secrets}
			if fe.Secret != "" {
				e.Secrets = append([]string{fe.Secret}, e.Secrets...)
			}
			for _, t := range fe.Types {
				e.Types = append(e.Types, aftercare.EventType(t))
			}
			eps = append(eps, e)
		}
		if len(eps) == 0 {
			return nil, fmt.Errorf("%s lists no endpoints", s.File)
		}
	case s.URL != "":
		eps = []Endpoint{{Name: "default", URL: s.URL, Secrets: s.Secrets}}
	case len(s.Secrets) > 0:
		return nil, errors.New("a secret without a URL: set the endpoint's URL too")
	}
	var errs []string
	seen := map[string]bool{}
	for _, e := range eps {
		for _, msg := range e.check(s.Production) {
			errs = append(errs, "endpoint "+e.Name+": "+msg)
		}
		if seen[e.Name] {
			errs = append(errs, "endpoint "+e.Name+": the name is used twice")
		}
		seen[e.Name] = true
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return eps, nil
}
