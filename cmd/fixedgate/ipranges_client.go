package main

// The firewall team's commands: they read a published contract (a file or a URL) and never
// change a state file. export renders it for a firewall, diff compares two versions, watch
// polls a URL and checks the notice promise itself, verify checks the signature, and keygen
// makes the operator's signing key.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/fixedgate/fixedgate/ipranges"
	"github.com/fixedgate/fixedgate/ipranges/client"
	"github.com/fixedgate/fixedgate/ipranges/export"
	"github.com/fixedgate/fixedgate/ipranges/handler"
)

// exitCodeError is an error that asks for a specific exit status (watch uses 3 for a broken
// promise, so scripts can tell it from an ordinary failure). run() maps errors to status 1
// unless it honours ExitCode.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }
func (e *exitCodeError) ExitCode() int { return e.code }

// exitViolation is watch's exit status when it sees a promise broken (and no --on-change).
const exitViolation = 3

// fetchTimeout bounds a one-shot fetch (export --url, diff, verify).
const fetchTimeout = 2 * time.Minute

// minWatchInterval is the shortest --interval watch accepts: polling faster only loads the
// server (responses are cacheable for 5 minutes). Tests lower it.
var minWatchInterval = 10 * time.Second

// setUsage gives fs a usage message: the synopsis, a description, and the flags except hidden.
func setUsage(fs *flag.FlagSet, synopsis, text string, hidden ...string) {
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s\n\n%s\n", synopsis, strings.TrimSpace(text))
		fmt.Fprintln(w, "\nflags:")
		fs.VisitAll(func(f *flag.Flag) {
			for _, h := range hidden {
				if f.Name == h {
					return
				}
			}
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  --%s", f.Name)
			if name != "" {
				fmt.Fprintf(w, " %s", name)
			}
			fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(w, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
}

// parseAt reads an optional --at style RFC 3339 time; empty means now.
func parseAt(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Now().UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--%s: %q is not an RFC 3339 time (e.g. 2026-12-07T18:40:00Z)", flagName, s)
	}
	return t.UTC(), nil
}

func parseDirection(s string) (ipranges.Direction, error) {
	switch d := ipranges.Direction(s); d {
	case "", ipranges.Ingress, ipranges.Egress:
		return d, nil
	}
	return "", fmt.Errorf("--direction: %q is not ingress or egress", s)
}

func cmdIPRangesExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges export", stderr)
	state := fs.String("state", "", "the contract `FILE` (a state file or a saved /ip-ranges.json)")
	src := fs.String("url", "", "the served contract's `URL` (https://…/ip-ranges.json)")
	format := fs.String("format", "", "output `FORMAT`: "+strings.Join(export.Formats, ", "))
	dir := fs.String("direction", "", "only `ingress` or egress prefixes (default both)")
	announced := fs.Bool("include-announced", false, "also the announced prefixes, so the firewall opens them before they go live")
	at := fs.String("at", "", "derive statuses at this RFC 3339 `TIME` (default now)")
	table := fs.String("table", export.DefaultTable, "nftables: the inet `TABLE` that holds the sets (yours, to use them in your rules)")
	setName := fs.String("set-prefix", export.DefaultSetName, "nftables: set names are `PREFIX`_ingress_v4, …")
	chain := fs.String("chain", export.DefaultChain, "iptables: chain names are `PREFIX`-INGRESS and PREFIX-EGRESS")
	setUsage(fs, "fixedgate ipranges export (--state FILE | --url URL) --format FORMAT [--direction ingress|egress] [--include-announced]", `
Prints the contract in a form a firewall loads: the prefixes in use now (active and draining),
plus the announced ones with --include-announced. Formats:
  cidr       one CIDR a line
  nftables   named interval sets for `+"`nft -f`"+` (reload replaces their contents atomically)
  iptables   chains FIXEDGATE-INGRESS/-EGRESS for `+"`iptables-restore --noflush`"+` (IPv4)
  ip6tables  the same for ip6tables-restore (IPv6)
  json       the contract restricted to those prefixes
The file's comments say how to load it and reference it from your rules.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*state == "") == (*src == "") {
		fmt.Fprintln(stderr, "fixedgate ipranges export: give exactly one of --state FILE and --url URL")
		return errUsage
	}
	if *format == "" {
		fmt.Fprintln(stderr, "fixedgate ipranges export: --format is required: "+strings.Join(export.Formats, ", "))
		return errUsage
	}
	d, err := parseDirection(*dir)
	if err != nil {
		fmt.Fprintln(stderr, "fixedgate ipranges export:", err)
		return errUsage
	}
	now, err := parseAt("at", *at)
	if err != nil {
		fmt.Fprintln(stderr, "fixedgate ipranges export:", err)
		return errUsage
	}
	from := *state
	if from == "" {
		from = *src
		if !client.IsURL(from) {
			fmt.Fprintf(stderr, "fixedgate ipranges export: --url %q is not an http:// or https:// URL\n", from)
			return errUsage
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	doc, _, err := client.Open(ctx, from)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	// A firewall is never built from a contract that breaks its own rules.
	if err := doc.Validate(0); err != nil {
		return fmt.Errorf("export: %s is not a valid contract, refusing to export it: %w", from, err)
	}
	out, err := export.Render(doc, now, export.Options{Format: *format, Direction: d, IncludeAnnounced: *announced,
		Table: *table, SetName: *setName, Chain: *chain})
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func cmdIPRangesDiff(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges diff", stderr)
	at := fs.String("at", "", "judge NEW at this RFC 3339 `TIME` (default now)")
	oldAt := fs.String("old-at", "", "judge OLD at this RFC 3339 `TIME` (default: when it was obtained)")
	setUsage(fs, "fixedgate ipranges diff [--at TIME] [--old-at TIME] OLD NEW", `
Compares two versions of a contract (files or http(s) URLs) and prints one line per prefix that
changed: KIND DIRECTION CIDR: what it means. Kinds: added, enabled, retire-scheduled, retired,
removed, changed. OLD is judged as of when it was obtained (a file's modification time, a URL's
fetch time), NEW as of now, so an address that went live in between shows as enabled even if
nobody edited the document.
Exit status: 0 whether or not there are changes (no output means no changes); 1 when a
document cannot be read; 2 for a usage error.`)
	// flag stops at the first positional argument; collect them and keep parsing the rest.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 2 {
		fmt.Fprintf(stderr, "fixedgate ipranges diff: want two documents, OLD and NEW (got %d)\n", len(pos))
		return errUsage
	}
	now, err := parseAt("at", *at)
	if err != nil {
		fmt.Fprintln(stderr, "fixedgate ipranges diff:", err)
		return errUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	old, _, err := client.Open(ctx, pos[0])
	if err != nil {
		return fmt.Errorf("diff: old: %w", err)
	}
	nw, _, err := client.Open(ctx, pos[1])
	if err != nil {
		return fmt.Errorf("diff: new: %w", err)
	}
	var oldTime time.Time
	if *oldAt != "" {
		if oldTime, err = parseAt("old-at", *oldAt); err != nil {
			fmt.Fprintln(stderr, "fixedgate ipranges diff:", err)
			return errUsage
		}
	} else {
		oldTime = obtained(pos[0], old, now)
	}
	for _, c := range client.DiffAt(old, oldTime, nw, now) {
		if _, err := fmt.Fprintln(stdout, c); err != nil {
			return err
		}
	}
	return nil
}

// obtained is when a document was fetched or saved, as far as we can tell: now for a URL, a
// file's modification time (but not before the document's own date, nor after now).
func obtained(src string, doc *ipranges.Document, now time.Time) time.Time {
	if client.IsURL(src) {
		return now
	}
	t := client.AsOf(doc)
	if fi, err := os.Stat(src); err == nil && fi.ModTime().After(t) {
		t = fi.ModTime().UTC()
	}
	if t.After(now) {
		t = now
	}
	return t
}

// errStopWatching ends watch's loop without an error.
var errStopWatching = errors.New("stop watching")

func cmdIPRangesWatch(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges watch", stderr)
	src := fs.String("url", "", "the served contract's `URL` (https://…/ip-ranges.json)")
	interval := fs.Duration("interval", 5*time.Minute, "time between polls (at least 10s)")
	onChange := fs.String("on-change", "", "run `CMD` (with /bin/sh -c) after each poll that found changes or violations, and keep watching")
	once := fs.Bool("once", false, "poll once (the baseline), report, and exit")
	notice := fs.Duration("notice", ipranges.MinNotice, "the least notice to demand (the document's notice_days applies when longer)")
	maxPolls := fs.Int("max-polls", 0, "stop after N polls (for tests)")
	setUsage(fs, "fixedgate ipranges watch --url URL [--interval 5m] [--on-change CMD] [--once]", `
Polls the contract (conditionally: If-None-Match) and prints each change with a timestamp. It
checks the promise itself: an address that is in use must have been announced at least the
notice period before its enabled time, both by the document's own dates and by what this
watcher saw (an address that was not listed at an earlier poll cannot have been announced
before it). The first poll is the baseline: what is listed then is accepted, but its dates are
still checked.
On a violation, watch prints it and exits with status 3; with --on-change it runs CMD instead
and keeps watching. CMD's environment: FIXEDGATE_URL, FIXEDGATE_SYNC_TOKEN, FIXEDGATE_CHANGE
(the change lines, one per line), FIXEDGATE_VIOLATION (the violation lines; empty when none)
and FIXEDGATE_DOCUMENT (a file holding the document as fetched, e.g. for
`+"`fixedgate ipranges export --state \"$FIXEDGATE_DOCUMENT\" --format nftables`"+`).
A failed poll is reported on stderr and retried at the next interval (with --once it is an
error). SIGINT or SIGTERM stops watch.
Exit status: 0 stopped (signal, --once without violations); 1 error; 2 usage; 3 violation.`, "max-polls")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *src == "" || !client.IsURL(*src) {
		fmt.Fprintln(stderr, "fixedgate ipranges watch: --url with an http:// or https:// URL is required")
		return errUsage
	}
	if *interval < minWatchInterval {
		fmt.Fprintf(stderr, "fixedgate ipranges watch: --interval %s is below the %s minimum\n", *interval, minWatchInterval)
		return errUsage
	}
	if *interval <= 0 {
		*interval = time.Millisecond
	}
	if *once {
		*maxPolls = 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	w := client.NewWatcher(*src, client.WatcherOptions{Notice: *notice})
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()
	polls := 0
	line := func(out io.Writer, at time.Time, format string, a ...any) {
		fmt.Fprintf(out, "%s %s\n", at.UTC().Format(time.RFC3339), fmt.Sprintf(format, a...))
	}
	err := w.Run(ctx, ticker.C, func(r *client.Report, err error) error {
		polls++
		last := *maxPolls > 0 && polls >= *maxPolls
		if err != nil {
			if *once {
				return fmt.Errorf("watch: %w", err)
			}
			line(stderr, time.Now(), "poll failed (retrying in %s): %v", *interval, err)
			if last {
				return errStopWatching
			}
			return nil
		}
		if r.Baseline {
			line(stdout, r.At, "baseline: %s", summary(r.Doc, r.At))
		}
		var changes, violations []string
		for _, c := range r.Changes {
			changes = append(changes, c.String())
			line(stdout, r.At, "%s", c)
		}
		for _, v := range r.Violations {
			violations = append(violations, v.String())
			line(stdout, r.At, "VIOLATION %s", v)
		}
		switch {
		case (len(changes) > 0 || len(violations) > 0) && *onChange != "":
			if err := runOnChange(ctx, *onChange, r, changes, violations, stdout, stderr); err != nil {
				line(stderr, time.Now(), "--on-change: %v", err)
			}
		case len(violations) > 0:
			return &exitCodeError{exitViolation, fmt.Errorf("watch: the contract's promise is broken: %d address(es) used without %s of notice (see VIOLATION above)",
				len(violations), client.FormatDuration(r.Violations[0].Required))}
		}
		if last {
			return errStopWatching
		}
		return nil
	})
	switch {
	case errors.Is(err, errStopWatching):
		return nil
	case err == nil && ctx.Err() != nil:
		fmt.Fprintln(stderr, "fixedgate ipranges watch: stopped by signal")
	}
	return err
}

// summary describes a document at now in one line.
func summary(doc *ipranges.Document, now time.Time) string {
	n := map[ipranges.Status]int{}
	for i := range doc.Prefixes {
		n[doc.Prefixes[i].Status(now)]++
	}
	return fmt.Sprintf("sync_token %s, %d prefixes (%d active, %d announced, %d draining, %d retired), notice %d days",
		doc.SyncToken, len(doc.Prefixes), n[ipranges.Active], n[ipranges.Announced], n[ipranges.Draining], n[ipranges.Retired], doc.NoticeDays)
}

// runOnChange runs the --on-change command for one poll's report.
func runOnChange(ctx context.Context, command string, r *client.Report, changes, violations []string, stdout, stderr io.Writer) error {
	f, err := os.CreateTemp("", "fixedgate-ip-ranges-*.json")
	if err != nil {
		return fmt.Errorf("saving the document for the command: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(r.Raw); err != nil {
		f.Close()
		return fmt.Errorf("saving the document for the command: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("saving the document for the command: %w", err)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(),
		"FIXEDGATE_URL="+r.URL,
		"FIXEDGATE_SYNC_TOKEN="+r.SyncToken,
		"FIXEDGATE_CHANGE="+strings.Join(changes, "\n"),
		"FIXEDGATE_VIOLATION="+strings.Join(violations, "\n"),
		"FIXEDGATE_DOCUMENT="+f.Name(),
	)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%q: %w", command, err)
	}
	return nil
}

// jsonURL turns verify's --url (the .json URL or the site's base URL) into the document's URL.
func jsonURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("--url %q is not an http:// or https:// URL", s)
	}
	if u.RawQuery != "" {
		return "", fmt.Errorf("--url %q has a query: only the unfiltered document is signed", s)
	}
	if !strings.HasSuffix(u.Path, ".json") {
		u.Path = strings.TrimSuffix(u.Path, "/") + handler.PathJSON
		u.RawPath = ""
	}
	return u.String(), nil
}

func cmdIPRangesVerify(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges verify", stderr)
	src := fs.String("url", "", "the contract's `URL` (…/ip-ranges.json, or the base URL it is served under)")
	pubPath := fs.String("pubkey", "", "the operator's ed25519 public key `FILE` (PEM)")
	setUsage(fs, "fixedgate ipranges verify --url URL --pubkey FILE", `
Fetches /ip-ranges.json and /ip-ranges.json.sig (the JSON URL with ".sig" appended) and checks
the signature over the exact bytes. Exit status 0 and "signature OK" when it holds; 1 with the
reason when it does not or a document cannot be fetched.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *src == "" || *pubPath == "" {
		fmt.Fprintln(stderr, "fixedgate ipranges verify: --url and --pubkey are required")
		return errUsage
	}
	docURL, err := jsonURL(*src)
	if err != nil {
		fmt.Fprintln(stderr, "fixedgate ipranges verify:", err)
		return errUsage
	}
	pub, err := ipranges.LoadPublicKey(*pubPath)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	var raw, sig []byte
	// The document and its signature are two requests; when a new version was installed in
	// between, the signature names another ETag than the document's: fetch both again.
	for attempt := 1; ; attempt++ {
		var jh, sh http.Header
		if raw, jh, err = client.FetchBytes(ctx, nil, docURL); err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		if sig, sh, err = client.FetchBytes(ctx, nil, docURL+".sig"); err != nil {
			return fmt.Errorf("verify: signature: %w", err)
		}
		signed, etag := sh.Get("X-Fixedgate-Signed-Etag"), jh.Get("Etag")
		if signed == "" || etag == "" || signed == etag || attempt == 3 {
			break
		}
	}
	if err := ipranges.Verify(pub, raw, sig); err != nil {
		return fmt.Errorf("verify %s: %w", docURL, err)
	}
	token := "unknown: the document does not parse"
	if doc, err := ipranges.Parse(raw); err == nil {
		token = doc.SyncToken
	}
	fmt.Fprintf(stdout, "signature OK (sync_token %s, %d bytes, key %s)\n", token, len(raw), ipranges.KeyFingerprint(pub))
	return nil
}

func cmdIPRangesKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ipranges keygen", stderr)
	priv := fs.String("private", "", "write the private key to `FILE` (mode 0600; set ipranges.signing_key to it)")
	pub := fs.String("public", "", "write the public key to `FILE` (give it to firewall teams)")
	setUsage(fs, "fixedgate ipranges keygen --private FILE --public FILE", `
Creates an ed25519 key pair for signing the contract (PEM: PKCS #8 private key, PKIX public
key; the same as `+"`openssl genpkey -algorithm ed25519`"+`). Existing files are never overwritten.`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *priv == "" || *pub == "" {
		fmt.Fprintln(stderr, "fixedgate ipranges keygen: --private and --public are required")
		return errUsage
	}
	if err := ipranges.GenerateKey(*priv, *pub); err != nil {
		return err
	}
	k, err := ipranges.LoadPublicKey(*pub)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (private: set ipranges.signing_key to it) and %s (public, %s: for `fixedgate ipranges verify --pubkey`)\n",
		*priv, *pub, ipranges.KeyFingerprint(k))
	return nil
}
