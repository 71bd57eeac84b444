package main

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// errTally counts errors and keeps a few distinct messages.
type errTally struct {
	mu      sync.Mutex
	n       int64
	samples map[string]int
}

func (e *errTally) add(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.samples == nil {
		e.samples = map[string]int{}
	}
	msg := err.Error()
	if _, ok := e.samples[msg]; ok || len(e.samples) < 8 {
		e.samples[msg]++
	}
}

func (e *errTally) count() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

func (e *errTally) report(mode string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for msg, n := range e.samples {
		fmt.Fprintf(os.Stderr, "loadgen %s: error x%d: %s\n", mode, n, msg)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// result is printed as one "RESULT k=v k=v ..." line; values have no spaces.
type result struct {
	keys []string
	vals map[string]string
}

func newResult(mode, label string) *result {
	r := &result{vals: map[string]string{}}
	r.set("mode", mode)
	if label != "" {
		r.set("label", label)
	}
	return r
}

func (r *result) set(k string, v any) {
	var s string
	switch x := v.(type) {
	case float64:
		s = strconv.FormatFloat(x, 'f', 3, 64)
	case time.Duration:
		s = strconv.FormatFloat(float64(x)/float64(time.Millisecond), 'f', 3, 64)
	default:
		s = fmt.Sprint(x)
	}
	s = strings.ReplaceAll(s, " ", "_")
	if s == "" {
		s = "-"
	}
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	r.vals[k] = s
}

func (r *result) print() {
	var b strings.Builder
	b.WriteString("RESULT")
	for _, k := range r.keys {
		b.WriteString(" " + k + "=" + r.vals[k])
	}
	fmt.Println(b.String())
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func runClient(mode string, args []string) error {
	o, err := parseClientFlags(mode, args)
	if err != nil {
		return err
	}
	nofile := raiseNofile(65536)
	d, err := newDialer(o)
	if err != nil {
		return err
	}
	res := newResult(mode, o.label)
	if o.proxy == "" {
		res.set("proxy", "direct")
	} else {
		res.set("proxy", o.proxy)
	}
	res.set("curves", o.curves)
	switch mode {
	case "newconn", "keepalive":
		err = runLoad(mode, o, d, res)
	case "bulk":
		err = runBulk(o, d, res)
	case "idle":
		err = runIdle(o, d, res, nofile)
	case "probe":
		err = runProbe(o, d, res)
	}
	if err != nil {
		return err
	}
	res.set("tls_proxy", d.proxyInfo)
	res.set("tls_origin", d.orgInfo)
	res.set("lg_cpu_ms_total", cpuTime())
	res.print()
	return nil
}

// runLoad drives newconn (fresh tunnel per request) or keepalive (one tunnel
// per worker, reused) for warmup+duration, bounded by -max requests.
func runLoad(mode string, o *clientOpts, d *dialer, res *result) error {
	var (
		started  atomic.Int64
		stop     atomic.Bool
		errs     errTally
		allErrs  atomic.Int64
		okTotal  atomic.Int64
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
		smallReq = getRequest(o.originSNI, "/")
	)
	keep := mode == "keepalive"

	// keepalive: open all tunnels first, outside the measurement.
	tunnels := make([]*tunnel, o.conc)
	if keep {
		var owg sync.WaitGroup
		var openErr atomic.Value
		for i := range tunnels {
			owg.Add(1)
			go func() {
				defer owg.Done()
				t, err := d.open(time.Now().Add(o.timeout))
				if err != nil {
					openErr.Store(err)
					return
				}
				tunnels[i] = t
			}()
		}
		owg.Wait()
		if e := openErr.Load(); e != nil {
			for _, t := range tunnels {
				if t != nil {
					t.Close()
				}
			}
			return fmt.Errorf("opening %d keep-alive tunnels: %v", o.conc, e)
		}
	}

	begin := time.Now()
	measStart := begin.Add(o.warmup)
	end := measStart.Add(o.duration)
	cpu0 := time.Duration(-1)
	cpuTimer := time.AfterFunc(o.warmup, func() { mu.Lock(); cpu0 = cpuTime(); mu.Unlock() })

	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			t := tunnels[w]
			for !stop.Load() && started.Add(1) <= o.maxReqs {
				t0 := time.Now()
				if t0.After(end) {
					break
				}
				deadline := t0.Add(o.timeout)
				var err error
				if keep {
					if t == nil {
						t, err = d.open(deadline)
					}
					if err == nil {
						_, err = t.get(smallReq, deadline, 4096)
						if err != nil {
							t.Close()
							t = nil
						}
					}
				} else {
					var nt *tunnel
					nt, err = d.open(deadline)
					if err == nil {
						_, err = nt.get(smallReq, deadline, 4096)
						nt.Close()
					}
				}
				t1 := time.Now()
				inWindow := !t1.Before(measStart) && !t1.After(end)
				if err != nil {
					allErrs.Add(1)
					if inWindow {
						errs.add(err)
					}
					time.Sleep(10 * time.Millisecond) // don't spin on a dead proxy
					continue
				}
				okTotal.Add(1)
				if inWindow {
					lat = append(lat, t1.Sub(t0))
				}
			}
			if t != nil {
				t.Close()
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}(w)
	}

	// Stop at end (or earlier if every worker ran out of -max).
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(end)):
	}
	stop.Store(true)
	cpuTimer.Stop()
	mu.Lock()
	c0 := cpu0
	mu.Unlock()
	cpu1 := cpuTime()
	elapsed := time.Since(measStart)
	if elapsed > o.duration {
		elapsed = o.duration
	}
	select {
	case <-done:
	case <-time.After(o.timeout + 2*time.Second):
		fmt.Fprintln(os.Stderr, "loadgen: some workers did not finish in time; reporting anyway")
	}

	mu.Lock()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	n := len(all)
	lats := all
	mu.Unlock()
	secs := elapsed.Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	res.set("conc", o.conc)
	res.set("secs", secs)
	res.set("ok", n)
	res.set("ok_total", okTotal.Load())
	res.set("err", errs.count())
	res.set("err_total", allErrs.Load())
	res.set("rps", float64(n)/secs)
	res.set("p50_ms", percentile(lats, 0.50))
	res.set("p90_ms", percentile(lats, 0.90))
	res.set("p99_ms", percentile(lats, 0.99))
	res.set("max_ms", percentile(lats, 1))
	if c0 >= 0 {
		res.set("lg_cpu_pct", 100*float64(cpu1-c0)/float64(elapsed))
	}
	errs.report(o.label + " " + o.proxy)
	return nil
}

func runBulk(o *clientOpts, d *dialer, res *result) error {
	deadline := time.Now().Add(o.timeout)
	if o.timeout < 60*time.Second {
		deadline = time.Now().Add(60 * time.Second) // 1 GiB may need more than a per-request timeout
	}
	t, err := d.open(deadline)
	if err != nil {
		return err
	}
	defer t.Close()
	// Small request first so the tunnel is warm, then the timed transfer.
	if _, err := t.get(getRequest(o.originSNI, "/"), deadline, 256<<10); err != nil {
		return err
	}
	req := getRequest(o.originSNI, "/bulk?bytes="+strconv.FormatInt(o.bytes, 10))
	cpu0 := cpuTime()
	t0 := time.Now()
	n, err := t.get(req, deadline, 256<<10)
	el := time.Since(t0)
	cpu1 := cpuTime()
	if err != nil {
		return fmt.Errorf("bulk after %d bytes: %w", n, err)
	}
	if n != o.bytes {
		return fmt.Errorf("bulk: got %d bytes, want %d", n, o.bytes)
	}
	s := el.Seconds()
	res.set("bytes", n)
	res.set("secs", s)
	res.set("mib_s", float64(n)/s/(1<<20))
	res.set("mb_s", float64(n)/s/1e6)
	res.set("lg_cpu_pct", 100*float64(cpu1-cpu0)/float64(el))
	return nil
}

// runIdle opens -n tunnels (each with a full TLS handshake to the origin and,
// with -idle-get, one request), prints "READY ...", holds them until SIGUSR1,
// SIGINT, SIGTERM or -hold, then checks how many still answer and closes them.
func runIdle(o *clientOpts, d *dialer, res *result, nofile uint64) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	var (
		next     atomic.Int64
		errs     errTally
		wg       sync.WaitGroup
		tunnels  = make([]*tunnel, o.n)
		smallReq = getRequest(o.originSNI, "/")
	)
	openUntil := time.Now().Add(o.hold)
	if o.hold > 120*time.Second {
		openUntil = time.Now().Add(120 * time.Second)
	}
	t0 := time.Now()
	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.n) || time.Now().After(openUntil) || errs.count() >= o.maxFail {
					return
				}
				deadline := time.Now().Add(o.timeout)
				t, err := d.open(deadline)
				if err == nil && o.idleGet {
					if _, err = t.get(smallReq, deadline, 1024); err != nil {
						t.Close()
					}
				}
				if err != nil {
					errs.add(err)
					continue
				}
				t.raw.SetDeadline(time.Time{})
				tunnels[i] = t
			}
		}()
	}
	wg.Wait()
	openSecs := time.Since(t0).Seconds()
	opened := 0
	for _, t := range tunnels {
		if t != nil {
			opened++
		}
	}
	errs.report("idle " + o.label)
	fmt.Printf("READY opened=%d failed=%d secs=%.2f nofile=%d\n", opened, errs.count(), openSecs, nofile)

	held := time.Now()
	select {
	case <-sig:
	case <-time.After(o.hold):
		fmt.Fprintln(os.Stderr, "loadgen idle: -hold elapsed without a signal")
	}
	holdSecs := time.Since(held).Seconds()

	// Are the tunnels still alive after being idle? One GET each.
	var alive atomic.Int64
	var dead errTally
	next.Store(0)
	for w := 0; w < o.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(o.n) {
					return
				}
				t := tunnels[i]
				if t == nil {
					continue
				}
				if _, err := t.get(smallReq, time.Now().Add(o.timeout), 1024); err != nil {
					dead.add(err)
				} else {
					alive.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	dead.report("idle-check " + o.label)
	for _, t := range tunnels {
		if t != nil {
			t.Close()
		}
	}
	res.set("n", o.n)
	res.set("opened", opened)
	res.set("failed", errs.count())
	res.set("open_secs", openSecs)
	res.set("held_secs", holdSecs)
	res.set("alive_after", alive.Load())
	return nil
}

// runProbe retries one tunnel + GET / until it works or -timeout passes;
// run.sh uses it as an end-to-end readiness check.
func runProbe(o *clientOpts, d *dialer, res *result) error {
	until := time.Now().Add(o.timeout)
	var last error
	for tries := 1; ; tries++ {
		deadline := time.Now().Add(2 * time.Second)
		if deadline.After(until) {
			deadline = until
		}
		t, err := d.open(deadline)
		if err == nil {
			_, err = t.get(getRequest(o.originSNI, "/"), deadline, 1024)
			t.Close()
		}
		if err == nil {
			res.set("tries", tries)
			return nil
		}
		last = err
		if time.Now().Add(200 * time.Millisecond).After(until) {
			return fmt.Errorf("not ready after %d tries: %w", tries, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
