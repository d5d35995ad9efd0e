package metal

import (
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Buffer is a block of memory that tensors store their elements in. On the host, and
// on Apple's unified memory with shared storage, its contents are a Go slice, so CPU
// kernels read device results without copies once pending device work is done.
//
// A Buffer is reference counted: [Buffer.Retain] for each extra owner (a view, an
// alias held by a tape), [Buffer.Release] when an owner is done. The last release
// hands the memory back to its pool, but never while device work that uses it is in
// flight: that return waits for the work to complete.
type Buffer struct {
	words  []uint64 // the host memory; 8-byte aligned so float64 and int views are safe
	size   int      // bytes requested
	class  int      // size-class index in the pool, -1 when not pooled
	pool   *Pool
	refs   atomic.Int32
	handle any    // the device's own object (an MTLBuffer, a simulator buffer), or nil
	free   func() // gives device memory back to its device (Pool.Wrap), or nil
	// live is set while an owner holds the buffer; a buffer the GC collects
	// while still live was dropped without Release, and its cleanup takes its
	// bytes off the pool's in-use count.
	acct *bufferAccount

	mu       sync.Mutex
	busy     atomic.Int32 // mirrors inflight so Wait on an idle buffer takes no lock
	inflight int          // device jobs using this buffer
	idle     *sync.Cond   // signalled when inflight reaches zero
	doomed   bool         // the last owner released it while work was in flight
}

// Size is the number of bytes requested for the buffer.
func (b *Buffer) Size() int { return b.size }

// Handle is the device object behind the buffer, or nil for host memory.
func (b *Buffer) Handle() any { return b.handle }

// SetHandle records the device object that shares this buffer's memory.
func (b *Buffer) SetHandle(h any) { b.handle = h }

func (b *Buffer) live() {
	if b.refs.Load() <= 0 {
		panic("metal: use of a released buffer")
	}
}

// Bytes returns the contents. Pending device writes must be waited for first
// ([Buffer.Wait]); tensors do that before handing data to CPU code.
func (b *Buffer) Bytes() []byte {
	b.live()
	if b.size == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&b.words[0])), b.size)
}

// Pointer is the address of the first byte, for kernels that take raw pointers.
func (b *Buffer) Pointer() unsafe.Pointer {
	b.live()
	if len(b.words) == 0 {
		return nil
	}
	return unsafe.Pointer(&b.words[0])
}

// Retain adds an owner.
func (b *Buffer) Retain() {
	if b.refs.Add(1) <= 1 {
		panic("metal: retain of a released buffer")
	}
}

// Release drops an owner; the last one returns the memory to the pool, at once or
// when the device work still using it completes.
func (b *Buffer) Release() {
	n := b.refs.Add(-1)
	if n > 0 {
		return
	}
	if n < 0 {
		panic("metal: buffer released twice")
	}
	b.mu.Lock()
	if b.inflight > 0 {
		b.doomed = true
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	b.pool.put(b)
}

// BeginUse marks device work that reads or writes the buffer; call the returned
// function when that work has completed (from any goroutine). Until then Wait blocks
// and a final Release leaves the memory out of the pool.
func (b *Buffer) BeginUse() (done func()) {
	b.live()
	b.mu.Lock()
	b.inflight++
	b.busy.Store(int32(b.inflight))
	b.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.inflight--
			b.busy.Store(int32(b.inflight))
			free := b.inflight == 0 && b.doomed
			if b.inflight == 0 {
				b.doomed = false
				if b.idle != nil {
					b.idle.Broadcast()
				}
			}
			b.mu.Unlock()
			if free {
				b.pool.put(b)
			}
		})
	}
}

// Busy reports whether device work using the buffer is in flight.
func (b *Buffer) Busy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inflight > 0
}

// Wait blocks until no device work uses the buffer, so the CPU may read it. When
// the buffer's device batches work ([Flusher]), Wait submits the batch first.
func (b *Buffer) Wait() {
	if b.busy.Load() == 0 {
		return
	}
	b.mu.Lock()
	if b.inflight > 0 {
		if f, ok := b.handle.(Flusher); ok {
			b.mu.Unlock()
			f.Flush()
			b.mu.Lock()
		}
	}
	for b.inflight > 0 {
		if b.idle == nil {
			b.idle = sync.NewCond(&b.mu)
		}
		b.idle.Wait()
	}
	b.mu.Unlock()
}

// Pool recycles buffers by size class: sizes are rounded up to the next of four
// steps per power of two, so waste stays under 25% and a freed buffer serves any
// later request of its class. It counts live bytes and their high-water mark.
type Pool struct {
	mu    sync.Mutex
	free  [][]*Buffer  // by class
	inUse atomic.Int64 // handed out and not released (a dropped buffer stays counted: tests see leaks)
	live  atomic.Int64 // inUse less the dropped buffers the GC has collected
	peak  atomic.Int64 // high-water mark of live
	held  atomic.Int64 // bytes parked in free lists
	limit int64        // free-list bytes kept at most
}

// HostPool is the pool every host allocation comes from.
var HostPool = NewPool(2 << 30)

// NewPool returns a pool that keeps at most keep bytes of freed buffers for reuse.
func NewPool(keep int64) *Pool { return &Pool{limit: keep} }

const minClassShift = 6 // 64 bytes

// sizeClass returns the class index and its capacity in bytes for n bytes.
func sizeClass(n int) (int, int) {
	if n <= 1<<minClassShift {
		return 0, 1 << minClassShift
	}
	hi := bits.Len(uint(n-1)) - 1 // 2^hi < n <= 2^(hi+1)
	step := 1 << (hi - 2)         // four steps between 2^hi and 2^(hi+1)
	q := (n - 1 - (1 << hi)) / step
	capBytes := (1 << hi) + (q+1)*step
	return (hi-minClassShift)*4 + q + 1, capBytes
}

// Get returns a buffer of n bytes with one owner. Its contents are undefined
// (zeroed when freshly allocated, poisoned or stale when recycled).
func (p *Pool) Get(n int) *Buffer {
	if n < 0 {
		panic(fmt.Sprintf("metal: negative buffer size %d", n))
	}
	class, capBytes := sizeClass(n)
	var b *Buffer
	p.mu.Lock()
	if class < len(p.free) {
		if l := p.free[class]; len(l) > 0 {
			b = l[len(l)-1]
			l[len(l)-1] = nil
			p.free[class] = l[:len(l)-1]
		}
	}
	p.mu.Unlock()
	if b != nil {
		p.held.Add(-int64(len(b.words) * 8))
	} else {
		b = &Buffer{words: make([]uint64, (capBytes+7)/8), class: class, pool: p}
		b.acct = &bufferAccount{pool: p, bytes: int64(len(b.words) * 8)}
		runtime.AddCleanup(b, (*bufferAccount).collected, b.acct)
	}
	b.size = n
	b.refs.Store(1)
	b.acct.live.Store(true)
	p.track(int64(len(b.words) * 8))
	return b
}

// bufferAccount is what a buffer's GC cleanup needs: tensors that are never
// released (inference results left to the GC) must not count as in use forever.
type bufferAccount struct {
	live  atomic.Bool
	pool  *Pool
	bytes int64
}

func (a *bufferAccount) collected() {
	if a.live.Swap(false) {
		a.pool.live.Add(-a.bytes)
	}
}

// Wrap makes a Buffer of size bytes over memory a device allocated and shares
// with the CPU (Metal's shared storage, the simulator's memory): words is that
// memory, handle the device's object, free gives it back to the device. free runs
// once, when the last owner has released the buffer and no device work uses it;
// the memory never enters this pool's free lists, which hold host memory only.
// The pool counts the bytes as in use until then.
func (p *Pool) Wrap(words []uint64, size int, handle any, free func()) *Buffer {
	if size < 0 || size > len(words)*8 || handle == nil {
		panic(fmt.Sprintf("metal: Wrap of %d bytes over %d words (handle %T)", size, len(words), handle))
	}
	b := &Buffer{words: words, size: size, class: -1, pool: p, handle: handle, free: free}
	b.refs.Store(1)
	p.track(int64(len(words) * 8))
	return b
}

// GetZeroed is Get with the contents cleared.
func (p *Pool) GetZeroed(n int) *Buffer {
	b := p.Get(n)
	clear(b.words[:(n+7)/8])
	return b
}

func (p *Pool) track(delta int64) {
	p.inUse.Add(delta)
	v := p.live.Add(delta)
	for {
		pk := p.peak.Load()
		if v <= pk || p.peak.CompareAndSwap(pk, v) {
			return
		}
	}
}

func (p *Pool) put(b *Buffer) {
	bytes := int64(len(b.words) * 8)
	p.inUse.Add(-bytes)
	if b.acct == nil || b.acct.live.Swap(false) {
		p.live.Add(-bytes)
	}
	if b.handle != nil || b.class < 0 {
		if b.free != nil {
			b.free()
		}
		return // device-owned memory is freed by its device, not recycled here
	}
	if poison.Load() {
		for i := range b.words {
			b.words[i] = poisonWord
		}
	}
	if p.held.Load()+bytes > p.limit {
		return // let the GC have it
	}
	p.mu.Lock()
	for len(p.free) <= b.class {
		p.free = append(p.free, nil)
	}
	p.free[b.class] = append(p.free[b.class], b)
	p.mu.Unlock()
	p.held.Add(bytes)
}

// poisonWord reads as NaN as one float64, two float32, and four float16 or bfloat16.
const poisonWord = 0x7ff87ff87ff87ff8

// InUse is the number of bytes handed out and not yet released.
func (p *Pool) InUse() int64 { return p.inUse.Load() }

// Peak is the high-water mark of Live.
func (p *Pool) Peak() int64 { return p.peak.Load() }

// Live is InUse less the buffers that were dropped without Release and have since
// been collected by the GC: the memory the pool's buffers really hold.
func (p *Pool) Live() int64 { return p.live.Load() }

// ResetPeak sets the high-water mark to the current use.
func (p *Pool) ResetPeak() { p.peak.Store(p.live.Load()) }

// Trim drops every parked buffer.
func (p *Pool) Trim() {
	p.mu.Lock()
	p.free = nil
	p.mu.Unlock()
	p.held.Store(0)
}
