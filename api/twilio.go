package api

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"path"
	"strings"

	"github.com/twilio/twilio-go/client"

	"github.com/aftercare/aftercare"
)

// twilioForm reads a Twilio webhook and checks its X-Twilio-Signature
// against the auth token and the public URL Twilio called. It answers the
// request itself and returns false when the webhook is not configured, the
// form is unreadable or the signature is wrong; nothing is changed then.
func (s *Server) twilioForm(w http.ResponseWriter, r *http.Request) (map[string]string, bool) {
	unsigned := s.cfg.UnsignedWebhooks && s.cfg.TwilioAuthToken == ""
	if !unsigned && (s.cfg.TwilioAuthToken == "" || s.cfg.PublicURL == "") {
		writeProblem(w, &httpError{status: http.StatusServiceUnavailable, title: "Webhook not configured",
			detail: "the service has no Twilio auth token or public URL configured, so it cannot check Twilio's signatures"})
		return nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	if err := r.ParseForm(); err != nil {
		writeProblem(w, &httpError{status: http.StatusBadRequest, title: "Bad form", detail: "the body is not a form Twilio would send"})
		return nil, false
	}
	params := make(map[string]string, len(r.PostForm))
	for k, v := range r.PostForm {
		params[k] = v[0]
	}
	if unsigned {
		return params, true
	}
	validator := client.NewRequestValidator(s.cfg.TwilioAuthToken)
	if !validator.Validate(s.cfg.PublicURL+r.URL.RequestURI(), params, r.Header.Get("X-Twilio-Signature")) {
		s.log.Warn("twilio webhook with a bad signature", "path", r.URL.Path)
		s.countWebhook(path.Base(r.URL.Path), "forbidden")
		writeProblem(w, &httpError{status: http.StatusForbidden, title: "Bad signature",
			detail: "X-Twilio-Signature does not match; check that the service's public URL is the URL Twilio calls"})
		return nil, false
	}
	return params, true
}

// twilioInbound takes a patient's text and answers with TwiML: the
// inbox's answer, or nothing. Every text is kept (see inbox.Receive); a
// text Twilio delivers again gets the same answer and changes nothing.
func (s *Server) twilioInbound(w http.ResponseWriter, r *http.Request) {
	params, ok := s.twilioForm(w, r)
	if !ok {
		return
	}
	t, err := inboundText(params)
	if err != nil {
		writeProblem(w, &httpError{status: http.StatusBadRequest, title: "Bad form", detail: err.Error()})
		return
	}
	answer, err := s.cfg.Inbox.Receive(r.Context(), t)
	if err != nil {
		s.countWebhook("inbound", "error")
		s.fail(w, r, err) // Twilio tries again; the item is made once
		return
	}
	s.countWebhook("inbound", "received")
	writeTwiML(w, answer)
}

// twilioStatus takes a delivery receipt. A callback Twilio repeats (same
// I-Twilio-Idempotency-Token, or same message and status) changes nothing.
func (s *Server) twilioStatus(w http.ResponseWriter, r *http.Request) {
	params, ok := s.twilioForm(w, r)
	if !ok {
		return
	}
	receipt := twilioReceipt(params)
	if key := r.Header.Get("I-Twilio-Idempotency-Token"); key != "" {
		receipt.Key = key
	}
	if err := s.cfg.Bookings.Receipt(r.Context(), receipt); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("delivery receipt", "message_sid", receipt.ProviderID, "status", params["MessageStatus"], "error_code", params["ErrorCode"])
	s.countWebhook("status", receiptResult(params["MessageStatus"]))
	writeTwiML(w, "")
}

// twilioReceipt reads a Twilio status callback in aftercare's terms:
// "delivered" is delivered; "undelivered" and "failed" are failed, with
// Twilio's error code; any other status (queued, sent, ...) leaves the
// receipt's status empty, which changes nothing. The key is the message and
// its status.
func twilioReceipt(params map[string]string) aftercare.Receipt {
	sid, status := params["MessageSid"], params["MessageStatus"]
	r := aftercare.Receipt{Key: sid + ":" + status, ProviderID: sid}
	switch status {
	case "delivered":
		r.Status = aftercare.StatusDelivered
	case "undelivered", "failed":
		r.Status, r.Reason = aftercare.StatusFailed, "carrier "+status
		if code := params["ErrorCode"]; code != "" {
			r.Reason = "twilio:" + code + ": " + r.Reason
		}
	}
	return r
}

// receiptResult is a receipt status as a metric label: Twilio's known
// statuses, or "other".
func receiptResult(status string) string {
	switch status {
	case "queued", "sending", "sent", "delivered", "undelivered", "failed", "accepted", "read":
		return status
	}
	return "other"
}

// writeTwiML answers a Twilio webhook, with one reply message if text is
// not empty.
func writeTwiML(w http.ResponseWriter, text string) {
	var b strings.Builder
	b.WriteString(xml.Header + "<Response>")
	if text != "" {
		b.WriteString("<Message>")
		_ = xml.EscapeText(&b, []byte(text)) // writes to a strings.Builder
		b.WriteString("</Message>")
	}
	b.WriteString("</Response>")
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	fmt.Fprint(w, b.String())
}
