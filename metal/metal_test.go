package metal

import (
	"errors"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSizeClassesCoverAndBoundWaste(t *testing.T) {
	prev := -1
	for n := 0; n <= 1<<20; n += 1 + n/7 {
		c, capBytes := sizeClass(n)
		require.GreaterOrEqual(t, capBytes, n, "n=%d", n)
		if n > 64 {
			assert.LessOrEqual(t, float64(capBytes), 1.25*float64(n)+1, "n=%d cap=%d", n, capBytes)
		}
		require.GreaterOrEqual(t, c, prev, "classes must not decrease with size")
		prev = c
		// every size of a class fits the class's capacity
		c2, cap2 := sizeClass(capBytes)
		assert.Equal(t, c, c2, "n=%d", n)
		assert.Equal(t, capBytes, cap2)
	}
}

func TestPoolRecyclesAndCounts(t *testing.T) {
	p := NewPool(1 << 20)
	a := p.Get(1000)
	assert.Equal(t, 1000, a.Size())
	assert.Len(t, a.Bytes(), 1000)
	use := p.InUse()
	assert.GreaterOrEqual(t, use, int64(1000))
	ptr := a.Pointer()
	a.Release()
	assert.Equal(t, int64(0), p.InUse())
	b := p.Get(990) // same class: the same memory comes back
	assert.Equal(t, ptr, b.Pointer())
	assert.Equal(t, use, p.Peak())
	c := p.Get(5000)
	assert.Greater(t, p.Peak(), use)
	b.Release()
	c.Release()
	z := p.GetZeroed(990)
	for _, v := range z.Bytes() {
		require.Zero(t, v)
	}
}

func TestPoisonFillsFreedBuffers(t *testing.T) {
	SetPoison(true)
	defer SetPoison(false)
	p := NewPool(1 << 20)
	b := p.Get(64)
	words := b.words
	b.Release()
	assert.True(t, math.IsNaN(math.Float64frombits(words[0])))
	assert.True(t, math.IsNaN(float64(math.Float32frombits(uint32(words[0])))))
	assert.Panics(t, func() { b.Bytes() }, "reading a released buffer must panic")
	assert.Panics(t, func() { b.Release() }, "double release must panic")
}

func TestBufferStaysOutOfPoolWhileDeviceWorkRuns(t *testing.T) {
	p := NewPool(1 << 20)
	b := p.Get(256)
	ptr := b.Pointer()
	done := b.BeginUse()
	assert.True(t, b.Busy())
	b.Release() // last owner goes away while "the GPU" still uses it
	c := p.Get(256)
	assert.NotEqual(t, ptr, c.Pointer(), "a buffer in flight must not be handed out again")
	assert.Equal(t, int64(len(c.words)*8)+int64(len(b.words)*8), p.InUse(), "the in-flight buffer still counts as in use")
	done()
	done() // idempotent
	d := p.Get(256)
	assert.Equal(t, ptr, d.Pointer(), "after completion it returns to the pool")
}

func TestWaitBlocksUntilWorkCompletes(t *testing.T) {
	b := NewPool(1 << 20).Get(64)
	done := b.BeginUse()
	var finished sync.WaitGroup
	finished.Add(1)
	waited := make(chan struct{})
	go func() {
		b.Wait()
		close(waited)
		finished.Done()
	}()
	select {
	case <-waited:
		t.Fatal("Wait returned while work was in flight")
	case <-time.After(20 * time.Millisecond):
	}
	done()
	finished.Wait()
	assert.False(t, b.Busy())
}

func TestParallelForCoversRangeOnce(t *testing.T) {
	defer SetThreads(Threads())
	for _, th := range []int{1, 2, 3, 8} {
		SetThreads(th)
		for _, n := range []int{0, 1, 7, 33, 127, 10000} {
			seen := make([]int32, n)
			var mu sync.Mutex
			ParallelFor(n, 5, func(lo, hi int) {
				mu.Lock()
				defer mu.Unlock()
				for i := lo; i < hi; i++ {
					seen[i]++
				}
			})
			for i, s := range seen {
				require.Equal(t, int32(1), s, "threads=%d n=%d i=%d", th, n, i)
			}
		}
	}
}

func TestParallelForReturnsWorkerPanics(t *testing.T) {
	defer SetThreads(Threads())
	SetThreads(4)
	var got any
	func() {
		defer func() { got = recover() }()
		ParallelFor(100, 1, func(lo, hi int) {
			if lo > 0 {
				panic(errors.New("boom"))
			}
		})
	}()
	wp, ok := got.(*WorkerPanic)
	require.True(t, ok, "got %T", got)
	assert.EqualError(t, errors.Unwrap(wp), "boom")
	assert.Contains(t, wp.Error(), "boom")
}

func TestRegistryPicksByThresholdAndEnv(t *testing.T) {
	t.Setenv("MLXTRAIN_TESTOP_MIN_N_ASM", "50")
	r := &Registry{ops: map[string]*Op{}}
	never := false
	op := r.Register("testop", []string{"N"},
		&Impl{Path: PathMetal, Available: func() bool { return never }},
		&Impl{Path: PathAsm, Min: []int{10}},
		&Impl{Path: PathReference},
	)
	assert.Equal(t, PathReference, op.Pick(49).Path, "env raised the asm threshold to 50")
	assert.Equal(t, PathAsm, op.Pick(50).Path)
	op.Disable(PathAsm, "self-test failed")
	assert.Equal(t, PathReference, op.Pick(1000).Path)
	list := r.List()
	require.Len(t, list, 1)
	assert.False(t, list[0].Impls[0].Available)
	assert.Equal(t, "self-test failed", list[0].Impls[1].Disabled)
	assert.Equal(t, []int{50}, list[0].Impls[1].Min)
	assert.Panics(t, func() { r.Register("testop", nil, &Impl{}) }, "duplicate names")

	t.Setenv("MLXTRAIN_BADOP_MIN_N", "x")
	assert.Panics(t, func() { r.Register("badop", []string{"N"}, &Impl{Path: PathReference}) })
}

func TestParseSwitch(t *testing.T) {
	for in, want := range map[string]bool{"1": true, "on": true, "TRUE": true, "0": false, "off": false, "": false} {
		got, err := parseSwitch(in)
		require.NoError(t, err)
		assert.Equal(t, want, got, in)
	}
	_, err := parseSwitch("maybe")
	assert.Error(t, err)
}

func TestProfileRecordsAndPrints(t *testing.T) {
	ResetProfile()
	RecordOp("matmul", PathBLAS, 3*time.Millisecond, 1<<20)
	RecordOp("matmul", PathBLAS, time.Millisecond, 1<<20)
	RecordOp("add", PathGo, time.Millisecond, 100)
	snap := ProfileSnapshot()
	require.Len(t, snap, 2)
	assert.Equal(t, "matmul", snap[0].Op)
	assert.Equal(t, int64(2), snap[0].Calls)
	assert.Equal(t, 4*time.Millisecond, snap[0].Time)
	var sb stringsBuilder
	WriteProfile(&sb)
	assert.Contains(t, sb.String(), "blas")
	assert.Contains(t, sb.String(), "2.0 MiB")
	ResetProfile()
}

type stringsBuilder struct{ b []byte }

func (s *stringsBuilder) Write(p []byte) (int, error) { s.b = append(s.b, p...); return len(p), nil }
func (s *stringsBuilder) String() string              { return string(s.b) }

func TestDroppedBuffersLeaveTheLiveCount(t *testing.T) {
	p := NewPool(1 << 20)
	for range 100 {
		p.Get(4096) // never released: left to the GC
	}
	dropped := p.InUse()
	require.Greater(t, dropped, int64(0))
	for i := 0; i < 50 && p.Live() > 0; i++ {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	assert.Equal(t, int64(0), p.Live(), "collected buffers no longer count as live")
	assert.Equal(t, dropped, p.InUse(), "but InUse keeps them, so tests see the leak")
	b := p.Get(100)
	b.Release()
	runtime.GC()
	assert.Equal(t, int64(0), p.Live(), "a released buffer is not subtracted twice")
	assert.Equal(t, dropped, p.InUse())
}
