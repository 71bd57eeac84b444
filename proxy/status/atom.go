package status

import (
	"encoding/xml"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FeedID is the Atom id of the incident feed. An entry's id extends it with the incident's id
// and the update's number within the incident (1 for the first), so an entry keeps its id in
// every later version of the feed and a feed reader shows each update once.
const FeedID = "tag:fixedgate,2026:status"

// maxFeedEntries is how many updates the feed carries, the newest.
const maxFeedEntries = 200

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
	Type string `xml:"type,attr,omitempty"`
	Href string `xml:"href,attr"`
}

type atomText struct {
	Type string `xml:"type,attr"`
	Body string `xml:",chardata"`
}

type atomCategory struct {
	Term string `xml:"term,attr"`
}

type atomEntry struct {
	ID       string         `xml:"id"`
	Title    string         `xml:"title"`
	Updated  string         `xml:"updated"`
	Link     atomLink       `xml:"link"`
	Category []atomCategory `xml:"category"`
	Content  atomText       `xml:"content"`
}

// renderAtom renders the incident updates as an Atom 1.0 feed, newest first. Its updated time
// is the latest update's (the time of the request when there is none).
func renderAtom(w io.Writer, s *snapshot) error {
	type ref struct {
		inc *Incident
		n   int // index in inc.Updates
	}
	var refs []ref
	for i := range s.incidents {
		for j := len(s.incidents[i].Updates) - 1; j >= 0; j-- { // newest first, also within one second
			refs = append(refs, ref{&s.incidents[i], j})
		}
	}
	// Newest first; of updates at the same time, the later one (incidents come newest first).
	slices.SortStableFunc(refs, func(a, b ref) int {
		return b.inc.Updates[b.n].At.Compare(a.inc.Updates[a.n].At)
	})
	if len(refs) > maxFeedEntries {
		refs = refs[:maxFeedEntries]
	}
	updated := s.now
	if len(refs) > 0 {
		updated = refs[0].inc.Updates[refs[0].n].At
	}
	feed := atomFeed{
		ID:        FeedID,
		Title:     "fixedgate status",
		Subtitle:  "Incident updates: posted as soon as something is wrong, then at least every " + humanDuration(s.interval) + " until it is resolved.",
		Updated:   rfc3339(updated),
		Author:    atomPerson{Name: "fixedgate"},
		Generator: "fixedgate",
		Links: []atomLink{
			{Rel: "self", Type: "application/atom+xml", Href: PathAtom},
			{Rel: "alternate", Type: "text/html", Href: PathHTML},
		},
		Entries: make([]atomEntry, 0, len(refs)),
	}
	for _, r := range refs {
		u := r.inc.Updates[r.n]
		feed.Entries = append(feed.Entries, atomEntry{
			ID:       FeedID + ":" + r.inc.ID + ":" + strconv.Itoa(r.n+1),
			Title:    string(u.State) + ": " + firstLine(u.Message),
			Updated:  rfc3339(u.At),
			Link:     atomLink{Rel: "alternate", Type: "text/html", Href: PathHTML},
			Category: []atomCategory{{Term: string(u.State)}, {Term: string(u.Impact)}},
			Content:  atomText{Type: "text", Body: u.Message},
		})
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(&feed); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// firstLine is msg's first line, cut at 120 characters.
func firstLine(msg string) string {
	line, _, _ := strings.Cut(msg, "\n")
	line = strings.TrimSpace(line)
	if r := []rune(line); len(r) > 120 {
		line = string(r[:119]) + "…"
	}
	return line
}

// humanDuration says d in words: "30 minutes", "1 hour", "90 minutes".
func humanDuration(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int(d/time.Minute), "minute")
	}
	return shortDuration(d)
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.Itoa(n) + " " + unit + "s"
}
