package health

import (
	"sync"
	"testing"
	"time"
)

func newTestBudget(ratio float64, floor int, window time.Duration) (*Budget, *clock) {
	c := newClock()
	return newBudget(ratio, floor, window, c.Now, nil), c
}

// retries counts how many TryRetry calls succeed before the first refusal (at most 1000).
func retries(b *Budget) int {
	n := 0
	for n < 1000 && b.TryRetry() {
		n++
	}
	return n
}

func requests(b *Budget, n int) {
	for range n {
		b.Request()
	}
}

func TestBudget(t *testing.T) {
	tests := []struct {
		name     string
		ratio    float64
		floor    int
		requests int
		want     int
	}{
		{"20% of 100", 0.2, 0, 100, 20},
		{"20% of 100 plus 3/s over 10s", 0.2, 3, 100, 50},
		{"floor only", 0.2, 3, 0, 30},
		{"20% of 7 rounds down", 0.2, 0, 7, 1},
		{"no budget", 0, 0, 100, 0},
		{"negative ratio and floor are 0", -1, -1, 100, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := newTestBudget(tt.ratio, tt.floor, 10*time.Second)
			requests(b, tt.requests)
			if got := retries(b); got != tt.want {
				t.Errorf("%d retries allowed; want %d", got, tt.want)
			}
			if b.TryRetry() {
				t.Error("TryRetry succeeded after the budget was spent")
			}
		})
	}
}

func TestBudgetSlides(t *testing.T) {
	b, c := newTestBudget(0.2, 0, 10*time.Second)
	requests(b, 100)
	if got := retries(b); got != 20 {
		t.Fatalf("%d retries; want 20", got)
	}
	c.Advance(5 * time.Second)
	if b.TryRetry() {
		t.Fatal("budget recovered within the window")
	}
	requests(b, 50) // earns 10 more
	if got := retries(b); got != 10 {
		t.Fatalf("after 50 more requests: %d retries; want 10", got)
	}
	c.Advance(6 * time.Second) // the first 100 requests and their 20 retries left the window
	if got := retries(b); got != 0 {
		t.Fatalf("window holds 50 requests and 10 retries: %d more retries; want 0", got)
	}
	c.Advance(5 * time.Second) // everything left the window
	requests(b, 10)
	if got := retries(b); got != 2 {
		t.Errorf("after the window: %d retries for 10 requests; want 2", got)
	}
}

func TestBudgetFloorRecovers(t *testing.T) {
	b, c := newTestBudget(0.2, 3, 10*time.Second)
	if got := retries(b); got != 30 {
		t.Fatalf("%d retries without traffic; want 30 (3/s × 10s)", got)
	}
	c.Advance(11 * time.Second)
	if got := retries(b); got != 30 {
		t.Errorf("after the window: %d retries; want 30", got)
	}
}

func TestBudgetNilAllows(t *testing.T) {
	var b *Budget
	b.Request()
	if !b.TryRetry() {
		t.Error("a nil Budget refused a retry")
	}
}

func TestBudgetConcurrent(t *testing.T) {
	b, c := newTestBudget(0.2, 0, 10*time.Second)
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 8 {
		wg.Go(func() {
			n := 0
			for i := range 1000 {
				b.Request()
				if i%3 == 0 && b.TryRetry() {
					n++
				}
				if g == 0 && i%100 == 0 {
					c.Advance(10 * time.Millisecond)
				}
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		})
	}
	wg.Wait()
	// 8000 requests earn 1600 retries; racing TryRetry calls may overshoot by a few.
	if allowed < 1500 || allowed > 1600+8 {
		t.Errorf("%d retries allowed for 8000 requests; want about 1600", allowed)
	}
}

func BenchmarkBudget(b *testing.B) {
	budget := NewBudget(0.2, 3, 10*time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			budget.Request()
			budget.TryRetry()
		}
	})
}

func TestBudgetSetRatio(t *testing.T) {
	b, _ := newTestBudget(0.2, 0, 10*time.Second)
	requests(b, 100)
	for _, step := range []struct {
		ratio float64
		want  int // further retries allowed, counting those already made in the window
	}{
		{0.2, 20},
		{0.5, 30}, // 50 in all
		{0.1, 0},  // 10 is below the 50 already made
		{-1, 0},
		{1, 50}, // 100 in all
	} {
		b.SetRatio(step.ratio)
		if got := retries(b); got != step.want {
			t.Errorf("ratio %v: %d more retries; want %d", step.ratio, got, step.want)
		}
	}
	var nilBudget *Budget
	nilBudget.SetRatio(0.5) // does nothing
	if !nilBudget.TryRetry() {
		t.Error("a nil Budget refused a retry after SetRatio")
	}
}

// TestBudgetSetRatioConcurrent is for the race detector: SetRatio while requests and retries
// are counted.
func TestBudgetSetRatioConcurrent(t *testing.T) {
	b, _ := newTestBudget(0.2, 0, 10*time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 1000 {
				b.Request()
				b.TryRetry()
			}
		})
	}
	wg.Go(func() {
		for i := range 1000 {
			b.SetRatio(float64(i%3) / 10)
		}
	})
	wg.Wait()
	b.SetRatio(0) // the ratio last set is the one in force: no share, no floor
	if b.TryRetry() {
		t.Error("TryRetry succeeded with ratio 0 and no floor")
	}
}
