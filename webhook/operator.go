package webhook

import (
	"context"
	"net/url"
	"slices"
	"time"

	"github.com/aftercare/aftercare"
)

// Redelivery queues deliveries again; the taskqueue package implements it.
type Redelivery interface {
	Redeliver(ctx context.Context, id string, endpoints []string) (int, error)
	RedeliverFailed(ctx context.Context, since time.Time) (int, error)
	Release(ctx context.Context, endpoint string) (int, error)
}

// Switches lists and turns back on the endpoints receivers turned off; the
// redisstore package implements it.
type Switches interface {
	DisabledEndpoints(ctx context.Context) (map[string]aftercare.EndpointState, error)
	EnableEndpoint(ctx context.Context, name string) (bool, error)
}

// Operator is what operators do with events: see the endpoints, turn one
// back on, and send events again.
type Operator struct {
	endpoints []Endpoint
	queue     Redelivery
	switches  Switches
}

// NewOperator returns an Operator over endpoints.
func NewOperator(endpoints []Endpoint, queue Redelivery, switches Switches) *Operator {
	return &Operator{endpoints: endpoints, queue: queue, switches: switches}
}

// Endpoints returns every configured endpoint and whether it is off. The
// URL is shown without its query, which may hold a token.
func (o *Operator) Endpoints(ctx context.Context) ([]aftercare.EndpointState, error) {
	off, err := o.switches.DisabledEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	states := make([]aftercare.EndpointState, 0, len(o.endpoints))
	for _, e := range o.endpoints {
		st := off[e.Name]
		st.Name, st.Types = e.Name, e.Types
		if u, err := url.Parse(e.URL); err == nil {
			u.RawQuery, u.Fragment = "", ""
			st.URL = u.String()
		}
		states = append(states, st)
	}
	return states, nil
}

// Enable turns endpoint name back on, and sends at once the events that
// waited for it.
func (o *Operator) Enable(ctx context.Context, name string) (aftercare.EndpointState, error) {
	if !slices.ContainsFunc(o.endpoints, func(e Endpoint) bool { return e.Name == name }) {
		return aftercare.EndpointState{}, aftercare.Errorf(aftercare.ENOTFOUND, "no event endpoint %q is configured", name)
	}
	if _, err := o.switches.EnableEndpoint(ctx, name); err != nil {
		return aftercare.EndpointState{}, err
	}
	if _, err := o.queue.Release(ctx, name); err != nil {
		return aftercare.EndpointState{}, err
	}
	states, err := o.Endpoints(ctx)
	if err != nil {
		return aftercare.EndpointState{}, err
	}
	i := slices.IndexFunc(states, func(s aftercare.EndpointState) bool { return s.Name == name })
	return states[i], nil
}

// Redeliver sends event id again to every endpoint it went to.
func (o *Operator) Redeliver(ctx context.Context, id string) (int, error) {
	names := make([]string, len(o.endpoints))
	for i, e := range o.endpoints {
		names[i] = e.Name
	}
	return o.queue.Redeliver(ctx, id, names)
}

// RedeliverFailed sends again every delivery that failed since since.
func (o *Operator) RedeliverFailed(ctx context.Context, since time.Time) (int, error) {
	return o.queue.RedeliverFailed(ctx, since)
}
