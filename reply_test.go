package aftercare_test

import (
	"testing"

	"github.com/aftercare/aftercare"
)

func TestParseReply(t *testing.T) {
	t.Parallel()
	tests := map[string]aftercare.Keyword{
		"STOP": aftercare.KeywordStop, "stop": aftercare.KeywordStop, " Stop. ": aftercare.KeywordStop,
		"stop please": aftercare.KeywordStop, "STOP!!!": aftercare.KeywordStop, "🛑 stop": aftercare.KeywordStop,
		"StopAll": aftercare.KeywordStop, "unsubscribe": aftercare.KeywordStop, "Cancel": aftercare.KeywordStop,
		"end": aftercare.KeywordStop, "QUIT": aftercare.KeywordStop, "revoke": aftercare.KeywordStop,
		"opt out": aftercare.KeywordStop, "Opt-Out": aftercare.KeywordStop, "optout": aftercare.KeywordStop,
		"baja":  aftercare.KeywordStop,
		"START": aftercare.KeywordStart, "unstop": aftercare.KeywordStart, "Start.": aftercare.KeywordStart,
		"help": aftercare.KeywordHelp, "HELP?": aftercare.KeywordHelp, "info": aftercare.KeywordHelp,
		"YES": aftercare.KeywordYes, "yes!": aftercare.KeywordYes, "Sí": aftercare.KeywordYes, "si": aftercare.KeywordYes,
		"SÍ, lo he leído": aftercare.KeywordYes,
		"Can I stop?":     aftercare.KeywordOther, "my eyelid feels heavy": aftercare.KeywordOther, "": aftercare.KeywordOther,
		"...": aftercare.KeywordOther, "stopped": aftercare.KeywordOther, "optimal": aftercare.KeywordOther, "opt": aftercare.KeywordOther,
	}
	for body, want := range tests {
		if got := aftercare.ParseReply(body); got != want {
			t.Errorf("ParseReply(%q) = %q, want %q", body, got, want)
		}
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"STOP", "opt out", "Sí", "stop please", "\xff\xfe", "OPT\u00a0OUT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		k := aftercare.ParseReply(body)
		if k != aftercare.ParseReply(body) {
			t.Fatal("not deterministic")
		}
		switch k {
		case aftercare.KeywordStop, aftercare.KeywordStart, aftercare.KeywordHelp, aftercare.KeywordYes, aftercare.KeywordOther:
		default:
			t.Fatalf("unknown keyword %q", k)
		}
	})
}
