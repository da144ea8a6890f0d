package apispec_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/pb33f/go-yaml"
	"github.com/pb33f/jsonschema/v6"
	"github.com/pb33f/libopenapi"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/pb33f/libopenapi/index"

	"github.com/aftercare/aftercare/api"
)

// TestOpenAPIDocumentIsValid: the description is a valid OpenAPI 3.1
// document, and each kind of mistake it could hold is caught.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	t.Parallel()
	t.Run("document", func(t *testing.T) {
		t.Parallel()
		for _, p := range openAPIProblems(api.OpenAPI) {
			t.Error(p)
		}
	})

	// Each case breaks a copy of the document in one place.
	broken := []struct{ name, old, new, want string }{
		{"ref", `"#/components/schemas/Booking"`, `"#/components/schemas/Nope"`, "Nope"},
		{"field", "operationId: createBooking", "operationID: createBooking", "operationID"},
		{"value", "in: query", "in: body", "parameters[0].in"},
		{"version", "openapi: 3.1.0", "openapi: 3.0.3", "want 3.1.x"},
		{"schema", "maxLength: 64", "maxLength: -1", "maxLength"},
		{"keyword", "maxLength: 64", "maxLenght: 64", "maxLenght"},
		{"comma", "{ type: string, maxLength: 64 }", "{ type: string, description: Given name, as written, maxLength: 64 }", "as written"},
	}
	for _, c := range broken {
		t.Run("catches "+c.name, func(t *testing.T) {
			t.Parallel()
			doc := bytes.Replace(api.OpenAPI, []byte(c.old), []byte(c.new), 1)
			if bytes.Equal(doc, api.OpenAPI) {
				t.Fatalf("%q is not in the document", c.old)
			}
			problems := openAPIProblems(doc)
			if len(problems) == 0 {
				t.Fatalf("%q → %q: no problem found", c.old, c.new)
			}
			if !strings.Contains(strings.Join(problems, "\n"), c.want) {
				t.Errorf("%q → %q: no problem names %q:\n%s", c.old, c.new, c.want, strings.Join(problems, "\n"))
			}
		})
	}
}

// openAPIProblems lists every reason doc is not a valid OpenAPI 3.1
// document: the OpenAPI 3.1 JSON Schema, $refs that do not resolve, and
// Schema Objects that are not valid JSON Schema 2020-12 or use a keyword
// it does not know (such as a flow mapping cut short by a comma).
func openAPIProblems(doc []byte) []string {
	cfg := datamodel.NewDocumentConfiguration()
	cfg.Logger = slog.New(slog.DiscardHandler)
	d, err := libopenapi.NewDocumentWithConfiguration(doc, cfg)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	if v := d.GetVersion(); !strings.HasPrefix(v, "3.1.") {
		problems = append(problems, fmt.Sprintf("openapi is %q, want 3.1.x", v))
	}

	// The document against the OpenAPI 3.1 JSON Schema bundled with the
	// validator.
	_, verrs := schema_validation.ValidateOpenAPIDocument(d)
	for _, e := range verrs {
		if len(e.SchemaValidationErrors) == 0 {
			problems = append(problems, fmt.Sprintf("line %d:%d: %s: %s", e.SpecLine, e.SpecCol, e.Message, e.Reason))
		}
		for _, f := range e.SchemaValidationErrors {
			problems = append(problems, fmt.Sprintf("line %d:%d: %s: %s (schema %s)", f.Line, f.Column, f.FieldPath, f.Reason, f.KeywordLocation))
		}
	}

	// Building the model resolves every $ref.
	model, err := d.BuildV3Model()
	for _, e := range unwrapAll(err) {
		var ie *index.IndexingError
		if errors.As(e, &ie) && ie.Node != nil {
			problems = append(problems, fmt.Sprintf("line %d:%d: %v", ie.Node.Line, ie.Node.Column, e))
		} else {
			problems = append(problems, e.Error())
		}
	}
	if model == nil {
		return problems
	}

	// Each Schema Object against the JSON Schema 2020-12 meta-schema, which
	// the compiler bundles; nothing is loaded from outside the document.
	specJSON := d.GetSpecInfo().GetSpecJSONBytes()
	if specJSON == nil {
		return append(problems, "the document has no JSON form")
	}
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(*specJSON))
	if err != nil {
		return append(problems, err.Error())
	}
	const base = "file:///openapi.json"
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(jsonschema.SchemeURLLoader{})
	if err := c.AddResource(base, root); err != nil {
		return append(problems, err.Error())
	}
	pointers := map[*yaml.Node]string{}
	jsonPointers(d.GetSpecInfo().RootNode, "", pointers)
	seen := map[*yaml.Node]bool{}
	reported := map[string]bool{} // a bad schema fails every schema that refers to it
	for _, ref := range model.Index.GetAllSchemas() {
		if ref.Node == nil || seen[ref.Node] {
			continue
		}
		ptr, ok := pointers[ref.Node]
		if !ok {
			problems = append(problems, fmt.Sprintf("line %d:%d: %s: schema not found in the document", ref.Node.Line, ref.Node.Column, ref.Definition))
			continue
		}
		if _, err := c.Compile(base + "#" + ptr); err != nil && !reported[err.Error()] {
			reported[err.Error()] = true
			problems = append(problems, fmt.Sprintf("line %d:%d: %s: %v", ref.Node.Line, ref.Node.Column, ptr, err))
		}
		problems = append(problems, unknownKeywords(ref.Node, ptr, seen)...)
	}
	return problems
}

// jsonPointers records the JSON pointer of every node under n.
func jsonPointers(n *yaml.Node, ptr string, out map[*yaml.Node]string) {
	if n == nil {
		return
	}
	out[n] = ptr
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			jsonPointers(c, ptr, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := strings.NewReplacer("~", "~0", "/", "~1").Replace(n.Content[i].Value)
			jsonPointers(n.Content[i+1], ptr+"/"+key, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			jsonPointers(c, fmt.Sprintf("%s/%d", ptr, i), out)
		}
	}
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var all []error
		for _, e := range j.Unwrap() {
			all = append(all, unwrapAll(e)...)
		}
		return all
	}
	return []error{err}
}

// schemaKeywords are the keywords of the OpenAPI 3.1 base dialect: JSON
// Schema 2020-12 and the api.OpenAPI vocabulary.
var schemaKeywords = map[string]bool{
	"$schema": true, "$id": true, "$ref": true, "$anchor": true, "$dynamicRef": true,
	"$dynamicAnchor": true, "$vocabulary": true, "$comment": true, "$defs": true,
	"prefixItems": true, "items": true, "contains": true, "additionalProperties": true,
	"properties": true, "patternProperties": true, "dependentSchemas": true,
	"propertyNames": true, "if": true, "then": true, "else": true,
	"allOf": true, "anyOf": true, "oneOf": true, "not": true,
	"unevaluatedItems": true, "unevaluatedProperties": true,
	"type": true, "const": true, "enum": true, "multipleOf": true,
	"maximum": true, "exclusiveMaximum": true, "minimum": true, "exclusiveMinimum": true,
	"maxLength": true, "minLength": true, "pattern": true,
	"maxItems": true, "minItems": true, "uniqueItems": true, "maxContains": true, "minContains": true,
	"maxProperties": true, "minProperties": true, "required": true, "dependentRequired": true,
	"title": true, "description": true, "default": true, "deprecated": true,
	"readOnly": true, "writeOnly": true, "examples": true, "format": true,
	"contentEncoding": true, "contentMediaType": true, "contentSchema": true,
	"discriminator": true, "xml": true, "externalDocs": true, "example": true,
}

// unknownKeywords reports the keys of the schema at n, and of the schemas
// inside it, that are neither known keywords nor x- extensions.
func unknownKeywords(n *yaml.Node, where string, seen map[*yaml.Node]bool) []string {
	if n == nil || n.Kind != yaml.MappingNode || seen[n] {
		return nil
	}
	seen[n] = true
	var problems []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		at := where + "/" + k.Value
		if !schemaKeywords[k.Value] && !strings.HasPrefix(k.Value, "x-") {
			problems = append(problems, fmt.Sprintf("line %d:%d: %s: unknown schema keyword %q", k.Line, k.Column, where, k.Value))
			continue
		}
		switch k.Value {
		case "properties", "patternProperties", "dependentSchemas", "$defs":
			if v.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(v.Content); j += 2 {
					problems = append(problems, unknownKeywords(v.Content[j+1], at+"/"+v.Content[j].Value, seen)...)
				}
			}
		case "allOf", "anyOf", "oneOf", "prefixItems":
			for j, s := range v.Content {
				problems = append(problems, unknownKeywords(s, fmt.Sprintf("%s/%d", at, j), seen)...)
			}
		case "items", "contains", "additionalProperties", "propertyNames", "if", "then", "else",
			"not", "unevaluatedItems", "unevaluatedProperties", "contentSchema":
			problems = append(problems, unknownKeywords(v, at, seen)...)
		}
	}
	return problems
}
