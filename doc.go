// Package aftercare holds the domain of the aftercare service: bookings,
// patients, treatment protocols, planned messages and their statuses, the
// rules every layer applies the same way (which status changes are allowed,
// what "happened" means, the deadline and quiet hours, run outcomes), the
// task contract stored in Redis, and the error kinds every layer shares.
//
// It imports nothing else from this module. The scheduler turns a Booking
// into planned Messages and one task each; the worker turns a task's
// MessageRef back into a rendered message and hands it to a Sender;
// adapters (redisstore, taskqueue, twilio, smtp, console, api) implement the
// small interfaces those packages define. cmd/aftercare is the only place
// that wires them together.
package aftercare
