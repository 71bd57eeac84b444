package status

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// pollInterval is how often a Store checks its file for changes; tests shorten it.
var pollInterval = 2 * time.Second

// Store is the running proxy's view of the incidents file. It loads the file when opened and
// again whenever it changes (it checks the file's identity, size and modification time every
// 2 s), so a Post from the CLI shows without a reload. A file that does not load keeps the last
// good state; the error is logged once per change of the file and reported by Err. A file that
// is removed means no incidents. It is safe for concurrent use; a nil *Store has no incidents.
type Store struct {
	path string // empty: no state directory, no incidents
	log  *zap.Logger

	cur atomic.Pointer[storeState]

	mu      sync.Mutex  // serialises reload
	seen    fs.FileInfo // the version of the file last looked at; nil: none
	read    bool        // the file has been looked at once
	missing bool        // the file did not exist at the last look

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// storeState is one loaded version: incidents oldest first, and the error of the latest load
// (the incidents are then the last good ones).
type storeState struct {
	incidents []Incident
	err       error
}

// OpenStore loads FileName in dir and watches it until Close. dir is the state directory (the
// ip-ranges contract's); empty means none: the store then has no incidents and watches
// nothing. A file that does not load is logged (log may be nil) and the store starts with no
// incidents; OpenStore itself does not fail, so that a broken incidents file never stops the
// proxy.
func OpenStore(dir string, log *zap.Logger) *Store {
	if log == nil {
		log = zap.NewNop()
	}
	s := &Store{log: log, stop: make(chan struct{}), done: make(chan struct{})}
	s.cur.Store(&storeState{})
	if dir == "" {
		close(s.done)
		return s
	}
	s.path = filepath.Join(dir, FileName)
	s.reload()
	go s.poll(pollInterval)
	return s
}

// Close stops watching the file; the store keeps answering with what it last loaded.
func (s *Store) Close() {
	if s == nil {
		return
	}
	s.closeOnce.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Store) poll(every time.Duration) {
	defer close(s.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.reload()
		}
	}
}

// reload re-reads the file when it has changed since the last look (another file renamed over
// it, or a different size or modification time).
func (s *Store) reload() {
	if s == nil || s.path == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fh, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		if s.missing {
			return
		}
		wasRead := s.read
		s.read, s.missing, s.seen = true, true, nil
		s.cur.Store(&storeState{})
		if wasRead {
			s.log.Warn("status: incidents file removed; no incidents", zap.String("path", s.path))
		}
		return
	}
	s.missing = false
	if err != nil {
		// Not readable now (permissions, I/O): keep what we have, and say so once per change.
		s.fail(nil, err)
		return
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		s.fail(nil, err)
		return
	}
	if s.read && s.seen != nil && sameVersion(s.seen, fi) {
		return
	}
	f, fi, err := readFile(fh, s.path)
	if err != nil {
		s.fail(fi, err)
		return
	}
	s.read, s.seen = true, fi
	s.cur.Store(&storeState{incidents: f.Incidents})
	fields := []zap.Field{zap.String("path", s.path), zap.Int("incidents", len(f.Incidents))}
	if open := f.open(); open != nil {
		latest := open.Latest()
		fields = append(fields, zap.String("open", open.ID), zap.String("state", string(latest.State)),
			zap.String("impact", string(open.Impact())), zap.Time("updated_at", latest.At))
	}
	s.log.Info("status: incidents loaded", fields...)
}

// fail keeps the last good incidents with err beside them, and logs err unless it is the same
// error about the same version of the file as last time. fi is the file that failed (nil when
// it could not be looked at).
func (s *Store) fail(fi fs.FileInfo, err error) {
	prev := s.cur.Load()
	if s.read && prev.err != nil && prev.err.Error() == err.Error() && (fi == nil || s.seen != nil && sameVersion(s.seen, fi)) {
		return
	}
	s.read, s.seen = true, fi
	s.cur.Store(&storeState{incidents: prev.incidents, err: err})
	s.log.Error("status: incidents file not loaded; the last good incidents stay", zap.String("path", s.path), zap.Error(err))
}

// sameVersion reports whether a and b are the same file, unchanged as far as a poll can tell.
func sameVersion(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

func (s *Store) state() *storeState {
	if s == nil {
		return &storeState{}
	}
	return s.cur.Load()
}

// Open returns (a copy of) the open incident, or nil when none is open.
func (s *Store) Open() *Incident {
	st := s.state()
	if n := len(st.incidents); n > 0 && !st.incidents[n-1].Resolved() {
		return st.incidents[n-1].clone()
	}
	return nil
}

// All returns (copies of) every incident the file keeps, newest first.
func (s *Store) All() []Incident {
	st := s.state()
	out := make([]Incident, len(st.incidents))
	for i := range st.incidents {
		out[len(out)-1-i] = *st.incidents[i].clone()
	}
	return out
}

// Err returns why the latest version of the file did not load (the incidents are then the last
// good ones), or nil.
func (s *Store) Err() error { return s.state().err }

// Path is the file the store watches; empty without a state directory.
func (s *Store) Path() string {
	if s == nil {
		return ""
	}
	return s.path
}
