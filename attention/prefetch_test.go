package attention

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var prefetchTestHeap []float32

// The queue keeps ranges inside their slices, hands out every row once across
// steps of a few lines, and drops its references when done.
func TestPrefetchQueue(t *testing.T) {
	// On the heap, as the kernels' buffers are: the queue keeps plain addresses,
	// which a stack that grows (as under -race) would leave behind.
	s := make([]float32, 1000)
	prefetchTestHeap = s
	var q prefetchQueue
	q.reset(4)
	q.add(s, 0, 100, 20, 32)  // rows past the end are left out: 10 rows
	q.add(s, 990, 100, 3, 32) // the first row overruns: nothing
	q.add(s, -1, 100, 3, 8)   // before the start: nothing
	q.add(s, 5, 0, 1, 128)    // one row of 128 floats (8 lines)
	q.add(s, 999, 1, 1, 1)    // the last element
	q.add(s[:0], 0, 1, 0, 1)  // empty
	require.Len(t, q.items, 3)
	it := q.items[0]
	assert.Equal(t, uintptr(unsafe.Pointer(&s[0])), it.p)
	assert.Equal(t, [5]int{100, 10, 32, 2, 2}, [5]int{it.stride, it.rows, it.width, it.per, it.step})
	assert.Equal(t, uintptr(unsafe.Pointer(&s[999])), q.items[2].p)
	rows := 0
	for range 100 {
		at, left := q.at, 0
		for _, it := range q.items[q.at:] {
			left += it.rows
		}
		q.step()
		after := 0
		for _, it := range q.items[q.at:] {
			after += it.rows
		}
		if left == 0 {
			break
		}
		// A step of 4 lines: two rows of 32 floats, or one wider row.
		assert.True(t, left-after == 2 || left-after == 1, "step %d: %d rows", at, left-after)
		rows += left - after
	}
	assert.Equal(t, 12, rows)
	assert.Equal(t, len(q.items), q.at)
	// Each range moved past its rows.
	assert.Equal(t, uintptr(unsafe.Pointer(&s[0]))+4*1000, q.items[0].p)
	q.reset(16)
	q.add(s, 0, 32, 31, 32)
	q.step()
	q.flush()
	assert.Equal(t, 1, q.at)
	var nilQueue *prefetchQueue
	nilQueue.step() // no queue: nothing
}
