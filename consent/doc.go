// Package consent serves the patient's consent page: a signed link in the
// consent messages opens the protocol's full consent text, which the patient
// acknowledges by ticking and typing their name; the page then keeps a
// printable receipt. It owns the links, the page and its safeguards.
package consent
