//go:build !unix

package models_test

func cpuSeconds() float64 { return -1 }
