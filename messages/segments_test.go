package messages_test

import (
	"strings"
	"testing"

	"github.com/aftercare/aftercare/messages"
)

func TestSegments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		text  string
		parts int
		enc   messages.Encoding
	}{
		{"empty", "", 1, messages.GSM7},
		{"160 plain", strings.Repeat("a", 160), 1, messages.GSM7},
		{"161 plain", strings.Repeat("a", 161), 2, messages.GSM7},
		{"306 plain", strings.Repeat("a", 306), 2, messages.GSM7},
		{"307 plain", strings.Repeat("a", 307), 3, messages.GSM7},
		{"GSM accents stay GSM", "Olé, señor Müller, ¿qué tal? ¡Hola!", 1, messages.GSM7},
		{"extension costs two", strings.Repeat("€", 80), 1, messages.GSM7},
		{"extension over the edge", strings.Repeat("€", 81), 2, messages.GSM7},
		{"escape pair not split", strings.Repeat("a", 152) + "€" + strings.Repeat("a", 10), 2, messages.GSM7},
		{"escape pair pushed to the next part", strings.Repeat("a", 152) + "€" + strings.Repeat("a", 153), 3, messages.GSM7},
		{"curly quote forces UCS-2", "Don’t rub", 1, messages.UCS2},
		{"en dash forces UCS-2", "2–3 days", 1, messages.UCS2},
		{"70 UCS-2", strings.Repeat("á", 70), 1, messages.UCS2},
		{"71 UCS-2", strings.Repeat("á", 71), 2, messages.UCS2},
		{"134 UCS-2", strings.Repeat("á", 134), 2, messages.UCS2},
		{"135 UCS-2", strings.Repeat("á", 135), 3, messages.UCS2},
		{"emoji is two units", strings.Repeat("🙂", 35), 1, messages.UCS2},
		{"surrogate pair not split", strings.Repeat("á", 66) + "🙂" + strings.Repeat("á", 66), 3, messages.UCS2},
	}
	for _, tt := range tests {
		parts, enc := messages.Segments(tt.text)
		if parts != tt.parts || enc != tt.enc {
			t.Errorf("%s: Segments = %d %s, want %d %s", tt.name, parts, enc, tt.parts, tt.enc)
		}
	}
}

func BenchmarkSegments(b *testing.B) {
	text := "Hi Ana, Example Aesthetics here about your visit on Tue, Dec 1 at 3:00 PM. Side effects are uncommon and pass. Reply STOP to opt out."
	b.ReportAllocs()
	for b.Loop() {
		messages.Segments(text)
	}
}
