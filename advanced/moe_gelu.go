package advanced

import (
	"github.com/mlxtrain/mlxtrain/autodiff"
	"github.com/mlxtrain/mlxtrain/internal/vecmath"
)

// geluBiasRow sets y = gelu(y+b) and, when d is not nil, d = gelu′(y+b) with the
// exact (erf) GELU of internal/vecmath; b may be nil.
func geluBiasRow[T autodiff.Float](y, d, b []T) {
	switch y := any(y).(type) {
	case []float32:
		vecmath.GELU(y, any(d).([]float32), y, any(b).([]float32))
	case []float64:
		vecmath.GELU64(y, any(d).([]float64), y, any(b).([]float64))
	}
}
