package metal

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Go runs every task exactly once, concurrently (tasks that wait for each other
// finish), from one caller or several, nested, and with helpers asleep after
// their spin as well as still spinning.
func TestGoRunsEveryTaskConcurrently(t *testing.T) {
	for _, pause := range []time.Duration{0, 2 * helperSpin} {
		var ran atomic.Int64
		var wg sync.WaitGroup
		for range 50 {
			// Two tasks that each wait for the other: they must run at once.
			var meet sync.WaitGroup
			meet.Add(2)
			wg.Add(2)
			for range 2 {
				Go(func() {
					defer wg.Done()
					meet.Done()
					meet.Wait()
					ran.Add(1)
				})
			}
			wg.Wait()
			time.Sleep(pause / 50)
		}
		assert.EqualValues(t, 100, ran.Load())

		// From several callers at once, each task starting more.
		var callers sync.WaitGroup
		ran.Store(0)
		for range 8 {
			callers.Add(1)
			go func() {
				defer callers.Done()
				var inner sync.WaitGroup
				for range 20 {
					inner.Add(1)
					Go(func() {
						var nested sync.WaitGroup
						nested.Add(1)
						Go(func() {
							defer nested.Done()
							ran.Add(1)
						})
						nested.Wait()
						ran.Add(1)
						inner.Done()
					})
				}
				inner.Wait()
			}()
		}
		callers.Wait()
		assert.EqualValues(t, 8*20*2, ran.Load())
		time.Sleep(pause)
	}
}

// Join.Wait returns only after every worker's Done, and sees what the workers
// wrote before it: workers that finish at once (Wait polling), after Wait has
// stopped polling and blocked, and none at all.
func TestJoinWaitsForEveryWorker(t *testing.T) {
	for _, delay := range []time.Duration{0, 50 * time.Microsecond, 2 * joinSpin} {
		for _, workers := range []int{0, 1, 3} {
			var j Join
			done := make([]int, workers)
			j.Add(workers)
			for w := range workers {
				Go(func() {
					defer j.Done()
					time.Sleep(delay * time.Duration(w+1))
					done[w] = w + 1
				})
			}
			j.Wait()
			for w := range workers {
				assert.Equal(t, w+1, done[w], "delay %v, worker %d of %d", delay, w, workers)
			}
		}
	}
}
