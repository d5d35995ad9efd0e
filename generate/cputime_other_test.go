//go:build !unix

package generate

func cpuSeconds() float64 { return -1 }
