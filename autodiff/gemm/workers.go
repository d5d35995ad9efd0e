package gemm

import (
	"errors"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/mlxtrain/mlxtrain/metal"
)

// runWorkers runs fn(0), ..., fn(workers-1) at once, fn(0) on the calling
// goroutine. Unlike metal.ParallelFor it guarantees exactly that many concurrent
// workers, which a barrier between them needs. A panic in a worker breaks bar (so
// the others stop waiting) and is re-raised in the caller as *metal.WorkerPanic.
func runWorkers(workers int, bar *barrier, fn func(w int)) {
	var (
		wg    sync.WaitGroup
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
		go func() {
			defer wg.Done()
			run(w)
		}()
	}
	run(0)
	wg.Wait()
	if first != nil {
		panic(first)
	}
}

var errBarrierBroken = errors.New("gemm: another worker panicked")

// barrier holds each of n workers at wait until all have arrived. Waiters spin,
// yielding the processor: the steps between barriers last from tens of
// microseconds to milliseconds, less than parking and waking a thread.
type barrier struct {
	n       int32
	arrived atomic.Int32
	gen     atomic.Uint32
	broken  atomic.Bool
}

func (b *barrier) wait() {
	g := b.gen.Load()
	if b.arrived.Add(1) == b.n {
		b.arrived.Store(0)
		b.gen.Add(1)
		return
	}
	for spins := 0; b.gen.Load() == g; spins++ {
		if b.broken.Load() {
			panic(errBarrierBroken)
		}
		if spins > 100 {
			runtime.Gosched()
		}
	}
}

func (b *barrier) breakBarrier() { b.broken.Store(true) }
