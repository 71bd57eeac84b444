// Package live holds the contract in force in a running proxy: it loads the state file, reloads
// it when it changes on disk or on request (SIGHUP), refuses a new version that breaks the
// contract's rules (the old one stays in force), and calls back whenever what is in use may
// have changed: on a reload, and at every enabled or retired time in the document, so announced
// addresses are put into service on time without a restart.
package live

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/fixedgate/fixedgate/ipranges"
)

// Options configure a Contract.
type Options struct {
	// Path is the state file; Notice the notice period its rules are checked with.
	Path   string
	Notice time.Duration
	// PollInterval is how often the file is checked for changes on disk (default 2s).
	PollInterval time.Duration
	// OnChange is called (never concurrently, never under a lock) after a new version was
	// installed and at every status transition, with the document in force and the time.
	OnChange func(doc *ipranges.Document, now time.Time)
	// Now replaces the clock, for tests.
	Now        func() time.Time
	Logger     *zap.Logger
	Registerer prometheus.Registerer
}

// Contract is the contract in force. Load it with Open; Close stops watching.
type Contract struct {
	opts Options
	log  *zap.Logger
	doc  atomic.Pointer[ipranges.Document]

	mu      sync.Mutex // serialises reloads and callbacks
	sum     [32]byte   // hash of the file's bytes in force
	stat    fileStamp
	timer   *time.Timer
	stop    chan struct{}
	done    chan struct{}
	reloads *prometheus.CounterVec
	closed  bool
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// Open loads the state file (an error stops the start: a broken contract is never replaced by
// an empty one), calls OnChange once with it, and starts watching the file and the clock.
func Open(opts Options) (*Contract, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	c := &Contract{opts: opts, log: opts.Logger, stop: make(chan struct{}), done: make(chan struct{})}
	c.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fixedgate_contract_reloads_total",
		Help: "Reloads of the ip-ranges state file: result=ok (new version in force), unchanged, or error (the previous version stays in force).",
	}, []string{"result"})
	data, stamp, err := c.read()
	if err != nil {
		return nil, err
	}
	doc, err := c.parse(data)
	if err != nil {
		return nil, err
	}
	c.install(doc, data, stamp)
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(c.reloads,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "fixedgate_contract_sync_token",
				Help: "sync_token (milliseconds since the epoch) of the contract in force.",
			}, func() float64 {
				var v float64
				fmt.Sscan(c.Current().SyncToken, &v)
				return v
			}))
	}
	c.mu.Lock()
	c.notify()
	c.mu.Unlock()
	go c.watch()
	return c, nil
}

// Current returns the document in force. It must not be modified.
func (c *Contract) Current() *ipranges.Document { return c.doc.Load() }

// Reload reads the state file again. An unreadable or invalid version, or one that breaks the
// rules between versions (dropping an active prefix, moving dates earlier, sync_token going
// backwards), is refused with an error and the previous version stays in force.
func (c *Contract) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(false)
}

func (c *Contract) reloadLocked(quietIfSame bool) error {
	if c.closed {
		return errors.New("contract closed")
	}
	data, stamp, err := c.read()
	if err == nil && sha256.Sum256(data) == c.sum {
		c.stat = stamp
		if !quietIfSame {
			c.reloads.WithLabelValues("unchanged").Inc()
		}
		return nil
	}
	var doc *ipranges.Document
	if err == nil {
		doc, err = c.parse(data)
	}
	if err == nil {
		if err = ipranges.CheckSuccessor(c.Current(), doc, c.opts.Now()); err != nil {
			err = fmt.Errorf("contract %s: new version refused: %w", c.opts.Path, err)
		}
	}
	if err != nil {
		c.stat = stamp // report a broken file once, not on every poll
		c.reloads.WithLabelValues("error").Inc()
		c.log.Error("contract reload failed; the previous version stays in force",
			zap.String("state", c.opts.Path), zap.String("sync_token", c.Current().SyncToken), zap.Error(err))
		return err
	}
	old := c.Current().SyncToken
	c.install(doc, data, stamp)
	c.reloads.WithLabelValues("ok").Inc()
	c.log.Info("contract reloaded", zap.String("state", c.opts.Path), zap.String("old_sync_token", old),
		zap.String("sync_token", doc.SyncToken), zap.Int("prefixes", len(doc.Prefixes)))
	c.notify()
	return nil
}

func (c *Contract) read() ([]byte, fileStamp, error) {
	data, err := os.ReadFile(c.opts.Path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("load contract %s: %w", c.opts.Path, err)
	}
	return data, stampOf(c.opts.Path), nil
}

func (c *Contract) parse(data []byte) (*ipranges.Document, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("load contract %s: the file is empty", c.opts.Path)
	}
	doc, err := ipranges.Parse(data)
	if err == nil {
		err = doc.Validate(c.opts.Notice)
	}
	if err != nil {
		return nil, fmt.Errorf("load contract %s: %w", c.opts.Path, err)
	}
	return doc, nil
}

func (c *Contract) install(doc *ipranges.Document, data []byte, stamp fileStamp) {
	c.doc.Store(doc)
	c.sum = sha256.Sum256(data)
	c.stat = stamp
}

// notify calls OnChange and arms the timer for the next transition. c.mu is held; OnChange
// runs under it so that callbacks never overlap, which is why it must not call Reload.
func (c *Contract) notify() {
	now := c.opts.Now()
	doc := c.Current()
	if c.opts.OnChange != nil {
		c.opts.OnChange(doc, now)
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if next, ok := doc.NextTransition(now); ok && !c.closed {
		d := next.Sub(now)
		c.log.Info("next contract transition scheduled", zap.Time("at", next), zap.Duration("in", d))
		c.timer = time.AfterFunc(d, c.transition)
	}
}

func (c *Contract) transition() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.log.Info("contract transition: statuses changed with time", zap.String("sync_token", c.Current().SyncToken))
	c.notify()
}

// watch polls the file for changes until Close.
func (c *Contract) watch() {
	defer close(c.done)
	t := time.NewTicker(c.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		if s := stampOf(c.opts.Path); s != c.stat {
			c.reloadLocked(true)
		}
		c.mu.Unlock()
	}
}

// Close stops watching the file and the clock.
func (c *Contract) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	close(c.stop)
	<-c.done
}
