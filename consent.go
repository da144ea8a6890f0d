package aftercare

import "strings"

// ConsentPage is a booking's consent page: the protocol's consent text in
// the patient's language, laid out by the page template. Text is the page's
// words exactly as shown, what an acknowledgement's digest is of; Blocks
// are the same words as the page lays them out.
type ConsentPage struct {
	Locale    string
	Treatment string
	Text      string
	Blocks    []Block
	// ProtocolVersion and TemplateVersion name the wording: the protocol's
	// version, and a digest of the page template.
	ProtocolVersion, TemplateVersion string
}

// Title is the page's first heading, or the treatment's name.
func (p ConsentPage) Title() string {
	for _, b := range p.Blocks {
		if b.Heading == 1 {
			return b.Lines[0]
		}
	}
	return p.Treatment
}

// Digest is the SHA-256 of the page's text, as Digest writes it.
func (p ConsentPage) Digest() string { return Digest(Outgoing{Text: p.Text}) }

// Block is a heading, a paragraph or a list of a consent page or an email
// body. Their text marks them by line: "# ", "## ", "### " start a heading
// of that level, "! " a paragraph that must stand out (the emergency
// warning), "- " a list item; a blank line ends a block.
type Block struct {
	// Heading is the level of a heading, from 1; 0 for other blocks.
	Heading int
	// Important marks a paragraph that must stand out: an emergency
	// warning.
	Important bool
	// Lines of a heading or a paragraph; Items of a list.
	Lines []string
	Items []string
}

// Blocks splits text into its blocks.
func Blocks(text string) []Block {
	var out []Block
	for _, para := range strings.Split(text, "\n\n") {
		lines := strings.Split(strings.TrimSpace(para), "\n")
		var b Block
		for _, l := range lines {
			if item, ok := strings.CutPrefix(l, "- "); ok {
				b.Items = append(b.Items, item)
			}
		}
		if len(b.Items) == len(lines) {
			out = append(out, b)
			continue
		}
		b = Block{Lines: lines}
		for level, mark := range []string{"# ", "## ", "### "} {
			if rest, ok := strings.CutPrefix(lines[0], mark); ok && len(lines) == 1 {
				b.Heading, b.Lines = level+1, []string{rest}
			}
		}
		if rest, ok := strings.CutPrefix(lines[0], "! "); ok {
			b.Important, b.Lines[0] = true, rest
		}
		out = append(out, b)
	}
	return out
}
