package tls

import (
	"context"
	gotls "crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"

	"go.uber.org/zap"
)

// Reload re-reads the `files` certificate pairs (on SIGHUP). Every pair is
// read and parsed first, and the name served to clients without SNI must
// still be covered; only then do the new certificates replace the old ones,
// for new handshakes: open connections keep what they negotiated. On any
// error nothing changes. Other certificate sources have nothing to reload
// (ACME renews by itself).
func (m *Manager) Reload(ctx context.Context) error {
	if len(m.files) == 0 {
		return nil
	}
	pairs := make([]gotls.Certificate, 0, len(m.files))
	leaves := make([]*x509.Certificate, 0, len(m.files))
	for i, f := range m.files {
		pair, err := readFilePair(f)
		if err != nil {
			return fmt.Errorf("tls.files[%d]: %w", i, err)
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
