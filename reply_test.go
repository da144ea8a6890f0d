package aftercare_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/aftercare/aftercare"
	"github.com/aftercare/aftercare/protocol"
)

// flags are the red flags aftercare ships: the shared ones and every
// built-in protocol's own.
func flags(tb testing.TB) *aftercare.RedFlags {
	tb.Helper()
	protocols, err := protocol.Builtin()
	if err != nil {
		tb.Fatal(err)
	}
	shared, err := protocol.BuiltinRedFlags()
	if err != nil {
		tb.Fatal(err)
	}
	return protocol.RedFlags(protocols, shared)
}

// TestReadReply reads texts as patients write them: typos, emoji, capitals,
// accents, several sentences, English and Spanish.
func TestReadReply(t *testing.T) {
	t.Parallel()
	const (
		stop, start, help, yes, none = aftercare.KeywordStop, aftercare.KeywordStart, aftercare.KeywordHelp, aftercare.KeywordYes, aftercare.KeywordNone
	)
	tests := []struct {
		text      string
		keyword   aftercare.Keyword
		exact     bool
		forClinic bool
		urgent    bool
	}{
		// Keyword messages: the whole text is the keyword.
		{"STOP", stop, true, false, false},
		{"stop", stop, true, false, false},
		{" Stop. ", stop, true, false, false},
		{"STOP!!!", stop, true, false, false},
		{"🛑 stop", stop, true, false, false},
		{"StopAll", stop, true, false, false},
		{"unsubscribe", stop, true, false, false},
		{"Cancel", stop, true, false, false},
		{"end", stop, true, false, false},
		{"QUIT", stop, true, false, false},
		{"Opt-Out", stop, true, false, false},
		{"opt out", stop, true, false, false},
		{"BAJA", stop, true, false, false},
		{"START", start, true, false, false},
		{"unstop", start, true, false, false},
		{"help", help, true, false, false},
		{"HELP?", help, true, false, false},
		{"Info", help, true, false, false},
		{"ayuda", help, true, false, false},
		{"YES", yes, true, false, false},
		{"yes!", yes, true, false, false},
		{"Sí", yes, true, false, false},
		{"si 👍", yes, true, false, false},
		{"SÍ, lo he leído", yes, true, false, false},
		// A clear wish to stop the texts.
		{"Stop. Thank you", stop, false, false, false},
		{"stop please", stop, false, false, false},
		{"please stop texting me", stop, false, false, false},
		{"Please stop sending me these messages", stop, false, false, false},
		{"no more messages thanks", stop, false, false, false},
		{"unsubscribe me please", stop, false, false, false},
		{"Can you remove me from this list", stop, false, false, false},
		{"dont text me again", stop, false, false, false},
		{"No más mensajes por favor", stop, false, false, false},
		{"Dejen de enviarme mensajes", stop, false, false, false},
		{"quiero darme de baja", stop, false, false, false},
		// Opt-out words in another sense: a reply for the clinic.
		{"End of day 2 and my brow still droops, should I come in?", none, false, true, true},
		{"I need to cancel my appointment", none, false, true, false},
		{"Can I stop taking ibuprofen now?", none, false, true, false},
		{"When does the numbness end?", none, false, true, false},
		{"Help, how do I reschedule?", none, false, true, false},
		{"Necesito cancelar mi cita del jueves", none, false, true, false},
		// YES and more: acknowledged, and kept for the clinic.
		{"Yes but my eyelid droops", yes, false, true, true},
		{"Yes, read it. See you Tuesday!", yes, false, true, false},
		{"Sí, pero tengo una pregunta", yes, false, true, false},
		// Urgent, whatever else the text is.
		{"Help! my eyelid is drooping and it is hard to swallow", none, false, true, true},
		{"HELP my eye wont open properly", none, false, true, true},
		{"my left eyelid is drooping, is that normal?", none, false, true, true},
		{"I'm seeing double since this morning", none, false, true, true},
		{"my vision is blurry today", none, false, true, true},
		{"its hard for me to swallow", none, false, true, true},
		{"i cant breathe properly 😰", none, false, true, true},
		{"My speech is slurred", none, false, true, true},
		{"my arms feel weak and heavy", none, false, true, true},
		{"there is pus where the needle went", none, false, true, true},
		{"I have a fever and the area is hot and red", none, false, true, true},
		{"the swelling is getting worse", none, false, true, true},
		{"the pain is getting worse not better", none, false, true, true},
		{"STOP my eyelid is drooping", none, false, true, true},
		{"please stop texting me my brow droops", none, false, true, true},
		{"MY EYELID FEELS HEAVY", none, false, true, true},
		{"my skin went white around the lip", none, false, true, true}, // filler: a blocked vessel
		{"the area looks blue and blotchy", none, false, true, true},
		{"Se me cae el párpado izquierdo", none, false, true, true},
		{"me cuesta tragar desde ayer", none, false, true, true},
		{"No puedo respirar bien", none, false, true, true},
		{"Veo doble", none, false, true, true},
		{"tengo fiebre y sale pus", none, false, true, true},
		{"Tengo la ceja caída, es normal?", none, false, true, true},
		// Other replies.
		{"my left eyelid feels a bit tight, is that ok?", none, false, true, false},
		{"Thank you! See you next week", none, false, true, false},
		{"I have a small bruise, can I put makeup on it?", none, false, true, false},
		{"I have a mild headache", none, false, true, false},
		{"Can I go to the gym tomorrow?", none, false, true, false},
		{"ok", none, false, true, false},
		{"👍", none, false, true, false},
		{"Hola, ¿puedo tomar ibuprofeno?", none, false, true, false},
		{"Gracias por todo", none, false, true, false},
		{"", none, false, false, false},
	}
	rf := flags(t)
	for _, tt := range tests {
		r := aftercare.ReadReply(tt.text, rf)
		if r.Keyword != tt.keyword || r.Exact != tt.exact || r.ForClinic != tt.forClinic || r.Urgent != tt.urgent {
			t.Errorf("ReadReply(%q) = keyword %q exact %v for the clinic %v urgent %v (flags %q); want %q %v %v %v",
				tt.text, r.Keyword, r.Exact, r.ForClinic, r.Urgent, r.Flags, tt.keyword, tt.exact, tt.forClinic, tt.urgent)
		}
	}
	if n := len(tests); n < 60 {
		t.Errorf("%d texts; the classifier is held to at least 60", n)
	}
}

func TestReadReplyLocale(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]string{
		"Hola, me cuesta tragar":           "es",
		"Gracias por la información":       "es",
		"Thanks, see you Tuesday":          "",
		"my eyelid droops":                 "",
		"Tengo una pregunta sobre mi cita": "es",
		"STOP":                             "",
	} {
		if got := aftercare.ReadReply(text, nil).Locale; got != want {
			t.Errorf("locale of %q = %q, want %q", text, got, want)
		}
	}
}

// TestRedFlagPhrases: a * word matches what it begins; words may have up to
// two others between them; accents and case do not matter.
func TestRedFlagPhrases(t *testing.T) {
	t.Parallel()
	rf := aftercare.NewRedFlags(map[string][]string{"en": {"hard to swallow", "droop*"}, "es": {"párpado caído"}})
	for text, want := range map[string]bool{
		"hard to swallow":            true,
		"hard for me to swallow":     true,
		"hard for me now to swallow": false, // three words between
		"swallow hard":               false,
		"DROOPY eyelid":              true,
		"dropped my phone":           false,
		"PARPADO CAIDO":              true,
		"el párpado está caído":      true,
	} {
		if got := aftercare.ReadReply(text, rf).Urgent; got != want {
			t.Errorf("urgent(%q) = %v, want %v", text, got, want)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"STOP", "opt out", "Sí", "stop please", "\xff\xfe", "OPT\u00a0OUT", "Yes but my eyelid droops",
		"me cuesta tragar", "🛑", "can't breathe", "a\u0301"} {
		f.Add(s)
	}
	rf := flags(f)
	known := []aftercare.Keyword{aftercare.KeywordStop, aftercare.KeywordStart, aftercare.KeywordHelp, aftercare.KeywordYes, aftercare.KeywordNone}
	f.Fuzz(func(t *testing.T, text string) {
		r := aftercare.ReadReply(text, rf)
		if again := aftercare.ReadReply(text, rf); again.Keyword != r.Keyword || again.Urgent != r.Urgent || again.ForClinic != r.ForClinic {
			t.Fatal("not deterministic")
		}
		if !slices.Contains(known, r.Keyword) {
			t.Fatalf("unknown keyword %q", r.Keyword)
		}
		switch {
		case r.Urgent && (!r.ForClinic || r.Exact || r.Keyword == aftercare.KeywordStop):
			t.Fatalf("%q is urgent but %+v: an urgent text always reaches a person, and never opts out", text, r)
		case r.Exact && r.ForClinic:
			t.Fatalf("%q is an exact keyword and for the clinic", text)
		case r.Urgent != (len(r.Flags) > 0):
			t.Fatalf("%q: urgent %v with flags %q", text, r.Urgent, r.Flags)
		case strings.TrimSpace(text) != "" && r.Keyword == aftercare.KeywordNone && !r.ForClinic:
			t.Fatalf("%q is neither a keyword nor for the clinic: it would be lost", text)
		}
	})
}
