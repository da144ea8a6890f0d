// Package messages renders what patients read: the SMS and email of each
// protocol step, in the patient's language, from text templates that ship
// embedded in the binary and that a clinic may override file by file.
package messages
