package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fixedgate/fixedgate/proxy/statefile"
)

// FileName is the incidents file in the state directory (the ip-ranges contract's directory).
const FileName = "status-incidents.json"

// Bounds on what an incidents file holds.
const (
	// MaxIncidents is how many incidents the file keeps: a post that opens one more drops the
	// oldest. It is the history the page and the Atom feed show.
	MaxIncidents = 50
	// MaxUpdates is how many updates one incident takes, plus the one that resolves it; beyond
	// it, resolve the incident and open a new one (at the promised rate, three weeks' worth).
	MaxUpdates = 1000
	// MaxMessageLen is the longest message, in characters (runes).
	MaxMessageLen = 2000
	// maxFileSize bounds what a load reads: far above what the bounds above allow in practice.
	maxFileSize = 32 << 20
)

// IncidentState is where an incident stands, as its latest update says.
type IncidentState string

// The incident states, in the order an incident usually goes through them. Any order is
// allowed; Resolved closes the incident.
const (
	Investigating IncidentState = "investigating"
	Identified    IncidentState = "identified"
	Monitoring    IncidentState = "monitoring"
	Resolved      IncidentState = "resolved"
)

var incidentStates = []IncidentState{Investigating, Identified, Monitoring, Resolved}

// Incident is one incident: what operators told customers, oldest update first.
type Incident struct {
	ID      string   `json:"id"`
	Updates []Update `json:"updates"`
}

// Update is one post about an incident.
type Update struct {
	At      time.Time     `json:"at"`
	State   IncidentState `json:"state"`
	Impact  State         `json:"impact"` // Degraded or Outage
	Message string        `json:"message"`
}

// Latest returns the incident's latest update (the zero Update for an incident without any,
// which a loaded or posted incident never is).
func (i *Incident) Latest() Update {
	if len(i.Updates) == 0 {
		return Update{}
	}
	return i.Updates[len(i.Updates)-1]
}

// Resolved reports whether the incident's latest update resolved it.
func (i *Incident) Resolved() bool { return i.Latest().State == Resolved }

// Impact is the impact the latest update gives the incident.
func (i *Incident) Impact() State {
	if imp := i.Latest().Impact; imp == Outage {
		return Outage
	}
	return Degraded
}

// OpenedAt is when the incident was opened (its first update).
func (i *Incident) OpenedAt() time.Time {
	if len(i.Updates) == 0 {
		return time.Time{}
	}
	return i.Updates[0].At
}

// UpdatedAt is when the incident was last updated.
func (i *Incident) UpdatedAt() time.Time { return i.Latest().At }

// clone returns a copy that shares nothing with i.
func (i *Incident) clone() *Incident {
	c := *i
	c.Updates = append([]Update(nil), i.Updates...)
	return &c
}

// incidentFile is the stored form of FileName.
type incidentFile struct {
	SchemaVersion int        `json:"schema_version"`
	Incidents     []Incident `json:"incidents"` // oldest first
}

// open returns the open incident, or nil.
func (f *incidentFile) open() *Incident {
	if n := len(f.Incidents); n > 0 && !f.Incidents[n-1].Resolved() {
		return &f.Incidents[n-1]
	}
	return nil
}

// Post records one update and returns the incident it belongs to. With an incident open (its
// latest update is not resolved) the update is appended to it; otherwise a new incident is
// opened, unless state is resolved, which is then an error. state is investigating, identified,
// monitoring or resolved; impact is degraded or outage, or empty to keep the open incident's
// (degraded for a new one). message is what customers read: CRLF becomes LF and surrounding
// white space is trimmed; it must then be non-empty, at most MaxMessageLen characters, valid
// UTF-8 and free of control characters other than newlines. The time is now in UTC whole
// seconds, never before the incident's previous update.
//
// dir is the state directory (the ip-ranges contract's). Concurrent posts are serialised with
// an flock on `.status-incidents.json.lock` in dir; the file is written atomically (see the
// package documentation). A file that does not load is an error naming it, and is left as it
// is.
func Post(dir string, state, message, impact string, now time.Time) (*Incident, error) {
	if dir == "" {
		return nil, errors.New("post status update: no state directory (the ip-ranges contract's directory holds " + FileName + ")")
	}
	st, err := parseIncidentState(state)
	if err != nil {
		return nil, fmt.Errorf("post status update: %w", err)
	}
	imp, err := parseImpact(impact)
	if err != nil {
		return nil, fmt.Errorf("post status update: %w", err)
	}
	msg := strings.TrimSpace(strings.ReplaceAll(message, "\r\n", "\n"))
	if err := checkMessage(msg); err != nil {
		return nil, fmt.Errorf("post status update: message: %w", err)
	}

	path := filepath.Join(dir, FileName)
	unlock, err := statefile.Lock(statefile.LockPath(path))
	if err != nil {
		return nil, fmt.Errorf("post status update: lock %s: %w", statefile.LockPath(path), err)
	}
	defer unlock()
	f, err := loadFile(path)
	if err != nil {
		return nil, fmt.Errorf("post status update: %w", err)
	}
	statefile.RemoveStaleTemps(path)
	inc, err := f.post(st, imp, msg, now)
	if err != nil {
		return nil, fmt.Errorf("post status update: %w", err)
	}
	if err := validateFile(f); err != nil { // cannot happen; the guarantee is worth a call
		return nil, fmt.Errorf("post status update: refusing to write an invalid file: %w", err)
	}
	data, err := marshalFile(f)
	if err != nil {
		return nil, fmt.Errorf("post status update: %w", err)
	}
	if err := statefile.WriteAtomic(path, data); err != nil {
		return nil, fmt.Errorf("post status update: %w", err)
	}
	return inc, nil
}

// post applies one update to f and returns (a copy of) the incident it went to.
func (f *incidentFile) post(st IncidentState, imp State, msg string, now time.Time) (*Incident, error) {
	at := now.UTC().Truncate(time.Second)
	if n := len(f.Incidents); n > 0 {
		at = later(at, f.Incidents[n-1].UpdatedAt())
	}
	inc := f.open()
	if inc == nil {
		if st == Resolved {
			return nil, errors.New("there is no open incident to resolve")
		}
		if imp == "" {
			imp = Degraded
		}
		f.Incidents = append(f.Incidents, Incident{ID: f.newID(at)})
		inc = &f.Incidents[len(f.Incidents)-1]
	} else if len(inc.Updates) >= MaxUpdates && st != Resolved {
		return nil, fmt.Errorf("incident %s already has %d updates, the most one takes: resolve it and open a new one", inc.ID, MaxUpdates)
	} else if imp == "" {
		imp = inc.Impact()
	}
	inc.Updates = append(inc.Updates, Update{At: at, State: st, Impact: imp, Message: msg})
	out := inc.clone()
	if n := len(f.Incidents); n > MaxIncidents {
		f.Incidents = append([]Incident(nil), f.Incidents[n-MaxIncidents:]...)
	}
	return out, nil
}

// newID names an incident opened at at: its UTC time, with a suffix if that is taken.
func (f *incidentFile) newID(at time.Time) string {
	base := at.UTC().Format("20060102T150405Z")
	taken := make(map[string]bool, len(f.Incidents))
	for _, inc := range f.Incidents {
		taken[inc.ID] = true
	}
	id := base
	for n := 2; taken[id]; n++ {
		id = base + "-" + strconv.Itoa(n)
	}
	return id
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func parseIncidentState(s string) (IncidentState, error) {
	for _, st := range incidentStates {
		if s == string(st) {
			return st, nil
		}
	}
	return "", fmt.Errorf("state: %q is not one of investigating, identified, monitoring, resolved", s)
}

// parseImpact accepts degraded, outage, or empty (not given).
func parseImpact(s string) (State, error) {
	switch State(s) {
	case "", Degraded, Outage:
		return State(s), nil
	}
	return "", fmt.Errorf("impact: %q is not degraded or outage", s)
}

// checkMessage reports why msg cannot be shown to customers, or nil.
func checkMessage(msg string) error {
	if strings.TrimSpace(msg) == "" {
		return errors.New("empty: say what customers see and what is being done")
	}
	if !utf8.ValidString(msg) {
		return errors.New("not valid UTF-8")
	}
	n := 0
	for i, r := range msg {
		n++
		if r != '\n' && unicode.IsControl(r) {
			return fmt.Errorf("control character %U at byte %d (only newlines are allowed)", r, i)
		}
	}
	if n > MaxMessageLen {
		return fmt.Errorf("%d characters, more than the %d allowed", n, MaxMessageLen)
	}
	return nil
}

// loadFile reads and validates the incidents file at path. A missing file is an empty one; any
// other problem is an error that names path.
func loadFile(path string) (*incidentFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &incidentFile{SchemaVersion: 1}, nil
		}
		return nil, fmt.Errorf("incidents file %s: %w", path, err)
	}
	defer fh.Close()
	f, _, err := readFile(fh, path)
	return f, err
}

// readFile reads, parses and validates an open incidents file, and returns it with its
// FileInfo (taken from the same descriptor, so the two belong together).
func readFile(fh *os.File, path string) (*incidentFile, fs.FileInfo, error) {
	fi, err := fh.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("incidents file %s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxFileSize+1))
	if err != nil {
		return nil, fi, fmt.Errorf("incidents file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fi, fmt.Errorf("incidents file %s: larger than %d bytes", path, maxFileSize)
	}
	f, err := parseFile(data)
	if err != nil {
		return nil, fi, fmt.Errorf("incidents file %s: %w", path, err)
	}
	return f, fi, nil
}

// parseFile decodes and validates the stored form, strictly.
func parseFile(data []byte) (*incidentFile, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("the file is empty (a file Post wrote is never empty; restore it from a backup, or remove it to start with no incidents)")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f incidentFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not a valid incidents file: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not a valid incidents file: data after the document")
	}
	if err := validateFile(&f); err != nil {
		return nil, err
	}
	return &f, nil
}

// validateFile checks the rules of the package documentation.
func validateFile(f *incidentFile) error {
	if f.SchemaVersion != 1 {
		return fmt.Errorf("schema_version: %d, want 1", f.SchemaVersion)
	}
	if len(f.Incidents) > MaxIncidents {
		return fmt.Errorf("incidents: %d, more than the %d kept", len(f.Incidents), MaxIncidents)
	}
	ids := make(map[string]bool, len(f.Incidents))
	for i := range f.Incidents {
		inc := &f.Incidents[i]
		where := fmt.Sprintf("incidents[%d]", i)
		if err := checkID(inc.ID); err != nil {
			return fmt.Errorf("%s: id: %w", where, err)
		}
		if ids[inc.ID] {
			return fmt.Errorf("%s: id %q is used twice", where, inc.ID)
		}
		ids[inc.ID] = true
		switch n := len(inc.Updates); {
		case n == 0:
			return fmt.Errorf("%s (%s): no updates", where, inc.ID)
		case n > MaxUpdates+1, n == MaxUpdates+1 && !inc.Resolved():
			return fmt.Errorf("%s (%s): %d updates, more than %d", where, inc.ID, n, MaxUpdates)
		}
		if i < len(f.Incidents)-1 && !inc.Resolved() {
			return fmt.Errorf("%s (%s): not resolved, but only the last incident may be open", where, inc.ID)
		}
		for j, u := range inc.Updates {
			uw := fmt.Sprintf("%s (%s): updates[%d]", where, inc.ID, j)
			if _, err := parseIncidentState(string(u.State)); err != nil {
				return fmt.Errorf("%s: %w", uw, err)
			}
			if u.State == Resolved && j < len(inc.Updates)-1 {
				return fmt.Errorf("%s: resolved, but updates follow", uw)
			}
			if u.Impact != Degraded && u.Impact != Outage {
				return fmt.Errorf("%s: impact: %q is not degraded or outage", uw, u.Impact)
			}
			if u.At.IsZero() {
				return fmt.Errorf("%s: at: missing", uw)
			}
			if j > 0 && u.At.Before(inc.Updates[j-1].At) {
				return fmt.Errorf("%s: at: %s is before the previous update", uw, u.At.UTC().Format(time.RFC3339))
			}
			if err := checkMessage(u.Message); err != nil {
				return fmt.Errorf("%s: message: %w", uw, err)
			}
		}
	}
	return nil
}

// checkID accepts what Post writes and any other short name safe in an Atom tag URI.
func checkID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("%q: must be 1 to 64 characters", id)
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%q: only letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}

// marshalFile renders the stored form: indented, times in UTC.
func marshalFile(f *incidentFile) ([]byte, error) {
	out := incidentFile{SchemaVersion: f.SchemaVersion, Incidents: make([]Incident, len(f.Incidents))}
	for i, inc := range f.Incidents {
		c := inc.clone()
		for j := range c.Updates {
			c.Updates[j].At = c.Updates[j].At.UTC()
		}
		out.Incidents[i] = *c
	}
	if out.Incidents == nil {
		out.Incidents = []Incident{}
	}
	data, err := json.MarshalIndent(&out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
