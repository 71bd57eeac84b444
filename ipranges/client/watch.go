package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
)

// DefaultSlack is how much shorter than promised an observed notice may look before the
// Watcher calls it a violation: what it sees lags what was published by up to the server's
// cache lifetime (max-age, 5 minutes by default) plus a cache in between.
const DefaultSlack = 10 * time.Minute

// WatcherOptions configures a Watcher. The zero value works.
type WatcherOptions struct {
	// Client fetches the URL; nil means http.DefaultClient.
	Client *http.Client
	// Notice is the least notice to demand; the watcher demands the larger of it and the
	// document's own notice_days. Zero means ipranges.MinNotice (14 days).
	Notice time.Duration
	// Slack is tolerated on observed notice (see DefaultSlack); zero means DefaultSlack, a
	// negative value none.
	Slack time.Duration
	// Timeout bounds one poll; zero means one minute.
	Timeout time.Duration
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Violation is a broken promise: a prefix that is (or is scheduled to be) used without the
// notice the contract promises.
type Violation struct {
	Direction ipranges.Direction
	CIDR      netip.Prefix
	Status    ipranges.Status // at the poll that found it
	Enabled   time.Time
	// Observed is false when the document's own dates break the promise (enabled less than
	// the notice after published), true when the watcher's observations do: it saw the
	// contract without the prefix at NotListedAt, yet the prefix is in use from Enabled.
	Observed    bool
	Published   time.Time // the document's published date
	NotListedAt time.Time // Observed: the last poll whose document did not list the prefix
	// Notice is how much notice the prefix had: Enabled - Published, or (Observed) at most
	// Enabled - NotListedAt; negative when it was in use before it was listed.
	Notice time.Duration
	// Required is the notice promised.
	Required time.Duration
}

// String is one line for the CLI, naming the prefix and how much notice it had.
func (v Violation) String() string {
	head := fmt.Sprintf("%s %s is %s (enabled %s)", v.Direction, v.CIDR, v.Status, ts(v.Enabled))
	if v.Observed {
		return fmt.Sprintf("%s but was not in the contract at %s, so it had at most %s of notice; the contract promises %s",
			head, ts(v.NotListedAt), FormatDuration(v.Notice), FormatDuration(v.Required))
	}
	return fmt.Sprintf("%s with %s of notice by the document's own dates (published %s); the contract promises %s",
		head, FormatDuration(v.Notice), ts(v.Published), FormatDuration(v.Required))
}

// FormatDuration writes d in days and hours for messages about notice ("13d23h", "1h0m",
// "-2h0m").
func FormatDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	days := d / (24 * time.Hour)
	rest := d - days*24*time.Hour
	switch {
	case days > 0 && rest%time.Hour == 0:
		if rest == 0 {
			return fmt.Sprintf("%s%dd", sign, days)
		}
		return fmt.Sprintf("%s%dd%dh", sign, days, rest/time.Hour)
	case days > 0:
		return fmt.Sprintf("%s%dd%s", sign, days, rest.Truncate(time.Second))
	}
	return sign + d.Truncate(time.Second).String()
}

// Report is what one poll found.
type Report struct {
	At          time.Time
	URL         string
	SyncToken   string
	ETag        string
	Baseline    bool // the first successful poll: nothing to compare with yet
	NotModified bool // the server answered 304; changes come from time passing only
	Changes     []Change
	Violations  []Violation
	Doc         *ipranges.Document
	Raw         []byte // the document's bytes (kept from the last 200 on a 304)
}

// Watcher polls a contract's URL and checks the promise on every poll. It keeps, per prefix
// (direction and CIDR), when it first saw it and the last poll at which the contract did not
// list it.
//
// Rules, for every prefix that is not retired:
//   - The document's own dates: a prefix outside the initial set (published == enabled ==
//     created_at) must be enabled at least the notice after it is published. Checked from the
//     first poll on, also for announced prefixes (the promise is broken as soon as it is
//     published that way).
//   - The watcher's observations: a prefix first seen after the first poll was not listed at
//     the previous poll, so once it is in use, enabled - that poll must be at least the notice
//     (less Slack). A prefix that appears already active fails this unless the watcher was
//     away for longer than the notice. Prefixes present at the first poll (the baseline) are
//     accepted: the watcher cannot know how long they were listed before it started.
//
// Each prefix is reported at most once per rule. A Watcher is not safe for concurrent use.
type Watcher struct {
	url  string
	opts WatcherOptions

	doc      *ipranges.Document
	raw      []byte
	docAt    time.Time
	etag     string
	lastPoll time.Time // last successful poll
	seen     map[key]*seenPrefix
}

type seenPrefix struct {
	notListedAt time.Time // zero for the baseline
	docReported bool
	obsChecked  bool
}

// NewWatcher returns a Watcher of url.
func NewWatcher(url string, opts WatcherOptions) *Watcher {
	if opts.Notice <= 0 {
		opts.Notice = ipranges.MinNotice
	}
	switch {
	case opts.Slack == 0:
		opts.Slack = DefaultSlack
	case opts.Slack < 0:
		opts.Slack = 0
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Watcher{url: url, opts: opts, seen: map[key]*seenPrefix{}}
}

// Poll fetches the URL (with If-None-Match after the first success) and reports changes since
// the previous successful poll and any violations. On error nothing is recorded, so the next
// poll compares with the last good one.
func (w *Watcher) Poll(ctx context.Context) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	now := w.opts.Now()
	res, err := Fetch(ctx, w.opts.Client, w.url, w.etag)
	if err != nil {
		return nil, err
	}
	doc, raw := res.Doc, res.Raw
	if res.NotModified {
		if w.doc == nil {
			return nil, errors.New("poll: 304 Not Modified before any document was received")
		}
		doc, raw = w.doc, w.raw
	}
	r := &Report{At: now, URL: w.url, SyncToken: doc.SyncToken, ETag: res.ETag, Baseline: w.doc == nil,
		NotModified: res.NotModified, Doc: doc, Raw: raw}
	if w.doc != nil {
		r.Changes = DiffAt(w.doc, w.docAt, doc, now)
	}
	required := max(w.opts.Notice, doc.Notice())
	present := make(map[key]bool, len(doc.Prefixes))
	for i := range doc.Prefixes {
		p := &doc.Prefixes[i]
		k := keyOf(p)
		present[k] = true
		s := w.seen[k]
		if s == nil {
			s = &seenPrefix{}
			if !r.Baseline {
				s.notListedAt = w.lastPoll
			}
			w.seen[k] = s
		}
		st := p.Status(now)
		if st == ipranges.Retired {
			continue
		}
		initial := p.Published.Equal(doc.CreatedAt) && p.Enabled.Equal(doc.CreatedAt)
		if !s.docReported && !initial && p.Enabled.Before(p.Published.Add(required)) {
			s.docReported, s.obsChecked = true, true // one report per prefix is enough
			r.Violations = append(r.Violations, Violation{Direction: k.dir, CIDR: k.cidr, Status: st, Enabled: p.Enabled,
				Published: p.Published, Notice: p.Enabled.Sub(p.Published), Required: required})
			continue
		}
		if !s.obsChecked && !s.notListedAt.IsZero() && p.InUse(now) {
			s.obsChecked = true
			if had := p.Enabled.Sub(s.notListedAt); had < required-w.opts.Slack {
				r.Violations = append(r.Violations, Violation{Direction: k.dir, CIDR: k.cidr, Status: st, Enabled: p.Enabled,
					Observed: true, Published: p.Published, NotListedAt: s.notListedAt, Notice: had, Required: required})
			}
		}
	}
	for k := range w.seen {
		if !present[k] {
			delete(w.seen, k) // if it comes back, it is new again
		}
	}
	w.doc, w.raw, w.docAt, w.etag, w.lastPoll = doc, raw, now, res.ETag, now
	return r, nil
}

// Run polls at once and then on every tick until ctx is done (it then returns nil) or handle
// returns an error (which Run returns). handle gets each report, or the poll's error (the
// watcher keeps going after it unless handle says otherwise). ticks is typically a
// time.Ticker's channel; tests pass their own.
func (w *Watcher) Run(ctx context.Context, ticks <-chan time.Time, handle func(*Report, error) error) error {
	for {
		r, err := w.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if herr := handle(r, err); herr != nil {
			return herr
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticks:
		}
	}
}
