// Package handler serves the ip-ranges contract over HTTP: /ip-ranges.json (optionally filtered),
// /ip-ranges.txt, /ip-ranges.atom and /ip-ranges.json.sig, on every listener of the proxy and on
// the admin listener.
//
// Everything is rendered when a document is installed (Set) and again when a prefix's status
// changes by time passing (a timer at the document's next transition, and a check on each
// request so a late timer never serves a stale status); requests only pick precomputed bytes
// and header values. Conditional requests (If-None-Match, If-Modified-Since) are answered 304
// by comparing strings.
//
// Formats:
//
//   - /ip-ranges.json: ipranges.Render of the whole document with each prefix's status.
//     Filtered views: ?direction=ingress|egress and/or ?status=active|announced|draining|retired
//     (rendered on first request and kept until the next version). Other query parameters and
//     bad values are refused with 400, so a typo never silently returns the whole list.
//   - /ip-ranges.txt: the addresses a firewall should allow now: every active, announced and
//     draining prefix, ingress and egress (or ?direction=…), one canonical CIDR a line, sorted
//     (IPv4 first, then by address and length), no duplicates. The first line is a comment that
//     starts with "# " (it names the sync_token); every other line is a CIDR. Tools that do not
//     skip comments can drop lines starting with '#'.
//   - /ip-ranges.atom: an Atom 1.0 feed of the changelog, newest first, one entry per change.
//   - /ip-ranges.json.sig: the detached ed25519 signature (see ipranges.Sign) over the exact
//     bytes of the unfiltered /ip-ranges.json of the same version; 404 without a signing key.
//     The response's X-Fixedgate-Signed-Etag names the ETag of the JSON it signs, so a client
//     whose two requests straddled a new version can tell and fetch again.
//
// Every 200 and 304 carries a strong ETag (the first 128 bits of the SHA-256 of the body, in
// hex), Last-Modified and Cache-Control: public, max-age=N. Last-Modified is the later of the
// latest changelog entry (or created_at) and the latest status transition that has happened,
// and it moves whenever the served bytes change (a hand edit without a changelog entry takes
// the time it was installed).
package handler

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/ipranges"
)

// The paths the handler owns. The proxy routes each of them to the handler on every listener.
const (
	PathJSON = "/ip-ranges.json"
	PathTXT  = "/ip-ranges.txt"
	PathAtom = "/ip-ranges.atom"
	PathSig  = "/ip-ranges.json.sig"
)

// Paths lists every path the handler answers; anything else gets 404 from it.
var Paths = []string{PathJSON, PathTXT, PathAtom, PathSig}

// DefaultMaxAge is the Cache-Control max-age used when Options.MaxAge is zero.
const DefaultMaxAge = 5 * time.Minute

// Options configures a Handler.
type Options struct {
	// MaxAge is sent as Cache-Control: public, max-age=N. Zero means DefaultMaxAge; a negative
	// value sends max-age=0 (caches revalidate every time).
	MaxAge time.Duration
	// SigningKey signs /ip-ranges.json; nil serves no /ip-ranges.json.sig (404).
	SigningKey ed25519.PrivateKey
	// Now is the clock statuses are derived from; nil means time.Now. Tests set it.
	Now func() time.Time
	// Logger receives one line per installed or re-rendered version; nil logs nothing.
	Logger *zap.Logger
}

// Handler serves the contract. It is safe for concurrent use: Set may be called while requests
// are served, and readers never block on a writer.
type Handler struct {
	now          func() time.Time
	key          ed25519.PrivateKey
	log          *zap.Logger
	cacheControl []string

	cur atomic.Pointer[version]

	mu       sync.Mutex // serialises rendering, the timer and Close
	timer    *time.Timer
	closed   bool
	onRender func(*version) // test hook, called with mu held after each new version
}

// New returns a Handler with nothing to serve yet (503) until Set installs a document.
func New(opts Options) *Handler {
	h := &Handler{now: opts.Now, key: opts.SigningKey, log: opts.Logger}
	if h.now == nil {
		h.now = time.Now
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	maxAge := opts.MaxAge
	switch {
	case maxAge == 0:
		maxAge = DefaultMaxAge
	case maxAge < 0:
		maxAge = 0
	}
	h.cacheControl = hv("public, max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10))
	return h
}

// Set installs doc as the served contract (at start and on every reload). It renders every
// representation and signs the JSON before swapping the new version in, so a reader sees the
// old version or the new one, never a mix; on error the old version stays. Set does not keep
// a reference to anything the caller may change later, except doc itself: the caller must not
// modify doc after passing it.
func (h *Handler) Set(doc *ipranges.Document) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if doc == nil {
		h.cur.Store(nil)
		h.scheduleLocked(nil)
		return nil
	}
	v, err := h.render(doc, h.now(), h.cur.Load())
	if err != nil {
		h.log.Error("ip-ranges: new contract not installed; the previous one stays", zap.Error(err))
		return err
	}
	h.install(v, "contract installed")
	return nil
}

// Close stops the transition timer. Requests are still answered (a request after a transition
// still re-renders), so Close may run before the server stops.
func (h *Handler) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
}

// install swaps v in and schedules the next re-render; mu must be held.
func (h *Handler) install(v *version, msg string) {
	h.cur.Store(v)
	h.scheduleLocked(v)
	if ce := h.log.Check(zap.InfoLevel, "ip-ranges: "+msg); ce != nil {
		fields := []zap.Field{zap.String("sync_token", v.doc.SyncToken), zap.Int("prefixes", len(v.doc.Prefixes)),
			zap.String("etag", v.json.etag), zap.Time("last_modified", v.lastMod)}
		if v.hasNext {
			fields = append(fields, zap.Time("next_transition", v.next))
		}
		ce.Write(fields...)
	}
	if h.onRender != nil {
		h.onRender(v)
	}
}

// scheduleLocked arms the timer for v's next status transition; mu must be held.
func (h *Handler) scheduleLocked(v *version) {
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	if h.closed || v == nil || !v.hasNext {
		return
	}
	d := v.next.Sub(h.now())
	if d < 0 {
		d = 0
	}
	h.timer = time.AfterFunc(d, h.onTimer)
}

func (h *Handler) onTimer() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.refreshLocked(h.now())
}

// refreshLocked re-renders the current version when a transition has passed at now, and
// otherwise re-arms the timer (it may fire early against a wall clock that was adjusted).
func (h *Handler) refreshLocked(now time.Time) {
	v := h.cur.Load()
	if v == nil {
		return
	}
	if !v.hasNext || now.Before(v.next) {
		h.scheduleLocked(v)
		return
	}
	nv, err := h.render(v.doc, now, v)
	if err != nil {
		// Only a document that cannot be encoded fails, and that one could not be installed.
		h.log.Error("ip-ranges: re-rendering at a status change failed", zap.Error(err))
		h.scheduleLocked(nil)
		return
	}
	h.install(nv, "status changed; contract re-rendered")
}

// current returns the version to serve at now, re-rendering first when a transition has
// passed and no other goroutine is rendering (if one is, the version it replaces is served:
// stale by at most one render).
func (h *Handler) current(now time.Time) *version {
	v := h.cur.Load()
	if v != nil && v.hasNext && !now.Before(v.next) && h.mu.TryLock() {
		h.refreshLocked(now)
		h.mu.Unlock()
		v = h.cur.Load()
	}
	return v
}

// rep is one representation, ready to send: body and precomputed header values.
type rep struct {
	body     []byte
	etag     string
	etagHdr  []string
	ctype    []string
	clen     []string
	extraKey string // optional extra header (the .sig's signed ETag)
	extraVal []string
}

func newRep(body []byte, ctype []string) *rep {
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return &rep{body: body, etag: etag, etagHdr: hv(etag), ctype: ctype, clen: hv(strconv.Itoa(len(body)))}
}

// hv makes a header value slice that cannot be appended to in place, so it can be shared by
// every response.
func hv(s string) []string { return []string{s}[:1:1] }

var (
	ctJSON     = hv("application/json")
	ctText     = hv("text/plain; charset=utf-8")
	ctAtom     = hv("application/atom+xml")
	nosniff    = hv("nosniff")
	anyOrigin  = hv("*")
	noStore    = hv("no-store")
	allowGetHd = hv("GET, HEAD")
)

// ServeHTTP answers GET and HEAD for the paths in Paths.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := kindOf(r.URL.Path)
	if kind == kindNone {
		h.fail(w, http.StatusNotFound, "not found: the contract is at "+PathJSON)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = allowGetHd
		h.fail(w, http.StatusMethodNotAllowed, r.Method+" not allowed: use GET or HEAD")
		return
	}
	v := h.current(h.now())
	if v == nil {
		h.fail(w, http.StatusServiceUnavailable, "the ip-ranges contract is not loaded yet")
		return
	}
	var rp *rep
	var msg string
	switch kind {
	case kindJSON:
		rp, msg = v.jsonView(r.URL.RawQuery)
	case kindTXT:
		rp, msg = v.txtView(r.URL.RawQuery)
	case kindAtom:
		rp, msg = v.atom, noQuery(r.URL.RawQuery, PathAtom)
	case kindSig:
		if msg = noQuery(r.URL.RawQuery, PathSig); msg == "" && v.sig == nil {
			h.fail(w, http.StatusNotFound, "no signing key is configured (ipranges.signing_key): "+PathJSON+" is served unsigned")
			return
		}
		rp = v.sig
	}
	if msg != "" {
		h.fail(w, http.StatusBadRequest, msg)
		return
	}
	hdr := w.Header()
	hdr["Etag"] = rp.etagHdr
	hdr["Last-Modified"] = v.lastModHdr
	hdr["Cache-Control"] = h.cacheControl
	hdr["X-Content-Type-Options"] = nosniff
	hdr["Access-Control-Allow-Origin"] = anyOrigin
	if notModified(r, rp.etag, v) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hdr["Content-Type"] = rp.ctype
	hdr["Content-Length"] = rp.clen
	if rp.extraKey != "" {
		hdr[rp.extraKey] = rp.extraVal
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(rp.body)
	}
}

func (h *Handler) fail(w http.ResponseWriter, code int, msg string) {
	hdr := w.Header()
	hdr["Content-Type"] = ctText
	hdr["X-Content-Type-Options"] = nosniff
	hdr["Cache-Control"] = noStore
	w.WriteHeader(code)
	w.Write([]byte(msg + "\n"))
}

type kind int

const (
	kindNone kind = iota
	kindJSON
	kindTXT
	kindAtom
	kindSig
)

func kindOf(path string) kind {
	switch path {
	case PathJSON:
		return kindJSON
	case PathTXT:
		return kindTXT
	case PathAtom:
		return kindAtom
	case PathSig:
		return kindSig
	}
	return kindNone
}

func noQuery(raw, path string) string {
	if raw != "" {
		return path + " takes no query parameters"
	}
	return ""
}

// notModified evaluates If-None-Match, or If-Modified-Since when there is no If-None-Match
// (RFC 9110 §13.2.2), without allocating.
func notModified(r *http.Request, etag string, v *version) bool {
	if inm, ok := r.Header["If-None-Match"]; ok {
		return etagMatches(inm, etag)
	}
	ims := r.Header["If-Modified-Since"]
	if len(ims) == 0 {
		return false
	}
	if ims[0] == v.lastModHdr[0] {
		return true
	}
	t, err := http.ParseTime(ims[0])
	return err == nil && !v.lastMod.After(t)
}

// etagMatches reports whether any entity tag in the If-None-Match field lines matches etag
// with the weak comparison (a W/ prefix is ignored), or the field is "*".
func etagMatches(fields []string, etag string) bool {
	for _, f := range fields {
		for {
			f = strings.TrimLeft(f, " \t,")
			if f == "" {
				break
			}
			if f[0] == '*' {
				return true
			}
			if strings.HasPrefix(f, "W/") {
				f = f[2:]
			}
			if f == "" || f[0] != '"' {
				i := strings.IndexByte(f, ',')
				if i < 0 {
					break
				}
				f = f[i+1:]
				continue
			}
			end := strings.IndexByte(f[1:], '"')
			if end < 0 {
				break
			}
			if f[:end+2] == etag {
				return true
			}
			f = f[end+2:]
		}
	}
	return false
}
