package kerneltest

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mlxtrain/mlxtrain/metal"
)

// RunCopyKernels runs the checks of the strided copy kernel.
func RunCopyKernels(t *testing.T, d metal.Compute) {
	t.Run("Copy", func(t *testing.T) { Copy(t, d) })
	t.Run("CopyMerge", func(t *testing.T) { CopyMerge(t) })
	t.Run("Fill", func(t *testing.T) { Fill(t, d) })
}

// Fill checks fill_f32: n values written from an offset, every other element of
// the buffer kept, on sizes 1, 7, 33, 127 and 0, and an error for a range past
// the buffer's end.
func Fill(t *testing.T, d metal.Compute) {
	for _, n := range append(Sizes, 0) {
		for _, off := range []int{0, 3} {
			size := off + n + 5
			init := make([]float32, size)
			for i := range init {
				init[i] = float32(i) + 0.5
			}
			b := Upload(t, d, init)
			require.NoError(t, metal.RunFill(d, b, off, n, -2.25), "n %d off %d", n, off)
			require.NoError(t, d.Synchronize())
			want := append([]float32(nil), init...)
			for i := off; i < off+n; i++ {
				want[i] = -2.25
			}
			assert.Equal(t, want, Download(b, size), "n %d off %d", n, off)
			assert.Error(t, metal.RunFill(d, b, off, b.Size()/4-off+1, 1), "past the end of the buffer")
			b.Release()
		}
	}
}

// copyRef is the reference strided copy: dst[dOff + Σ i·ds] = src[sOff + Σ i·ss].
func copyRef(dst, src []float32, dims, ds, ss []int, dOff, sOff int) {
	n := 1
	for _, v := range dims {
		n *= v
	}
	for i := 0; i < n; i++ {
		rest, di, si := i, dOff, sOff
		for k := len(dims) - 1; k >= 0; k-- {
			c := rest % dims[k]
			rest /= dims[k]
			di += c * ds[k]
			si += c * ss[k]
		}
		dst[di] = src[si]
	}
}

func rowMajor(dims []int) []int {
	s, step := make([]int, len(dims)), 1
	for i := len(dims) - 1; i >= 0; i-- {
		s[i] = step
		step *= dims[i]
	}
	return s
}

// Copy checks copy_strided_u32 against copyRef, exactly, on the copies the shape
// ops make (a slice along an axis with a step, a slice's gradient scattered into
// a zeroed tensor, a block of a concat, a transpose, a permutation of rank 6, a
// broadcast), on sizes 1, 7, 33 and 127 and empty ones; and that an error comes
// back for what it cannot do.
func Copy(t *testing.T, d metal.Compute) {
	r := rand.New(rand.NewPCG(21, 22))
	type tc struct {
		name    string
		dims    []int
		ds, ss  []int
		dOff    int
		sOff    int
		dLen    int
		sLen    int
		partial bool // dst keeps what the copy does not write
	}
	var cases []tc
	for _, n := range append(Sizes, 0) {
		m := n/2 + 1
		// slice [1 : n : 2] of axis 1 of (3, n, 5) into a fresh (3, ⌈(n-1)/2⌉, 5)
		cnt := max(0, (n-1+1)/2)
		cases = append(cases, tc{"slice step 2", []int{3, cnt, 5}, []int{cnt * 5, 5, 1}, []int{n * 5, 10, 1}, 0, 5, 3 * cnt * 5, 3 * n * 5, false})
		// its gradient: the same positions of a zeroed (3, n, 5)
		cases = append(cases, tc{"slice grad", []int{3, cnt, 5}, []int{n * 5, 10, 1}, []int{cnt * 5, 5, 1}, 5, 0, 3 * n * 5, 3 * cnt * 5, true})
		// the second block of a concat along axis 1: (2, n) into (2, m+n) at column m
		cases = append(cases, tc{"concat block", []int{2, n}, []int{m + n, 1}, []int{n, 1}, m, 0, 2 * (m + n), 2 * n, true})
		// a transpose of (n, 7)
		cases = append(cases, tc{"transpose", []int{7, n}, []int{n, 1}, []int{1, 7}, 0, 0, 7 * n, 7 * n, false})
		// a broadcast of a (n, 1) column to (3, n, 4)
		cases = append(cases, tc{"broadcast", []int{3, n, 4}, rowMajor([]int{3, n, 4}), []int{0, 1, 0}, 0, 0, 12 * n, n, false})
	}
	// a rank-6 permutation that no merging simplifies
	in6 := []int{2, 3, 1 + 2, 5, 2, 3}
	perm := []int{5, 3, 1, 4, 0, 2}
	dims6, ss6 := make([]int, 6), make([]int, 6)
	st := rowMajor(in6)
	for k, a := range perm {
		dims6[k], ss6[k] = in6[a], st[a]
	}
	n6 := 2 * 3 * 3 * 5 * 2 * 3
	cases = append(cases, tc{"permute rank 6", dims6, rowMajor(dims6), ss6, 0, 0, n6, n6, false})

	for _, c := range cases {
		what := fmt.Sprintf("%s dims %v", c.name, c.dims)
		x := Random(r, c.sLen, -4, 4)
		prev := Random(r, c.dLen, 10, 20)
		src, dst := Upload(t, d, x), Upload(t, d, prev)
		access := metal.Write
		if c.partial {
			access = metal.ReadWrite
		}
		require.NoError(t, metal.RunCopy(d, dst, src, c.dims, c.ds, c.ss, c.dOff, c.sOff, access), what)
		want := append(make([]float32, 0, len(prev)), prev...)
		copyRef(want, x, c.dims, c.ds, c.ss, c.dOff, c.sOff)
		got := Download(dst, c.dLen)
		if !c.partial {
			// every element is written: the reference's stale values are gone
			for i, v := range got {
				require.False(t, v >= 10 && v < 20 && want[i] != v, "%s: [%d] = %v was not written", what, i, v)
			}
		}
		assert.Equal(t, want, got, what)
		release(src, dst)
	}

	// int32 bits copy unchanged (NaN payloads included)
	ints := []int32{-1, 0x7fc00001, 5, -7, 0x7f800001, 1 << 30, 3}
	src, dst := UploadInt32(t, d, ints), Empty(t, d, 7)
	require.NoError(t, metal.RunCopy(d, dst, src, []int{7}, []int{1}, []int{1}, 0, 0, metal.Write))
	dst.Wait()
	assert.Equal(t, ints, unsafe.Slice((*int32)(dst.Pointer()), 7), "int32 bits")
	release(src, dst)

	buf := Empty(t, d, 64)
	seven := []int{2, 2, 2, 2, 2, 2, 2}
	require.Error(t, metal.RunCopy(d, buf, buf, seven, []int{64, 32, 16, 8, 4, 2, 1}, []int{1, 2, 4, 8, 16, 32, 64}, 0, 0, metal.Write), "rank 7 after merging")
	require.Error(t, metal.RunCopy(d, buf, buf, []int{65}, []int{1}, []int{1}, 0, 0, metal.Write), "dst too short")
	require.Error(t, metal.RunCopy(d, buf, buf, []int{8}, []int{1}, []int{8}, 0, 0, metal.Write), "src too short")
	require.Error(t, metal.RunCopy(d, buf, buf, []int{8}, []int{1}, []int{1}, 0, 0, metal.Read), "read access")
	buf.Release()
	require.NoError(t, d.Synchronize())
}

// CopyMerge checks the merging of a copy's dims.
func CopyMerge(t *testing.T) {
	md, ds, ss := metal.MergeCopyDims([]int{2, 1, 3, 4}, []int{12, 12, 4, 1}, []int{12, 99, 4, 1})
	assert.Equal(t, []int{24}, md, "a contiguous copy is one dim")
	assert.Equal(t, []int{1}, ds)
	assert.Equal(t, []int{1}, ss)
	md, ds, ss = metal.MergeCopyDims([]int{3, 4, 5}, []int{20, 5, 1}, []int{1, 3, 12})
	assert.Equal(t, []int{3, 4, 5}, md, "a transpose merges nothing")
	assert.Equal(t, []int{20, 5, 1}, ds)
	assert.Equal(t, []int{1, 3, 12}, ss)
	md, _, ss = metal.MergeCopyDims([]int{3, 4, 5}, []int{20, 5, 1}, []int{0, 0, 1})
	assert.Equal(t, []int{12, 5}, md, "broadcast dims merge")
	assert.Equal(t, []int{0, 1}, ss)
	md, _, _ = metal.MergeCopyDims([]int{3, 0, 5}, []int{20, 5, 1}, []int{0, 0, 1})
	assert.Equal(t, []int{0}, md, "empty")
}
