//go:build !amd64

package vecmath

// Off amd64 the Go loops do all the work: each body does nothing.

func geluBody(y, d, x, b []float32) int { return 0 }

func softmaxRowBody(s []float32, mOld float32) (m, sum float32) { return softmaxRowGo(s, mOld) }

func softmaxGradRowBody(p, ds []float32, lse, delta, scale float32) int { return 0 }

func mulSumBody(dst, sum, a, b []float32) int { return 0 }

func addToBody(dst, src []float32) int { return 0 }

func dotBody(x, y []float32) (int, float32) { return 0, 0 }

func scaleBody(dst []float32, a float32, x []float32) int { return 0 }

func addScaledBody(dst []float32, a float32, x []float32) int { return 0 }

// Prefetch does nothing off amd64.
func Prefetch(s []float32) {}
