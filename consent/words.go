package consent

import (
	"unicode/utf8"

	"github.com/aftercare/aftercare"
)

// words are the page's own words around the protocol's text, by locale.
type words struct {
	Skip, Intro                               string
	Tick, Name, NameHint, Submit              string
	Problem, NeedTick, NeedName, LongName     string
	BadName, ErrorPrefix                      string
	FormExpired, Changed                      string
	SMSDone                                   string // %s: when the patient replied YES
	Thanks, Confirmed, When, How, Reference   string
	Version, Print, WhatYouRead, Page, NoText string
	Invalid, InvalidText, Expired, ExpiredTxt string
	Busy, BusyText, Broken, BrokenText        string
	Refused, RefusedText, Closed, ClosedText  string
	Call                                      string // %s: clinic name, %s: phone
}

var wordsByLocale = map[string]words{
	"en": {
		Skip:        "Skip to the confirmation",
		Intro:       "Take your time. You can come back to this page from the link in our message.",
		Tick:        "I have read and understood this information.",
		Name:        "Your full name",
		NameHint:    "Typing your name is your signature.",
		Submit:      "Confirm",
		Problem:     "There is a problem",
		NeedTick:    "Tick the box to confirm that you have read and understood this information.",
		NeedName:    "Type your full name.",
		LongName:    "Your name must be 200 characters or fewer.",
		BadName:     "Type your name with letters, spaces and punctuation only.",
		ErrorPrefix: "Error: ",
		FormExpired: "This form was open for a long time. Please confirm again.",
		Changed:     "This information changed while the page was open. Please read it again and confirm.",
		SMSDone:     "You replied YES to our text on %s. Confirming here with your name keeps a fuller record.",
		Thanks:      "Thank you. You have confirmed that you read and understood this information.",
		Confirmed:   "Your confirmation",
		When:        "Confirmed on",
		How:         "How",
		Reference:   "Reference",
		Version:     "Version",
		Print:       "Keep this page: print it, or save it as a PDF from your browser's print menu.",
		WhatYouRead: "What you confirmed",
		Page:        "on this page, with your name",
		NoText:      "The words of this confirmation are not kept.",
		Invalid:     "This link does not work",
		InvalidText: "Check that you opened the whole link from our message. If your appointment changed, use the link in our newest message.",
		Expired:     "This link has expired",
		ExpiredTxt:  "Links to this page work until shortly after the appointment, and stop when an appointment changes. The newest message from us has the current link.",
		Busy:        "Too many attempts",
		BusyText:    "Please wait a few minutes and try again.",
		Broken:      "Something went wrong on our side",
		BrokenText:  "Please try again in a few minutes.",
		Closed:      "Confirming here has closed",
		ClosedText:  "Consent is confirmed before the treatment, and your appointment has begun. The team at the clinic will go through it with you.",
		Refused:     "This form could not be sent",
		RefusedText: "It did not come from this page. Open the link in our message again and confirm there.",
		Call:        "Questions? Call %s on %s.",
	},
	"es": {
		Skip:        "Ir a la confirmación",
		Intro:       "Tómese su tiempo. Puede volver a esta página desde el enlace de nuestro mensaje.",
		Tick:        "He leído y entendido esta información.",
		Name:        "Su nombre completo",
		NameHint:    "Escribir su nombre es su firma.",
		Submit:      "Confirmar",
		Problem:     "Hay un problema",
		NeedTick:    "Marque la casilla para confirmar que ha leído y entendido esta información.",
		NeedName:    "Escriba su nombre completo.",
		LongName:    "Su nombre debe tener 200 caracteres como máximo.",
		BadName:     "Escriba su nombre solo con letras, espacios y signos de puntuación.",
		ErrorPrefix: "Error: ",
		FormExpired: "El formulario estuvo abierto mucho tiempo. Confirme de nuevo, por favor.",
		Changed:     "Esta información cambió mientras tenía la página abierta. Vuelva a leerla y confirme, por favor.",
		SMSDone:     "Respondió SÍ a nuestro SMS el %s. Si confirma aquí con su nombre, el registro queda más completo.",
		Thanks:      "Gracias. Ha confirmado que ha leído y entendido esta información.",
		Confirmed:   "Su confirmación",
		When:        "Confirmado el",
		How:         "Cómo",
		Reference:   "Referencia",
		Version:     "Versión",
		Print:       "Guarde esta página: imprímala o guárdela como PDF desde el menú de impresión del navegador.",
		WhatYouRead: "Lo que ha confirmado",
		Page:        "en esta página, con su nombre",
		NoText:      "El texto de esta confirmación no se conserva.",
		Invalid:     "Este enlace no funciona",
		InvalidText: "Compruebe que ha abierto el enlace completo de nuestro mensaje. Si su cita cambió, use el enlace de nuestro mensaje más reciente.",
		Expired:     "Este enlace ha caducado",
		ExpiredTxt:  "Los enlaces a esta página funcionan hasta poco después de la cita, y dejan de funcionar si la cita cambia. Nuestro mensaje más reciente tiene el enlace vigente.",
		Busy:        "Demasiados intentos",
		BusyText:    "Espere unos minutos y vuelva a intentarlo, por favor.",
		Broken:      "Algo ha fallado por nuestra parte",
		BrokenText:  "Vuelva a intentarlo en unos minutos, por favor.",
		Closed:      "Ya no se puede confirmar aquí",
		ClosedText:  "El consentimiento se confirma antes del tratamiento, y su cita ya ha comenzado. El equipo de la clínica lo revisará con usted.",
		Refused:     "No se ha podido enviar el formulario",
		RefusedText: "No procedía de esta página. Vuelva a abrir el enlace de nuestro mensaje y confirme allí.",
		Call:        "¿Dudas? Llame a %s al %s.",
	},
}

// wordsIn returns the words of locale, or of the default locale.
func wordsIn(locale string) (words, string) {
	if w, ok := wordsByLocale[locale]; ok {
		return w, locale
	}
	return wordsByLocale[aftercare.DefaultLocale], aftercare.DefaultLocale
}

// nameProblem says what is wrong with a typed name, if anything: it must be
// there, fit maxName characters, and be text a person types (no control
// or direction-changing characters, which could disguise what is stored).
func (w words) nameProblem(name string) string {
	switch {
	case name == "":
		return w.NeedName
	case !aftercare.Printable(name):
		return w.BadName
	case utf8.RuneCountInString(name) > maxName:
		return w.LongName
	}
	return ""
}
