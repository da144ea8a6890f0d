package api

import (
	"context"
	"net/http"
	"time"

	"github.com/aftercare/aftercare"
)

// Events is what the API needs to let operators look after outbound
// events: the endpoints, turning one back on, and sending events again.
type Events interface {
	Endpoints(ctx context.Context) ([]aftercare.EndpointState, error)
	Enable(ctx context.Context, name string) (aftercare.EndpointState, error)
	Redeliver(ctx context.Context, id string) (int, error)
	RedeliverFailed(ctx context.Context, since time.Time) (int, error)
}

// redelivered is the answer of the redelivery routes.
type redelivered struct {
	// Queued counts the deliveries queued again.
	Queued int `json:"queued"`
}

// events returns the configured Events, or answers 404 when the service
// sends none.
func (s *Server) events(w http.ResponseWriter) (Events, bool) {
	if s.cfg.Events == nil {
		writeProblem(w, &httpError{status: http.StatusNotFound, title: "Not found",
			detail: "this service has no event endpoints configured, so it sends no events"})
		return nil, false
	}
	return s.cfg.Events, true
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	ev, ok := s.events(w)
	if !ok {
		return
	}
	eps, err := ev.Endpoints(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"endpoints": eps})
}

func (s *Server) enableEndpoint(w http.ResponseWriter, r *http.Request) {
	ev, ok := s.events(w)
	if !ok {
		return
	}
	st, err := ev.Enable(r.Context(), r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Warn("event endpoint enabled", "endpoint", st.Name)
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) redeliverEvent(w http.ResponseWriter, r *http.Request) {
	ev, ok := s.events(w)
	if !ok {
		return
	}
	n, err := ev.Redeliver(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, redelivered{Queued: n})
}

// redeliverRequest is the body of POST /v1/events/redeliver.
type redeliverRequest struct {
	Since string `json:"since"`
}

func (s *Server) redeliverFailed(w http.ResponseWriter, r *http.Request) {
	ev, ok := s.events(w)
	if !ok {
		return
	}
	var req redeliverRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeProblem(w, err)
		return
	}
	since, err := time.Parse(time.RFC3339, req.Since)
	if err != nil {
		writeProblem(w, (aftercare.Fields{{Field: "since", Message: "is required, as an RFC 3339 time such as 2026-12-01T08:00:00Z: deliveries that failed from then on are sent again"}}).Err("the request is not valid"))
		return
	}
	n, err := ev.RedeliverFailed(r.Context(), since)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("failed event deliveries queued again", "since", since, "queued", n)
	writeJSON(w, http.StatusOK, redelivered{Queued: n})
}
