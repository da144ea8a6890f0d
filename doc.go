// Package aftercare holds the domain of the aftercare service: bookings,
// patients, treatment protocols, planned messages and their statuses, the
// task contract stored in Redis, and the error kinds every layer shares.
//
// It imports nothing else from this module. The scheduler turns a Booking
// into planned Messages and asynq tasks; the worker turns a task back into a
// rendered message and hands it to a Sender; adapters (redisstore, twilio,
// smtp, console, api) implement the small interfaces those packages define.
// cmd/aftercare is the only place that wires them together.
package aftercare
