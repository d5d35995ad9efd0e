package attention

import "github.com/mlxtrain/mlxtrain/autodiff"

func halvesToFloat32Go(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for i, h := range src {
		dst[i] = autodiff.HalfToFloat32(h)
	}
}

func float32ToHalvesGo(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, f := range src {
		dst[i] = autodiff.Float32ToHalf(f)
	}
}
