package metal

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Helpers are goroutines that run the parallel workers of ParallelFor and of the
// matmul and, between tasks, stay awake for a while. A new goroutine for each
// parallel region took 50-100 µs to start on a virtual machine whose idle vCPU
// sleeps, a tenth of a 128×128×2048 product; a helper that is still spinning
// takes its task within microseconds, and while it spins its core stays with
// this process (it yields at each turn, so other goroutines run there meanwhile).
type helper struct {
	tasks chan func() // holds at most one: a helper gets a task only while idle
}

// helperSpin is how long an idle helper polls for a task before it blocks.
const helperSpin = 300 * time.Microsecond

var (
	helpersMu sync.Mutex
	idle      []*helper
)

// Go runs fn on an idle helper goroutine, or on a new one when none is idle: a
// go statement for the workers of a parallel region, which returns at once. As
// with a go statement, a panic that escapes fn ends the program (ParallelFor and
// the matmul recover theirs and re-raise them in the caller).
func Go(fn func()) {
	helpersMu.Lock()
	var h *helper
	if n := len(idle); n > 0 {
		h, idle = idle[n-1], idle[:n-1]
	}
	helpersMu.Unlock()
	if h == nil {
		h = &helper{tasks: make(chan func(), 1)}
		go h.loop(fn)
		return
	}
	h.tasks <- fn
}

func (h *helper) loop(fn func()) {
	for {
		fn()
		fn = h.next()
	}
}

// next makes the helper idle and waits for its next task: polling, yielding the
// processor at each turn, for helperSpin, then blocked.
func (h *helper) next() func() {
	helpersMu.Lock()
	idle = append(idle, h)
	helpersMu.Unlock()
	start := time.Now()
	for spins := 1; ; spins++ {
		select {
		case fn := <-h.tasks:
			return fn
		default:
		}
		if spins%64 == 0 && time.Since(start) > helperSpin {
			return <-h.tasks
		}
		runtime.Gosched()
	}
}

// Join waits for the workers of a parallel region, as a sync.WaitGroup does
// (Add before Go, Done at the end of each worker, Wait once), except that Wait
// first polls for up to joinSpin, yielding the processor at each turn, before it
// blocks. The caller usually finishes its own share shortly before the helpers
// finish theirs: parked, it would leave its core idle and then take 50-100 µs to
// wake on a virtual machine whose idle vCPU sleeps, at every parallel region.
type Join struct {
	pending atomic.Int64
	wg      sync.WaitGroup
}

// joinSpin is how long Join.Wait polls before it blocks.
const joinSpin = 200 * time.Microsecond

// Add adds n workers to wait for.
func (j *Join) Add(n int) {
	j.pending.Add(int64(n))
	j.wg.Add(n)
}

// Done marks one worker finished.
func (j *Join) Done() {
	j.pending.Add(-1)
	j.wg.Done()
}

// Wait returns once every worker added has called Done.
func (j *Join) Wait() {
	var start time.Time
	for spins := 0; j.pending.Load() != 0; spins++ {
		if spins < 64 {
			continue
		}
		if spins == 64 {
			start = time.Now()
		} else if spins%64 == 0 && time.Since(start) > joinSpin {
			j.wg.Wait()
			return
		}
		runtime.Gosched()
	}
}
