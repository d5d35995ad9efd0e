//go:build !unix

package gemm

// cpuSeconds is unknown here.
func cpuSeconds() float64 { return -1 }
