// Package apispec holds the test that validates the API's OpenAPI
// description against the OpenAPI 3.1 and JSON Schema 2020-12 schemas. It is
// kept apart from package api so that api's tests, and its fuzzing, do not
// build the validator.
package apispec
