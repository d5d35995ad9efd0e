//go:build !amd64

package vecmath

// AVX2FMA is false off amd64: the Go loops run.
var AVX2FMA = false

// AVX is false off amd64.
var AVX = false

// AVX512 is false off amd64.
var AVX512 = false
