package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/aftercare/aftercare"
)

// Inbox is what the API needs from the clinic inbox.
type Inbox interface {
	// Receive takes a patient's text and returns the answer ("" for none).
	Receive(ctx context.Context, t aftercare.InboundText) (string, error)
	List(ctx context.Context, f aftercare.InboxFilter, cursor string, limit int) ([]*aftercare.InboxItem, string, error)
	Get(ctx context.Context, id string) (*aftercare.InboxItem, error)
	Resolve(ctx context.Context, id, by, note string) (*aftercare.InboxItem, error)
	OptOut(ctx context.Context, id, by string) (*aftercare.InboxItem, error)
}

// inboxPage is the answer of GET /v1/inbox.
type inboxPage struct {
	Items []*aftercare.InboxItem `json:"items"`
	// NextCursor gets the next page; empty after the last.
	NextCursor string `json:"next_cursor,omitempty"`
}

// defaultPage is how many items GET /v1/inbox returns unless asked.
const defaultPage = 50

func (s *Server) listInbox(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, limit, err := inboxQuery(q.Get("status"), q.Get("urgency"), q.Get("limit"))
	if err != nil {
		writeProblem(w, err)
		return
	}
	items, next, err := s.cfg.Inbox.List(r.Context(), f, q.Get("cursor"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if items == nil {
		items = []*aftercare.InboxItem{}
	}
	writeJSON(w, http.StatusOK, inboxPage{Items: items, NextCursor: next})
}

// inboxQuery reads the query of GET /v1/inbox: status open (the default),
// resolved or all; urgency urgent or normal (both if absent); limit.
func inboxQuery(status, urgency, limit string) (aftercare.InboxFilter, int, error) {
	var f aftercare.InboxFilter
	var fs aftercare.Fields
	switch status {
	case "", "open":
		f.Status = aftercare.InboxOpen
	case "resolved":
		f.Status = aftercare.InboxResolved
	case "all":
	default:
		fs.Add("status", "must be open, resolved or all")
	}
	switch urgency {
	case "":
	case "urgent", "normal":
		f.Urgency = aftercare.Urgency(urgency)
	default:
		fs.Add("urgency", "must be urgent or normal, or left out for both")
	}
	n := defaultPage
	if limit != "" {
		var err error
		if n, err = strconv.Atoi(limit); err != nil {
			fs.Add("limit", "must be a whole number")
		}
	}
	if len(fs) > 0 {
		return f, 0, &httpError{status: http.StatusBadRequest, title: "Bad query", detail: "the query is not valid", fields: fs}
	}
	return f, n, nil
}

func (s *Server) getInboxItem(w http.ResponseWriter, r *http.Request) {
	item, err := s.cfg.Inbox.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, item)
}

// resolveRequest is the body of POST /v1/inbox/{id}/resolve.
type resolveRequest struct {
	// Note says what was done; By who did it.
	Note string `json:"note"`
	By   string `json:"by"`
}

func (s *Server) resolveInboxItem(w http.ResponseWriter, r *http.Request) {
	var req resolveRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeProblem(w, err)
		return
	}
	if req.Note == "" {
		writeProblem(w, (aftercare.Fields{{Field: "note", Message: "is required: say what was done, such as \"called the patient, no concern\""}}).Err("the request is not valid"))
		return
	}
	item, err := s.cfg.Inbox.Resolve(r.Context(), r.PathValue("id"), req.By, req.Note)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("inbox item resolved", "inbox_item", item.ID)
	writeJSON(w, http.StatusOK, item)
}

// optOutRequest is the optional body of POST /v1/inbox/{id}/opt-out.
type optOutRequest struct {
	By string `json:"by"`
}

func (s *Server) optOutInboxItem(w http.ResponseWriter, r *http.Request) {
	var req optOutRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err == nil && len(bytes.TrimSpace(body)) > 0 { // the body is optional
		err = decodeStrict(bytes.NewReader(body), &req)
	}
	if err != nil {
		writeProblem(w, err)
		return
	}
	item, err := s.cfg.Inbox.OptOut(r.Context(), r.PathValue("id"), req.By)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("number opted out from the inbox", "inbox_item", item.ID)
	writeJSON(w, http.StatusOK, item)
}

// inboundText reads Twilio's incoming-message webhook in aftercare's terms.
func inboundText(params map[string]string) (aftercare.InboundText, error) {
	t := aftercare.InboundText{ProviderID: params["MessageSid"], From: params["From"], Body: params["Body"]}
	if t.ProviderID == "" || t.From == "" {
		return t, fmt.Errorf("MessageSid and From are required")
	}
	return t, nil
}
