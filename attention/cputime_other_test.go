//go:build !unix

package attention

func cpuSeconds() float64 { return -1 }
