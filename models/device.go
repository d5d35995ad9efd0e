package models

import (
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/layers"
	"github.com/mlxtrain/mlxtrain/metal"
)

// The fused CPU kernels of this package (one pass where the unfused ops would
// make several) have no kernels of their own: on a device they run as their
// parts, each of which has one (embedding and binary, linear and activation,
// layers' LayerNorm). These composite ops say which applies, through the
// registry like every other choice of path.
var (
	embedPositionsOp = metal.Kernels.Register("embed_positions", []string{"tokens"}, metal.CompositeImpl("embed_positions"), &metal.Impl{Path: metal.PathGo})
	linearGELUOp     = metal.Kernels.Register("linear_gelu", []string{"rows"}, metal.CompositeImpl("linear_gelu"), &metal.Impl{Path: metal.PathAsm})
	linearResidualOp = metal.Kernels.Register("linear_residual", []string{"rows"}, metal.CompositeImpl("linear_residual"), &metal.Impl{Path: metal.PathBLAS})
	layerNorm32Op    = metal.Kernels.Register("layer_norm_avx2", []string{"rows"}, metal.CompositeImpl("layer_norm_avx2"), &metal.Impl{Path: metal.PathAsm})
)

// rowsOf is the number of rows of x (..., d).
func rowsOf(x *autodiff.Tensor) int { return x.Len() / max(x.Dim(-1), 1) }

// embedPositionsParts is embedPositions as Embedding plus the broadcast
// addition of the positions' rows.
func embedPositionsParts(table, pos, ids *autodiff.Tensor, offset int) *autodiff.Tensor {
	x := autodiff.Embedding(table, ids)
	if pos == nil {
		return x
	}
	t := ids.Dim(1)
	p := pos
	if offset != 0 || t != pos.Dim(0) {
		p = autodiff.Slice(pos, 0, offset, offset+t)
	}
	return autodiff.Add(x, p)
}

// linearGELUParts is LinearGELU as a linear layer and GELU.
func linearGELUParts(x, w, b *autodiff.Tensor) *autodiff.Tensor {
	return autodiff.GELU(layers.LinearOp(x, w, b))
}

// linearResidualParts is linearResidual as a linear layer and an addition.
func linearResidualParts(x, w, b, res *autodiff.Tensor) *autodiff.Tensor {
	return autodiff.Add(res, layers.LinearOp(x, w, b))
}
