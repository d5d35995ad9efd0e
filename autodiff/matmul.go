package autodiff

import (
	"fmt"

	"github.com/mlxtrain/mlxtrain/autodiff/gemm"
	"github.com/mlxtrain/mlxtrain/metal"
)

// MatMul returns the matrix product a·b with NumPy's matmul rules: the last two
// axes are the matrices, the axes before them are batch axes that broadcast, and a
// 1-D a (or b) is a row (column) vector whose axis is dropped from the result.
// float32 runs on gemm.Sgemm (BLAS, assembly or Go), float64 on gemm.Dgemm.
func MatMul(a, b *Tensor) *Tensor { return MatMulT(a, b, false, false) }

// MatMulT returns op(a)·op(b), where op swaps the last two axes of a tensor when
// its flag is set; no transpose is materialised. A 2-D b against a batched a, as in
// a Linear layer on (batch, seq, d) activations, runs as one product of
// (batch·seq)×d rows without copying b. Flags on 1-D operands are ignored.
func MatMulT(a, b *Tensor, transA, transB bool) *Tensor {
	checkFloat("matmul", a, b)
	p := planMatMul(a, b, transA, transB)
	out := Empty(a.dtype, p.outShape...)
	p.forward(a, b, out)
	return record(out, "matmul", func(g *Tensor) {
		accumulate(a, func() *Tensor { return p.gradA(a, b, g) })
		accumulate(b, func() *Tensor { return p.gradB(a, b, g) })
	}, a, b)
}

// matmulPlan is the layout of one MatMulT call: count products of op(A) m×k by
// op(B) k×n, the i-th reading A's and B's matrices at aOffs[i] and bOffs[i] and
// writing C's at i·m·n.
type matmulPlan struct {
	transA, transB bool
	m, n, k        int
	lda, ldb       int // row strides of the stored matrices (their column counts)
	count          int
	aOffs, bOffs   []int
	aShared        bool // some matrix of a serves more than one product (broadcast)
	bShared        bool
	outShape       []int
	batch          []int // the broadcast batch shape of the products (nil when folded)
	aMat, bMat     []int // the stored matrices' shapes (rows, cols)
}

func planMatMul(a, b *Tensor, transA, transB bool) *matmulPlan {
	if a.Rank() == 0 || b.Rank() == 0 {
		panic(fmt.Sprintf("autodiff: matmul: shapes %s and %s: operands need at least one axis", shapeString(a.shape), shapeString(b.shape)))
	}
	p := &matmulPlan{transA: transA && a.Rank() > 1, transB: transB && b.Rank() > 1}
	// The stored matrices: a 1-D a is one row, a 1-D b one column.
	aRows, aCols, batchA := 1, a.shape[0], []int(nil)
	if a.Rank() > 1 {
		aRows, aCols, batchA = a.shape[a.Rank()-2], a.shape[a.Rank()-1], a.shape[:a.Rank()-2]
	}
	bRows, bCols, batchB := b.shape[0], 1, []int(nil)
	if b.Rank() > 1 {
		bRows, bCols, batchB = b.shape[b.Rank()-2], b.shape[b.Rank()-1], b.shape[:b.Rank()-2]
	}
	p.lda, p.ldb = aCols, bCols
	p.m, p.k = aRows, aCols
	if p.transA {
		p.m, p.k = aCols, aRows
	}
	kb := bRows
	p.n = bCols
	if p.transB {
		kb, p.n = bCols, bRows
	}
	if p.k != kb {
		panic(fmt.Sprintf("autodiff: matmul: shapes %s and %s (transposed %v, %v): inner sizes %d and %d differ",
			shapeString(a.shape), shapeString(b.shape), transA, transB, p.k, kb))
	}
	batch, err := BroadcastShapes(batchA, batchB)
	if err != nil {
		panic(fmt.Sprintf("autodiff: matmul: shapes %s and %s: batch axes: %v", shapeString(a.shape), shapeString(b.shape), err))
	}
	p.outShape = append([]int(nil), batch...)
	if a.Rank() > 1 {
		p.outShape = append(p.outShape, p.m)
	}
	if b.Rank() > 1 {
		p.outShape = append(p.outShape, p.n)
	}

	count, countA, countB := numel(batch), numel(batchA), numel(batchB)
	if countB == 1 && !p.transA {
		// Every matrix of a meets the same b: stacked, a's rows are one taller A.
		p.m *= countA
		count = 1
		batch = nil
	}
	p.count = count
	p.batch = batch
	p.aMat, p.bMat = []int{aRows, aCols}, []int{bRows, bCols}
	p.aShared, p.bShared = countA < count, countB < count
	p.aOffs = batchOffsets(batchA, batch, aRows*aCols)
	p.bOffs = batchOffsets(batchB, batch, bRows*bCols)
	return p
}

// batchOffsets returns, for each index of the broadcast batch shape, the element
// offset of the matching matrix of an input with batch shape in.
func batchOffsets(in, batch []int, matrix int) []int {
	n := numel(batch)
	offs := make([]int, n)
	if n == 0 {
		return offs
	}
	st := broadcastStrides(in, batch)
	forEachBroadcast(batch, st, st, 0, n, func(o, i, _ int) { offs[o] = i * matrix })
	return offs
}

// products runs fn for every product index, on the workers when the products are
// too small to split themselves and independent (each one then stays on its
// worker), else in order. A worker gets at least half of what is worth waking it.
func (p *matmulPlan) products(independent bool, fn func(i int)) {
	work := p.m * p.n * p.k
	if independent && p.count > 1 && work < gemm.MinParallelWork {
		metal.ParallelFor(p.count, max(1, gemm.MinParallelWork/2/(work+1)), func(lo, hi int) {
			for i := lo; i < hi; i++ {
				fn(i)
			}
		})
		return
	}
	for i := range p.count {
		fn(i)
	}
}

func (p *matmulPlan) forward(a, b, out *Tensor) {
	mn := p.m * p.n
	if tryDevice("matmul", p.device(out, a, b), func(d metal.Compute) error {
		return p.onDevice(d, func(i int, d metal.Compute) error {
			return matmulDeviceAt(out, a, b, i*mn, p.aOffs[i], p.bOffs[i], p.m, p.n, p.k, p.transA, p.transB, d)
		})
	}) {
		return
	}
	p.products(true, func(i int) {
		gemmCall(p.transA, p.transB, p.m, p.n, p.k,
			a, p.aOffs[i], p.lda, b, p.bOffs[i], p.ldb, 0, out, i*mn, p.n)
	})
}

// gradA is the VJP for a: with A' = op(A), B' = op(B), dA' = g·B'ᵀ, so
// dA = g·op(B)ᵀ, or op(B)·gᵀ when A is stored transposed. Products that share a's
// matrix (broadcast batch axes) add into it.
func (p *matmulPlan) gradA(a, b, g *Tensor) *Tensor {
	if d := p.device(a, b, g); d != nil {
		// A shared matrix gets each product's gradient in a scratch of the batch's
		// shape, which SumTo then reduces to a's.
		shared := p.aShared && a.Len() > 0 // (an empty a is "shared" by a folded batch)
		da, offs := p.gradTarget(a, shared, p.aOffs, p.aMat)
		mn := p.m * p.n
		if tryDevice("matmul", d, func(d metal.Compute) error {
			return p.onDevice(d, func(i int, d metal.Compute) error {
				if p.transA {
					return matmulDeviceAt(da, b, g, offs[i], p.bOffs[i], i*mn, p.k, p.m, p.n, p.transB, true, d)
				}
				return matmulDeviceAt(da, g, b, offs[i], i*mn, p.bOffs[i], p.m, p.k, p.n, false, !p.transB, d)
			})
		}) {
			return p.gradReduce(da, a, shared)
		}
		da.Release()
	}
	da := Zeros(a.dtype, a.shape...)
	beta := 0.0
	if p.aShared {
		beta = 1
	}
	mn := p.m * p.n
	p.products(!p.aShared, func(i int) {
		if p.transA {
			gemmCall(p.transB, true, p.k, p.m, p.n,
				b, p.bOffs[i], p.ldb, g, i*mn, p.n, beta, da, p.aOffs[i], p.lda)
		} else {
			gemmCall(false, !p.transB, p.m, p.k, p.n,
				g, i*mn, p.n, b, p.bOffs[i], p.ldb, beta, da, p.aOffs[i], p.lda)
		}
	})
	return da
}

// gradB is the VJP for b: dB' = A'ᵀ·g, so dB = op(A)ᵀ·g, or gᵀ·op(A) when B is
// stored transposed. With a's batch folded into m this one product also sums over
// the batch.
func (p *matmulPlan) gradB(a, b, g *Tensor) *Tensor {
	if d := p.device(a, b, g); d != nil {
		shared := p.bShared && b.Len() > 0
		db, offs := p.gradTarget(b, shared, p.bOffs, p.bMat)
		mn := p.m * p.n
		if tryDevice("matmul", d, func(d metal.Compute) error {
			return p.onDevice(d, func(i int, d metal.Compute) error {
				if p.transB {
					return matmulDeviceAt(db, g, a, offs[i], i*mn, p.aOffs[i], p.n, p.k, p.m, true, p.transA, d)
				}
				return matmulDeviceAt(db, a, g, offs[i], p.aOffs[i], i*mn, p.k, p.n, p.m, !p.transA, false, d)
			})
		}) {
			return p.gradReduce(db, b, shared)
		}
		db.Release()
	}
	db := Zeros(b.dtype, b.shape...)
	beta := 0.0
	if p.bShared {
		beta = 1
	}
	mn := p.m * p.n
	p.products(!p.bShared, func(i int) {
		if p.transB {
			gemmCall(true, p.transA, p.n, p.k, p.m,
				g, i*mn, p.n, a, p.aOffs[i], p.lda, beta, db, p.bOffs[i], p.ldb)
		} else {
			gemmCall(!p.transA, false, p.k, p.n, p.m,
				a, p.aOffs[i], p.lda, g, i*mn, p.n, beta, db, p.bOffs[i], p.ldb)
		}
	})
	return db
}

// gradTarget returns the tensor the device writes an operand's gradient to and
// each product's offset in it: the gradient itself, or, for an operand whose
// matrices serve several products (shared), a scratch with a matrix per product
// (batch + x's matrix axes) that gradReduce sums.
func (p *matmulPlan) gradTarget(x *Tensor, shared bool, offs []int, mat []int) (*Tensor, []int) {
	if !shared {
		return Empty(x.dtype, x.shape...), offs
	}
	tail := x.shape[len(x.shape)-min(2, len(x.shape)):] // the matrix axes (one for a 1-D operand)
	scratch := Empty(x.dtype, append(append([]int(nil), p.batch...), tail...)...)
	own := make([]int, p.count)
	for i := range own {
		own[i] = i * mat[0] * mat[1]
	}
	return scratch, own
}

// gradReduce turns gradTarget's tensor into x's gradient.
func (p *matmulPlan) gradReduce(t, x *Tensor, shared bool) *Tensor {
	if !shared {
		return t
	}
	defer t.Release()
	return SumTo(t, x.shape)
}

// gemmCall computes C = op(X)·op(Y) + β·C on the matrices of x, y and c that start
// at the given element offsets.
func gemmCall(tx, ty bool, m, n, k int, x *Tensor, xOff, ldx int, y *Tensor, yOff, ldy int, beta float64, c *Tensor, cOff, ldc int) {
	if x.dtype == Float32 {
		gemm.Sgemm(tx, ty, m, n, k, 1, x.Float32s()[xOff:], ldx, y.Float32s()[yOff:], ldy, float32(beta), c.Float32s()[cOff:], ldc)
		return
	}
	gemm.Dgemm(tx, ty, m, n, k, 1, x.Float64s()[xOff:], ldx, y.Float64s()[yOff:], ldy, beta, c.Float64s()[cOff:], ldc)
}
