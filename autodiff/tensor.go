package autodiff

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/mlxtrain/mlxtrain/metal"
)

// Tensor is a row-major, contiguous array of one dtype in a pooled buffer.
type Tensor struct {
	shape []int
	dtype DType
	buf   *metal.Buffer
	tape  *Tape // the tape tracking this tensor, or nil
	id    int32 // this tensor's slot on its tape
	// dims holds the shape of tensors of rank ≤ 4, so that making a tensor is one
	// allocation rather than two.
	dims [4]int
}

// newTensor returns an untracked tensor of the given shape (copied) over buf.
func newTensor(dtype DType, buf *metal.Buffer, shape []int) *Tensor {
	t := &Tensor{dtype: dtype, buf: buf, id: -1}
	switch {
	case len(shape) == 0: // a 0-dimensional tensor keeps a nil shape
	case len(shape) <= len(t.dims):
		t.shape = t.dims[:len(shape):len(shape)]
		copy(t.shape, shape)
	default:
		t.shape = append([]int(nil), shape...)
	}
	return t
}

// Shape returns the dimensions. The slice is the tensor's own: do not modify it.
func (t *Tensor) Shape() []int { return t.shape }

// Dim returns the size of axis i (negative counts from the end).
func (t *Tensor) Dim(i int) int { return t.shape[normAxis("Dim", i, len(t.shape))] }

// Rank is the number of dimensions.
func (t *Tensor) Rank() int { return len(t.shape) }

// DType returns the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Len is the number of elements.
func (t *Tensor) Len() int { return numel(t.shape) }

// Tape returns the tape tracking t, or nil.
func (t *Tensor) Tape() *Tape { return t.tape }

// Buffer returns the storage, for kernels on devices.
func (t *Tensor) Buffer() *metal.Buffer { return t.buf }

// Released reports whether the tensor's storage has been given back.
func (t *Tensor) Released() bool { return t.buf == nil }

// Release gives the storage back to the pool. The tensor must not be used after.
// Tensors a tape owns are released by [Tape.Release], not here.
func (t *Tensor) Release() {
	if t.buf == nil {
		return
	}
	t.buf.Release()
	t.buf = nil
}

func (t *Tensor) bytes() []byte {
	if t.buf == nil {
		panic("autodiff: use of a released tensor " + shapeString(t.shape))
	}
	t.buf.Wait()
	return t.buf.Bytes()
}

func typed[T any](t *Tensor, want DType) []T {
	if t.dtype != want {
		panic(fmt.Sprintf("autodiff: tensor is %s, not %s", t.dtype, want))
	}
	b := t.bytes()
	n := t.Len()
	if n == 0 {
		return []T{}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
}

// Float32s returns the elements of a float32 tensor, shared (writes are visible).
func (t *Tensor) Float32s() []float32 { return typed[float32](t, Float32) }

// Float64s returns the elements of a float64 tensor, shared.
func (t *Tensor) Float64s() []float64 { return typed[float64](t, Float64) }

// Int32s returns the elements of an int32 tensor, shared.
func (t *Tensor) Int32s() []int32 { return typed[int32](t, Int32) }

// Uint32s returns the elements of a uint32 tensor, shared.
func (t *Tensor) Uint32s() []uint32 { return typed[uint32](t, Uint32) }

// Halves returns the raw 16-bit elements of a float16 or bfloat16 tensor, shared.
func (t *Tensor) Halves() []uint16 {
	if t.dtype != Float16 && t.dtype != BFloat16 {
		panic(fmt.Sprintf("autodiff: tensor is %s, not a 16-bit float", t.dtype))
	}
	b := t.bytes()
	if len(b) == 0 {
		return []uint16{}
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), t.Len())
}

// Bytes returns the raw little-endian contents, shared.
func (t *Tensor) Bytes() []byte { return t.bytes()[:t.Len()*t.dtype.Size()] }

// data returns the float elements as a []T; T must match the dtype.
func data[T Float](t *Tensor) []T {
	var z T
	if _, ok := any(z).(float32); ok {
		return typed[T](t, Float32)
	}
	return typed[T](t, Float64)
}

// Item returns the single element of a one-element float tensor as float64.
func (t *Tensor) Item() float64 {
	if t.Len() != 1 {
		panic("autodiff: Item of a tensor of shape " + shapeString(t.shape))
	}
	return t.At(0)
}

// At returns element i (flat index) of any tensor as float64.
func (t *Tensor) At(i int) float64 {
	switch t.dtype {
	case Float32:
		return float64(t.Float32s()[i])
	case Float64:
		return t.Float64s()[i]
	case Float16:
		return float64(HalfToFloat32(t.Halves()[i]))
	case BFloat16:
		return float64(BFloat16ToFloat32(t.Halves()[i]))
	case Int32:
		return float64(t.Int32s()[i])
	case Uint32:
		return float64(t.Uint32s()[i])
	}
	panic("autodiff: unknown dtype")
}

// Float64Values copies the elements of any tensor into a new []float64.
func (t *Tensor) Float64Values() []float64 {
	out := make([]float64, t.Len())
	switch t.dtype {
	case Float32:
		for i, v := range t.Float32s() {
			out[i] = float64(v)
		}
	case Float64:
		copy(out, t.Float64s())
	default:
		for i := range out {
			out[i] = t.At(i)
		}
	}
	return out
}

func (t *Tensor) String() string {
	if t.buf == nil {
		return "Tensor(released " + shapeString(t.shape) + ")"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Tensor(%s %s [", t.dtype, shapeString(t.shape))
	n := t.Len()
	for i := range min(n, 8) {
		if i > 0 {
			sb.WriteString(" ")
		}
		fmt.Fprintf(&sb, "%.6g", t.At(i))
	}
	if n > 8 {
		sb.WriteString(" …")
	}
	sb.WriteString("])")
	return sb.String()
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func shapeString(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "(" + strings.Join(parts, ",") + ")"
}

func checkShape(op string, shape []int) {
	for _, d := range shape {
		if d < 0 {
			panic(fmt.Sprintf("autodiff: %s: negative dimension in shape %s", op, shapeString(shape)))
		}
	}
}

// normAxis maps a possibly negative axis into [0, rank).
func normAxis(op string, axis, rank int) int {
	a := axis
	if a < 0 {
		a += rank
	}
	if a < 0 || a >= rank {
		panic(fmt.Sprintf("autodiff: %s: axis %d out of range for rank %d", op, axis, rank))
	}
	return a
}

// Empty returns an uninitialised tensor from the pool: the accelerator's memory
// when one is open (metal.Storage), else the host's.
func Empty(dtype DType, shape ...int) *Tensor {
	checkShape("Empty", shape)
	return newTensor(dtype, metal.Storage(numel(shape)*dtype.Size()), shape)
}

// Zeros returns a tensor of zeros.
func Zeros(dtype DType, shape ...int) *Tensor {
	checkShape("Zeros", shape)
	return newTensor(dtype, metal.StorageZeroed(numel(shape)*dtype.Size()), shape)
}

// Full returns a float tensor with every element v.
func Full(dtype DType, v float64, shape ...int) *Tensor {
	t := Empty(dtype, shape...)
	t.Fill(v)
	return t
}

// Fill sets every element to v (rounded to the dtype).
func (t *Tensor) Fill(v float64) {
	switch t.dtype {
	case Float32:
		s := t.Float32s()
		for i := range s {
			s[i] = float32(v)
		}
	case Float64:
		s := t.Float64s()
		for i := range s {
			s[i] = v
		}
	case Float16, BFloat16:
		h := Float32ToHalf(float32(v))
		if t.dtype == BFloat16 {
			h = Float32ToBFloat16(float32(v))
		}
		s := t.Halves()
		for i := range s {
			s[i] = h
		}
	case Int32:
		s := t.Int32s()
		for i := range s {
			s[i] = int32(v)
		}
	case Uint32:
		s := t.Uint32s()
		for i := range s {
			s[i] = uint32(v)
		}
	}
}

func checkLen(op string, n int, shape []int) {
	checkShape(op, shape)
	if n != numel(shape) {
		panic(fmt.Sprintf("autodiff: %s: %d values for shape %s", op, n, shapeString(shape)))
	}
}

// FromFloat32 copies data into a new float32 tensor of the given shape.
func FromFloat32(data []float32, shape ...int) *Tensor {
	checkLen("FromFloat32", len(data), shape)
	t := Empty(Float32, shape...)
	copy(t.Float32s(), data)
	return t
}

// FromFloat64 copies data into a new float64 tensor of the given shape.
func FromFloat64(data []float64, shape ...int) *Tensor {
	checkLen("FromFloat64", len(data), shape)
	t := Empty(Float64, shape...)
	copy(t.Float64s(), data)
	return t
}

// FromInt32 copies data into a new int32 tensor of the given shape.
func FromInt32(data []int32, shape ...int) *Tensor {
	checkLen("FromInt32", len(data), shape)
	t := Empty(Int32, shape...)
	copy(t.Int32s(), data)
	return t
}

// Scalar returns a 0-dimensional float tensor.
func Scalar(dtype DType, v float64) *Tensor { return Full(dtype, v) }

// Clone copies t into a new untracked tensor.
func (t *Tensor) Clone() *Tensor {
	c := Empty(t.dtype, t.shape...)
	copy(c.bytes(), t.Bytes())
	return c
}

// CopyFrom overwrites t's elements with src's (same dtype and element count).
// It is not recorded on any tape: optimizers use it to update parameters.
func (t *Tensor) CopyFrom(src *Tensor) {
	if t.dtype != src.dtype || t.Len() != src.Len() {
		panic(fmt.Sprintf("autodiff: CopyFrom: %s %s from %s %s", t.dtype, shapeString(t.shape), src.dtype, shapeString(src.shape)))
	}
	copy(t.bytes(), src.Bytes())
}

// Cast converts t to dtype (rounding to nearest even for half types). Casts between
// float32 and float64 are differentiable.
func Cast(t *Tensor, dtype DType) *Tensor {
	out := Empty(dtype, t.shape...)
	castInto(out, t)
	if t.dtype.IsFloat() && dtype.IsFloat() {
		record(out, "cast", func(g *Tensor) { accumulate(t, func() *Tensor { return Cast(g, t.dtype) }) }, t)
	}
	return out
}

func castInto(dst, src *Tensor) {
	n := src.Len()
	if src.dtype == dst.dtype {
		copy(dst.bytes(), src.Bytes())
		return
	}
	switch {
	case src.dtype == Float32 && dst.dtype == Float64:
		d, s := dst.Float64s(), src.Float32s()
		for i := range n {
			d[i] = float64(s[i])
		}
	case src.dtype == Float64 && dst.dtype == Float32:
		d, s := dst.Float32s(), src.Float64s()
		for i := range n {
			d[i] = float32(s[i])
		}
	case src.dtype == Float32 && dst.dtype == Float16:
		d, s := dst.Halves(), src.Float32s()
		for i := range n {
			d[i] = Float32ToHalf(s[i])
		}
	case src.dtype == Float32 && dst.dtype == BFloat16:
		d, s := dst.Halves(), src.Float32s()
		for i := range n {
			d[i] = Float32ToBFloat16(s[i])
		}
	case src.dtype == Float16 && dst.dtype == Float32:
		d, s := dst.Float32s(), src.Halves()
		for i := range n {
			d[i] = HalfToFloat32(s[i])
		}
	case src.dtype == BFloat16 && dst.dtype == Float32:
		d, s := dst.Float32s(), src.Halves()
		for i := range n {
			d[i] = BFloat16ToFloat32(s[i])
		}
	default:
		// Every other pair goes through float64 (exact for all but int32 > 2^53, which
		// int32 cannot hold) or float32 for halves.
		switch dst.dtype {
		case Float16, BFloat16:
			tmp := Cast(src, Float32)
			castInto(dst, tmp)
			tmp.Release()
		default:
			for i := range n {
				v := src.At(i)
				switch dst.dtype {
				case Float32:
					dst.Float32s()[i] = float32(v)
				case Float64:
					dst.Float64s()[i] = v
				case Int32:
					dst.Int32s()[i] = int32(v)
				case Uint32:
					dst.Uint32s()[i] = uint32(v)
				}
			}
		}
	}
}
