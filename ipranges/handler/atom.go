package handler

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// FeedID is the Atom id of the changelog feed. Entry ids extend it with the change's
// sync_token, action, direction and CIDR, so an entry keeps its id in every later version of
// the feed and a feed reader shows each change once.
const FeedID = "tag:fixedgate,2026:ip-ranges"

type atomFeed struct {
	XMLName   xml.Name    `xml:"http://www.w3.org/2005/Atom feed"`
	ID        string      `xml:"id"`
	Title     string      `xml:"title"`
	Subtitle  string      `xml:"subtitle"`
	Updated   string      `xml:"updated"`
	Author    atomPerson  `xml:"author"`
	Generator string      `xml:"generator"`
	Links     []atomLink  `xml:"link"`
	Entries   []atomEntry `xml:"entry"`
}

type atomPerson struct {
	Name string `xml:"name"`
}

type atomLink struct {
	Rel  string `xml:"rel,attr"`
	Type string `xml:"type,attr"`
	Href string `xml:"href,attr"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

type atomEntry struct {
	ID      string   `xml:"id"`
	Title   string   `xml:"title"`
	Updated string   `xml:"updated"`
	Content atomText `xml:"content"`
}

// renderAtom renders the changelog as an Atom 1.0 feed, newest change first. The bytes depend
// on the document only (no clock), so they change only when the changelog or a date does.
func renderAtom(doc *ipranges.Document) ([]byte, error) {
	feed := atomFeed{
		ID:        FeedID,
		Title:     "fixedgate ip-ranges changes",
		Subtitle:  fmt.Sprintf("Every address fixedgate uses is announced here at least %d days before it is used.", doc.NoticeDays),
		Updated:   rfc3339(latestChange(doc)),
		Author:    atomPerson{Name: "fixedgate"},
		Generator: "fixedgate",
		Links: []atomLink{
			{Rel: "self", Type: "application/atom+xml", Href: PathAtom},
			{Rel: "alternate", Type: "application/json", Href: PathJSON},
		},
	}
	order := make([]int, len(doc.Changelog))
	for i := range order {
		order[i] = i
	}
	// Newest first; of changes made at the same time, the later entry first.
	slices.SortStableFunc(order, func(a, b int) int {
		if c := doc.Changelog[b].At.Compare(doc.Changelog[a].At); c != 0 {
			return c
		}
		return b - a
	})
	idx := indexPrefixes(doc)
	ids := entryIDs(doc, idx)
	feed.Entries = make([]atomEntry, 0, len(order))
	for _, i := range order {
		c := &doc.Changelog[i]
		p, dir := idx.find(c)
		title := c.Action
		if dir != "" {
			title += " " + string(dir)
		}
		title += " " + c.CIDR
		feed.Entries = append(feed.Entries, atomEntry{
			ID:      ids[i],
			Title:   title,
			Updated: rfc3339(c.At),
			Content: atomText{Type: "text", Body: describe(c, p, dir)},
		})
	}
	var b bytes.Buffer
	b.Grow(1024 + 400*len(feed.Entries))
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(feed); err != nil {
		return nil, fmt.Errorf("render atom feed: %w", err)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// entryIDs gives every changelog entry a stable tag: URI. Entries that would share one (the
// same action on the same prefix in one sync_token) are numbered in changelog order, which
// only grows at the end.
func entryIDs(doc *ipranges.Document, idx prefixIndex) []string {
	ids := make([]string, len(doc.Changelog))
	seen := make(map[string]int, len(doc.Changelog))
	for i := range doc.Changelog {
		c := &doc.Changelog[i]
		_, dir := idx.find(c)
		if dir == "" {
			dir = "any"
		}
		id := FeedID + "/" + tagPart(c.SyncToken) + "/" + tagPart(c.Action) + "/" + string(dir) + "/" + tagPart(c.CIDR)
		seen[id]++
		if n := seen[id]; n > 1 {
			id += "/" + strconv.Itoa(n)
		}
		ids[i] = id
	}
	return ids
}

// tagPart keeps the characters a tag: URI's specific part allows (RFC 4151: pchar, "/", "?"),
// percent-encoding the rest.
func tagPart(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("-._~!$&'()*+,;=:@/", c) >= 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// prefixIndex finds a document's prefixes by CIDR (as the changelog spells it).
type prefixIndex map[string][]*ipranges.Prefix

func indexPrefixes(doc *ipranges.Document) prefixIndex {
	idx := make(prefixIndex, len(doc.Prefixes))
	for i := range doc.Prefixes {
		p := &doc.Prefixes[i]
		k := p.CIDR.String()
		idx[k] = append(idx[k], p)
	}
	return idx
}

// find returns the prefix a change is about (matching its direction when the change names
// one), and the direction to show.
func (idx prefixIndex) find(c *ipranges.Change) (*ipranges.Prefix, ipranges.Direction) {
	for _, p := range idx[c.CIDR] {
		if c.Direction == "" || c.Direction == p.Direction {
			return p, p.Direction
		}
	}
	return nil, c.Direction
}

// describe says what a change means for a firewall and when it takes effect.
func describe(c *ipranges.Change, p *ipranges.Prefix, dir ipranges.Direction) string {
	what := c.CIDR
	if dir != "" {
		what += " (" + string(dir) + ")"
	}
	var s string
	switch {
	case p == nil && c.Action == "prune":
		s = what + " was removed from the document after its retirement."
	case p == nil:
		s = c.Action + " " + what + "; the prefix is no longer in the document."
	case c.Action == "init":
		s = what + " is in the first version of the contract, in use from " + rfc3339(p.Enabled) + "."
	case c.Action == "announce":
		s = "Announced " + what + ": published " + rfc3339(p.Published) + ", takes effect (enabled) at " +
			rfc3339(p.Enabled) + ". Allow it before then."
	case c.Action == "retire" && p.Retired != nil:
		s = what + " is retired at " + rfc3339(*p.Retired) + "; it stays in use (draining) until then."
	case c.Action == "retire":
		s = what + " was scheduled for retirement; the retirement has since been withdrawn."
	default:
		s = c.Action + " " + what + "."
	}
	if p != nil && p.Facility != "" {
		s += " Facility: " + p.Facility + "."
	}
	if c.Note != "" {
		s += " " + c.Note
	}
	return s
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
