package tls

import (
	"context"
	gotls "crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Reload re-reads the `files` certificate pairs (on SIGHUP). Every pair is
// read and parsed first, and the name served to clients without SNI must
// still be covered; only then do the new certificates replace the old ones,
// for new handshakes: open connections keep what they negotiated. On any
// error, or when a new certificate has already expired, nothing changes. The files are also reloaded when they change on disk (watchFiles).
// Other certificate sources have nothing to reload
// (ACME renews by itself).
func (m *Manager) Reload(ctx context.Context) error {
	if len(m.files) == 0 {
		return nil
	}
	// SIGHUP and the file watcher may reload at the same time.
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	pairs := make([]gotls.Certificate, 0, len(m.files))
	leaves := make([]*x509.Certificate, 0, len(m.files))
	for i, f := range m.files {
		pair, err := readFilePair(f)
		if err != nil {
			return fmt.Errorf("tls.files[%d]: %w", i, err)
		}
		if now := time.Now(); now.After(pair.Leaf.NotAfter) {
			return fmt.Errorf("tls.files[%d]: certificate %s expired at %s", i, f.Cert, pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
		pairs = append(pairs, pair)
		leaves = append(leaves, pair.Leaf)
	}
	// DefaultServerName is read by handshakes without a lock, so it cannot
	// change here; the new certificates must still cover it.
	if def := m.magic.DefaultServerName; def != "" && indexKeyFor(def, leaves) != def {
		return fmt.Errorf("tls.files: the reloaded certificates no longer cover %q, the name for clients without SNI; restart to change it", def)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	hashes := make([]string, 0, len(pairs))
	for i, pair := range pairs {
		h, err := m.magic.CacheUnmanagedTLSCertificate(ctx, pair, nil)
		if err != nil {
			m.cache.Remove(unused(hashes, m.fileHashes))
			return fmt.Errorf("tls.files[%d]: cache certificate %s: %w", i, m.files[i].Cert, err)
		}
		hashes = append(hashes, h)
	}
	m.cache.Remove(unused(m.fileHashes, hashes))
	m.fileHashes, m.leaves = hashes, leaves
	for i, leaf := range leaves {
		m.log.Info("reloaded listener certificate", zap.String("source", "files"), zap.String("cert_file", m.files[i].Cert),
			zap.Strings("names", certNames(leaf)), zap.Time("not_after", leaf.NotAfter))
	}
	return nil
}

// unused returns the hashes in from that keep does not hold.
func unused(from, keep []string) []string {
	var out []string
	for _, h := range from {
		if !slices.Contains(keep, h) {
			out = append(out, h)
		}
	}
	return out
}

// FilesPollInterval is how often the `files` certificate and key files are checked for
// changes on disk (modification time and size, following symlinks as Kubernetes secret
// volumes use them). A change reloads them as SIGHUP does. Tests shorten it before New.
var FilesPollInterval = 3 * time.Second

// fileStamp identifies one version of a file on disk; the zero value means unreadable.
type fileStamp struct {
	mod  time.Time
	size int64
}

func (m *Manager) stamps() []fileStamp {
	out := make([]fileStamp, 0, 2*len(m.files))
	for _, f := range m.files {
		for _, p := range []string{f.Cert, f.Key} {
			var s fileStamp
			if fi, err := os.Stat(p); err == nil {
				s = fileStamp{fi.ModTime(), fi.Size()}
			}
			out = append(out, s)
		}
	}
	return out
}

// watchFiles polls the `files` pairs until stop is closed and reloads them when any changes.
// A pair that does not load (a half-written file, a key that does not match) leaves the
// previous certificates in use; the error is logged once per version of the files, and the
// next change tries again.
func (m *Manager) watchFiles(interval time.Duration, stop <-chan struct{}) {
	last := m.stamps()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := m.stamps()
		if slices.Equal(now, last) {
			continue
		}
		last = now
		if err := m.Reload(context.Background()); err != nil {
			m.log.Error("tls.files changed on disk but do not load; the previous certificates stay in use", zap.Error(err))
		}
	}
}

// filesReady reports whether every files / self_signed certificate is valid now (for /readyz).
func (m *Manager) filesReady(now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.leaves) == 0 {
		return errors.New("no TLS certificate loaded")
	}
	var bad []string
	for i, leaf := range m.leaves {
		what := strings.Join(certNames(leaf), ",")
		if i < len(m.files) {
			what = m.files[i].Cert + " (" + what + ")"
		}
		switch {
		case now.After(leaf.NotAfter):
			bad = append(bad, what+": expired at "+leaf.NotAfter.UTC().Format(time.RFC3339))
		case now.Before(leaf.NotBefore):
			bad = append(bad, what+": not valid before "+leaf.NotBefore.UTC().Format(time.RFC3339))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("no valid TLS certificate for %s", strings.Join(bad, "; "))
	}
	return nil
}
