package gemm

import (
	"errors"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlxtrain/mlxtrain/metal"
)

// runWorkers runs fn(0), ..., fn(workers-1) at once, fn(0) on the calling
// goroutine. Unlike metal.ParallelFor it guarantees exactly that many concurrent
// workers, which a barrier between them needs. A panic in a worker breaks bar (so
// the others stop waiting) and is re-raised in the caller as *metal.WorkerPanic.
func runWorkers(workers int, bar *barrier, fn func(w int)) {
	var (
		wg    metal.Join
		mu    sync.Mutex
		first *metal.WorkerPanic
	)
	run := func(w int) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			bar.breakBarrier()
			mu.Lock()
			defer mu.Unlock()
			// Keep the panic that broke the barrier, not the ones it caused.
			if err, _ := r.(error); first == nil || errors.Is(first.Unwrap(), errBarrierBroken) && !errors.Is(err, errBarrierBroken) {
				if wp, ok := r.(*metal.WorkerPanic); ok {
					first = wp
				} else {
					first = &metal.WorkerPanic{Value: r, Stack: debug.Stack()}
				}
			}
		}()
		fn(w)
	}
	wg.Add(workers - 1)
	for w := 1; w < workers; w++ {
		metal.Go(func() {
			defer wg.Done()
			run(w)
		})
	}
	run(0)
	wg.Wait()
	if first != nil {
		panic(first)
	}
}

var errBarrierBroken = errors.New("gemm: another worker panicked")

// barrier holds each of n workers at wait until all have arrived. A waiter first
// spins, yielding the processor, for up to barrierSpin: the steps between barriers
// last from tens of microseconds to milliseconds, and waking a parked thread costs
// 50-100 µs on a virtual machine. Then it blocks, so that a worker the OS has
// descheduled (another process on the core) can run where the spinner was.
type barrier struct {
	n       int32
	arrived atomic.Int32
	gen     atomic.Uint32
	broken  atomic.Bool
	mu      sync.Mutex
	cond    sync.Cond
}

const barrierSpin = 200 * time.Microsecond

func newBarrier(n int) *barrier {
	b := &barrier{n: int32(n)}
	b.cond.L = &b.mu
	return b
}

func (b *barrier) wait() {
	g := b.gen.Load()
	if b.arrived.Add(1) == b.n {
		b.arrived.Store(0)
		b.mu.Lock()
		b.gen.Add(1)
		b.mu.Unlock()
		b.cond.Broadcast()
		return
	}
	var deadline time.Time
	for spins := 0; ; spins++ {
		if b.gen.Load() != g {
			return
		}
		if b.broken.Load() {
			panic(errBarrierBroken)
		}
		if spins < 64 {
			continue
		}
		if spins == 64 {
			deadline = time.Now().Add(barrierSpin)
		} else if spins%64 == 0 && time.Now().After(deadline) {
			break
		}
		runtime.Gosched()
	}
	b.mu.Lock()
	for b.gen.Load() == g && !b.broken.Load() {
		b.cond.Wait()
	}
	b.mu.Unlock()
	if b.gen.Load() == g {
		panic(errBarrierBroken)
	}
}

func (b *barrier) breakBarrier() {
	b.broken.Store(true)
	b.mu.Lock()
	b.mu.Unlock()
	b.cond.Broadcast()
}
