// Package limit bounds what one customer can hold or cost: concurrent tunnels, concurrent
// requests, and new requests or tunnels per second (a token bucket with a burst), per user or,
// for clients without credentials, per client address; and failed authentications per client
// address, so that guessing keys is slow. State is per key, in memory, and forgotten once a key
// is idle; the settings are read at each call, so a reload changes them live.
package limit

import (
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"
)

// Config is `limits.per_client`, and a user's `limits:` override (where a zero field inherits
// the global value).
type Config struct {
	MaxTunnels          int     `yaml:"max_tunnels"`
	MaxRequestsInFlight int     `yaml:"max_requests_in_flight"`
	Rate                float64 `yaml:"rate"`  // new requests and tunnels per second
	Burst               int     `yaml:"burst"` // how many may come at once above the rate
}

// Defaults are limits a normal customer never meets.
func Defaults() Config {
	return Config{MaxTunnels: 1000, MaxRequestsInFlight: 1000, Rate: 200, Burst: 400}
}

// Validate checks a complete config (messages relative to its key).
func (c Config) Validate() error {
	switch {
	case c.MaxTunnels < 1:
		return fmt.Errorf("max_tunnels: %d, must be at least 1", c.MaxTunnels)
	case c.MaxRequestsInFlight < 1:
		return fmt.Errorf("max_requests_in_flight: %d, must be at least 1", c.MaxRequestsInFlight)
	case !(c.Rate > 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("rate: %v, must be a positive number of requests per second", c.Rate)
	case c.Burst < 1:
		return fmt.Errorf("burst: %d, must be at least 1", c.Burst)
	}
	return nil
}

// ValidateOverride checks a user's override: every field is zero (inherit) or valid.
func (c Config) ValidateOverride() error {
	switch {
	case c.MaxTunnels < 0:
		return fmt.Errorf("max_tunnels: %d, must be at least 1 (or left out)", c.MaxTunnels)
	case c.MaxRequestsInFlight < 0:
		return fmt.Errorf("max_requests_in_flight: %d, must be at least 1 (or left out)", c.MaxRequestsInFlight)
	case c.Rate < 0 || math.IsInf(c.Rate, 0) || math.IsNaN(c.Rate):
		return fmt.Errorf("rate: %v, must be positive (or left out)", c.Rate)
	case c.Burst < 0:
		return fmt.Errorf("burst: %d, must be at least 1 (or left out)", c.Burst)
	}
	return nil
}

// Over returns c with the non-zero fields of o in place of its own.
func (c Config) Over(o Config) Config {
	if o.MaxTunnels > 0 {
		c.MaxTunnels = o.MaxTunnels
	}
	if o.MaxRequestsInFlight > 0 {
		c.MaxRequestsInFlight = o.MaxRequestsInFlight
	}
	if o.Rate > 0 {
		c.Rate = o.Rate
	}
	if o.Burst > 0 {
		c.Burst = o.Burst
	}
	return c
}

// AuthFailures is `limits.auth_failures`: after Max failed authentications from one client
// address within Window, that address gets 429 without its key being checked.
type AuthFailures struct {
	Max    int           `yaml:"max"`
	Window time.Duration `yaml:"window"`
}

// DefaultAuthFailures is 20 failures a minute.
func DefaultAuthFailures() AuthFailures { return AuthFailures{Max: 20, Window: time.Minute} }

// Validate checks the section.
func (a AuthFailures) Validate() error {
	switch {
	case a.Max < 1:
		return fmt.Errorf("max: %d, must be at least 1", a.Max)
	case a.Window < time.Second || a.Window > 24*time.Hour:
		return fmt.Errorf("window: %s, must be between 1s and 24h", a.Window)
	}
	return nil
}

// Kind is what a caller asks to start.
type Kind int

const (
	Request Kind = iota // a request (counts against the rate and the requests in flight)
	Tunnel              // a CONNECT tunnel (counts against the rate and the tunnels)
)

// Refusal says which limit refused, for the client's one line, the log and the metric's label.
type Refusal struct {
	Limit      string        // "rate", "tunnels", "requests_in_flight" or "auth_failures"
	Reason     string        // one line for the client
	RetryAfter time.Duration // for the Retry-After header (whole seconds, at least 1)
}

// Limiter holds the state of every key. The zero value is not usable: use New.
type Limiter struct {
	now func() time.Time

	mu       sync.Mutex
	keys     map[string]*state
	failures map[string]*window
	swept    time.Time
}

type state struct {
	tunnels, inflight int
	tokens            float64
	refilled          time.Time
	used              time.Time
}

type window struct {
	end time.Time // the window's end: failures count until then
	n   int
}

// New returns an empty Limiter; now may be nil (time.Now).
func New(now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{now: now, keys: map[string]*state{}, failures: map[string]*window{}}
}

// Acquire starts one request or tunnel for key under c. On success it returns the function
// that ends it (call it exactly once); on refusal, what refused.
func (l *Limiter) Acquire(key string, c Config, k Kind) (release func(), r *Refusal) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now() // under the lock: a clock read before it could be older than s.refilled
	l.sweep(now)
	s := l.keys[key]
	if s == nil {
		s = &state{tokens: float64(c.Burst), refilled: now}
		l.keys[key] = s
	}
	s.used = now
	// Refill the bucket for the time since the last call, up to the burst.
	if d := now.Sub(s.refilled); d > 0 {
		s.tokens = math.Min(float64(c.Burst), s.tokens+d.Seconds()*c.Rate)
		s.refilled = now
	}
	switch {
	case k == Tunnel && s.tunnels >= c.MaxTunnels:
		return nil, &Refusal{Limit: "tunnels", RetryAfter: time.Second,
			Reason: fmt.Sprintf("too many open tunnels (limit %d); close some first", c.MaxTunnels)}
	case k == Request && s.inflight >= c.MaxRequestsInFlight:
		return nil, &Refusal{Limit: "requests_in_flight", RetryAfter: time.Second,
			Reason: fmt.Sprintf("too many requests in flight (limit %d)", c.MaxRequestsInFlight)}
	case s.tokens < 1:
		wait := time.Duration((1 - s.tokens) / c.Rate * float64(time.Second))
		return nil, &Refusal{Limit: "rate", RetryAfter: wait,
			Reason: fmt.Sprintf("too many new requests (limit %g a second, burst %d)", c.Rate, c.Burst)}
	}
	s.tokens--
	if k == Tunnel {
		s.tunnels++
	} else {
		s.inflight++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if k == Tunnel {
				s.tunnels--
			} else {
				s.inflight--
			}
			s.used = l.now()
		})
	}, nil
}

// AuthBlocked reports whether addr has failed authentication a.Max times within a.Window; the
// caller then answers 429 without checking the key.
func (l *Limiter) AuthBlocked(addr string, a AuthFailures) *Refusal {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.failures[addr]
	if w == nil || !now.Before(w.end) || w.n < a.Max {
		return nil
	}
	return &Refusal{Limit: "auth_failures", RetryAfter: w.end.Sub(now),
		Reason: fmt.Sprintf("too many failed authentications from your address (%d within %s)", w.n, a.Window)}
}

// AuthFailed counts one failed authentication from addr.
func (l *Limiter) AuthFailed(addr string, a AuthFailures) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	w := l.failures[addr]
	if w == nil || !now.Before(w.end) {
		w = &window{end: now.Add(a.Window)}
		l.failures[addr] = w
	}
	w.n++
}

// sweep forgets keys that hold nothing and were not used for a minute, and failure windows
// that ended, at most once a minute; l.mu is held.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for k, s := range l.keys {
		if s.tunnels == 0 && s.inflight == 0 && now.Sub(s.used) >= time.Minute {
			delete(l.keys, k)
		}
	}
	for k, w := range l.failures {
		if !now.Before(w.end) {
			delete(l.failures, k)
		}
	}
}

// Keys returns how many keys have state now (for tests and a gauge).
func (l *Limiter) Keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// AddrKey is the key under which a client address is limited: the address itself for IPv4,
// its /64 for IPv6 (one site or host holds a whole /64 and could otherwise pick a fresh address
// for every request or guess). Anything else is used as it is.
func AddrKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}
