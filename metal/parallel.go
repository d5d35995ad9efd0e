package metal

import (
	"fmt"
	"runtime/debug"
	"sync"
)

// WorkerPanic carries a panic from a worker goroutine back to the goroutine that
// started the work, with the worker's stack.
type WorkerPanic struct {
	Value any
	Stack []byte
}

func (p *WorkerPanic) Error() string {
	return fmt.Sprintf("panic in worker: %v\n%s", p.Value, p.Stack)
}

// Unwrap exposes a panic value that was itself an error.
func (p *WorkerPanic) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// ParallelFor calls fn over [0, n) split into at most Threads() contiguous chunks of
// at least grain items each. Small work runs on the calling goroutine. A panic in
// any chunk is re-raised in the caller (as *WorkerPanic) after every chunk ends.
func ParallelFor(n, grain int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	chunks := min(Threads(), (n+grain-1)/grain)
	if chunks <= 1 {
		fn(0, n)
		return
	}
	var (
		wg    Join
		mu    sync.Mutex
		first *WorkerPanic
	)
	run := func(lo, hi int) {
		defer func() {
			if r := recover(); r != nil {
				mu.Lock()
				if first == nil {
					if wp, ok := r.(*WorkerPanic); ok {
						first = wp
					} else {
						first = &WorkerPanic{Value: r, Stack: debug.Stack()}
					}
				}
				mu.Unlock()
			}
		}()
		fn(lo, hi)
	}
	per := n / chunks
	extra := n % chunks
	lo := 0
	bounds := make([][2]int, chunks)
	for c := range chunks {
		hi := lo + per
		if c < extra {
			hi++
		}
		bounds[c] = [2]int{lo, hi}
		lo = hi
	}
	wg.Add(chunks - 1)
	for c := 1; c < chunks; c++ {
		b := bounds[c]
		Go(func() {
			defer wg.Done()
			run(b[0], b[1])
		})
	}
	run(bounds[0][0], bounds[0][1])
	wg.Wait()
	if first != nil {
		panic(first)
	}
}
