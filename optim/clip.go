package optim

import (
	"fmt"
	"math"

	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/metal"
)

// normBlock is the size of the blocks the norm sums separately before adding the
// block sums in order: fixed, so the result does not depend on the thread count.
const normBlock = 1 << 16

// GlobalNorm returns the L2 norm of all the gradients taken together,
// √(Σ g²) over every element of every non-nil tensor, accumulated in float64.
// The summation order is fixed, so the result is the same at any thread count.
func GlobalNorm(grads []*autodiff.Tensor) float64 {
	sum := 0.0
	for _, g := range grads {
		if g == nil {
			continue
		}
		switch g.DType() {
		case autodiff.Float32:
			sum += sumSquares(g.Float32s())
		case autodiff.Float64:
			sum += sumSquares(g.Float64s())
		default:
			panic(fmt.Sprintf("optim: GlobalNorm: gradient of dtype %s", g.DType()))
		}
	}
	return math.Sqrt(sum)
}

func sumSquares[T autodiff.Float](x []T) float64 {
	blocks := (len(x) + normBlock - 1) / normBlock
	partial := make([]float64, blocks)
	metal.ParallelFor(blocks, max(1, grain/normBlock), func(lo, hi int) {
		for b := lo; b < hi; b++ {
			partial[b] = blockSquares(x[b*normBlock : min(len(x), (b+1)*normBlock)])
		}
	})
	sum := 0.0
	for _, p := range partial {
		sum += p
	}
	return sum
}

// blockSquares sums squares with four accumulators, so the adds do not wait on
// one another.
func blockSquares[T autodiff.Float](x []T) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		a := float64(x[i])
		s0 += a * a
	}
	return (s0 + s1) + (s2 + s3)
}

// ClipGradNorm scales the gradients in place so that their global norm (see
// [GlobalNorm]) is at most maxNorm, and returns the norm they had before. As in
// PyTorch and MLX, when the norm exceeds maxNorm every element is multiplied by
// maxNorm/(norm + 1e-6) (in float64, then rounded to the gradient's dtype);
// otherwise nothing changes. A norm that is NaN or infinite is returned with the
// gradients untouched: check it and skip the step. maxNorm must be positive.
func ClipGradNorm(grads []*autodiff.Tensor, maxNorm float64) (totalNorm float64) {
	if !(maxNorm > 0) {
		panic(fmt.Sprintf("optim: ClipGradNorm: maxNorm %v must be positive", maxNorm))
	}
	totalNorm = GlobalNorm(grads)
	if !(totalNorm > maxNorm) || math.IsInf(totalNorm, 0) {
		return totalNorm
	}
	scale := maxNorm / (totalNorm + 1e-6)
	for _, g := range grads {
		if g == nil {
			continue
		}
		if g.DType() == autodiff.Float32 {
			scaleInPlace(g.Float32s(), scale)
		} else {
			scaleInPlace(g.Float64s(), scale)
		}
	}
	return totalNorm
}

func scaleInPlace[T autodiff.Float](x []T, scale float64) {
	metal.ParallelFor(len(x), grain, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			x[i] = T(float64(x[i]) * scale)
		}
	})
}
