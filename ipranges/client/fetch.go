// Package client is the firewall team's side of the ip-ranges contract: fetch a published
// /ip-ranges.json (conditionally, bounded), compare two versions (Diff), and watch a URL over
// time (Watcher), checking the promise itself rather than trusting the server: an address must
// not come into use without having been announced for the notice period.
package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/fixedgate/fixedgate/ipranges"
)

// MaxDocumentSize bounds what Fetch and Open read: 64 MiB, far above any real contract
// (10,000 prefixes are about 3 MiB), so a misbehaving server cannot exhaust memory.
const MaxDocumentSize = 64 << 20

// maxSize is MaxDocumentSize; tests lower it.
var maxSize int64 = MaxDocumentSize

// UserAgent is sent with every request.
const UserAgent = "fixedgate-ipranges-client/1"

// FetchResult is what one conditional GET returned.
type FetchResult struct {
	// Doc is the parsed document; nil when NotModified.
	Doc *ipranges.Document
	// Raw is the exact body (what a signature covers); nil when NotModified.
	Raw []byte
	// ETag is the response's entity tag (on 304, the server's or else the one sent).
	ETag string
	// LastModified is the response's Last-Modified header, as sent.
	LastModified string
	// NotModified is true when the server answered 304 to the If-None-Match sent.
	NotModified bool
	// Header is the response's header.
	Header http.Header
}

// StatusError is returned when the server answers something other than 200 (or 304 to a
// conditional request).
type StatusError struct {
	URL    string
	Code   int
	Status string
	Body   string // the first line of the body, shortened: servers put the reason there
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("GET %s: %s", e.URL, e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Fetch GETs url with If-None-Match: etag (when etag is not empty) and parses the document.
// c nil means http.DefaultClient (which honours HTTPS_PROXY); deadlines come from ctx. A body
// over MaxDocumentSize, a status other than 200/304 or a document that does not parse is an
// error naming the URL.
func Fetch(ctx context.Context, c *http.Client, url, etag string) (*FetchResult, error) {
	raw, resp, err := get(ctx, c, url, etag)
	if err != nil {
		return nil, err
	}
	res := &FetchResult{ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), Header: resp.Header}
	if resp.StatusCode == http.StatusNotModified {
		res.NotModified = true
		if res.ETag == "" {
			res.ETag = etag
		}
		return res, nil
	}
	doc, err := ipranges.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: not a valid contract: %w", url, err)
	}
	res.Doc, res.Raw = doc, raw
	return res, nil
}

// FetchBytes GETs url and returns the body of a 200 response, bounded like Fetch. It is for
// companions of the document such as /ip-ranges.json.sig.
func FetchBytes(ctx context.Context, c *http.Client, url string) ([]byte, http.Header, error) {
	raw, resp, err := get(ctx, c, url, "")
	if err != nil {
		return nil, nil, err
	}
	return raw, resp.Header, nil
}

func get(ctx context.Context, c *http.Client, url, etag string) ([]byte, *http.Response, error) {
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	req.Header.Set("User-Agent", UserAgent)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotModified && etag != "":
		return nil, resp, nil
	default:
		line, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		first, _, _ := strings.Cut(strings.TrimSpace(string(line)), "\n")
		if len(first) > 200 {
			first = first[:200] + "…"
		}
		return nil, nil, &StatusError{URL: url, Code: resp.StatusCode, Status: resp.Status, Body: first}
	}
	if resp.ContentLength > maxSize {
		return nil, nil, fmt.Errorf("fetch %s: the document is %d bytes, over the %s limit", url, resp.ContentLength, sizeName(maxSize))
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("fetch %s: reading the body: %w", url, err)
	}
	if int64(len(raw)) > maxSize {
		return nil, nil, fmt.Errorf("fetch %s: the document is over the %s limit", url, sizeName(maxSize))
	}
	return raw, resp, nil
}

// IsURL reports whether src names an http or https URL rather than a file.
func IsURL(src string) bool {
	return strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://")
}

// Open reads a contract from a file path or an http(s) URL (fetched with http.DefaultClient)
// and parses it. It does not validate the contract's rules: a firewall team wants to see a
// document even when it breaks them (Watcher reports that).
func Open(ctx context.Context, src string) (*ipranges.Document, []byte, error) {
	if IsURL(src) {
		res, err := Fetch(ctx, nil, src, "")
		if err != nil {
			return nil, nil, err
		}
		return res.Doc, res.Raw, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, nil, fmt.Errorf("open contract: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", src, err)
	}
	if int64(len(raw)) > maxSize {
		return nil, nil, fmt.Errorf("%s: over the %s limit", src, sizeName(maxSize))
	}
	doc, err := ipranges.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", src, err)
	}
	return doc, raw, nil
}

func sizeName(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d-byte", n)
}
